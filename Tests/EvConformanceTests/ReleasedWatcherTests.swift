// A StreamReader or a WriteQueue released while its completion is still in the loop (a read
// or a write in flight, or from inside its own callback, which then returns `.rearm`): the
// loop keeps the completion until its callback has run, and that callback must not reach
// the released object any more. The watchers capture themselves unretained (a weak capture
// slowed every retain and release of them, issue 14), and their `deinit` replaces the
// callbacks; without that, these tests read freed memory. Every test runs on every backend.
import Testing
import Ev
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

@Suite("Released watchers: a reader or a write queue released with its completion in the loop")
struct ReleasedWatcherTests {

    /// A reader released with its read in flight: the data that arrives later completes
    /// the read, and the callback the reader was given never runs.
    @Test(arguments: conformanceBackends)
    func readerReleasedWithAReadInFlightIsNotCalled(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (local, peer) = try Sock.socketPair()
        h.forLoop(local)
        h.own(peer)
        var calls = 0
        weak var released: StreamReader?
        var readCompletion: Completion?
        do {
            let reader = try StreamReader(fd: local, capacity: 64)
            try reader.start(loop: loop) { _, _ in
                calls += 1
                return .rearm
            }
            try loop.run(.noWait)   // the read is in flight (or waiting for readiness)
            released = reader
            readCompletion = reader.completion
        }
        #expect(released == nil, "something kept the reader alive")
        #expect(readCompletion?.state == .active, "the read was not in flight")
        #expect(send(peer, "x", 1, Int32(MSG_NOSIGNAL)) == 1)
        #expect(try runUntil(loop) { readCompletion?.state == .dead }, "the read never completed")
        #expect(calls == 0, "the released reader's callback ran")
    }

    /// A reader whose own callback drops the last reference to it and answers `.rearm`:
    /// that callback returns normally, the read goes on without the reader, and the next
    /// data never reaches it.
    @Test(arguments: conformanceBackends)
    func readerReleasedInsideItsCallbackIsNotCalledAgain(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (local, peer) = try Sock.socketPair()
        h.forLoop(local)
        h.own(peer)
        var calls = 0
        var holder: StreamReader? = try StreamReader(fd: local, capacity: 64)
        weak let released = holder
        let readCompletion = holder!.completion
        try holder!.start(loop: loop) { _, _ in
            calls += 1
            holder = nil   // the last reference: the reader goes when this callback is done
            return .rearm
        }
        #expect(send(peer, "a", 1, Int32(MSG_NOSIGNAL)) == 1)
        #expect(try runUntil(loop) { calls == 1 })
        #expect(released == nil, "something kept the reader alive")
        #expect(readCompletion.state == .active, "the .rearm was not honoured")
        #expect(send(peer, "b", 1, Int32(MSG_NOSIGNAL)) == 1)
        #expect(try runUntil(loop) { readCompletion.state == .dead }, "the rearmed read never completed")
        #expect(calls == 1, "the released reader's callback ran again")
    }

    /// A write queue released with a write stalled in flight (the peer reads nothing):
    /// once the peer drains the stream the write completes, and nothing reaches the queue
    /// or its request's callback.
    @Test(arguments: conformanceBackends)
    func writeQueueReleasedWithAWriteInFlightIsNotTouched(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try Sock.socketPair()
        h.forLoop(writer)
        h.own(reader)
        Sock.setInt(writer, SOL_SOCKET, SO_SNDBUF, 4096)
        Sock.setNonBlocking(reader, true)
        // Raw bytes, kept valid by the test until the end (their request's callback, which
        // would say when they may go, never runs once the queue is released).
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { payload.deallocate() }
        payload.initializeMemory(as: UInt8.self, repeating: 7)
        var requestCalls = 0
        weak var released: WriteQueue?
        var writeCompletion: Completion?
        do {
            let queue = WriteQueue(fd: writer)
            let request = WriteRequest(buffer: UnsafeRawBufferPointer(payload)) { _, _ in
                requestCalls += 1
                return .disarm
            }
            try queue.enqueue(loop: loop, request)
            try loop.run(.noWait)   // a first part goes out; the rest waits for room
            released = queue
            writeCompletion = queue.completion
        }
        #expect(released == nil, "something kept the queue alive")
        #expect(writeCompletion?.state == .active, "the write was not in flight")
        var drained = 0
        var scratch = [UInt8](repeating: 0, count: 65536)
        #expect(try runUntil(loop, timeout: .seconds(10)) {
            while true {
                let n = scratch.withUnsafeMutableBytes { recv(reader, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n <= 0 { break }
                drained += n
            }
            return writeCompletion?.state == .dead
        }, "the write never completed")
        #expect(drained > 0)
        #expect(requestCalls == 0, "a released queue's request was called back")
    }

    /// A write queue released with a stalled write of bytes it owns (`enqueue(copying:)`):
    /// the rest of that write still goes out once the peer reads, and it is the right bytes,
    /// although the heap memory freed meanwhile is scribbled over.
    @Test(arguments: conformanceBackends)
    func writeQueueReleasedWithOwnedBytesInFlightSendsThemIntact(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (writer, reader) = try Sock.socketPair()
        h.forLoop(writer)
        h.own(reader)
        Sock.setInt(writer, SOL_SOCKET, SO_SNDBUF, 4096)
        Sock.setNonBlocking(reader, true)
        let size = 64 * 1024   // below malloc's mmap threshold: freed memory is reused at once
        let expected = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        var writeCompletion: Completion?
        var sentBeforeRelease = 0
        do {
            let queue = WriteQueue(fd: writer)
            try queue.enqueue(loop: loop, copying: expected)
            try loop.run(.noWait)   // a first part goes out; the rest waits for room
            writeCompletion = queue.completion
            sentBeforeRelease = size - queue.bytesQueued
        }
        #expect(writeCompletion?.state == .active, "the write was not in flight")
        // Reuse what the released queue freed (its request's bytes among it).
        var junk: [[UInt8]] = []
        for _ in 0..<8 { junk.append([UInt8](repeating: 0xEE, count: size)) }
        var received: [UInt8] = []
        #expect(try runUntil(loop, timeout: .seconds(10)) {
            received += Sock.take(reader, 1 << 20, timeoutMs: 0)
            return writeCompletion?.state == .dead
        }, "the write never completed")
        received += Sock.take(reader, 1 << 20, timeoutMs: 0)
        withExtendedLifetime(junk) {}
        #expect(received.count > sentBeforeRelease && received.count <= size,
                "received \(received.count) bytes, \(sentBeforeRelease) of them before the release")
        #expect(firstDifference(received, Array(expected.prefix(received.count))) == nil,
                "the released queue's write sent memory that was reused")
    }
}
