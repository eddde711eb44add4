import Ev
import EvExampleSupport

/// The command line and start of the example HTTP servers: their options, checked, and the
/// listening sockets, made; what ev-http and ev-http-async share before they serve, so that
/// the two take the same flags and print the same lines (which run.sh and the end-to-end
/// tests read).
///
/// `start` does, in this order: parses the options (`--help` and usage errors exit), blocks
/// SIGINT and SIGTERM and raises the descriptor limit and opens the loop that picks the
/// backend (`ExampleProcess.startServer`, before any thread exists), makes one SO_REUSEPORT
/// listener per `--threads` (before the threads start, so that port 0 resolves to one port
/// that every thread's socket then binds), and prints `listening on HOST:PORT (...)`.
public struct HTTPServerCommand: Sendable {
    /// The backend every loop uses (the one the first loop picked or was given).
    public let backend: Backend
    /// One listener per thread.
    public let listeners: ReusePortSockets<TCPSocket>
    /// `--idle-timeout`: the deadline of each read and each write; nil for 0 (never).
    public let idleTimeout: Duration?

    /// The options both servers take.
    public static let options: [OptionSpec] = [
        .host(),
        .listenPort("TCP"),
        .backend,
        .threads,
        OptionSpec("backlog", value: "N", default: "1024", help: "listen(2) backlog of each socket"),
        OptionSpec("idle-timeout", value: "SECONDS", default: "60",
                   help: "close a connection that sends nothing (or takes no response bytes) for this long; 0: never"),
    ]

    /// The tool description of the server called `name`, with the shared options and usage
    /// examples, and `summary` (what is particular to this server).
    public static func tool(name: String, summary: String) -> CommandLineTool {
        CommandLineTool(name: name, summary: summary, options: options, examples: [
            "\(name) --port 8080",
            "\(name) --port 8080 --threads 2 --backend epoll",
            "curl http://127.0.0.1:8080/bytes/1000",
        ])
    }

    /// Parses the command line and makes the listeners (exits on a usage error or when the
    /// address cannot be bound).
    public static func start(_ tool: CommandLineTool) -> HTTPServerCommand {
        let options = tool.parseSharedOrExit()
        let backlog = tool.validate { () throws(OptionError) in try options.parsed.int("backlog", in: 1...65535) }
        let idleTimeout: Duration? = tool.validate { () throws(OptionError) -> Duration? in
            let d = try options.parsed.seconds("idle-timeout")
            return d == .zero ? nil : d
        }
        let mainLoop = ExampleProcess.startServer(program: tool.name, backend: options.backend)
        let listeners = tool.orFail("cannot listen on \(options.host):\(options.port)") { () throws(EvError) in
            try ReusePortSockets.listeners(count: options.threads,
                                           address: SocketAddress(host: options.host, port: options.port),
                                           backlog: Int32(backlog))
        }
        let idleNote = idleTimeout.map { "idle timeout \(Report.fixed(Report.seconds($0), 1)) s" } ?? "no idle timeout"
        Report.say("listening on \(listeners.address) (backend \(mainLoop.backend), threads \(options.threads), backlog \(backlog), \(idleNote))")
        return HTTPServerCommand(backend: mainLoop.backend, listeners: listeners, idleTimeout: idleTimeout)
    }

    /// What both servers answer, for their `--help` (the particular part follows it).
    public static let behaviour = """
    It prints the backend it runs on, then a line 'listening on HOST:PORT' for scripts, and
    serves GET and HEAD with keep-alive and pipelining: '/' answers "Hello, World!",
    '/bytes/N' answers N bytes (0 <= N <= \(HTTPResponse.maxBytes)), anything else 404. A
    malformed request head is answered with 400, a head over \(HTTPRequestParser.defaultHeadLimit / 1024) KiB with 431, a
    Transfer-Encoding with 501, and the connection is closed.
    """
}
