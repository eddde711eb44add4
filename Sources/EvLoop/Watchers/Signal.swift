#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys

/// One signal read from a `SignalWatcher`: the fields of a signalfd record that tell
/// which signal arrived and who sent it (so a server can log who asked it to stop).
///
/// ```swift
/// if case .success(let info) = result, info.signal == SIGTERM {
///     print("SIGTERM from pid", info.senderPID)
/// }
/// ```
public struct SignalInfo: Sendable, Hashable {
    /// The signal number (SIGINT, SIGTERM, ...).
    public var signal: Int32
    /// si_code: SI_USER (0) for kill(2), SI_TKILL (-6) for raise/tgkill, SI_QUEUE, ...
    public var code: Int32
    /// The sending process (for kill and sigqueue), else 0.
    public var senderPID: pid_t
    /// The sending user (for kill and sigqueue), else 0.
    public var senderUID: uid_t
}

/// Delivers POSIX signals (SIGINT, SIGTERM, SIGHUP, ...) as loop callbacks, through a
/// signalfd (libxev has no signal watcher; libuv's taught what to avoid, PITFALLS H5).
///
/// Why a signalfd instead of a handler: a handler runs at an arbitrary point of an
/// arbitrary thread and may do almost nothing safely; a signalfd turns pending signals into
/// a readable descriptor that the loop waits on (`.poll`, then a non-blocking read(2) of
/// one `signalfd_siginfo` record on the loop thread; never an io_uring read, PITFALLS D1),
/// so the callback is ordinary code on the loop thread.
///
/// Ownership: the watcher owns its signalfd and closes it in deinit; release it only when
/// no wait is in flight (cancel the wait and let its callback run first).
///
/// Requirements and semantics the caller must know:
/// - **Block the signals in every thread** (`SignalWatcher.block(_:)`, i.e.
///   pthread_sigmask), and do it in the main thread *before creating any other thread*
///   (threads inherit the mask). The kernel delivers a process-directed signal to any
///   thread that does not block it; if one does not, the default action (for SIGINT:
///   terminate) or a handler wins over the watcher. The watcher does not change the mask
///   itself: the mask is per thread, and changing it behind the program's back breaks the
///   program's other threads.
/// - **Deliveries coalesce** (at-least-once, not once per signal): standard signals sent
///   several times before the loop reads them are pending once, and the callback runs
///   once. Count events with your own state, not with callbacks.
/// - A signal sent to one thread (raise, pthread_kill, tgkill) is readable only by that
///   thread: watch such signals on the loop thread that receives them.
/// - Children do not inherit the blocked mask through `Subprocess.spawn` (it resets the
///   mask and dispositions), but `fork`ed code does.
/// - Each callback reports one signal; return `.rearm` to receive the next (a rearmed wait
///   fires at once if another signal is already pending).
///
/// ```swift
/// SignalWatcher.block([SIGINT, SIGTERM])      // first thing in main, before threads
/// let signals = try SignalWatcher(signals: [SIGINT, SIGTERM])
/// let waiting = Completion()
/// try signals.wait(loop: loop, completion: waiting) { _, result in
///     guard case .success(let info) = result else { return .disarm }
///     print("got signal", info.signal, "- shutting down")
///     loop.stop()
///     return .disarm
/// }
/// try loop.run(.untilDone)
/// ```
public final class SignalWatcher {
    /// The callback: one signal, or an error (`.canceled` when the wait was cancelled).
    public typealias SignalCallback = (Completion, Result<SignalInfo, EvError>) -> CallbackAction

    /// The signalfd (close-on-exec, non-blocking).
    public let fd: Int32
    /// The signals this watcher reads.
    public let signals: [Int32]

    /// Creates a signalfd for `signals`. Block them first (see the type's documentation).
    public init(signals: [Int32]) throws(EvError) {
        let fd = signals.withUnsafeBufferPointer { cevsys_signalfd($0.baseAddress, Int32($0.count)) }
        guard fd >= 0 else { throw EvError(errno: cevsys_errno()) }
        self.fd = fd
        self.signals = signals
    }

    deinit { close(fd) }

    /// Blocks `signals` in the calling thread (and in threads it creates afterwards).
    public static func block(_ signals: [Int32]) throws(EvError) {
        let r = signals.withUnsafeBufferPointer { cevsys_sigmask(0, $0.baseAddress, Int32($0.count)) }
        guard r == 0 else { throw EvError(errno: r) }
    }

    /// Unblocks `signals` in the calling thread. A blocked signal still pending is then
    /// delivered (its default action or handler runs): read it from the watcher first.
    public static func unblock(_ signals: [Int32]) throws(EvError) {
        let r = signals.withUnsafeBufferPointer { cevsys_sigmask(1, $0.baseAddress, Int32($0.count)) }
        guard r == 0 else { throw EvError(errno: r) }
    }

    /// Arms `completion` to report the next signal (at once if one is pending).
    public func wait(loop: some EventLoop, completion: Completion,
                     callback: @escaping SignalCallback) throws(EvError) {
        completion.operation = .poll(fd: fd, events: .readable)
        completion.callback = { [self] c, result in
            switch result {
            case .poll(.success):
                var info = cevsys_signal_info()
                if cevsys_signalfd_read(fd, &info) == 1 {
                    return callback(c, .success(SignalInfo(signal: info.signal, code: info.code,
                                                           senderPID: info.sender_pid, senderUID: info.sender_uid)))
                }
                let e = cevsys_errno()
                // EAGAIN: nothing pending for this thread after all (another reader took
                // it, or a thread-directed signal of another thread made the poll fire):
                // wait again without a callback.
                if e == EAGAIN { return .rearm }
                return callback(c, .failure(EvError(errno: e)))
            case .poll(.failure(let e)):
                return callback(c, .failure(e))
            default:
                return callback(c, .failure(.invalidArgument))
            }
        }
        try loop.add(completion)
    }
}
