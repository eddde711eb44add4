#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import Synchronization

/// Runs an example server on N loops, one per thread, until SIGINT or SIGTERM.
///
/// The server has one socket per thread (`makeReusePortSockets`). The main thread serves
/// the first on `mainLoop`; threads 1..<N each create a loop on the same backend and serve
/// the next socket on it. Stopping uses two watchers:
/// - a `SignalWatcher` (signalfd) on the main loop reads SIGINT and SIGTERM. The signals
///   must already be blocked (`ExampleProcess.startServer`, before any thread exists, so
///   every thread inherits the mask and none is killed by them);
/// - an `Async` per loop: the main loop's signal callback notifies every loop's
///   `AsyncNotifier` (the one thing that may cross threads), and each loop's callback,
///   on its own thread, starts that server's clean shutdown.
/// Each server's `serve` returns its statistics; once every thread has finished, `run`
/// closes the sockets and returns the statistics, in thread order.
public enum ServerThreads {
    public static func run<Socket: LoopSocket, Stats: Sendable>(
        program: String,
        mainLoop: LoopCore,
        sockets: [Socket],
        serve: @escaping @Sendable (_ loop: LoopCore, _ socket: Socket, _ stop: StopListener) -> Stats
    ) -> [Stats] {
        let count = sockets.count
        precondition(count > 0, "ServerThreads.run needs a socket per thread")
        let notifiers: [AsyncNotifier]
        let signals: SignalWatcher
        do {
            notifiers = try (0..<count).map { _ throws(EvError) in try AsyncNotifier() }
            signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
        } catch {
            Report.fail(program, "cannot set up shutdown: \(error)")
        }
        let backend = mainLoop.backend
        let results = Mutex<[(Int, Stats)]>([])

        var workers: [LoopThread] = []
        for i in 1..<count {
            let notifier = notifiers[i]
            let socket = sockets[i]
            workers.append(LoopThread {
                let loop: LoopCore
                do {
                    loop = try makeLoop(backend)
                } catch {
                    Report.fail(program, "thread \(i): \(error)")
                }
                let stop = StopListener(loop: loop, async: Async(notifier: notifier), signals: nil, everyLoop: [])
                let stats = serve(loop, socket, stop)
                results.withLock { $0.append((i, stats)) }
            })
        }

        let stop = StopListener(loop: mainLoop, async: Async(notifier: notifiers[0]), signals: signals, everyLoop: notifiers)
        let mainStats = serve(mainLoop, sockets[0], stop)
        for w in workers { w.join() }
        for socket in sockets { close(socket.fd) }
        return [mainStats] + results.withLock { $0.sorted { $0.0 < $1.0 }.map(\.1) }
    }
}

/// Tells one server's loop to stop: an `Async` wait (woken from the main loop) and, on
/// the main loop, a `SignalWatcher` wait for SIGINT/SIGTERM that wakes every loop.
///
/// Neither wait keeps the loop alive by itself (`keepsLoopAlive = false`): the server's
/// own work does. `cancel()` withdraws both, so the loop can finish once the server has
/// closed everything.
public final class StopListener {
    private let loop: LoopCore
    private let async: Async
    private let signals: SignalWatcher?
    private let everyLoop: [AsyncNotifier]
    private let asyncCompletion = Completion()
    private let signalCompletion = Completion()

    init(loop: LoopCore, async: Async, signals: SignalWatcher?, everyLoop: [AsyncNotifier]) {
        self.loop = loop
        self.async = async
        self.signals = signals
        self.everyLoop = everyLoop
        asyncCompletion.keepsLoopAlive = false
        signalCompletion.keepsLoopAlive = false
    }

    /// The loop's part of a server thread, the same for every server: arms the waits, then
    /// runs the loop until the server has stopped and closed everything, or exits with the
    /// reason. `onStop` runs on the loop thread when a stop is requested; it must close or
    /// cancel all the server has in flight (and call `cancel()`), so that the loop runs out
    /// of work and this returns.
    public func run(program: String, onStop: @escaping () -> Void) {
        start(onStop)
        do {
            try loop.run(.untilDone)
            // Everything was closed or cancelled by `onStop`; anything still active would
            // trip the loop's teardown check, so drain it rather than leave it to chance.
            if loop.activeCount > 0 {
                loop.cancelAll()
                try loop.run(.untilDone)
            }
        } catch {
            Report.fail(program, "loop failed: \(error)")
        }
    }

    /// Arms the waits; `onStop` runs on the loop thread when a stop is requested.
    private func start(_ onStop: @escaping () -> Void) {
        do {
            try async.wait(loop: loop, completion: asyncCompletion) { _, result in
                guard case .success = result else { return .disarm }   // cancelled
                onStop()
                return .disarm
            }
            if let signals {
                let everyLoop = self.everyLoop
                try signals.wait(loop: loop, completion: signalCompletion) { _, result in
                    guard case .success(let info) = result else { return .disarm }
                    let name = info.signal == SIGINT ? "SIGINT" : info.signal == SIGTERM ? "SIGTERM" : "signal \(info.signal)"
                    Report.say("received \(name), shutting down")
                    // Every loop, this one included, hears it through its Async.
                    for n in everyLoop { n.notify() }
                    return .disarm
                }
            }
        } catch {
            fatalError("StopListener: cannot arm: \(error)")
        }
    }

    /// Withdraws the waits (their callbacks then run once with `.canceled`).
    public func cancel() {
        for c in [asyncCompletion, signalCompletion] where c.state == .active {
            try? loop.cancel(c, using: Completion())
        }
    }
}
