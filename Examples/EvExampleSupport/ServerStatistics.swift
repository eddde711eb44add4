/// What an example server counts while it serves, and the summary it prints when it stops.
///
/// Scripts and tests read that summary (`connections served: 4`, `datagrams echoed: 5`), so
/// each statistics type declares its lines once, in `summary`: a label and the counter it
/// prints. Summing the threads' statistics and printing them both come from that one list,
/// so a counter cannot be printed without being summed, or the other way round. The
/// counters themselves stay plain stored properties, which the servers increment on their
/// hot paths at no cost beyond the addition.
public protocol ServerStatistics: Sendable {
    /// All counters zero.
    init()
    /// The summary, in the order it is printed: each line's label (what scripts grep) and
    /// the counter it shows.
    static var summary: [(label: String, counter: WritableKeyPath<Self, UInt64>)] { get }
    /// What one thread's line says after `  thread N: ` ("2 connections, 245446 bytes"),
    /// printed when the server ran more than one thread.
    var perThread: String { get }
}

extension ServerStatistics {
    /// The sum of every counter.
    public static func + (a: Self, b: Self) -> Self {
        var sum = a
        for line in summary { sum[keyPath: line.counter] += b[keyPath: line.counter] }
        return sum
    }

    /// Prints the summary of `threads` (each thread's statistics, in thread order): one
    /// `label: value` line per counter, summed over the threads, then, when there was more
    /// than one thread, a line per thread that shows how SO_REUSEPORT spread the work.
    public static func printSummary(_ threads: [Self]) {
        let total = threads.reduce(Self(), +)
        for line in summary { Report.say("\(line.label): \(total[keyPath: line.counter])") }
        if threads.count > 1 {
            for (i, t) in threads.enumerated() { Report.say("  thread \(i): \(t.perThread)") }
        }
    }
}

/// What a TCP echo server did: ev-echo-tcp's statistics per thread, ev-echo-tcp-async's
/// for its one loop. Both print the same summary, which the same tests read.
public struct TCPEchoStatistics: ServerStatistics {
    /// Connections served. ev-echo-tcp counts each connection here when it accepts it (so
    /// this includes those that later failed or were still open at shutdown);
    /// ev-echo-tcp-async counts one when it ends cleanly (the client shut down its side).
    public var connectionsServed: UInt64 = 0
    /// Connections that ended with an error (a reset or a broken pipe), each counted once.
    public var connectionsFailed: UInt64 = 0
    /// Connections still open when the server stopped (it closed them).
    public var openAtShutdown: UInt64 = 0
    /// Connections closed because they sent nothing for the idle timeout (`--idle-timeout`).
    public var closedIdle: UInt64 = 0
    /// Bytes sent back to clients.
    public var bytesEchoed: UInt64 = 0

    public init() {}

    public static var summary: [(label: String, counter: WritableKeyPath<Self, UInt64>)] {
        [("connections served", \.connectionsServed),
         ("connections ended by an error", \.connectionsFailed),
         ("connections open at shutdown", \.openAtShutdown),
         ("connections closed idle", \.closedIdle),
         ("bytes echoed", \.bytesEchoed)]
    }

    public var perThread: String { "\(connectionsServed) connections, \(bytesEchoed) bytes" }
}
