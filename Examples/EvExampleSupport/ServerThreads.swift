#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import Synchronization

/// Runs an example server on N loops, one per thread, until SIGINT or SIGTERM.
///
/// The main thread serves on `mainLoop`; threads 1..<N each create a loop on the same
/// backend and serve on it. SIGINT and SIGTERM must already be blocked (call
/// `ExampleProcess.blockSignals` before anything starts a thread), so no thread is ever
/// killed by them; a signal thread waits for them with sigwait(2) and then asks every loop
/// to stop through its `StopListener`. Each server's `serve` returns its statistics, and
/// `run` returns them all once every thread has finished.
public enum ServerThreads {
    public static func run<Stats: Sendable>(
        program: String,
        mainLoop: LoopCore,
        threads: Int,
        serve: @escaping @Sendable (_ index: Int, _ loop: LoopCore, _ stop: StopListener) -> Stats
    ) -> [Stats] {
        // One pipe per loop: a byte written to it asks that loop to stop.
        var readers: [Int32] = []
        var writers: [Int32] = []
        for _ in 0..<threads {
            var fds: [Int32] = [0, 0]
            if pipe(&fds) != 0 { Report.fail(program, "pipe: \(ExampleProcess.errnoName(errno))") }
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, O_NONBLOCK)
            }
            readers.append(fds[0])
            writers.append(fds[1])
        }
        let readerList = readers
        let writerList = writers
        let backend = mainLoop.backend
        let results = Mutex<[(Int, Stats)]>([])

        var workers: [LoopThread] = []
        for i in 1..<max(1, threads) {
            workers.append(LoopThread {
                let loop: LoopCore
                do {
                    loop = try makeLoop(backend)
                } catch {
                    Report.fail(program, "thread \(i): \(error)")
                }
                let stats = serve(i, loop, StopListener(loop: loop, fd: readerList[i]))
                results.withLock { $0.append((i, stats)) }
            })
        }

        let signals = LoopThread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGINT)
            sigaddset(&set, SIGTERM)
            var signal: Int32 = 0
            // sigwait returns EINTR only if interrupted by an unblocked signal's handler;
            // wait again.
            while sigwait(&set, &signal) != 0 {}
            Report.say("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"), shutting down")
            var one: UInt8 = 1
            for fd in writerList { _ = write(fd, &one, 1) }
        }

        let mainStats = serve(0, mainLoop, StopListener(loop: mainLoop, fd: readers[0]))
        for w in workers { w.join() }
        signals.join()
        for fd in readers + writers { close(fd) }
        return [mainStats] + results.withLock { $0.sorted { $0.0 < $1.0 }.map(\.1) }
    }
}

/// Tells one loop that the server should stop: a readiness `poll` on the read end of a
/// pipe the signal thread writes to. It does not keep the loop alive by itself, and
/// `cancel()` withdraws it so the loop can finish.
public final class StopListener {
    private let loop: LoopCore
    private let fd: Int32
    private let completion = Completion()
    private var byte: UInt8 = 0

    init(loop: LoopCore, fd: Int32) {
        self.loop = loop
        self.fd = fd
    }

    /// Calls `onStop` on the loop thread when a stop is requested.
    public func start(_ onStop: @escaping () -> Void) {
        completion.operation = .poll(fd: fd, events: .readable)
        completion.keepsLoopAlive = false
        completion.callback = { [unowned self] _, result in
            if case .poll(.failure(.canceled)) = result { return .disarm }
            _ = read(self.fd, &self.byte, 1)
            onStop()
            return .disarm
        }
        do {
            try loop.add(completion)
        } catch {
            fatalError("StopListener: add failed: \(error)")
        }
    }

    /// Withdraws the listener (its callback then runs once with `.canceled`).
    public func cancel() {
        if completion.state == .active { try? loop.cancel(completion, using: Completion()) }
    }
}
