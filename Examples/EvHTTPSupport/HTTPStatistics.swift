import EvExampleSupport

/// What an example HTTP server did (per thread for ev-http), and the summary it prints at
/// shutdown, which the end-to-end tests read.
public struct HTTPStatistics: ServerStatistics {
    /// Connections accepted.
    public var connectionsServed: UInt64 = 0
    /// Requests answered (not counting the rejected heads).
    public var requests: UInt64 = 0
    /// Heads answered with 400, 431 or 501 (the connection is then closed).
    public var rejected: UInt64 = 0
    /// Connections closed because they sent nothing for the idle timeout.
    public var closedIdle: UInt64 = 0
    /// Connections still open when the server stopped.
    public var openAtShutdown: UInt64 = 0
    /// Connections that ended with an error (a reset, a broken pipe, a write that timed out).
    public var connectionsFailed: UInt64 = 0

    public init() {}

    public static var summary: [(label: String, counter: WritableKeyPath<Self, UInt64>)] {
        [("connections served", \.connectionsServed),
         ("requests answered", \.requests),
         ("requests rejected", \.rejected),
         ("connections closed idle", \.closedIdle),
         ("connections open at shutdown", \.openAtShutdown),
         ("connections ended by an error", \.connectionsFailed)]
    }

    public var perThread: String { "\(connectionsServed) connections, \(requests) requests" }
}
