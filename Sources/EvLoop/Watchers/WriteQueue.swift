/// One buffer to write through a `WriteQueue`, with its completion callback.
///
/// Why the caller supplies these: the queue links requests intrusively (no array, no node
/// allocation), so a program that keeps a few requests per connection and reuses them
/// queues writes without allocating in steady state. A request may be reused (given a new
/// buffer and queued again) once its callback has run; `isQueued` tells.
///
/// ```swift
/// let reply = WriteRequest { request, result in
///     if case .failure(let error) = result { print("write failed:", error) }
/// }
/// reply.buffer = UnsafeRawBufferPointer(replyBytes)   // valid until the callback runs
/// try queue.enqueue(reply, loop: loop)
/// ```
public final class WriteRequest {
    /// Called once the whole buffer is written (`.success(buffer.count)`) or the queue hit
    /// an error (`.failure`, with `written` telling how much got out). Runs on the loop
    /// thread, inside the queue's completion callback; it may enqueue more writes.
    public typealias Callback = (WriteRequest, Result<Int, EvError>) -> Void

    /// The bytes to write; the memory must stay valid until the callback runs.
    public var buffer: UnsafeRawBufferPointer
    /// The callback (set once; reused every time the request is queued).
    public var callback: Callback
    /// Free for the caller (the connection, a buffer pool slot).
    public var userData: AnyObject?
    /// Bytes of `buffer` already written (partial writes advance it).
    public package(set) var written = 0
    /// True from `enqueue` until just before the callback runs.
    public package(set) var isQueued = false
    /// Next request in the queue (strong: the queue owns what it holds).
    var next: WriteRequest?

    public init(buffer: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                callback: @escaping Callback = { _, _ in }) {
        self.buffer = buffer
        self.callback = callback
    }

    var remaining: Int { buffer.count - written }
}

/// An ordered queue of writes to one stream (a TCP socket, a pipe): writes go out in the
/// order they were queued, one at a time, each resumed after a partial write until all of
/// it is written (PITFALLS D6; libxev PR #17, #60).
///
/// Why not just issue writes: a stream write may be short, and two writes in flight at
/// once may interleave or reorder; a server that replies to pipelined requests must send
/// every reply whole and in order. Why count bytes: a client that sends requests but does
/// not read the replies makes the queue grow without bound; `bytesQueued` lets a server
/// stop reading from such a client until the queue drains (backpressure).
///
/// Ownership: the queue writes to a descriptor it does not own and never closes; close the
/// stream yourself once the queue is empty (or cancelled), through the loop.
///
/// Allocation: none per write. The queue owns one `Completion` whose callback is made
/// once, and links caller-supplied `WriteRequest`s. A partial write rearms the same
/// completion with the rest of the buffer.
///
/// Errors: when a write fails (the peer reset the connection, `.brokenPipe`, or the write
/// was cancelled through `cancel(loop:using:)` or `cancelAll`), the failing request and
/// every request queued behind it get the error, in queue order, and the queue is empty
/// again: later writes on a broken stream would fail anyway, and reporting them at once
/// frees their buffers. The queue is defensive about its own state: a completion that
/// fires while the queue is empty is ignored (PITFALLS I5, libxev#234).
///
/// Not thread-safe (like everything but `AsyncNotifier`): use it on the loop thread.
///
/// ```swift
/// let queue = WriteQueue(fd: client.fd)
/// let request = WriteRequest(buffer: reply) { _, _ in }
/// try queue.enqueue(request, loop: loop)
/// if queue.bytesQueued > 1 << 20 { pauseReading() }   // the client is not reading
/// ```
public final class WriteQueue {
    /// The descriptor written to.
    public let fd: Int32
    /// Whether the descriptor is a socket (send with MSG_NOSIGNAL) or not (write(2)).
    public let isSocket: Bool
    /// The completion that carries the write in flight (owned by the queue).
    public let completion = Completion()
    /// Bytes queued and not yet written (including the unwritten rest of the request in
    /// flight).
    public private(set) var bytesQueued = 0
    /// Requests queued (including the one in flight).
    public private(set) var count = 0
    /// How many writes were short and resumed with the rest of their buffer (a statistic:
    /// a high number means the peer reads slowly or the socket buffer is small).
    public private(set) var resumedWrites = 0

    private var head: WriteRequest?
    private unowned(unsafe) var tail: WriteRequest?
    /// True while the queue's completion is in flight or its callback runs, so an enqueue
    /// from a request callback links the request instead of adding the completion again.
    private var driving = false
    /// Set by `cancel` while a write is in flight: the next completion fails what is queued.
    private var cancelRequested = false

    /// A queue writing to `fd`; `isSocket: false` for pipes and other non-socket streams
    /// (write(2); the program must then ignore SIGPIPE itself, a library does not change
    /// process-wide signal dispositions, PITFALLS D10).
    public init(fd: Int32, isSocket: Bool = true) {
        self.fd = fd
        self.isSocket = isSocket
        // Weak: a queue released while its write is in flight (the loop keeps the completion
        // alive until the callback) must not be touched; the callback then just ends.
        completion.callback = { [weak self] c, result in
            guard let self else { return .disarm }
            return self.written(c, result.countResult)
        }
    }

    /// A queue writing to a TCP socket.
    public convenience init(socket: TCPSocket) { self.init(fd: socket.fd, isSocket: true) }

    /// Whether nothing is queued.
    public var isEmpty: Bool { head == nil }

    /// Appends `request` (whose `buffer` is set) and starts writing if the queue was idle.
    /// Throws `.completionActive` if the request is already queued (here or elsewhere).
    /// All writes of one queue must go to the same loop.
    public func enqueue(_ request: WriteRequest, loop: some EventLoop) throws(EvError) {
        guard !request.isQueued else { throw .completionActive }
        request.written = 0
        request.isQueued = true
        request.next = nil
        if let t = tail { t.next = request } else { head = request }
        tail = request
        bytesQueued += request.buffer.count
        count += 1
        if !driving {
            configure(for: request)
            do {
                try loop.add(completion)
            } catch {
                // Only `.completionActive` is possible, which `driving` rules out; undo the
                // link so the queue stays consistent and report it.
                unlinkHead()
                throw error
            }
            driving = true
        }
    }

    /// Cancels the queue: every request queued now that is not completely written fails
    /// with `.canceled` (its `written` tells how much got out), in order, when the write in
    /// flight finishes. Requests queued later are written normally.
    ///
    /// The write in flight is cancelled through `cancel` (a completion of the caller's,
    /// whose callback reports the cancel's own outcome). If that write wins the race and
    /// completes partially (io_uring can report the bytes a cancelled send got out), the
    /// queue still fails the rest instead of resuming: a cancel of the queue is never lost
    /// to the race. On an idle queue this does nothing but report `.notFound`.
    public func cancel(loop: some EventLoop, using cancel: Completion,
                       callback: @escaping Completion.Callback = { _, _ in .disarm }) throws(EvError) {
        if driving { cancelRequested = true }
        try loop.cancel(completion, using: cancel, callback: callback)
    }

    private func configure(for request: WriteRequest) {
        let rest = UnsafeRawBufferPointer(rebasing: request.buffer[request.written...])
        completion.operation = isSocket ? .send(socket: fd, buffer: rest) : .write(fd: fd, buffer: rest)
    }

    private func unlinkHead() {
        guard let h = head else { return }
        head = h.next
        if head == nil { tail = nil }
        h.next = nil
        h.isQueued = false
        bytesQueued -= h.remaining
        count -= 1
    }

    /// The queue's completion callback.
    private func written(_ c: Completion, _ result: Result<Int, EvError>) -> CallbackAction {
        // Defensive (PITFALLS I5): never assume a queue is non-empty because its completion fired.
        guard let request = head else {
            driving = false
            cancelRequested = false
            return .disarm
        }
        // Requests queued from inside the callbacks below are never failed with this
        // error: only the ones queued when this write finished.
        var queuedBefore = count
        var failure: EvError?
        switch result {
        case .success(let n):
            let n = min(n, request.remaining)
            request.written += n
            bytesQueued -= n
            if request.remaining == 0 {
                unlinkHead()
                queuedBefore -= 1
                request.callback(request, .success(request.written))
            } else {
                resumedWrites += 1
            }
            if cancelRequested { failure = .canceled }
        case .failure(let error):
            failure = error
        }
        cancelRequested = false
        if let failure {
            // Fail everything that was queued, in order; requests queued by these
            // callbacks start a fresh write below.
            var left = queuedBefore
            while left > 0, let r = head {
                left -= 1
                unlinkHead()
                r.callback(r, .failure(failure))
            }
        }
        guard let next = head else {
            driving = false
            return .disarm
        }
        configure(for: next)
        return .rearm
    }
}
