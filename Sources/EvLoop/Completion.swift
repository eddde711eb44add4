#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A caller-owned, reusable record of one operation in flight.
///
/// A program allocates its completions once (one per concurrent operation, typically a few
/// per connection) and reuses them for the life of the program; the loop never allocates
/// per operation. Between `EventLoop.add(_:)` and the callback the completion is `.active`:
/// the loop holds a strong reference (dropping yours never frees in-flight work), the
/// kernel may read its buffers and addresses, and `add` refuses it with
/// `EvError.completionActive`. When the callback runs, the completion is already `.dead`,
/// so the callback may reconfigure it and add it again, or return `.rearm` to repeat it.
///
/// Each activation gets a new `generation`; a cancel targets one activation, so a stale
/// event or a late cancel can never reach a later use of the same completion.
///
/// Not `Sendable`: a completion belongs to the thread that runs its loop.
public final class Completion {
    // Stored properties are `@exclusivity(unchecked)` for the reason given in LoopCore:
    // the loop reads and writes them on every operation, and never while user code runs
    // inside an access to them.
    /// The callback type: called once per activation, on the loop thread, inside `run`.
    public typealias Callback = (Completion, CompletionResult) -> CallbackAction

    /// Whether the completion is free (`.dead`) or owned by a loop (`.active`).
    public enum State: Sendable, Equatable {
        case dead
        case active
    }

    /// The operation performed when the completion is added (and again on `.rearm`).
    @exclusivity(unchecked)
    public var operation: Operation
    /// Called with the result. Set it once; it is reused by every activation.
    @exclusivity(unchecked)
    public var callback: Callback
    /// Free for the caller's use (a connection object, a watcher).
    @exclusivity(unchecked)
    public var userData: AnyObject?

    /// Whether this completion, while active, keeps `run(.untilDone)` (and `.once`) from
    /// returning. Set it to false for background work that should not hold the loop open on
    /// its own, such as an executor's or notifier's wake-up poll (libuv calls this `unref`).
    @exclusivity(unchecked)
    public var keepsLoopAlive = true

    /// `.active` from `add` until the callback is invoked.
    @exclusivity(unchecked)
    public package(set) var state: State = .dead
    /// Incremented on every activation.
    @exclusivity(unchecked)
    public package(set) var generation: UInt32 = 0

    // MARK: Loop bookkeeping (package-internal: the core and the backends share it)

    /// Link for the loop's FIFO queues (completed, unqueued submissions). Not retained:
    /// an active completion is kept alive by the loop's activation retain.
    @exclusivity(unchecked)
    package unowned(unsafe) var queueNext: Completion? = nil
    /// Set while the completion sits in a `CompletionQueue`, to catch double insertion.
    @exclusivity(unchecked)
    package var isQueued = false
    /// Links for a backend's per-descriptor waiter list.
    @exclusivity(unchecked)
    package unowned(unsafe) var waiterNext: Completion? = nil
    @exclusivity(unchecked)
    package unowned(unsafe) var waiterPrev: Completion? = nil
    /// Position in the timer heap, or -1.
    @exclusivity(unchecked)
    package var heapIndex: Int = -1
    /// The deadline (CLOCK_MONOTONIC ns) while the completion is a pending timer.
    @exclusivity(unchecked)
    package var timerDeadline: UInt64 = 0
    /// Insertion order among timers, so equal deadlines fire first-armed first.
    @exclusivity(unchecked)
    package var timerSequence: UInt64 = 0
    /// `keepsLoopAlive` as it was when this activation started (the count must balance
    /// even if the caller flips the property while the completion is in flight).
    @exclusivity(unchecked)
    package var activatedInBackground = false
    /// The raw result (count, descriptor, or -errno) once the operation has finished.
    @exclusivity(unchecked)
    package var rawResult: Int = 0
    /// True between the backend finishing the work and the callback running.
    @exclusivity(unchecked)
    package var resultReady = false
    /// For a `.cancel`: the generation of the target when the cancel was added.
    @exclusivity(unchecked)
    package var cancelTargetGeneration: UInt32 = 0
    /// Free for the backend that owns the activation (a waiter state, a pool job id).
    @exclusivity(unchecked)
    package var backendState: Int = 0

    /// Memory the kernel may read or write after the submitting call returns (socket
    /// addresses, msghdr, iovec, timespec). It lives outside the object's Swift storage,
    /// at a fixed address, because a pointer made with `&` from a property is valid only
    /// for the duration of one call.
    package let scratch: UnsafeMutablePointer<CompletionScratch>

    /// Creates a dead completion for `operation`; add it to a loop to start it.
    public init(_ operation: Operation = .nop, callback: @escaping Callback = { _, _ in .disarm }) {
        self.operation = operation
        self.callback = callback
        self.scratch = .allocate(capacity: 1)
        self.scratch.initialize(to: CompletionScratch())
    }

    deinit {
        scratch.deinitialize(count: 1)
        scratch.deallocate()
    }

    /// The sender's address from the last `.recvmsg`, or the peer filled in by accept.
    public var lastAddress: SocketAddress {
        if case .accept = operation {
            return SocketAddress(storage: scratch.pointee.address, length: scratch.pointee.addressLength)
        }
        return SocketAddress(storage: scratch.pointee.address, length: scratch.pointee.message.msg_namelen)
    }
}

/// Kernel-visible per-completion memory (see `Completion.scratch`).
package struct CompletionScratch {
    package var address = sockaddr_storage()
    package var addressLength = socklen_t(0)
    package var message = msghdr()
    package var iov = iovec()
    package var timeout = timespec()
    package init() {}

    /// Points `message` at one buffer and, when `withAddress`, at `address`
    /// (for recvmsg: room for the sender; for sendmsg: the destination).
    package static func prepareMessage(
        _ s: UnsafeMutablePointer<CompletionScratch>, base: UnsafeMutableRawPointer?, count: Int,
        addressLength: socklen_t?
    ) {
        s.pointee.iov = iovec(iov_base: base, iov_len: count)
        s.pointee.message = msghdr()
        let raw = UnsafeMutableRawPointer(s)
        s.pointee.message.msg_iov = (raw + MemoryLayout<CompletionScratch>.offset(of: \.iov)!)
            .assumingMemoryBound(to: iovec.self)
        s.pointee.message.msg_iovlen = 1
        if let len = addressLength {
            s.pointee.message.msg_name = raw + MemoryLayout<CompletionScratch>.offset(of: \.address)!
            s.pointee.message.msg_namelen = len
        }
    }

    /// Prepares the msghdr for this completion's `.recvmsg` or `.sendmsg` operation.
    package static func prepare(for c: Completion) {
        let s = c.scratch
        switch c.operation {
        case .recvmsg(_, let buffer):
            prepareMessage(s, base: buffer.baseAddress, count: buffer.count,
                           addressLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
        case .sendmsg(_, let buffer, let address):
            if let address {
                s.pointee.address = address.storage
                prepareMessage(s, base: UnsafeMutableRawPointer(mutating: buffer.baseAddress),
                               count: buffer.count, addressLength: address.length)
            } else {
                prepareMessage(s, base: UnsafeMutableRawPointer(mutating: buffer.baseAddress),
                               count: buffer.count, addressLength: nil)
            }
        case .connect(_, let address):
            s.pointee.address = address.storage
            s.pointee.addressLength = address.length
        case .accept:
            s.pointee.addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        default:
            break
        }
    }

    /// Pointer to the stored address, as `sockaddr`.
    package static func addressPointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutablePointer<sockaddr> {
        (UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.address)!)
            .assumingMemoryBound(to: sockaddr.self)
    }

    package static func addressLengthPointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutablePointer<socklen_t> {
        (UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.addressLength)!)
            .assumingMemoryBound(to: socklen_t.self)
    }

    package static func messagePointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutablePointer<msghdr> {
        (UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.message)!)
            .assumingMemoryBound(to: msghdr.self)
    }

    package static func timeoutPointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutablePointer<timespec> {
        (UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.timeout)!)
            .assumingMemoryBound(to: timespec.self)
    }
}
