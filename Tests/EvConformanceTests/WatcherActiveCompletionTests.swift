// Conformance: the watchers refuse a completion that is still in flight before they touch
// it (DESIGN invariant 1). Every test runs unchanged on every backend.
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

@Suite("Conformance: watcher calls with a completion in flight")
struct WatcherActiveCompletionTests {
    /// A watcher call given a completion that is still in flight is refused with
    /// `.completionActive` and leaves the operation in flight untouched: the pending read
    /// still reads into its own buffer, with its own callback.
    @Test(arguments: conformanceBackends)
    func refusedWithoutTouchingTheActiveOperation(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        let h = Harness(loop)
        defer { h.finish() }
        let (a, b) = try Sock.socketPair()
        h.forLoop(a); h.forLoop(b)
        let first = h.buffer(8), second = h.buffer(8)
        let c = Completion()
        var firstResult: Result<Int, EvError>?
        try TCPSocket(fd: a).read(loop: loop, completion: c, buffer: first) { _, r in firstResult = r; return .disarm }
        var secondCalled = false
        #expect(throws: EvError.completionActive) {
            try TCPSocket(fd: b).read(loop: loop, completion: c, buffer: second) { _, _ in secondCalled = true; return .disarm }
        }
        try Sock.put(b, "abc")
        #expect(try runUntil(loop) { firstResult != nil })
        #expect(firstResult == .success(3))
        #expect(Array(first[0..<3]) == Array("abc".utf8))
        #expect(!secondCalled)
    }
}
