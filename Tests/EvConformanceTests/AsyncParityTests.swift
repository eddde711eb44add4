// Conformance: the two faces of each watcher operation mean the same (DESIGN.md invariant
// 11, issue 13): the awaited forms have the callback forms' names and end-of-stream rule,
// take a deadline wherever they do I/O, and the classes that own their completions
// (StreamReader, WriteQueue) and LoopGroup have awaited twins. On every backend.
import Testing
import Ev
import CEvSys
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A loop-thread object (StreamReader, WriteQueue: not `Sendable`) handed to the test's
/// tasks, which all run on that loop's thread.
private final class OnLoop<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// An error a group's task throws on purpose.
private struct PlannedTaskFailure: Error, Equatable {
    var index: Int
}

@Suite("Conformance: awaited forms match the callback forms")
struct AsyncParityTests {

    /// The end of a stream is `.endOfFile` in both forms: the callback gets
    /// `.failure(.endOfFile)` and the awaited read throws `EvError.endOfFile`, on a socket
    /// and on a pipe; a read into an empty buffer is 0 in both.
    @Test(arguments: conformanceBackends)
    func endOfStreamIsOneRule(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let socket = TCPSocket(fd: a)
            shutdown(b, Int32(SHUT_WR))
            var callbackResult: Result<Int, EvError>?
            try socket.read(loop: loop, completion: Completion(), buffer: h.buffer(16)) { _, r in
                callbackResult = r
                return .disarm
            }
            #expect(try runUntil(loop) { callbackResult != nil })
            #expect(callbackResult == .failure(.endOfFile))
            let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            h.own(readEnd.fd)
            close(writeEnd.fd)
            let awaited = try runAsync(executor) { () async throws -> [String] in
                let buffer = TestBuffer(16)
                var outcomes: [String] = []
                for read in [{ try await socket.read(into: buffer.raw, on: executor) },
                             { try await readEnd.read(into: buffer.raw, on: executor) }] {
                    do {
                        outcomes.append("read \(try await read())")
                    } catch let e as EvError {
                        outcomes.append("\(e)")
                    }
                }
                let empty = UnsafeMutableRawBufferPointer(rebasing: buffer.raw[0..<0])
                outcomes.append("empty \(try await socket.read(into: empty, on: executor))")
                return outcomes
            }
            #expect(awaited == ["\(EvError.endOfFile)", "\(EvError.endOfFile)", "empty 0"])
        }
    }

    /// `deadline` on the awaited operations that had none: a `writeAll` that cannot finish
    /// in time (the peer reads, but slowly: every partial write finishes well within the
    /// deadline, the whole would take over a second) throws `.timedOut` once for the whole
    /// write; an awaited notifier wait and a child's wait time out too, and the child can
    /// still be waited for afterwards.
    @Test(arguments: conformanceBackends)
    func deadlinesOnWritesAndWaits(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            Sock.setInt(a, SOL_SOCKET, SO_SNDBUF, 4096)
            let socket = TCPSocket(fd: a)
            let notifier = try AsyncNotifier()
            let stopReading = Locked<Bool>(false)
            let slowReader = try TestThread {
                var chunk = [UInt8](repeating: 0, count: 64 << 10)
                while !stopReading.value {
                    _ = recv(b, &chunk, chunk.count, Int32(MSG_DONTWAIT))
                    usleep(10_000)
                }
            }
            defer { stopReading.withLock { $0 = true }; slowReader.join() }
            let outcomes = try runAsync(executor) { () async throws -> [String] in
                var seen: [String] = []
                let big = OwnedBytes(count: 8 << 20) { _ in }
                let started = LoopInstant.now()
                do {
                    try await socket.writeAll(big, deadline: .within(.milliseconds(100)), on: executor)
                    seen.append("written")
                } catch let e as EvError {
                    seen.append("\(e)")
                }
                // One overall deadline, not one per partial write.
                seen.append(LoopInstant.now() - started < .seconds(2) ? "bounded" : "unbounded")
                do {
                    try await notifier.wait(deadline: .within(.milliseconds(20)), on: executor)
                    seen.append("notified")
                } catch let e as EvError {
                    seen.append("\(e)")
                }
                let child = try Subprocess.spawn(path: "/bin/sleep", arguments: ["10"], stdin: .null, stdout: .null,
                                                 stderr: .null, loop: executor.loop)
                do {
                    seen.append("\(try await child.wait(deadline: .within(.milliseconds(20)), on: executor))")
                } catch let e as EvError {
                    seen.append("\(e)")
                }
                try child.signal(SIGKILL)
                seen.append("\(try await child.wait(on: executor))")
                return seen
            }
            #expect(outcomes == ["\(EvError.timedOut)", "bounded", "\(EvError.timedOut)", "\(EvError.timedOut)",
                                 "\(Subprocess.ExitStatus.signaled(SIGKILL, coreDumped: false))"])
        }
    }

    /// `writeAll` of `OwnedBytes`: the await keeps the bytes alive, and all of them arrive,
    /// on a socket and on a pipe.
    @Test(arguments: conformanceBackends)
    func ownedBytesWriteAll(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            h.own(readEnd.fd); h.own(writeEnd.fd)
            let data = (0..<300_000).map { patternByte($0, seed: 5) }
            let socketReader = Locked<[UInt8]>([])
            let pipeReader = Locked<[UInt8]>([])
            let readers = try [TestThread { socketReader.withLock { $0 = Sock.take(b, data.count) } },
                               TestThread { pipeReader.withLock { $0 = readAll(readEnd.fd, data.count) } }]
            try runAsync(executor) {
                // Made inside the task, so that nothing but the await holds them.
                try await TCPSocket(fd: a).writeAll(OwnedBytes(data), on: executor)
                try await writeEnd.writeAll(OwnedBytes(data), on: executor)
            }
            for r in readers { r.join() }
            #expect(socketReader.value == data)
            #expect(pipeReader.value == data)
        }
    }

    /// The awaited StreamReader read: bytes from the reader's own buffer, `.endOfFile` at
    /// the end, and `.completionActive` while the callback form is started.
    @Test(arguments: conformanceBackends)
    func streamReaderAwaitedRead(backend: Backend) throws {
        try withAsyncLoop(backend) { loop, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let reader = try StreamReader(socket: TCPSocket(fd: a), capacity: 64)
            let shared = OnLoop(reader)
            var delivered: Result<[UInt8], EvError>?
            try reader.start(loop: loop) { _, result in
                delivered = result.map { Array($0) }
                return .disarm
            }
            let refused = try runAsync(executor) { () async -> EvError? in
                do {
                    _ = try await shared.value.read(on: executor)
                    return nil
                } catch {
                    return error as? EvError
                }
            }
            #expect(refused == .completionActive)
            try Sock.put(b, "first")
            #expect(try runUntil(loop) { delivered != nil })
            #expect(delivered == .success(Array("first".utf8)))
            try Sock.put(b, "second")
            shutdown(b, Int32(SHUT_WR))
            let awaited = try runAsync(executor) { () async throws -> [String] in
                var seen: [String] = []
                while true {
                    do {
                        seen.append(String(decoding: try await shared.value.read(on: executor), as: UTF8.self))
                    } catch EvError.endOfFile {
                        seen.append("end")
                        return seen
                    }
                }
            }
            #expect(awaited.joined() == "secondend")
        }
    }

    /// Awaited owned-bytes writes through a WriteQueue: three tasks' writes arrive whole and
    /// in queue order, each await returning its count; cancelling a task whose write cannot
    /// finish (the peer does not read) cancels the queue, and the task throws
    /// `CancellationError`.
    @Test(arguments: conformanceBackends)
    func writeQueueAwaitedEnqueue(backend: Backend) throws {
        try withAsyncLoop(backend) { _, executor, h in
            let (a, b) = try Sock.tcpPair()
            h.forLoop(a); h.own(b)
            let queue = OnLoop(WriteQueue(socket: TCPSocket(fd: a)))
            let parts = (0..<3).map { i in (0..<100_000).map { patternByte($0, seed: 20 + i) } }
            let received = Locked<[UInt8]>([])
            let reader = try TestThread { received.withLock { $0 = Sock.take(b, 300_000) } }
            let counts = try runAsync(executor) { () async throws -> [Int] in
                try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    for (i, part) in parts.enumerated() {
                        group.addTask { (i, try await queue.value.enqueue(copying: part, on: executor)) }
                        // Each task queues its write before the next task starts.
                        await Task.yield()
                    }
                    var counts = [0, 0, 0]
                    for try await (i, n) in group { counts[i] = n }
                    return counts
                }
            }
            reader.join()
            #expect(counts == [100_000, 100_000, 100_000])
            #expect(received.value == parts[0] + parts[1] + parts[2])

            let outcome = try runAsync(executor) { () async -> String in
                let ended = Locked<String?>(nil)
                let writer = Task(executorPreference: executor) {
                    let text: String
                    do {
                        _ = try await queue.value.enqueue(bytes: OwnedBytes(count: 8 << 20) { _ in }, on: executor)
                        text = "written"
                    } catch is CancellationError {
                        text = "cancelled"
                    } catch {
                        text = "\(error)"
                    }
                    ended.withLock { $0 = text }
                }
                try? await executor.sleep(for: .milliseconds(30))
                writer.cancel()
                for _ in 0..<300 where ended.value == nil { try? await executor.sleep(for: .milliseconds(10)) }
                if ended.value == nil {
                    // The task's cancellation did not reach the queue: end the write here,
                    // so that the test fails instead of hanging.
                    try? queue.value.cancel(loop: executor.loop, using: Completion())
                    await writer.value
                    return "not cancelled by the task's cancellation"
                }
                return ended.value ?? ""
            }
            #expect(outcome == "cancelled")
            #expect(queue.value.isEmpty)
        }
    }

    /// A group's task per loop: each runs on its own loop's thread with that loop's
    /// executor; `stop()` cancels the tasks (their sleeps end) and `join()` succeeds; a task
    /// that throws stops the group and is the loop's failure at the `.run` stage.
    @Test(arguments: conformanceBackends)
    func loopGroupTaskPerLoop(backend: Backend) throws {
        _ = try makeTestLoop(backend)   // skips the backend where it cannot run
        let group = try LoopGroup(loops: 2, backend: backend)
        let threads = Locked<[Int: [Int32]]>([:])
        let ended = Locked<[Int]>([])
        try group.start { index, executor in
            threads.withLock { $0[index] = [currentThreadID(), executor.loopThreadID] }
            defer { ended.withLock { $0.append(index) } }
            try await executor.sleep(for: .seconds(3600))
        }
        let deadline = LoopInstant.now() + .seconds(5)
        while threads.value.count < 2 && LoopInstant.now() < deadline { usleep(1000) }
        group.stop()
        try group.join()
        let seen = threads.value
        #expect(seen.count == 2)
        #expect(seen.values.allSatisfy { $0[0] == $0[1] } && Set(seen.values.map { $0[0] }).count == 2,
                "each task on its own loop's thread: \(seen)")
        #expect(ended.value.sorted() == [0, 1])

        let failing = try LoopGroup(loops: 2, backend: backend)
        // The failure may come before every loop has started (then `start` throws it, as
        // for a failed set-up) or after (then `join` does).
        let outcome = Result { () throws(LoopGroupError) in
            try failing.start { index, executor in
                if index == 1 { throw PlannedTaskFailure(index: 1) }
                try await executor.sleep(for: .seconds(3600))
            }
            try failing.join()
        }
        guard case .failure(.loopsFailed(let failures)) = outcome else {
            Issue.record("join() did not report the task's failure: \(outcome)")
            return
        }
        #expect(failures.count == 1)
        #expect(failures.first?.index == 1 && failures.first?.stage == .run)
        #expect(failures.first?.error as? PlannedTaskFailure == PlannedTaskFailure(index: 1))
    }
}

/// Reads `count` bytes from a descriptor, blocking or not (fewer if it ends first, or after
/// 5 s without data).
private func readAll(_ fd: Int32, _ count: Int) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while out.count < count {
        let n = read(fd, &chunk, min(chunk.count, count - out.count))
        if n > 0 { out += chunk[0..<n]; continue }
        if n == 0 { break }
        let e = cevsys_errno()
        if e == EINTR { continue }
        guard e == EAGAIN, Sock.wait(fd, timeoutMs: 5000) != 0 else { break }
    }
    return out
}
