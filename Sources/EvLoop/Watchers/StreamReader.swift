/// Keeps one read armed on a stream (a TCP or Unix socket, a pipe: any `ByteStream`) and
/// delivers what it reads, with `pause` and `resume`: the read side of backpressure.
///
/// Why: a server must be able to stop reading from a client whose replies it cannot send
/// (the client does not read them: its `WriteQueue` is above the high water mark), or the
/// server buffers without bound; once the client catches up, reading resumes. With a bare
/// rearmed read that takes a cancel, a second completion, and care about the races (the
/// read can complete in the very tick it is cancelled, with data that must not be lost;
/// a resume can come while the cancel is still on its way). This class does that once,
/// with two completions and a buffer made at `init`, so pausing and resuming allocate
/// nothing.
///
/// Semantics:
/// - `pause` cancels the armed read at once (or, from inside the read callback, simply does
///   not rearm it). Data a read got before the cancel reached it is still delivered,
///   exactly once (PITFALLS D5: a cancelled read may have consumed data); nothing is read
///   after that until `resume`. The cancellation a pause causes is never delivered.
/// - `resume` arms the read again (or, while the pause's cancel is still on its way, lets
///   the read go on when it comes back). Pausing or resuming twice is harmless.
/// - The read callback gets the bytes read (valid until it returns: the buffer is reused),
///   `.failure(.endOfFile)` when the peer closed its side, or another error. `.rearm` reads
///   again (unless the reader was paused meanwhile), `.disarm` stops the reader (`start`
///   arms it again). After the end of file or an error, answer `.disarm`: a rearmed read
///   would only report it again.
/// - An idle timeout is the read completion's deadline (`completion.deadline =
///   .within(.seconds(30))`, docs/API.md §5): it restarts with every read and delivers
///   `.failure(.timedOut)` once; it does not run while the reader is paused (nothing is
///   armed then), so a paused client is not timed out for the server's own backpressure.
/// - To end for good, close the stream through the loop: the close cancels the read, whose
///   callback then gets `.failure(.canceled)` (unless the reader is paused: then nothing is
///   armed and nothing is delivered).
///
/// Ownership: the reader reads a descriptor it does not own and never closes. Its buffer
/// lives as long as the reader or a read still in flight, whichever is longer (io_uring may
/// write into it until the read's completion arrives, even after the reader is released).
///
/// Not thread-safe (like everything but `AsyncNotifier`): use it on the loop thread, with
/// one loop.
///
/// ```swift
/// let reader = try StreamReader(socket: client)
/// let replies = WriteQueue(socket: client)
/// try replies.setWaterMark(WriteBufferWaterMark(low: 16 << 10, high: 64 << 10)) { _, writable in
///     writable ? try? reader.resume(loop: loop) : try? reader.pause(loop: loop)
///     return .rearm
/// }
/// try reader.start(loop: loop) { _, result in
///     guard case .success(let bytes) = result else { return .disarm }   // end of file, error
///     try? replies.enqueue(loop: loop, copying: bytes)                   // echo
///     return .rearm
/// }
/// ```
public final class StreamReader {
    /// What a read gives: the bytes read (valid until the callback returns), or the error
    /// (`.endOfFile` when the peer closed its side). `.rearm` reads again, `.disarm` stops.
    public typealias BytesCallback = (StreamReader, Result<UnsafeRawBufferPointer, EvError>) -> CallbackAction

    /// The descriptor read from.
    public let fd: Int32
    /// Whether it is a socket (recv) or not (read(2), for pipes and ptys).
    public let isSocket: Bool
    /// The buffer's size: the most one read delivers.
    public let capacity: Int
    /// The completion of the read (owned by the reader; caller-visible for statistics and
    /// for cancelling it directly, which the callback then sees as `.failure(.canceled)`).
    public let completion = Completion()
    /// The completion of a pause's cancel.
    private let cancelCompletion = Completion()

    // Stored `var`s are `@exclusivity(unchecked)` for the reason given at `WriteQueue`'s
    // (every read reads them); never accessed across the callback.
    /// True from `pause` until `resume`.
    @exclusivity(unchecked) public private(set) var isPaused = false
    /// True from `start` until the read callback returns `.disarm`.
    @exclusivity(unchecked) public private(set) var isStarted = false
    /// True while a read is armed that is meant to deliver (not paused, not being cancelled).
    public var isReading: Bool { completion.state == .active && !isPaused }

    /// The buffer, in an object of its own: the read's callback holds it too, so the memory
    /// outlives the reader while a read is in flight.
    private final class Buffer {
        let bytes: UnsafeMutableRawBufferPointer
        init(_ count: Int) { bytes = .allocate(byteCount: count, alignment: 16) }
        deinit { bytes.deallocate() }
    }

    private let buffer: Buffer
    /// The reader's buffer, for EvAsync's awaited read (which reads into it while the
    /// caller holds the reader).
    package var bufferBytes: UnsafeMutableRawBufferPointer { buffer.bytes }
    /// True while EvAsync's awaited read is in flight (that read and the callback form
    /// exclude each other: one buffer, one reader).
    @exclusivity(unchecked) package var isAwaitingRead = false
    @exclusivity(unchecked) private var callback: BytesCallback?
    /// True while the user's read callback runs (the read completion is dead then).
    @exclusivity(unchecked) private var delivering = false
    /// A pause's cancel was issued for the read's current activation.
    @exclusivity(unchecked) private var cancelPending = false
    /// A pause came while the previous pause's cancel had not reported yet: issue the cancel
    /// when it does (there is one cancel completion, so nothing is allocated per pause).
    @exclusivity(unchecked) private var cancelDeferred = false

    /// A reader of `fd` with a buffer of `capacity` bytes; `isSocket: false` for pipes and
    /// other non-socket streams. Throws `.invalidArgument` for a capacity below 1 (a read
    /// into an empty buffer could never tell data from the end of the stream).
    public init(fd: Int32, isSocket: Bool = true, capacity: Int = 64 * 1024) throws(EvError) {
        guard capacity >= 1 else { throw .invalidArgument }
        self.fd = fd
        self.isSocket = isSocket
        self.capacity = capacity
        buffer = Buffer(capacity)
    }

    /// A reader of a connected stream socket (`TCPSocket`, a stream `UnixSocket`).
    public convenience init(socket: some ConnectionSocket, capacity: Int = 64 * 1024) throws(EvError) {
        try self.init(fd: socket.fd, isSocket: true, capacity: capacity)
    }

    /// A reader of any stream (a pipe, a pty, a socket), reading as the stream does
    /// (read(2) or recv).
    public convenience init(stream: ByteStream, capacity: Int = 64 * 1024) throws(EvError) {
        try self.init(fd: stream.fd, isSocket: stream.isSocket, capacity: capacity)
    }

    /// A reader released with a read or a pause's cancel in flight, or from inside the read
    /// callback (which may still return `.rearm`): the completions outlive it in the loop,
    /// so their callbacks stop reaching the reader. The read's keeps the buffer, which the
    /// kernel may still write into until that read completes.
    deinit {
        completion.callback = { [buffer] _, _ in
            withExtendedLifetime(buffer) {}
            return .disarm
        }
        cancelCompletion.callback = { _, _ in .disarm }
    }

    /// Arms the read; `callback` runs with each read's bytes (see the type's comment). A
    /// reader paused before it started stays paused until `resume`. Throws
    /// `.completionActive` if the reader has been started already and not stopped.
    public func start<L: EventLoop>(loop: L, callback: @escaping BytesCallback) throws(EvError) {
        guard !isStarted, !isAwaitingRead, completion.state == .dead else { throw .completionActive }
        self.callback = callback
        completion.operation = isSocket ? .recv(socket: fd, buffer: buffer.bytes) : .read(fd: fd, buffer: buffer.bytes)
        // Made once per start, not per read: every later read is a `.rearm` or a re-add of
        // the same completion. `buffer` is captured strongly so its memory outlives a read
        // in flight. `self` unretained, not weak (the reason is at `WriteQueue.init`): a
        // reader released with a read in flight is still never touched, because `deinit`
        // replaces this callback; the retain for the call keeps the reader alive while the
        // user's callback drops the last reference to it.
        completion.callback = { [unowned(unsafe) self, buffer] _, result in
            let reader = Unmanaged.passUnretained(self).retain()
            let action = self.readFinished(result.countResult, buffer)
            reader.release()
            return action
        }
        // A pause's cancel from before a restart may still be on its way: an active
        // completion keeps its operation and callback (both still right: same target,
        // same loop, since a reader works with one loop).
        if cancelCompletion.state == .dead {
            cancelCompletion.operation = .cancel(target: completion)
            // Unowned: the callback only runs inside `loop.run`, so the loop is alive, and a
            // strong capture would make loop -> completion -> callback -> loop a cycle.
            // `self` unretained, as for the read (see above; `deinit` replaces this too).
            cancelCompletion.callback = { [unowned(unsafe) self, unowned loop] _, _ in
                let reader = Unmanaged.passUnretained(self).retain()
                self.cancelFinished(loop: loop)
                reader.release()
                return .disarm
            }
        }
        isStarted = true
        if isPaused { return }
        do {
            try loop.add(completion)
        } catch {
            isStarted = false
            throw error
        }
    }

    /// Stops reading until `resume`: the armed read is cancelled now (from inside the read
    /// callback: it is not rearmed). Data already read is still delivered, once. Harmless
    /// when paused already, or not started (the reader then starts paused).
    public func pause<L: EventLoop>(loop: L) throws(EvError) {
        guard !isPaused else { return }
        isPaused = true
        guard isStarted, !delivering, completion.state == .active, !cancelPending else { return }
        try issueCancel(loop)
    }

    /// Reads again after `pause`. Harmless when not paused. While the pause's cancel is on
    /// its way, the read simply goes on when it comes back (nothing is added twice).
    public func resume<L: EventLoop>(loop: L) throws(EvError) {
        guard isPaused else { return }
        isPaused = false
        cancelDeferred = false
        // Inside the callback its answer decides; with a read still armed (its cancel on
        // the way), the read's callback rearms it.
        guard isStarted, !delivering, completion.state == .dead else { return }
        do {
            try loop.add(completion)
        } catch {
            isPaused = true
            throw error
        }
    }

    /// Cancels the read's current activation for a pause, or defers the cancel while the
    /// previous one has not reported (see `cancelDeferred`).
    private func issueCancel<L: EventLoop>(_ loop: L) throws(EvError) {
        if cancelCompletion.state == .active {
            cancelDeferred = true
            return
        }
        cancelPending = true
        do {
            // Operation and callback were set in `start`: re-adding allocates nothing.
            try loop.add(cancelCompletion)
        } catch {
            cancelPending = false
            throw error
        }
    }

    /// The pause's cancel has reported (whatever it found); issue a deferred one.
    private func cancelFinished<L: EventLoop>(loop: L) {
        guard cancelDeferred else { return }
        cancelDeferred = false
        guard isPaused, isStarted, !delivering, completion.state == .active, !cancelPending else { return }
        // Cannot fail: the cancel completion is dead (its callback is running), which is
        // all `add` checks; if it ever did, the read would simply stay armed.
        try? issueCancel(loop)
    }

    /// The read's completion callback.
    private func readFinished(_ result: Result<Int, EvError>, _ buffer: Buffer) -> CallbackAction {
        let cancelledByPause = cancelPending
        cancelPending = false
        if cancelledByPause, case .failure(.canceled) = result {
            // The pause took effect; or a resume came while the cancel was on its way, and
            // the read goes on. Either way there is nothing to deliver.
            return isPaused ? .disarm : .rearm
        }
        // A real result (possibly one that won the race with the pause's cancel): delivered
        // exactly once.
        guard let callback else { return .disarm }
        delivering = true
        let action = callback(self, result.map { UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<$0]) })
        delivering = false
        if action == .disarm {
            isStarted = false
            return .disarm
        }
        return isPaused ? .disarm : .rearm
    }
}
