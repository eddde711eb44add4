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
    // Every stored property is `@exclusivity(unchecked)`: the loop reads and writes them on
    // every operation, and never while user code runs inside an access to one of them
    // (callbacks run after a completion is popped). Swift does not carry that attribute
    // across modules, so the fields the backends (other modules) touch are reached through
    // `@inlinable` accessors whose bodies, compiled here, carry it: a direct access from
    // another module paid a `swift_beginAccess` (with a thread-local lookup) each time,
    // about 2,200 instructions per epoll ping-pong roundtrip (callgrind, December 2026).

    /// The callback type: called once per activation, on the loop thread, inside `run`.
    public typealias Callback = (Completion, CompletionResult) -> CallbackAction

    /// Whether the completion is free (`.dead`) or owned by a loop (`.active`).
    public enum State: Sendable, Equatable {
        case dead
        case active
    }

    /// The operation performed when the completion is added (and again on `.rearm`).
    ///
    /// Stored taken apart (kind, descriptor, buffer, count, one argument, and the socket
    /// address in `scratch`), so the loop reads the few words it needs instead of copying
    /// a 150-byte enum, whose `SocketAddress` payload made every `switch` a `memcpy`
    /// (14% of a ping-pong's user-space instructions). Reading it back builds the enum.
    public var operation: Operation {
        get { makeOperation() }
        // Inlinable, so that `c.operation = .send(socket: fd, buffer: b)` in a caller's
        // hot path compiles to the few stores it needs, with no enum built or copied.
        @inlinable @inline(__always) set { store(newValue) }
    }
    /// Called with the result. Set it once; it is reused by every activation.
    ///
    /// It may be replaced at any time, also by the callback itself while it runs: the
    /// closure that is running then stays alive until it returns (see `_callback`).
    public var callback: Callback {
        @inlinable get { _callback.body }
        @inlinable set {
            if _stateBits & Completion.callbackRunningBit != 0 {
                replaceRunningCallback(with: newValue)
            } else {
                _callback.body = newValue
            }
        }
    }
    /// The callback's storage. The dispatch loop calls it borrowed, without retaining the
    /// closure's context (`callBorrowed`): a retain and a release around each call were
    /// about 40 user-space instructions per callback (callgrind, epoll ping-pong, 4
    /// callbacks per roundtrip). That is safe only while the stored closure cannot be
    /// released during its own call, which the setter sees to (`callbackRunningBit`).
    @exclusivity(unchecked) @usableFromInline package var _callback: StoredCallback
    /// Free for the caller's use (a connection object, a watcher).
    @exclusivity(unchecked)
    public var userData: AnyObject?


    /// `.active` from `add` until the callback is invoked.
    public package(set) var state: State {
        @inlinable get { _stateBits & Completion.activeBit != 0 ? .active : .dead }
        @inlinable set {
            if newValue == .active { _stateBits |= Completion.activeBit } else { _stateBits &= ~Completion.activeBit }
        }
    }
    /// Incremented on every activation.
    public package(set) var generation: UInt32 {
        @inlinable get { _generation }
        @inlinable set { _generation = newValue }
    }


    // MARK: The operation, taken apart (see `operation`)

    @exclusivity(unchecked) @usableFromInline package var _buffer: UnsafeMutableRawPointer? = nil
    @exclusivity(unchecked) @usableFromInline package var _count: Int = 0
    /// pread/pwrite: the offset; timer: the deadline (ns); poll: the events; shutdown: how;
    /// sendmsg: 1 when an address is given.
    @exclusivity(unchecked) @usableFromInline package var _argument: UInt64 = 0

    /// The operation's kind.
    @inlinable package var kind: OperationKind { _kind }
    /// The operation's descriptor (-1 for nop, timer, cancel and work).
    @inlinable package var fd: Int32 { _fd }
    /// The operation's buffer (read into, or written from).
    @inlinable package var bufferBase: UnsafeMutableRawPointer? { _buffer }
    @inlinable package var bufferCount: Int { _count }
    /// pread/pwrite offset.
    @inlinable package var offset: UInt64 { _argument }
    /// `.poll`: the events waited for.
    @inlinable package var pollEvents: UInt32 { UInt32(truncatingIfNeeded: _argument) }
    /// `.timer`: the deadline in CLOCK_MONOTONIC nanoseconds.
    @inlinable package var deadlineNanoseconds: UInt64 { _argument }
    /// `.shutdown`: SHUT_RD, SHUT_WR or SHUT_RDWR.
    @inlinable package var shutdownHow: Int32 { Int32(truncatingIfNeeded: _argument) }
    /// `.sendmsg`: whether the datagram goes to the address in `scratch`.
    @inlinable package var sendsToAddress: Bool { _argument != 0 }
    /// `.cancel`: the target.
    /// (Kept in the buffer field, retained: a strong reference, like the enum's payload;
    /// except a completion's reference to itself, which is not retained: see `store`.)
    @inlinable package var cancelTarget: Completion? {
        guard _kind == .cancel, let p = _buffer else { return nil }
        return Unmanaged<Completion>.fromOpaque(p).takeUnretainedValue()
    }

    /// `.work`: the job (closure and outcome) the pool runs.
    /// (Kept in the buffer field, retained, like a cancel's target.)
    @inlinable package var workJob: WorkPool.Job? {
        guard _kind == .work, let p = _buffer else { return nil }
        return Unmanaged<WorkPool.Job>.fromOpaque(p).takeUnretainedValue()
    }

    /// Puts `job` in place of the `.work` job the completion holds (a cancel that abandons
    /// a running job gives the completion a fresh copy, so that a rearm never waits for the
    /// abandoned run: see `WorkPool.Job`).
    package func replaceWorkJob(with job: WorkPool.Job) {
        precondition(_kind == .work, "EvLoop: replacing the job of a completion that holds none")
        releaseRetainedPayload()
        _buffer = Unmanaged.passRetained(job).toOpaque()
    }

    /// Gives back the object the buffer field holds retained (a cancel's target, a work
    /// job), if any.
    @inlinable
    func releaseRetainedPayload() {
        if _kind == .cancel, let p = _buffer {
            // A cancel aimed at its own completion holds no reference (see `store`).
            if p != Unmanaged.passUnretained(self).toOpaque() {
                Unmanaged<Completion>.fromOpaque(p).release()
            }
            _buffer = nil
        } else if _kind == .work, let p = _buffer {
            Unmanaged<WorkPool.Job>.fromOpaque(p).release()
            _buffer = nil
        }
    }

    // MARK: Loop bookkeeping (package-internal: the core and the backends share it)

    /// Link for the loop's FIFO queues (completed, unqueued submissions). Not retained:
    /// an active completion is kept alive by the loop's activation retain.
    @inlinable package var queueNext: Completion? { _queueNext?.takeUnretainedValue() }
    @exclusivity(unchecked) @usableFromInline package var _queueNext: Unmanaged<Completion>? = nil
    /// Links for a backend's per-descriptor waiter list (`IntrusiveList`).
    @inlinable package var waiterNext: Completion? { _waiterNext?.takeUnretainedValue() }
    @inlinable package var waiterPrev: Completion? { _waiterPrev?.takeUnretainedValue() }
    // `Unmanaged`, not `unowned(unsafe)`: reading an `unowned(unsafe)` link makes a strong
    // copy (a retain and a release), even to compare it with nil; `IntrusiveList` links
    // and unlinks through these without touching reference counts.
    @exclusivity(unchecked) @usableFromInline package var _waiterNext: Unmanaged<Completion>? = nil
    @exclusivity(unchecked) @usableFromInline package var _waiterPrev: Unmanaged<Completion>? = nil
    /// True between the backend finishing the work and the callback running.
    @inlinable package var resultReady: Bool {
        get { _flags & Completion.resultReadyFlag != 0 }
        set { setFlag(Completion.resultReadyFlag, newValue) }
    }
    /// The raw result (count, descriptor, or -errno) once the operation has finished.
    @inlinable package var rawResult: Int {
        get { _rawResult }
        set { _rawResult = newValue }
    }
    @exclusivity(unchecked) @usableFromInline package var _rawResult: Int = 0
    /// For a `.cancel`: the generation of the target when the cancel was added.
    /// (Kept in the operation's argument, which a cancel does not otherwise use.)
    @inlinable package var cancelTargetGeneration: UInt32 {
        get { UInt32(truncatingIfNeeded: _argument) }
        set { _argument = UInt64(newValue) }
    }
    /// Free for the backend that owns the activation (a waiter state, a pool job id).
    @inlinable package var backendState: Int {
        get { _backendState }
        set { _backendState = newValue }
    }
    @exclusivity(unchecked) @usableFromInline package var _backendState: Int = 0

    /// Memory the kernel may read or write after the submitting call returns (socket
    /// addresses, msghdr, iovec). It lives outside the object's Swift storage, at a fixed
    /// address, because a pointer made with `&` from a property is valid only for the
    /// duration of one call. Only the operations that need it (accept, connect, recvmsg,
    /// sendmsg) have it: it is allocated the first time the completion is configured for
    /// one of them and kept for reuse, so a timer or a read costs one allocation.
    @inlinable package var scratch: UnsafeMutablePointer<CompletionScratch>? { _scratch }
    @exclusivity(unchecked) @usableFromInline package var _scratch: UnsafeMutablePointer<CompletionScratch>? = nil

    // MARK: The deadline (see `Deadline`)

    /// When the operation must have finished, for every activation until changed. Set it
    /// before the operation starts (changing it while the completion is active affects the
    /// next activation only). Kinds that never wait ignore it (see `Deadline`).
    public var deadline: Deadline {
        get {
            guard _flags & Completion.hasDeadlineFlag != 0 else { return .none }
            if _flags & Completion.relativeDeadlineFlag != 0 {
                return .within(.nanoseconds(Int64(clamping: _deadline)))
            }
            return .at(LoopInstant(nanoseconds: _deadline))
        }
        set {
            switch newValue {
            case .none:
                setFlag(Completion.hasDeadlineFlag, false)
                _deadline = 0
            case .at(let instant):
                setFlag(Completion.hasDeadlineFlag, true)
                setFlag(Completion.relativeDeadlineFlag, false)
                _deadline = instant.nanoseconds
            case .within(let duration):
                setFlag(Completion.hasDeadlineFlag, true)
                setFlag(Completion.relativeDeadlineFlag, true)
                _deadline = UInt64(max(0, duration.nanosecondsSaturating))
            }
        }
    }
    /// The configured deadline: an instant, or for `.within` a duration (ns).
    @exclusivity(unchecked) @usableFromInline package var _deadline: UInt64 = 0

    /// Whether this activation has a deadline (the core sets it when the operation starts,
    /// for kinds that take one); a backend that keeps deadlines natively reads it at submit,
    /// and finds the instant in `scratch` (`CompletionScratch.linkTimeout`).
    @inlinable package var hasActiveDeadline: Bool { _flags & Completion.deadlineActiveFlag != 0 }
    /// Whether a deadline is configured (`deadline != .none`).
    @inlinable package var hasDeadline: Bool { _flags & Completion.hasDeadlineFlag != 0 }

    /// Starts this activation's deadline, if it has one: returns the instant (CLOCK_MONOTONIC
    /// ns), `now` plus the duration for `.within`, the instant for `.at`; nil when there is
    /// none. (Not stored here: the heap keeps it for epoll and poll, the scratch memory's
    /// kernel timespec for io_uring, and one word less keeps a completion in a 144-byte
    /// malloc chunk.)
    @inlinable
    package func startDeadline(now: UInt64) -> UInt64? {
        guard _flags & Completion.hasDeadlineFlag != 0, _kind.takesDeadline else { return nil }
        _flags |= Completion.deadlineActiveFlag
        if _flags & Completion.relativeDeadlineFlag != 0 {
            let (sum, overflow) = now.addingReportingOverflow(_deadline)
            return overflow ? .max : sum
        }
        return _deadline
    }

    /// Keeps this activation's deadline where a backend that links kernel timeouts reads it.
    package func storeLinkTimeout(_ deadline: UInt64) {
        scratchMemory().pointee.linkTimeout = timespec(tv_sec: Int(deadline / 1_000_000_000),
                                                       tv_nsec: Int(deadline % 1_000_000_000))
    }

    // MARK: Small fields, last: stored properties are laid out in declaration order, so
    // the 4-byte and 1-byte fields go together at the end, without padding between them.
    // With the Bools in one byte and a cancel's target and generation kept in the
    // operation's buffer and argument fields, a completion is 136 bytes: a 144-byte
    // malloc chunk (glibc rounds the request plus 8 up to 16; it was 150 bytes, a 160-byte
    // chunk: 16 MB more for a million timers). The deadline word and the drain epoch fill
    // what the chunk had spare; one more word would cost the next chunk size.

    @exclusivity(unchecked) @usableFromInline package var _generation: UInt32 = 0
    @exclusivity(unchecked) @usableFromInline package var _fd: Int32 = -1
    /// Where the timer heap keeps this completion: 0 and up in its heap, -2 and down in its
    /// sorted run, -1 when it is not pending there (`isTimerPending`).
    @exclusivity(unchecked) @usableFromInline
    package var heapIndex: Int32 = -1
    /// `state` (`activeBit`) and the two bits of a borrowed callback call
    /// (`callbackRunningBit`, `runningCallbackKeptBit`), in the byte `state` had alone.
    @exclusivity(unchecked) @usableFromInline package var _stateBits: UInt8 = 0
    @exclusivity(unchecked) @usableFromInline package var _kind: OperationKind = .nop
    /// `keepsLoopAlive`, `isQueued`, `activatedInBackground`, `resultReady`, the three
    /// deadline bits and `runsOnFilePool`, one bit each (the byte is full).
    @exclusivity(unchecked) @usableFromInline package var _flags: UInt8 = Completion.keepsLoopAliveFlag
    /// The loop's drain epoch when this activation started (see `LoopCore.cancelAll`).
    @exclusivity(unchecked) package var drainEpoch: UInt8 = 0

    /// `_stateBits`: the completion is `.active`.
    @usableFromInline static let activeBit: UInt8 = 1
    /// `_stateBits`: the dispatch loop is calling `_callback` borrowed (`callBorrowed`).
    @usableFromInline static let callbackRunningBit: UInt8 = 2
    /// `_stateBits`: the running callback was replaced during its call; the dispatch loop
    /// holds the running closure's reference and releases it when the call returns.
    @usableFromInline static let runningCallbackKeptBit: UInt8 = 4

    @usableFromInline static let keepsLoopAliveFlag: UInt8 = 1
    @usableFromInline static let queuedFlag: UInt8 = 2
    @usableFromInline static let backgroundFlag: UInt8 = 4
    @usableFromInline static let resultReadyFlag: UInt8 = 8
    /// `deadline` is not `.none`.
    @usableFromInline static let hasDeadlineFlag: UInt8 = 16
    /// `deadline` is `.within` (`_deadline` is a duration).
    @usableFromInline static let relativeDeadlineFlag: UInt8 = 32
    /// The current activation has a deadline (`_activeDeadline`).
    @usableFromInline static let deadlineActiveFlag: UInt8 = 64
    /// This activation is a file-system operation on the loop's file pool (`runOnFilePool`).
    @usableFromInline static let filePoolFlag: UInt8 = 128

    /// The completion is pending in the loop's timer heap (a timer, or an operation's
    /// deadline that the heap keeps).
    package var isTimerPending: Bool { heapIndex != -1 }

    /// Whether this activation runs on the loop's file pool (cancelled by the core).
    @inlinable package var runsOnFilePool: Bool {
        get { _flags & Completion.filePoolFlag != 0 }
        set { setFlag(Completion.filePoolFlag, newValue) }
    }

    @inlinable
    func setFlag(_ bit: UInt8, _ on: Bool) {
        if on { _flags |= bit } else { _flags &= ~bit }
    }

    /// Whether this completion, while active, keeps `run(.untilDone)` (and `.once`) from
    /// returning. Set it to false for background work that should not hold the loop open on
    /// its own, such as an executor's or notifier's wake-up poll (libuv calls this `unref`).
    public var keepsLoopAlive: Bool {
        get { _flags & Completion.keepsLoopAliveFlag != 0 }
        set { setFlag(Completion.keepsLoopAliveFlag, newValue) }
    }
    /// Set while the completion sits in a `CompletionQueue`, to catch double insertion.
    @inlinable package var isQueued: Bool {
        get { _flags & Completion.queuedFlag != 0 }
        set { setFlag(Completion.queuedFlag, newValue) }
    }
    /// `keepsLoopAlive` as it was when this activation started (the count must balance
    /// even if the caller flips the property while the completion is in flight).
    @inlinable package var activatedInBackground: Bool {
        get { _flags & Completion.backgroundFlag != 0 }
        set { setFlag(Completion.backgroundFlag, newValue) }
    }

    /// Creates a dead completion for `operation`; add it to a loop to start it.
    public init(_ operation: Operation = .nop, callback: @escaping Callback = { _, _ in .disarm }) {
        self._callback = StoredCallback(body: callback)
        store(operation)
    }

    deinit {
        releaseRetainedPayload()
        if let s = _scratch {
            if let f = s.pointee.file {
                f.pointee.releasePaths()
                f.deinitialize(count: 1)
                f.deallocate()
            }
            s.deinitialize(count: 1)
            s.deallocate()
        }
    }

    /// The sender's address from the last `.recvmsg`, or the peer filled in by accept.
    public var lastAddress: SocketAddress {
        guard let s = _scratch else { return SocketAddress(storage: sockaddr_storage(), length: 0) }
        if _kind == .accept {
            return SocketAddress(storage: s.pointee.address, length: s.pointee.addressLength)
        }
        return SocketAddress(storage: s.pointee.address, length: s.pointee.message.msg_namelen)
    }

    /// Copies `address` into the scratch memory (allocated on first use).
    @usableFromInline
    package func storeAddress(_ address: SocketAddress) {
        let s = scratchMemory()
        s.pointee.address = address.storage
        s.pointee.addressLength = address.length
    }

    @usableFromInline
    package func scratchMemory() -> UnsafeMutablePointer<CompletionScratch> {
        if let s = _scratch { return s }
        let s = UnsafeMutablePointer<CompletionScratch>.allocate(capacity: 1)
        s.initialize(to: CompletionScratch())
        _scratch = s
        return s
    }

    // Each case sets `_kind` itself: reading `op.kind` first was a second switch over the
    // 157-byte enum, out of line (62 instructions per `c.operation = .timer(...)`,
    // callgrind, million-timers). Always inlined, like the setter: the setter is called
    // with a literal case, so the switch folds to that case's stores; left to the
    // optimizer, a setter in a specialized generic caller called `store` out of line,
    // with the 157-byte enum copied by memcpy first.
    @inlinable @inline(__always)
    package func store(_ op: Operation) {
        releaseRetainedPayload()
        _fd = -1
        _buffer = nil
        _count = 0
        _argument = 0
        switch op {
        case .nop:
            _kind = .nop
        case .timer(let deadline):
            _kind = .timer
            _argument = deadline.nanoseconds
        case .cancel(let target):
            _kind = .cancel
            // A completion that cancels itself (refused with `.cannotCancelCancel`) would
            // keep itself alive for ever through a retained reference to itself: it is
            // alive as long as it is anyway, so that one is not retained (LeakSanitizer
            // found the leak; `Cancel` `aCancelAimedAtItselfIsFreed`).
            _buffer = target === self ? Unmanaged.passUnretained(target).toOpaque()
                                      : Unmanaged.passRetained(target).toOpaque()
        case .accept(let fd):
            _kind = .accept
            _fd = fd
            _ = scratchMemory()
        case .connect(let fd, let address):
            _kind = .connect
            _fd = fd
            storeAddress(address)
        case .read(let fd, let b):
            _kind = .read
            _fd = fd
            _buffer = b.baseAddress
            _count = b.count
        case .recv(let fd, let b):
            _kind = .recv
            _fd = fd
            _buffer = b.baseAddress
            _count = b.count
        case .recvmsg(let fd, let b):
            _kind = .recvmsg
            _fd = fd
            _buffer = b.baseAddress
            _count = b.count
            _ = scratchMemory()
        case .write(let fd, let b):
            _kind = .write
            _fd = fd
            _buffer = UnsafeMutableRawPointer(mutating: b.baseAddress)
            _count = b.count
        case .send(let fd, let b):
            _kind = .send
            _fd = fd
            _buffer = UnsafeMutableRawPointer(mutating: b.baseAddress)
            _count = b.count
        case .pread(let fd, let b, let offset):
            _kind = .pread
            _fd = fd
            _buffer = b.baseAddress
            _count = b.count
            _argument = offset
        case .pwrite(let fd, let b, let offset):
            _kind = .pwrite
            _fd = fd
            _buffer = UnsafeMutableRawPointer(mutating: b.baseAddress)
            _count = b.count
            _argument = offset
        case .sendmsg(let fd, let b, let address):
            _kind = .sendmsg
            _fd = fd
            _buffer = UnsafeMutableRawPointer(mutating: b.baseAddress)
            _count = b.count
            _ = scratchMemory()
            if let address {
                storeAddress(address)
                _argument = 1
            }
        case .shutdown(let fd, let how):
            _kind = .shutdown
            _fd = fd
            _argument = UInt64(UInt32(bitPattern: how.rawValue))
        case .close(let fd):
            _kind = .close
            _fd = fd
        case .poll(let fd, let events):
            _kind = .poll
            _fd = fd
            _argument = UInt64(events.rawValue)
        case .work(let job):
            _kind = .work
            _buffer = Unmanaged.passRetained(job).toOpaque()
        case .open, .stat, .statDescriptor, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            _kind = op.kind
            storeFileSystem(op)
        }
    }

    private func makeOperation() -> Operation {
        let mutable = UnsafeMutableRawBufferPointer(start: _buffer, count: _count)
        let immutable = UnsafeRawBufferPointer(mutable)
        switch _kind {
        case .nop: return .nop
        case .timer: return .timer(deadline: LoopInstant(nanoseconds: _argument))
        case .cancel: return .cancel(target: cancelTarget!)
        case .accept: return .accept(socket: _fd)
        case .connect:
            let s = _scratch!
            return .connect(socket: _fd, address: SocketAddress(storage: s.pointee.address, length: s.pointee.addressLength))
        case .read: return .read(fd: _fd, buffer: mutable)
        case .write: return .write(fd: _fd, buffer: immutable)
        case .pread: return .pread(fd: _fd, buffer: mutable, offset: _argument)
        case .pwrite: return .pwrite(fd: _fd, buffer: immutable, offset: _argument)
        case .recv: return .recv(socket: _fd, buffer: mutable)
        case .send: return .send(socket: _fd, buffer: immutable)
        case .recvmsg: return .recvmsg(socket: _fd, buffer: mutable)
        case .sendmsg:
            let s = _scratch!
            let address = _argument != 0
                ? SocketAddress(storage: s.pointee.address, length: s.pointee.addressLength) : nil
            return .sendmsg(socket: _fd, buffer: immutable, address: address)
        case .shutdown:
            let how: ShutdownHow = shutdownHow == Int32(SHUT_RD) ? .read : shutdownHow == Int32(SHUT_WR) ? .write : .both
            return .shutdown(socket: _fd, how: how)
        case .close: return .close(fd: _fd)
        case .poll: return .poll(fd: _fd, events: PollEvents(rawValue: pollEvents))
        case .work: return .work(job: workJob!)
        case .open, .stat, .fsync, .fallocate, .truncate, .rename, .unlink, .mkdir:
            return makeFileSystemOperation()
        }
    }

    /// Re-arms a pending `.timer` for `deadline` without rebuilding the operation.
    package func setTimerDeadline(_ deadline: LoopInstant) {
        releaseRetainedPayload()
        _kind = .timer
        _argument = deadline.nanoseconds
    }
}

// MARK: Calling the callback without retaining it

extension Completion {
    /// A stored closure's two machine words (its function and its context), read as plain
    /// pointers: copying them retains nothing.
    package typealias CallbackWords = (UnsafeRawPointer?, UnsafeRawPointer?)

    /// The callback in a struct of its own, so that the generic pointer functions below
    /// see a struct and not a function type: given a closure as their generic value,
    /// Swift passes it through a temporary in its most general representation and writes
    /// it back wrapped in a reabstraction thunk, one more thunk at every call (measured:
    /// a chain of thunks that grew with every callback).
    @usableFromInline
    package struct StoredCallback {
        @usableFromInline package var body: Callback
        @inlinable package init(body: @escaping Callback) { self.body = body }
    }

    /// Runs the callback for the dispatch loop, with the closure borrowed from `_callback`
    /// rather than copied out of it: no retain and release of its context per call.
    ///
    /// Why this is safe: while the call runs, `callbackRunningBit` is set, and a callback
    /// that replaces `callback` (a watcher's next operation does, every time) goes through
    /// `replaceRunningCallback`, which overwrites the running closure without releasing it;
    /// its reference passes to this function, which read its words before the call and
    /// releases them after it (`releaseKept`). Nothing else writes `_callback`.
    @inline(__always)
    package func callBorrowedCallback(_ result: CompletionResult) -> CallbackAction {
        let running = withUnsafeBytes(of: &_callback) { $0.load(as: CallbackWords.self) }
        _stateBits |= Completion.callbackRunningBit
        let action = Completion.callBorrowed(&_callback, self, result)
        let bits = _stateBits
        _stateBits = bits & ~(Completion.callbackRunningBit | Completion.runningCallbackKeptBit)
        if bits & Completion.runningCallbackKeptBit != 0 { Completion.releaseKept(running) }
        return action
    }

    /// Calls the closure at `callback` in place. The `inout` is what makes it a borrow: the
    /// optimizer may assume no one else writes an `inout` argument during the call, so it
    /// loads the closure without copying it (from a class's `var` it must copy, and the
    /// copy retains). The one write that does happen meanwhile
    /// (`replaceRunningCallback`) keeps the borrowed closure alive, as the optimizer
    /// assumed. Out of line so that this holds however the caller is optimized (inlined,
    /// the load would again be one from a class's `var`).
    @inline(__always)
    static func callBorrowed(_ callback: inout StoredCallback, _ c: Completion, _ result: CompletionResult) -> CallbackAction {
        callback.body(c, result)
    }

    /// `callback`'s setter while the callback runs borrowed: the first replacement keeps
    /// the running closure alive (its reference passes to `callBorrowedCallback`), later
    /// ones replace a closure that is not running, as usual.
    @usableFromInline
    func replaceRunningCallback(with newValue: @escaping Callback) {
        if _stateBits & Completion.runningCallbackKeptBit != 0 {
            _callback.body = newValue
            return
        }
        _stateBits |= Completion.runningCallbackKeptBit
        // Initialized over the running closure, which is not destroyed: deliberate, its
        // reference is now the dispatch loop's (`releaseKept`).
        withUnsafeMutablePointer(to: &_callback) { $0.initialize(to: StoredCallback(body: newValue)) }
    }

    /// Releases a closure kept alive by `replaceRunningCallback`, given its words.
    @inline(never)
    static func releaseKept(_ words: CallbackWords) {
        var w = words
        // The words are a closure's (same size and layout: a function and a context);
        // destroying that closure releases the context, once.
        withUnsafeMutablePointer(to: &w) {
            $0.withMemoryRebound(to: StoredCallback.self, capacity: 1) { _ = $0.deinitialize(count: 1) }
        }
    }
}

/// Kernel-visible per-completion memory (see `Completion.scratch`).
@usableFromInline
package struct CompletionScratch {
    // The fields a datagram's send or receive sets up are `@usableFromInline` and the
    // functions that set them up `@inlinable`: io_uring (another module) prepares a
    // message header for every recvmsg and sendmsg, and three calls into this module for
    // it were about a third of its cost.
    @usableFromInline package var address = sockaddr_storage()
    @usableFromInline package var addressLength = socklen_t(0)
    @usableFromInline package var message = msghdr()
    @usableFromInline package var iov = iovec()
    /// A deadline as the kernel reads it (io_uring's linked timeout, absolute
    /// CLOCK_MONOTONIC): `timespec` has `__kernel_timespec`'s layout on 64-bit Linux.
    package var linkTimeout = timespec()
    /// A file-system operation's paths and status buffer (`FileRequestScratch`), allocated
    /// for the first such operation; freed with the completion.
    package var file: UnsafeMutablePointer<FileRequestScratch>? = nil
    package init() {}

    /// Points `message` at one buffer and, when `withAddress`, at `address`
    /// (for recvmsg: room for the sender; for sendmsg: the destination).
    @inlinable @inline(__always)
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

    /// Points the msghdr in `c.scratch` at `c`'s buffer (and, for recvmsg or an addressed
    /// sendmsg, at the address) before a recvmsg or sendmsg.
    @inlinable @inline(__always)
    package static func prepareMessage(for c: Completion) {
        let s = c.scratch!
        switch c.kind {
        case .recvmsg:
            prepareMessage(s, base: c.bufferBase, count: c.bufferCount,
                           addressLength: socklen_t(MemoryLayout<sockaddr_storage>.size))
        case .sendmsg:
            prepareMessage(s, base: c.bufferBase, count: c.bufferCount,
                           addressLength: c.sendsToAddress ? s.pointee.addressLength : nil)
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

    /// Pointer to the linked timeout's time (`Completion.storeLinkTimeout`).
    package static func linkTimeoutPointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.linkTimeout)!
    }

    @inlinable
    package static func messagePointer(_ s: UnsafeMutablePointer<CompletionScratch>) -> UnsafeMutablePointer<msghdr> {
        (UnsafeMutableRawPointer(s) + MemoryLayout<CompletionScratch>.offset(of: \.message)!)
            .assumingMemoryBound(to: msghdr.self)
    }
}
