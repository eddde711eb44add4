// The size of a Completion: one allocation of bounded size (issue 11; DESIGN "the
// per-operation cost is a design constraint").
import Testing
import EvLoop
#if canImport(Glibc)
import Glibc
#endif

/// glibc's malloc_usable_size (malloc.h, which the Glibc module does not import).
@_silgen_name("malloc_usable_size")
private func mallocUsableSize(_ pointer: UnsafeMutableRawPointer?) -> Int

@Suite("Completion size")
struct CompletionSizeTests {
    /// A completion is one 144-byte malloc chunk (136 usable bytes): a million armed timers
    /// cost 144 MB of completions, not 160. A stored property more than the layout has room
    /// for moves it to the next chunk size, and this fails.
    @Test func fitsA144ByteChunk() {
        let c = Completion()
        let usable = mallocUsableSize(Unmanaged.passUnretained(c).toOpaque())
        #expect(usable <= 136, "a completion now takes a \(usable + 8)-byte chunk")
        // A timer or a read needs no second allocation (scratch memory is for accept,
        // connect, recvmsg and sendmsg only).
        c.operation = .timer(deadline: .distantFuture)
        c.deadline = .within(.seconds(1))
        #expect(c.deadline == .within(.seconds(1)))
    }
}
