// Conformance: awaitable loop operations (EvAsync): timers, TCP, UDP, files, notifiers,
// and task cancellation mapped onto loop cancellation. Every test runs unchanged on every
// backend, loopback only.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: awaited operations")
struct AsyncOperationTests {

    /// An awaited write and read over a loopback TCP connection made by awaited accept and
    /// connect; the tasks resume on the loop thread.
    @Test(arguments: conformanceBackends)
    func awaitedReadAndWriteOnLoopback(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (listenFd, port) = try Sock.listener()
            h.forLoop(listenFd)
            let listener = TCPSocket(fd: listenFd)
            let loopThread = currentThreadID()
            let message = (0..<5000).map { patternByte($0) }
            let (echoed, threads) = try runAsync(executor) {
                try await withThrowingTaskGroup(of: [Int32].self) { group in
                    // Server: accept, read everything until end of stream, write it back.
                    group.addTask {
                        let conn = try await listener.accept(on: executor)
                        var seen = [currentThreadID()]
                        let buffer = TestBuffer(1024)
                        var received: [UInt8] = []
                        // The end of the stream is `.endOfFile`, as in the callback form.
                        while true {
                            do {
                                let n = try await conn.read(into: buffer.raw, on: executor)
                                seen.append(currentThreadID())
                                received += buffer.raw[0..<n]
                            } catch EvError.endOfFile {
                                seen.append(currentThreadID())
                                break
                            }
                        }
                        let out = TestBuffer(received)
                        try await conn.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                        try await conn.close(on: executor)
                        return seen
                    }
                    // Client: connect, write, shut down, read the echo.
                    let client = try await TCPSocket.connect(to: try Sock.loopback(ipv6: false, port: port), on: executor)
                    let out = TestBuffer(message)
                    try await client.writeAll(UnsafeRawBufferPointer(out.raw), on: executor)
                    try await client.shutdown(.write, on: executor)
                    let buffer = TestBuffer(message.count + 16)
                    var got = 0
                    while true {
                        do {
                            got += try await client.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.raw[got...]), on: executor)
                        } catch EvError.endOfFile {
                            break
                        }
                    }
                    try await client.close(on: executor)
                    let serverThreads = try await group.next() ?? []
                    return (Array(buffer.raw[0..<got]), serverThreads + [currentThreadID()])
                }
            }
            #expect(echoed == message)
            #expect(Set(threads) == [loopThread])
            #expect(Fds.socketsBound(toPort: port, except: listenFd).isEmpty, "every connection was closed")
        }
    }

    /// Reads awaited on a connection made outside the loop; a reset peer is reported as an
    /// error value.
    @Test(arguments: conformanceBackends)
    func awaitedReadOfExternalPeer(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            let writer = try TestThread { usleep(20_000); try? Sock.put(b, "ping") }
            defer { writer.join() }
            let first = try runAsync(executor) {
                let buffer = TestBuffer(64)
                let n = try await socket.read(into: buffer.raw, on: executor)
                return Array(buffer.raw[0..<n])
            }
            #expect(first == Array("ping".utf8))
            Sock.closeWithReset(b)
            h.forget(b)
            let outcome: Result<Int, EvError> = try runAsync(executor) {
                let buffer = TestBuffer(64)
                do {
                    return .success(try await socket.read(into: buffer.raw, on: executor))
                } catch let e as EvError {
                    return .failure(e)
                }
            }
            #expect(outcome == .failure(.connectionReset))
        }
    }

    /// Cancelling a task awaiting accept: the accept is cancelled through the loop, the task
    /// gets CancellationError, the loop has nothing left active and no descriptor leaks; from
    /// the loop thread and from another thread.
    @Test(arguments: conformanceBackends)
    func cancelAwaitedAccept(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (listenFd, port) = try Sock.listener()
            h.forLoop(listenFd)
            let listener = TCPSocket(fd: listenFd)
            let baseline = loop.activeCount

            // Cancelled by loop code (the handler runs on the loop thread).
            let outcome = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async throws -> Int32 in
                    try await listener.accept(on: executor).fd
                }
                try await executor.sleep(for: .milliseconds(20))
                task.cancel()
                do {
                    let fd = try await task.value
                    return "accepted \(fd)"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            #expect(outcome == "cancelled")

            // Cancelled from another thread (the request hops to the loop via the executor).
            let handle = Locked<Task<Int32, any Error>?>(nil)
            let outcome2 = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async throws -> Int32 in
                    try await listener.accept(on: executor).fd
                }
                handle.withLock { $0 = task }
                let canceller = try TestThread {
                    usleep(20_000)
                    handle.value?.cancel()
                }
                defer { canceller.join() }
                do {
                    let fd = try await task.value
                    return "accepted \(fd)"
                } catch is CancellationError {
                    return "cancelled"
                }
            }
            #expect(outcome2 == "cancelled")
            #expect(loop.activeCount == baseline, "the cancelled accepts left nothing active")
            #expect(Fds.socketsBound(toPort: port, except: listenFd).isEmpty, "no accepted descriptor leaked")

            // Still usable afterwards: a real connection is accepted.
            let client = try Sock.tcp()
            h.own(client)
            let accepted = try runAsync(executor) {
                let t = try TestThread { _ = try? Sock.loopback(ipv6: false, port: port).withSockAddr { connect(client, $0, $1) } }
                defer { t.join() }
                let s = try await listener.accept(on: executor)
                try await s.close(on: executor)
                return true
            }
            #expect(accepted)
        }
    }

    /// A task that is already cancelled does not start the operation at all.
    @Test(arguments: conformanceBackends)
    func alreadyCancelledTaskStartsNothing(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let result = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async -> String in
                    withUnsafeCurrentTask { $0?.cancel() }
                    do {
                        try await executor.sleep(for: .seconds(30))
                        return "slept"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                return await task.value
            }
            #expect(result == "cancelled")
            #expect(loop.activeCount == 1, "only the executor's wake-up poll")
        }
    }

    /// An awaited send that finishes as it is started (epoll and poll try a send before
    /// they wait) returns without suspending the task, but at most
    /// `LoopExecutor.immediateResultBudget` in a row: a task that keeps sending into a
    /// socket with room still lets the loop run its other callbacks, here a timer that is
    /// due before the first send. (On io_uring every send suspends, so the timer fires
    /// after one or two.) Every byte arrives, in order. (A thread reads them meanwhile:
    /// an AF_UNIX socket charges each one-byte send its whole buffer's overhead, so a
    /// thousand of them would fill the send buffer.)
    @Test(arguments: conformanceBackends)
    func sendsThatFinishAtOnceStillLetTheLoopRun(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            let sends = 1_000
            let buffer = TestBuffer((0..<sends).map { patternByte($0) })
            let received = Locked<[UInt8]>([])
            let reader = try TestThread { received.withLock { $0 = Sock.take(b, sends) } }
            let (firedAfter, results) = try runAsync(executor) { () async throws -> (Int?, [String]) in
                final class Progress { var sent = 0; var firedAfter: Int? }
                let progress = Progress()
                let timer = Completion()
                try executor.loop.timer(timer, deadline: executor.loop.now) { _, _ in
                    progress.firedAfter = progress.sent
                    return .disarm
                }
                var unexpected: [String] = []
                for i in 0..<sends {
                    let r = try await executor.perform(.send(socket: a, buffer: UnsafeRawBufferPointer(rebasing: buffer.raw[i..<(i + 1)])))
                    if case .write(.success(1)) = r {} else { unexpected.append("send \(i): \(r)") }
                    progress.sent += 1
                }
                return (progress.firedAfter, unexpected)
            }
            #expect(results.isEmpty, "\(results.prefix(3))")
            let limit = 2 * LoopExecutor.immediateResultBudget + 2
            #expect(firedAfter != nil && firedAfter! <= limit,
                    "the due timer fired after \(firedAfter.map(String.init) ?? "all") of \(sends) sends (at most \(limit))")
            reader.join()
            #expect(received.withLock { $0 } == buffer.bytes)
        }
    }

#if DEBUG
    /// A task cancelled after its operation started but before the await installed its
    /// cancellation record (the window an await that looked for an immediate result has on
    /// epoll and poll; a test hook cancels the task there) still has its operation
    /// cancelled: the record's handler runs as it is installed, and the await cancels the
    /// operation through the loop instead of waiting for data that never comes. On io_uring
    /// the record comes first, the hook is never called, and the task is cancelled while it
    /// waits, as usual.
    @Test(arguments: conformanceBackends)
    func cancelJustAfterTheOperationStartedIsNotLost(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            let buffer = TestBuffer(16)
            let hookRan = Locked(false)
            executor.beforeCancellationRecord = { completion in
                guard completion.kind == .recv else { return }   // not the harness's timers
                executor.beforeCancellationRecord = nil
                hookRan.withLock { $0 = true }
                withUnsafeCurrentTask { $0?.cancel() }
            }
            defer { executor.beforeCancellationRecord = nil }
            let outcome = try runAsync(executor) { () async -> String in
                let task = Task(executorPreference: executor) { () async -> String in
                    do {
                        // The deadline bounds a lost cancel (it would wait for data forever).
                        let r = try await executor.perform(.recv(socket: a, buffer: buffer.raw), deadline: .within(.seconds(2)))
                        return "\(r)"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                if !hookRan.withLock({ $0 }) {
                    try? await executor.sleep(for: .milliseconds(20))
                    task.cancel()
                }
                return await task.value
            }
            #expect(outcome == "cancelled")
            #expect(loop.activeCount == 1, "only the executor's wake-up poll")
        }
    }
#endif

    /// The same through `perform` itself, which has no up-front check: the cancellation
    /// handler it installs runs at once for a task that is already cancelled, and the
    /// operation is never added to the loop. (Both would complete if they were started:
    /// the receive has a byte waiting, the timer is due in 100 ms.)
    @Test(arguments: conformanceBackends)
    func alreadyCancelledTaskPerformsNothing(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (a, b) = try Sock.socketPair()
            h.forLoop(a); h.own(b)
            try Sock.put(b, "x")
            let buffer = TestBuffer(16)
            let result = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async -> [String] in
                    withUnsafeCurrentTask { $0?.cancel() }
                    var outcomes: [String] = []
                    for operation in [Operation.recv(socket: a, buffer: buffer.raw),
                                      .timer(deadline: executor.loop.now + .milliseconds(100))] {
                        do {
                            let r = try await executor.perform(operation)
                            outcomes.append("\(r)")
                        } catch is CancellationError {
                            outcomes.append("cancelled")
                        } catch {
                            outcomes.append("\(error)")
                        }
                    }
                    return outcomes
                }
                return await task.value
            }
            #expect(result == ["cancelled", "cancelled"])
            #expect(loop.activeCount == 1, "only the executor's wake-up poll")
        }
    }

    /// 10,000 concurrent awaited timers in a task group on the loop executor: each fires
    /// once, never early, on the loop thread.
    @Test(arguments: conformanceBackends)
    func tenThousandConcurrentTimers(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let loopThread = currentThreadID()
            loop.updateNow()
            let start = LoopInstant.now()
            let (fired, early, offThread) = try runAsync(executor, limit: .seconds(30)) {
                try await withThrowingTaskGroup(of: (Bool, Bool).self) { group in
                    for i in 0..<10_000 {
                        group.addTask {
                            let delay = Duration.milliseconds(1 + i % 50)
                            let armed = LoopInstant.now()
                            try await executor.sleep(for: delay)
                            // The loop measures from its cached `now`, read before `armed`.
                            let early = LoopInstant.now() - armed < delay - .milliseconds(1)
                            return (early, currentThreadID() != loopThread)
                        }
                    }
                    var fired = 0, early = 0, offThread = 0
                    for try await (e, off) in group {
                        fired += 1
                        if e { early += 1 }
                        if off { offThread += 1 }
                    }
                    return (fired, early, offThread)
                }
            }
            #expect(fired == 10_000)
            #expect(early == 0)
            #expect(offThread == 0)
            #expect(LoopInstant.now() - start < .seconds(20))
            #expect(executor.pooledSlots > 0, "slots go back to the pool")
        }
    }

    /// A long awaited sleep cancelled from another thread ends at once with
    /// CancellationError; its timer is gone from the loop.
    @Test(arguments: conformanceBackends)
    func cancelSleepFromAnotherThread(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let handle = Locked<Task<String, Never>?>(nil)
            let start = LoopInstant.now()
            let outcome = try runAsync(executor) {
                let task = Task(executorPreference: executor) { () async -> String in
                    do {
                        try await executor.sleep(for: .seconds(30))
                        return "slept"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                handle.withLock { $0 = task }
                let canceller = try TestThread {
                    usleep(10_000)
                    handle.value?.cancel()
                }
                defer { canceller.join() }
                return await task.value
            }
            #expect(outcome == "cancelled")
            #expect(LoopInstant.now() - start < .seconds(5))
            #expect(loop.activeCount == 1, "only the executor's wake-up poll")
        }
    }

    /// Loop cancellation that is not task cancellation (`cancelAll`) reports
    /// `EvError.canceled`, not CancellationError; tasks that go on awaiting after it (as
    /// they do to close their sockets) do not re-arm the executor's wake-up poll, so
    /// `cancelAll()` + `run(.untilDone)` leaves the loop with nothing active.
    @Test(arguments: conformanceBackends)
    func loopCancellationIsAnEvError(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let outcome = Locked<String>("")
            Task(executorPreference: executor) {
                do {
                    try await executor.sleep(for: .seconds(30))
                    outcome.withLock { $0 = "slept" }
                } catch let e as EvError {
                    outcome.withLock { $0 = "ev \(e == .canceled)" }
                } catch {
                    outcome.withLock { $0 = "other \(error)" }
                }
                try? await executor.sleep(for: .milliseconds(1))
                outcome.withLock { $0 += ", then slept" }
            }
            try loop.run(.noWait)   // the task starts and arms its timer
            loop.cancelAll()
            let drained = try runUntilDone(loop)
            #expect(drained)
            #expect(outcome.value == "ev true, then slept")
            #expect(loop.activeCount == 0)
            #expect(!executor.isWakeArmed)
            executor.resume()
            #expect(executor.isWakeArmed)
        }
    }

    /// Awaited UDP send and receive over loopback, with the sender's address.
    @Test(arguments: conformanceBackends)
    func awaitedUDP(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let a = try UDPSocket.bound(to: try Sock.loopback(ipv6: false, port: 0), on: executor)
            let b = try UDPSocket.bound(to: try Sock.loopback(ipv6: false, port: 0), on: executor)
            let aAddress = try a.localAddress(), bAddress = try b.localAddress()
            let (message, reply) = try runAsync(executor) {
                async let received: (ReceivedMessage, [UInt8]) = {
                    let buffer = TestBuffer(64)
                    let m = try await b.receive(into: buffer.raw, on: executor)
                    return (m, Array(buffer.raw[0..<m.count]))
                }()
                let out = TestBuffer(Array("datagram".utf8))
                let sent = try await a.send(UnsafeRawBufferPointer(out.raw), to: bAddress, on: executor)
                #expect(sent == 8)
                let (m, bytes) = try await received
                try await a.close(on: executor)
                try await b.close(on: executor)
                return (m, bytes)
            }
            #expect(reply == Array("datagram".utf8))
            #expect(message.address == aAddress)
            #expect(!message.truncated)
            _ = h
        }
    }

    /// Awaited file writes and reads (positional and at the current position).
    @Test(arguments: conformanceBackends)
    func awaitedFileIO(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let fd = try makeTempFile()
            h.own(fd)
            let file = File(fd: fd)
            let data = (0..<10_000).map { patternByte($0, seed: 3) }
            let readBack = try runAsync(executor) {
                let out = TestBuffer(data)
                try await file.pwriteAll(UnsafeRawBufferPointer(out.raw), offset: 0, on: executor)
                let tail = TestBuffer(Array("tail".utf8))
                _ = try await file.pwrite(UnsafeRawBufferPointer(tail.raw), offset: UInt64(data.count), on: executor)
                let buffer = TestBuffer(data.count + 100)
                var got = 0
                while true {
                    do {
                        got += try await file.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer.raw[got...]),
                                                    offset: UInt64(got), on: executor)
                    } catch EvError.endOfFile {
                        break   // as the callback form reports it
                    }
                }
                return Array(buffer.raw[0..<got])
            }
            #expect(readBack == data + Array("tail".utf8))
            #expect(fileContent(fd) == readBack)
        }
    }

    /// Awaiting a notifier: notifications from another thread wake the task on the loop;
    /// several before the wait count once.
    @Test(arguments: conformanceBackends)
    func awaitedNotifier(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let notifier = try AsyncNotifier()
            let loopThread = currentThreadID()
            let threads = try runAsync(executor) {
                var seen: [Int32] = []
                let t = try TestThread { usleep(10_000); notifier.notify() }
                try await notifier.wait(on: executor)
                t.join()
                seen.append(currentThreadID())
                notifier.notify(); notifier.notify(); notifier.notify()
                try await notifier.wait(on: executor)
                seen.append(currentThreadID())
                // Nothing pending now: a wait must block until the next notify.
                let t2 = try TestThread { usleep(10_000); notifier.notify() }
                defer { t2.join() }
                let before = LoopInstant.now()
                try await notifier.wait(on: executor)
                #expect(LoopInstant.now() - before >= .milliseconds(5), "coalesced notifications counted once")
                seen.append(currentThreadID())
                return seen
            }
            #expect(threads == [loopThread, loopThread, loopThread])
        }
    }

    /// One notifier, one wait at a time in both faces (issue 16): while a callback wait is
    /// armed on the notifier, awaiting it throws `.notifierInUse`; once that wait's
    /// callback has run, the awaited wait works.
    @Test(arguments: conformanceBackends)
    func awaitedNotifierIsRefusedWhileACallbackWaitIsArmed(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, _ in
            let async = try Async()
            let notifier = async.notifier
            var callbacks = 0
            try async.wait(loop: loop, completion: Completion()) { _, result in
                if case .success = result { callbacks += 1 }
                return .disarm
            }
            let (refusal, later) = try runAsync(executor) { () async throws -> (String, String) in
                var refusal = "accepted"
                do {
                    try await notifier.wait(on: executor)
                } catch let error as EvError {
                    refusal = "\(error)"
                }
                notifier.notify()   // the callback wait takes it, and ends
                try await executor.sleep(for: .milliseconds(20))
                let t = try TestThread { usleep(10_000); notifier.notify() }
                defer { t.join() }
                try await notifier.wait(on: executor)
                return (refusal, "woken")
            }
            #expect(refusal == "\(EvError.notifierInUse)")
            #expect(callbacks == 1)
            #expect(later == "woken")
        }
    }

    /// Awaiting a child's exit: the status of a child that exits by itself; a cancelled
    /// await leaves the child running (CancellationError), and a later await reports its
    /// death by SIGKILL.
    @Test(arguments: conformanceBackends)
    func awaitedProcessExit(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let (quick, cancelled, killed) = try runAsync(executor) {
                let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 3"], stdin: .null, stdout: .null, stderr: .null)
                let quick = try await child.wait(on: executor)

                let sleeper = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, stdout: .null, stderr: .null)
                let pid = sleeper.pid
                let waiter = Task(executorPreference: executor) { () async -> String in
                    do {
                        let watched = try Subprocess(pid: pid)
                        return "\(try await watched.wait(on: executor))"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                try await executor.sleep(for: .milliseconds(20))
                waiter.cancel()
                let cancelled = await waiter.value
                // Not reaped by the cancelled await, so the pid is still this child's.
                kill(pid, SIGKILL)
                let killed = try await sleeper.wait(on: executor)
                return (quick, cancelled, killed)
            }
            #expect(quick == .exited(3))
            #expect(cancelled == "cancelled")
            #expect(killed == .signaled(SIGKILL, coreDumped: false))
        }
    }

    /// Awaiting a signal (SIGUSR2, blocked in this thread and raised to it: a signalfd
    /// reports thread-directed signals to the thread that reads it, and the loop runs here).
    @Test(arguments: conformanceBackends)
    func awaitedSignal(backend: Backend) throws {
        try SignalWatcher.block([SIGUSR2])
        defer {
            while cevsys_signal_consume(SIGUSR2) == 1 {}
            try? SignalWatcher.unblock([SIGUSR2])
        }
        try withAsyncLoop(backend) { _, executor, _ in
            let (signal, cancelled) = try runAsync(executor) {
                let watcher = try SignalWatcher(signals: [SIGUSR2])
                let raiser = Task(executorPreference: executor) {
                    try await executor.sleep(for: .milliseconds(10))
                    raise(SIGUSR2)   // this (the loop) thread
                }
                let info = try await watcher.wait(on: executor)
                try await raiser.value
                // A wait with nothing pending, cancelled.
                let waiter = Task(executorPreference: executor) { () async -> String in
                    do {
                        let w = try SignalWatcher(signals: [SIGUSR2])
                        return "\(try await w.wait(on: executor).signal)"
                    } catch is CancellationError {
                        return "cancelled"
                    } catch {
                        return "\(error)"
                    }
                }
                try await executor.sleep(for: .milliseconds(10))
                waiter.cancel()
                return (info.signal, await waiter.value)
            }
            #expect(signal == SIGUSR2)
            #expect(cancelled == "cancelled")
        }
    }

    /// Awaited operations reuse pooled slots: many sequential awaits grow the pool by at
    /// most one slot.
    @Test(arguments: conformanceBackends)
    func sequentialAwaitsReuseOneSlot(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, _ in
            let pooled = try runAsync(executor) {
                // The timeout racer holds one slot; this task uses one more, over and over.
                for _ in 0..<1000 { try await executor.sleep(for: .zero) }
                return 0
            }
            #expect(pooled == 0)
            #expect(executor.pooledSlots <= 3, "a run of sequential awaits reuses the same slots")
        }
    }
}
