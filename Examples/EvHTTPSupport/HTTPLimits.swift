/// The per-connection limits of the example HTTP servers, the same for the callback server
/// (ev-http) and the async one (ev-http-async), so that they can be compared request for
/// request and tested by the same end-to-end tests.
public enum HTTPLimits {
    /// The largest request head (431 beyond).
    public static let headLimit = HTTPRequestParser.defaultHeadLimit
    /// Bytes each read may deliver.
    public static let readCapacity = 16 * 1024
    /// Bytes of one output chunk: the responses to one read go out in one of these (or in
    /// several, for a read with many pipelined requests).
    public static let chunkCapacity = 16 * 1024
    /// Lingering after our FIN ends when the client sends nothing for this long...
    public static let lingerQuiet: Duration = .milliseconds(200)
    /// ...or has sent this many more bytes.
    public static let lingerDropLimit = 1 << 20
    /// How long a stopping server (SIGINT, SIGTERM) lets its connections finish the
    /// responses they are writing before it closes them: a client that reads nothing would
    /// otherwise keep the server running for ever. Both servers use it.
    public static let shutdownGrace: Duration = .seconds(5)
}
