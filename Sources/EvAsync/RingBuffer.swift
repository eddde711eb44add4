/// A FIFO over a ring buffer, for the loop-side queues of EvAsync's channels (buffered
/// elements, waiting senders and receivers) and for the locked queue of a `LoopInbox`.
///
/// Why not an `Array`: removing the first element of an array moves all the others, and
/// a channel takes from the front on every receive. Why not a class: the buffer is owned
/// by one channel and never shared, so it is a noncopyable struct over one allocation,
/// with no reference count and no copy-on-write check on the hot path.
///
/// The storage grows by doubling when an append finds it full and never shrinks, so once a
/// channel has reached its working size, appends and removals allocate nothing (capacity
/// is a power of two, so wrapping around is a mask). Elements left in the buffer are
/// destroyed with it.
struct RingBuffer<Element>: ~Copyable {
    private var storage: UnsafeMutablePointer<Element>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    /// An empty buffer with room for at least `minimumCapacity` elements (at least one).
    init(minimumCapacity: Int = 4) {
        var capacity = 1
        while capacity < minimumCapacity { capacity <<= 1 }
        self.capacity = capacity
        self.storage = .allocate(capacity: capacity)
    }

    deinit {
        for i in 0..<count { (storage + slot(i)).deinitialize(count: 1) }
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    /// The storage index of the `i`-th element from the front.
    @inline(__always)
    private func slot(_ i: Int) -> Int { (head + i) & (capacity - 1) }

    mutating func append(_ element: consuming Element) {
        if count == capacity { grow() }
        (storage + slot(count)).initialize(to: element)
        count += 1
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return element
    }

    /// Removes and returns the first element for which `matches` is true, keeping the order
    /// of the others (for a waiter that leaves the middle of a wait list: rare, so linear).
    mutating func remove(firstWhere matches: (borrowing Element) -> Bool) -> Element? {
        var found = -1
        for i in 0..<count where matches((storage + slot(i)).pointee) {
            found = i
            break
        }
        guard found >= 0 else { return nil }
        let element = (storage + slot(found)).move()
        // Close the gap by moving the later elements one place toward the front.
        var i = found
        while i + 1 < count {
            (storage + slot(i)).moveInitialize(from: storage + slot(i + 1), count: 1)
            i += 1
        }
        count -= 1
        return element
    }

    private mutating func grow() {
        let newCapacity = capacity * 2
        let newStorage = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        for i in 0..<count {
            (newStorage + i).moveInitialize(from: storage + slot(i), count: 1)
        }
        storage.deallocate()
        storage = newStorage
        capacity = newCapacity
        head = 0
    }
}
