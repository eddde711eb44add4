/// An immutable run of bytes in storage of its own, for writes whose bytes must outlive the
/// code that produced them: the `WriteQueue` keeps the storage alive until every byte of
/// it has been written (SwiftNIO's `ByteBuffer` plays this part there).
///
/// Why a type of its own, and not `[UInt8]`: a write hands the kernel a pointer that it may
/// use long after the call that queued it returns (until the write completes, and on
/// io_uring even while a cancel is on its way), and a Swift array only lends a pointer to
/// its elements for the duration of a `withUnsafeBytes` closure. `OwnedBytes` keeps its
/// bytes in one heap object whose address never changes (Swift never moves objects), so
/// holding the value keeps the pointer valid. One allocation holds both the object and the
/// bytes (tail-allocated storage), so a write of owned bytes costs that one allocation and
/// nothing more; building the bytes in place (`init(count:initializingWith:)`) avoids the
/// copy too.
///
/// A value: copies share the same storage, which is never written after the initializer
/// returns, so sharing is safe, even across threads (`Sendable`): a worker thread may
/// prepare a reply and hand it to the loop.
///
/// ```swift
/// let reply = OwnedBytes("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".utf8)
/// try queue.enqueue(loop: loop, bytes: reply)   // the queue keeps it until written
/// ```
public struct OwnedBytes: Sendable, RandomAccessCollection {
    /// The storage: a count in the header and the bytes inline after it.
    final class Storage: ManagedBuffer<Int, UInt8> {}

    /// `ManagedBuffer` is not `Sendable` (its elements are mutable in general), so the
    /// property opts out of the check. That is safe because the header and the bytes are
    /// written only inside the initializers of `OwnedBytes`, before the storage is reachable
    /// from anywhere else, and never again: every later access, from any thread, is a read
    /// of immutable memory (and the reference count itself is atomic).
    nonisolated(unsafe) private let storage: Storage

    /// The bytes `bytes` holds, copied once into storage of their own.
    public init(_ bytes: some Collection<UInt8>) {
        let count = bytes.count
        self.init(uninitializedCount: count) { raw in
            let written = raw.initializeMemory(as: UInt8.self, from: bytes).initialized.count
            // A collection whose `count` and iteration disagree would leave bytes
            // uninitialized; zero them rather than expose garbage.
            if written < count {
                UnsafeMutableRawBufferPointer(rebasing: raw[written...]).initializeMemory(as: UInt8.self, repeating: 0)
            }
        }
    }

    /// `count` bytes that `body` writes in place (the buffer it gets is exactly `count`
    /// bytes, zero-filled): a reply built straight into its final storage, with no copy.
    public init(count: Int, initializingWith body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        try self.init(uninitializedCount: count) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            try body(raw)
        }
    }

    /// Allocates the storage; `initialize` must initialize all `count` bytes.
    private init(uninitializedCount count: Int,
                 _ initialize: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        precondition(count >= 0, "EvLoop: OwnedBytes with a negative count")
        let made = Storage.create(minimumCapacity: count) { _ in count }
        storage = unsafeDowncast(made, to: Storage.self)
        try storage.withUnsafeMutablePointerToElements { base in
            try initialize(UnsafeMutableRawBufferPointer(start: base, count: count))
        }
    }

    /// The number of bytes.
    public var count: Int { storage.header }

    /// Always 0: the bytes are indexed from the start of their own storage.
    public var startIndex: Int { 0 }
    /// `count`.
    public var endIndex: Int { count }

    /// The byte at `position` (a collection, so `Array(bytes)` and comparisons work).
    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "EvLoop: OwnedBytes index out of range")
        return storage.withUnsafeMutablePointerToElements { $0[position] }
    }

    /// Calls `body` with the bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(unsafeBuffer)
    }

    /// The bytes, as a pointer that stays valid for as long as this value (or any copy of
    /// it) is alive. The pointer is computed from the object's address, which Swift never
    /// changes while the object lives; the write queue holds the value while the kernel may
    /// read through the pointer. Package-internal: outside the queue, `withUnsafeBytes`.
    package var unsafeBuffer: UnsafeRawBufferPointer {
        storage.withUnsafeMutablePointerToElements { UnsafeRawBufferPointer(start: $0, count: storage.header) }
    }
}
