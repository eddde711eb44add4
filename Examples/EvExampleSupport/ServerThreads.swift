#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import Synchronization

/// One example server on one loop: what `ServerThreads.run` runs on every loop of its group.
///
/// The group owns the loop and its thread; the server only arms its work (`start`), ends
/// it when the group stops (`stop`, on the loop thread: stop accepting or receiving, close
/// every connection through the loop) and says what it did (`stats`, read once the loop
/// has drained). `SendableMetatype`: the loops' set-up closures name the server's type
/// (never an instance) on other threads.
public protocol LoopServer: AnyObject, SendableMetatype {
    associatedtype Statistics: ServerStatistics
    /// Arms the server's work on its loop (an accept, the receives). Throwing stops the
    /// whole server: the error is reported and the program exits.
    func start() throws(EvError)
    /// Ends the server's work; the loop then runs until every callback has fired.
    func stop()
    /// What the server did.
    var stats: Statistics { get }
}

/// Runs an example server on N loops, one per thread (a `LoopGroup`), until SIGINT or
/// SIGTERM.
///
/// The server has one SO_REUSEPORT socket per loop (`ReusePortSockets`), made before the
/// threads start; each loop's set-up puts its socket in the mode the loop prefers and
/// starts its server. Loop 0 also reads SIGINT and SIGTERM from a `SignalWatcher` (the
/// signals must already be blocked, `ExampleProcess.startServer`, before any thread exists,
/// so every thread inherits the mask and none is killed by them) and stops the group, which
/// wakes every loop through its own notifier; each stops its server, finishes, and is
/// drained. Once every thread has finished, `run` closes the sockets and returns each
/// server's statistics, in loop order. A loop that cannot be set up, or fails while it
/// runs, ends the program with the reason.
public enum ServerThreads {
    public static func run<Socket: LoopSocket, Server: LoopServer>(
        program: String,
        backend: Backend,
        sockets: ReusePortSockets<Socket>,
        makeServer: @escaping @Sendable (_ loop: LoopCore, _ socket: Socket) -> Server
    ) -> [Server.Statistics] {
        let results = Mutex<[(Int, Server.Statistics)]>([])
        let group: LoopGroup<LoopCore>
        do {
            group = try LoopGroup(loops: sockets.count, backend: backend)
            try group.start { member throws(EvError) in
                let socket = try sockets.socket(member.index, preparedFor: member.loop)
                let server = makeServer(member.loop, socket)
                try server.start()
                member.onStop { server.stop() }
                member.onFinish {
                    let stats = server.stats
                    results.withLock { $0.append((member.index, stats)) }
                }
                if member.index == 0 { try stopOnSignals(member) }
            }
        } catch {
            sockets.closeAll()
            Report.fail(program, "cannot start the server: \(error)")
        }
        return finish(program: program, group: group, sockets: sockets, results: results)
    }

    /// Waits for every loop of a started `group` to finish, closes the sockets and returns
    /// each loop's statistics in loop order (a loop that failed ends the program). Shared
    /// with `AsyncServerThreads`.
    static func finish<Socket: LoopSocket, Statistics: ServerStatistics>(
        program: String, group: LoopGroup<LoopCore>, sockets: ReusePortSockets<Socket>,
        results: borrowing Mutex<[(Int, Statistics)]>
    ) -> [Statistics] {
        do {
            try group.join()
        } catch {
            sockets.closeAll()
            Report.fail(program, "a server loop failed: \(error)")
        }
        sockets.closeAll()
        return results.withLock { $0.sorted { $0.0 < $1.0 }.map(\.1) }
    }

    /// How the examples name a signal they stop on ("received SIGINT, shutting down").
    static func signalName(_ signal: Int32) -> String {
        signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"
    }

    /// Reads SIGINT and SIGTERM on `member`'s loop and stops the group on the first. The
    /// wait does not keep the loop alive (the group's drain cancels it).
    private static func stopOnSignals(_ member: LoopGroup<LoopCore>.Member) throws(EvError) {
        let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
        let waiting = Completion()
        waiting.keepsLoopAlive = false
        try signals.wait(loop: member.loop, completion: waiting) { _, result in
            guard case .success(let info) = result else { return .disarm }   // cancelled
            Report.say("received \(signalName(info.signal)), shutting down")
            member.group.stop()
            return .disarm
        }
    }
}
