/// One write through a `WriteQueue`: the bytes (a raw buffer the caller keeps valid, or
/// `OwnedBytes` the request keeps alive) and the callback that hears how it went.
///
/// Why the caller supplies these: the queue links requests intrusively (no array, no node
/// allocation), so a program that keeps a few requests per connection and reuses them
/// queues writes without allocating in steady state. A request may be reused (given new
/// bytes and queued again) once its callback has run; `isQueued` tells. For writes of
/// owned bytes that need no request of their own, `WriteQueue.enqueue(loop:bytes:callback:)`
/// uses requests the queue keeps for itself.
///
/// The callback follows the loop's rule (docs/API.md): it returns `.rearm` to queue the same
/// request again, as it is configured when the callback returns (the same bytes, or new
/// ones set in the callback), at the back of the queue; or `.disarm` to end it.
///
/// ```swift
/// let reply = WriteRequest { request, result in
///     if case .failure(let error) = result { print("write failed:", error) }
///     return .disarm
/// }
/// reply.buffer = UnsafeRawBufferPointer(replyBytes)   // valid until the callback runs
/// try queue.enqueue(loop: loop, reply)
/// ```
public final class WriteRequest {
    /// Called once the whole request is written (`.success(count)`) or the queue hit an
    /// error (`.failure`, with `written` telling how much got out). Runs on the loop
    /// thread, inside the queue's completion callback; it may enqueue more writes.
    /// `.rearm` queues the request again (at the back), `.disarm` ends it.
    public typealias CountCallback = (WriteRequest, Result<Int, EvError>) -> CallbackAction

    /// What the request writes.
    enum Payload {
        /// Memory the caller keeps valid until the callback runs.
        case raw(UnsafeRawBufferPointer)
        /// Bytes the request keeps alive itself.
        case owned(OwnedBytes)
    }

    // Stored `var`s are `@exclusivity(unchecked)` for the reason given at `WriteQueue`'s
    // (a request is read and written by its queue on every write).
    @exclusivity(unchecked) private(set) var payload: Payload

    /// The bytes to write. Setting it makes the request write this memory, which the
    /// caller must keep valid until the callback runs (and drops any `bytes`). Reading it
    /// gives the memory of `bytes` when the request holds owned bytes. Not while queued.
    public var buffer: UnsafeRawBufferPointer {
        get {
            switch payload {
            case .raw(let b): return b
            case .owned(let o): return o.unsafeBuffer
            }
        }
        set {
            precondition(!isQueued, "EvLoop: the buffer of a WriteRequest changed while it is queued")
            payload = .raw(newValue)
        }
    }

    /// The owned bytes the request writes, or nil when it writes a raw `buffer`. Setting
    /// it makes the request hold (and so keep alive) these bytes until it is given others;
    /// nil leaves it with an empty buffer. Not while queued.
    public var bytes: OwnedBytes? {
        get {
            if case .owned(let o) = payload { return o }
            return nil
        }
        set {
            precondition(!isQueued, "EvLoop: the bytes of a WriteRequest changed while it is queued")
            payload = newValue.map { .owned($0) } ?? .raw(UnsafeRawBufferPointer(start: nil, count: 0))
        }
    }

    /// The callback (reused every time the request is queued).
    @exclusivity(unchecked) public var callback: CountCallback
    /// Free for the caller (the connection, a buffer pool slot).
    @exclusivity(unchecked) public var userData: AnyObject?
    /// Bytes of the request already written (partial writes advance it).
    @exclusivity(unchecked) public package(set) var written = 0
    /// True from `enqueue` until just before the callback runs.
    @exclusivity(unchecked) public package(set) var isQueued = false
    /// Next request in the queue, or in the queue's pool of spare requests (strong: the
    /// queue owns what it holds).
    @exclusivity(unchecked) var next: WriteRequest?
    /// Made by the queue for `enqueue(loop:bytes:callback:)`: back to its pool after the
    /// callback disarms it.
    @exclusivity(unchecked) var isPooled = false

    /// A request that writes `buffer` (memory the caller keeps valid until the callback runs).
    public init(buffer: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                callback: @escaping CountCallback = { _, _ in .disarm }) {
        payload = .raw(buffer)
        self.callback = callback
    }

    /// A request that writes `bytes`, keeping them alive while it holds them.
    public init(bytes: OwnedBytes, callback: @escaping CountCallback = { _, _ in .disarm }) {
        payload = .owned(bytes)
        self.callback = callback
    }

    /// The size of the request.
    var count: Int {
        switch payload {
        case .raw(let b): return b.count
        case .owned(let o): return o.count
        }
    }

    /// The part not written yet.
    var remaining: Int { count - written }

    /// Lets go of what a pooled request held (its bytes, its callback), so that a request in
    /// the pool keeps nothing alive.
    func clearForPool() {
        payload = .raw(UnsafeRawBufferPointer(start: nil, count: 0))
        callback = { _, _ in .disarm }
        userData = nil
    }
}
