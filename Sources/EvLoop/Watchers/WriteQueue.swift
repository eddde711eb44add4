/// An ordered queue of writes to one stream (a TCP socket, a pipe): writes go out in the
/// order they were queued, one at a time, each resumed after a partial write until all of
/// it is written (PITFALLS D6; libxev PR #17, #60).
///
/// Why not just issue writes: a stream write may be short, and two writes in flight at
/// once may interleave or reorder; a server that replies to pipelined requests must send
/// every reply whole and in order.
///
/// Backpressure: a client that sends requests but does not read the replies makes the
/// queue grow without bound. `bytesQueued` counts what waits; with water marks
/// (`setWaterMark(_:callback:)`, SwiftNIO's `WriteBufferWaterMark`) the queue says when it
/// rises above the high mark (unwritable: stop producing, for example pause the
/// connection's `StreamReader`) and when it falls below the low mark (writable again).
///
/// Two kinds of bytes: a raw buffer the caller keeps valid until the request's callback
/// runs (`WriteRequest(buffer:)`: the zero-allocation path for a server that reuses its own
/// buffers), or `OwnedBytes` that the queue keeps alive until written
/// (`enqueue(loop:bytes:callback:)`, `enqueue(loop:copying:callback:)`: nothing for the
/// caller to keep, at the cost of the bytes' one allocation).
///
/// Ownership: the queue writes to a descriptor it does not own and never closes; close the
/// stream yourself once the queue is empty (or cancelled), through the loop.
///
/// Allocation: none per write of a raw buffer. The queue owns one `Completion` whose
/// callback is made once, and links caller-supplied `WriteRequest`s; a partial write rearms
/// the same completion with the rest of the buffer. Owned-bytes writes use requests from a
/// pool the queue keeps (it grows to the most owned writes queued at once, then is reused).
///
/// Errors: when a write fails (the peer reset the connection, `.brokenPipe`, or the write
/// was cancelled through `cancel(loop:using:)` or `cancelAll`), the failing request and
/// every request queued behind it get the error, in queue order, and the queue is empty
/// again: later writes on a broken stream would fail anyway, and reporting them at once
/// frees their buffers. The queue is defensive about its own state: a completion that
/// fires while the queue is empty is ignored (PITFALLS I5, libxev#234).
/// With water marks, a failure that empties an unwritable queue is then reported as
/// writable again, like any other fall below the low mark, on purpose: writability counts
/// the bytes queued, not the stream's health. Every failed request's callback has heard the
/// error before the writability callback runs, so an owner that closes on the first error
/// can `removeWaterMark()` there and hear nothing more; after a reset or a broken pipe, one
/// that resumes its reader gets the error from that read.
///
/// Not thread-safe (like everything but `AsyncNotifier`): use it on the loop thread.
///
/// ```swift
/// let queue = WriteQueue(socket: client)
/// try queue.setWaterMark(WriteBufferWaterMark(low: 16 << 10, high: 64 << 10)) { _, writable in
///     writable ? try? reader.resume(loop: loop) : try? reader.pause(loop: loop)
///     return .rearm
/// }
/// try queue.enqueue(loop: loop, copying: Array("hello\n".utf8))
/// ```
public final class WriteQueue {
    /// Called when the queue's writability changes (`true`: writable again), on the loop
    /// thread; `.rearm` keeps the callback for the next change, `.disarm` removes it.
    public typealias WritabilityCallback = (WriteQueue, _ isWritable: Bool) -> CallbackAction

    /// The descriptor written to.
    public let fd: Int32
    /// Whether the descriptor is a socket (send with MSG_NOSIGNAL) or not (write(2)).
    public let isSocket: Bool
    /// The completion that carries the write in flight (owned by the queue).
    public let completion = Completion()
    // Stored `var`s are `@exclusivity(unchecked)`, as in `LoopCore`: Swift's run-time
    // exclusivity checks on them (swift_beginAccess with a thread-local lookup, about 76
    // instructions each, a dozen per write) were the largest single cost in ev-http's user
    // space (callgrind, issue 14). The queue reads or writes them only in instantaneous
    // accesses, never across a callback, which is the overlap the checks exist to catch;
    // the queue belongs to one loop thread, and debug builds run the suite either way.
    /// Bytes queued and not yet written (including the unwritten rest of the request in
    /// flight).
    @exclusivity(unchecked) public private(set) var bytesQueued = 0
    /// Requests queued (including the one in flight).
    @exclusivity(unchecked) public private(set) var count = 0
    /// How many writes were short and resumed with the rest of their buffer (a statistic:
    /// a high number means the peer reads slowly or the socket buffer is small).
    @exclusivity(unchecked) public private(set) var resumedWrites = 0
    /// How many requests the queue has made for owned-bytes writes: the most it ever had
    /// queued at once, since finished ones are reused (a statistic; it stops growing once
    /// the pool covers the connection's backlog).
    @exclusivity(unchecked) public private(set) var pooledRequests = 0
    /// The water marks, or nil (then the queue is always writable).
    @exclusivity(unchecked) public private(set) var waterMark: WriteBufferWaterMark?
    /// False from the moment `bytesQueued` rose above the high water mark until it falls
    /// below the low one; always true without water marks.
    @exclusivity(unchecked) public private(set) var isWritable = true

    @exclusivity(unchecked) private var writabilityCallback: WritabilityCallback?
    /// Counts `setWaterMark` calls, so that a writability callback that installs a new one
    /// and then answers `.disarm` removes only itself.
    @exclusivity(unchecked) private var writabilityGeneration = 0
    @exclusivity(unchecked) private var head: WriteRequest?
    @exclusivity(unchecked) private unowned(unsafe) var tail: WriteRequest?
    /// Spare requests for owned-bytes writes, linked through `next`.
    @exclusivity(unchecked) private var pool: WriteRequest?
    /// True while the queue's completion is in flight or its callback runs, so an enqueue
    /// from a request callback links the request instead of adding the completion again.
    @exclusivity(unchecked) private var driving = false
    /// True while the queue's completion callback runs request callbacks: writability is
    /// decided once they have all run (their enqueues included), so a callback that
    /// writes the next reply does not make the queue flip to writable and back.
    @exclusivity(unchecked) private var settling = false
    /// Set by `cancel` while a write is in flight: the next completion fails what is queued.
    @exclusivity(unchecked) private var cancelRequested = false

    /// A queue writing to `fd`; `isSocket: false` for pipes and other non-socket streams
    /// (write(2); the program must then ignore SIGPIPE itself, a library does not change
    /// process-wide signal dispositions, PITFALLS D10).
    public init(fd: Int32, isSocket: Bool = true) {
        self.fd = fd
        self.isSocket = isSocket
        // Unretained, not weak: a weak capture gives the queue a side table, which sends
        // every retain and release of it down the runtime's slow path, and each write paid
        // a weak load on top (callgrind, ev-http: with StreamReader's, about 300 user-space
        // instructions per request). A queue released while its write is in flight (the
        // loop keeps the completion alive until the callback) must still not be touched:
        // `deinit` replaces this callback before the queue's memory goes. The retain for
        // the call keeps the queue alive while a request callback drops the last reference
        // to it; the release may then run `deinit`, after which nothing here touches it.
        completion.callback = { [unowned(unsafe) self] c, result in
            let queue = Unmanaged.passUnretained(self).retain()
            let action = self.written(c, result.countResult)
            queue.release()
            return action
        }
    }

    /// A queue released with a write in flight, or from inside its completion's callback
    /// (which may still return `.rearm`): the completion outlives it in the loop, so its
    /// callback stops reaching the queue. The write in flight still reads its request's
    /// bytes until its completion arrives (on io_uring in the kernel; on epoll and poll from
    /// the loop, once the socket is writable again), so the replacement keeps the queued
    /// requests, and with them their owned bytes, alive until then: released with the
    /// queue, that memory was reused while the write still sent from it.
    deinit {
        completion.callback = { [head] _, _ in
            withExtendedLifetime(head) {}
            return .disarm
        }
    }

    /// A queue writing to a TCP socket.
    public convenience init(socket: TCPSocket) { self.init(fd: socket.fd, isSocket: true) }

    /// Whether nothing is queued.
    public var isEmpty: Bool { head == nil }

    // MARK: Writing

    /// Appends `request` (whose bytes are set) and starts writing if the queue was idle.
    /// Throws `.completionActive` if the request is already queued (here or elsewhere).
    /// All writes of one queue must go to the same loop.
    ///
    /// If this makes `bytesQueued` rise above the high water mark, the queue becomes
    /// unwritable and the writability callback runs before this returns.
    public func enqueue(loop: some EventLoop, _ request: WriteRequest) throws(EvError) {
        guard !request.isQueued else { throw .completionActive }
        link(request)
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
        updateWritability()
    }

    /// Appends a write of `bytes`, which the queue keeps alive until they are written (the
    /// caller may drop its copy at once). Uses a request from the queue's pool, so nothing is
    /// allocated once the pool covers the backlog. `callback`, if given, hears the outcome
    /// like a request's callback (`.rearm` writes the same bytes again); the request it is
    /// handed belongs to the queue and goes back to the pool when the callback disarms it,
    /// so do not keep it.
    public func enqueue(loop: some EventLoop, bytes: OwnedBytes,
                        callback: WriteRequest.CountCallback? = nil) throws(EvError) {
        let request: WriteRequest
        if let spare = pool {
            pool = spare.next
            spare.next = nil
            request = spare
        } else {
            request = WriteRequest()
            request.isPooled = true
            pooledRequests += 1
        }
        request.bytes = bytes
        if let callback { request.callback = callback }
        do {
            try enqueue(loop: loop, request)
        } catch {
            recycle(request)
            throw error
        }
    }

    /// Appends a write of a copy of `bytes` (one allocation: the `OwnedBytes` it is copied
    /// into), for callers whose bytes are an array or any other collection.
    public func enqueue(loop: some EventLoop, copying bytes: some Collection<UInt8>,
                        callback: WriteRequest.CountCallback? = nil) throws(EvError) {
        try enqueue(loop: loop, bytes: OwnedBytes(bytes), callback: callback)
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

    // MARK: Writability

    /// Sets the water marks and the callback that hears each change of writability: the
    /// queue becomes unwritable when `bytesQueued` rises above `mark.high` and writable again
    /// when it falls below `mark.low`. Called on transitions only, on the loop thread:
    /// inside `enqueue` for the rise (so the caller can stop producing before the next
    /// write), inside the queue's completion callback for the fall. If the queue is above
    /// the high mark already, it becomes unwritable (and the callback runs) before this
    /// returns.
    ///
    /// The fall is reported after the request callbacks of that completion have run, so a
    /// request callback that lets go of the queue's owner (a connection that closed and
    /// leaves its server) must `removeWaterMark()` first if the writability callback
    /// captures the owner `unowned`.
    public func setWaterMark(_ mark: WriteBufferWaterMark, callback: @escaping WritabilityCallback) {
        waterMark = mark
        writabilityCallback = callback
        writabilityGeneration &+= 1
        updateWritability()
    }

    /// Removes the water marks and their callback: the queue is writable from now on (no
    /// callback runs for that change).
    public func removeWaterMark() {
        waterMark = nil
        writabilityCallback = nil
        isWritable = true
    }

    /// Decides writability from `bytesQueued` and reports a change.
    private func updateWritability() {
        guard !settling, let mark = waterMark else { return }
        let writable: Bool
        if isWritable {
            guard bytesQueued > mark.high else { return }
            writable = false
        } else {
            guard bytesQueued < mark.low else { return }
            writable = true
        }
        isWritable = writable
        let generation = writabilityGeneration
        if let callback = writabilityCallback, callback(self, writable) == .disarm {
            // Only if the callback did not install another one meanwhile.
            if writabilityGeneration == generation { writabilityCallback = nil }
        }
    }

    // MARK: The queue itself

    private func link(_ request: WriteRequest) {
        request.written = 0
        request.isQueued = true
        request.next = nil
        if let t = tail { t.next = request } else { head = request }
        tail = request
        bytesQueued += request.count
        count += 1
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

    /// Puts a pooled request back in the pool, holding nothing.
    private func recycle(_ request: WriteRequest) {
        request.clearForPool()
        request.next = pool
        pool = request
    }

    /// Runs a finished request's callback and carries out its answer: `.rearm` queues it
    /// again (at the back), `.disarm` ends it (a pooled request goes back to the pool).
    private func finish(_ request: WriteRequest, _ result: Result<Int, EvError>) {
        if request.callback(request, result) == .rearm {
            precondition(!request.isQueued,
                         "EvLoop: a WriteRequest callback returned .rearm for a request it had already queued again")
            link(request)
        } else if request.isPooled && !request.isQueued {
            recycle(request)
        }
    }

    /// The queue's completion callback.
    private func written(_ c: Completion, _ result: Result<Int, EvError>) -> CallbackAction {
        // Defensive (PITFALLS I5): never assume a queue is non-empty because its completion fired.
        guard let request = head else {
            driving = false
            cancelRequested = false
            return .disarm
        }
        settling = true
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
                finish(request, .success(request.written))
            } else {
                resumedWrites += 1
            }
            if cancelRequested { failure = .canceled }
        case .failure(let error):
            failure = error
        }
        cancelRequested = false
        if let failure {
            // Fail everything that was queued, in order; requests queued (or rearmed) by
            // these callbacks start a fresh write below.
            var left = queuedBefore
            while left > 0, let r = head {
                left -= 1
                unlinkHead()
                finish(r, .failure(failure))
            }
        }
        settling = false
        updateWritability()
        guard let next = head else {
            driving = false
            return .disarm
        }
        configure(for: next)
        return .rearm
    }
}
