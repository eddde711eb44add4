import EvLoop

/// What the engine knows about a descriptor number's file.
enum FdKind: UInt8 {
    case unknown
    /// A socket, pipe, tty, eventfd...: wait for readiness.
    case pollable
    /// A regular file, directory or block device: always "ready", so blocking I/O runs on
    /// the thread pool.
    case alwaysReady
    /// Not an open descriptor (EBADF); never cached.
    case invalid
}

/// A growable list of descriptor numbers in raw memory: appending and clearing are a
/// store and a count (a Swift array paid a uniqueness check on every append and a
/// `replaceSubrange` on every clear, about 300 instructions per ping-pong roundtrip).
struct DescriptorList {
    private var base: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private(set) var count = 0

    init() {
        capacity = 64
        base = .allocate(capacity: 64)
    }

    subscript(i: Int) -> Int32 { base[i] }

    mutating func append(_ fd: Int32) {
        if count == capacity {
            let grown = UnsafeMutablePointer<Int32>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        base[count] = fd
        count += 1
    }

    mutating func removeAll() { count = 0 }

    func deallocate() { base.deallocate() }
}

/// The engine's state for one descriptor number (plain data: the table is raw memory).
struct FdSlot {
    var waiters = IntrusiveList()
    /// The events the poller watches for (valid when `isRegistered`).
    var registered: UInt32 = 0
    var isRegistered = false
    /// Listed in `dirty`: the registration must be recomputed before the next wait.
    var isDirty = false
    /// A kept registration must be confirmed with the kernel before it is relied on.
    var needsConfirm = false
    var kind = FdKind.unknown
    /// The last read filled its buffer (or the last accept succeeded): try the next first.
    var readEagerly = false
    /// SO_ACCEPTCONN said the socket listens (asked by the first accept; see `submitAccept`).
    var isListening = false
    var spuriousWakes: UInt8 = 0
    /// The tick in which the last waiter left.
    var idleSinceTick: UInt64 = .max

    mutating func reset() {
        self = FdSlot()
    }
}
