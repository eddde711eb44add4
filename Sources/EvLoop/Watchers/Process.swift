#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CEvSys
import Synchronization

/// How a `Subprocess` learns that its child exited.
///
/// Why a choice: pidfds are the right tool but not available everywhere (old kernels,
/// sandboxes), and the fallback must be testable on machines that do have them.
///
/// ```swift
/// let child = try Subprocess.spawn(path: "/bin/true", exitWatch: .waiterThread)
/// assert(child.method == .waiterThread)
/// ```
public enum ExitWatchMethod: Sendable, Hashable {
    /// A pidfd when the kernel allows it, otherwise the waiter thread.
    case automatic
    /// A pidfd (Linux 5.3+; waitid(P_PIDFD) needs 5.4): the loop polls it for readability
    /// and reaps exactly this child. Fails (`.errno(ENOSYS)`, `.permissionDenied`) where
    /// pidfd_open is unavailable or filtered.
    case pidfd
    /// A dedicated thread blocks in waitid for this one pid and wakes the loop through an
    /// eventfd: the fallback for kernels without pidfd_open and for sandboxes whose seccomp
    /// policy refuses it (ENOSYS / EPERM, PITFALLS H1). Also selectable on purpose, so tests
    /// exercise the fallback on machines that have pidfds.
    case waiterThread
}

/// A child process: spawn it (or adopt one of ours by pid) and learn on the loop how it
/// exited.
///
/// Why it is built this way (PITFALLS H1-H4):
/// - **Only this child is ever reaped.** The exit is observed through a pidfd (readable
///   once the child exits, so the `.poll` operation waits for it on every backend) and
///   reaped with `waitid(P_PIDFD)`. Nothing calls `waitpid(-1)` and no SIGCHLD handler is
///   installed: libuv's process-wide handler reaped other code's children and replaced
///   applications' handlers.
/// - **An exit that happened before `wait` is armed is not lost**: an unreaped child is a
///   zombie whose pidfd stays readable, so the wait fires at once.
/// - **Fallback where pidfds are unavailable** (ENOSYS before Linux 5.3, EPERM under some
///   seccomp profiles): a thread waits for this pid only (`waitid(P_PID, WNOWAIT)` then
///   the reap under a lock, so `signal` can never hit a reused pid) and wakes the loop
///   through an `AsyncNotifier`.
/// - **Ownership:** the object owns its pidfd and closes it in deinit (after the child is
///   reaped by `wait`, or when it is released unwaited); the descriptors handed to `spawn`
///   as `StdioTarget.fd` stay the caller's, to close in the parent once the child has them.
///   The parent ends of `.pipe` targets (`standardInput`, `standardOutput`,
///   `standardError`) are the caller's too: a `ByteStream` never closes itself, so close
///   each through the loop when done (closing `standardInput` is how the child sees the
///   end of its input).
/// - **Nothing of the parent leaks into the child**: `spawn` uses posix_spawn with
///   every descriptor above 2 closed (closefrom, glibc 2.34+; all of this library's own
///   descriptors are close-on-exec as well), the signal mask emptied and every signal
///   disposition reset to default (a server that blocks signals for its signalfd, or
///   ignores SIGPIPE, must not pass that on).
///
/// Limits: the process must not set SIGCHLD to SIG_IGN (the kernel then reaps children
/// itself and the exit status is lost: the wait reports `.errno(ECHILD)`), and no other
/// code may reap this pid.
///
/// ```swift
/// let child = try Subprocess.spawn(path: "/bin/sh", arguments: ["-c", "exit 3"])
/// let exited = Completion()
/// try child.wait(loop: loop, completion: exited) { _, result in
///     print(result)            // success(exited with code 3)
///     return .disarm
/// }
/// try loop.run(.untilDone)
/// ```
public final class Subprocess {
    /// The exit callback: the status, or an error (`.canceled` if the wait was cancelled;
    /// the child keeps running and can be waited for again). Like every callback it answers
    /// `.rearm` (wait again: after a cancel, for the exit; after the exit, the same status
    /// is reported again on the next tick) or `.disarm`.
    public typealias ExitStatusCallback = (Completion, Result<ExitStatus, EvError>) -> CallbackAction

    /// The child's process id.
    public let pid: pid_t
    /// The method in use (`.pidfd` or `.waiterThread`; never `.automatic`).
    public let method: ExitWatchMethod
    /// The status once the loop has delivered it (the child is reaped by then).
    public private(set) var exitStatus: ExitStatus?

    /// The parent's end of the child's stdin pipe (write to it), when `spawn` was given
    /// `stdin: .pipe`; nil otherwise. The caller's to close, through the loop: the child
    /// reads end of file once it is closed.
    public let standardInput: ByteStream?
    /// The parent's end of the child's stdout pipe (read from it), when `spawn` was given
    /// `stdout: .pipe`; nil otherwise. The caller's to close, through the loop.
    public let standardOutput: ByteStream?
    /// The parent's end of the child's stderr pipe (read from it), when `spawn` was given
    /// `stderr: .pipe`; nil otherwise. The caller's to close, through the loop.
    public let standardError: ByteStream?

    /// The pidfd, or -1 with the waiter thread.
    private let pidfd: Int32
    /// The waiter thread's shared state, or nil with a pidfd.
    private let waiter: ExitWaiterThread?

    /// Watches `pid`, which must be a child of this process that nobody else reaps.
    public convenience init(pid: pid_t, exitWatch: ExitWatchMethod = .automatic) throws(EvError) {
        try self.init(pid: pid, exitWatch: exitWatch, openPidfd: Subprocess.systemPidfdOpen)
    }

    /// pidfd_open(2): the descriptor, or -errno.
    package static func systemPidfdOpen(_ pid: pid_t) -> Int32 {
        let fd = cevsys_pidfd_open(pid, 0)   // pidfds are always close-on-exec
        return fd >= 0 ? fd : -cevsys_errno()
    }

    /// `openPidfd` returns a pidfd or -errno; tests inject ENOSYS, EPERM or EMFILE here to
    /// check how `.automatic` reacts (PITFALLS H1) on a machine that has pidfds.
    package init(pid: pid_t, exitWatch: ExitWatchMethod, openPidfd: (pid_t) -> Int32,
                 pipes: [ByteStream?] = [nil, nil, nil]) throws(EvError) {
        self.pid = pid
        standardInput = pipes[0]
        standardOutput = pipes[1]
        standardError = pipes[2]
        switch exitWatch {
        case .automatic, .pidfd:
            let fd = openPidfd(pid)
            if fd >= 0 {
                pidfd = fd
                waiter = nil
                method = .pidfd
                return
            }
            let e = -fd
            // ENOSYS: kernel before 5.3. EPERM: a seccomp profile (containers, snaps)
            // refuses pidfd_open. Both leave waitid on the pid itself, on a thread.
            guard exitWatch == .automatic, e == ENOSYS || e == EPERM else { throw EvError(errno: e) }
        case .waiterThread:
            break
        }
        let w = try ExitWaiterThread(pid: pid)
        pidfd = -1
        waiter = w
        method = .waiterThread
    }

    deinit {
        if pidfd >= 0 { close(pidfd) }
    }

    /// Starts `path` with `arguments` (not including argv[0], which is `path`).
    ///
    /// - `environment`: "NAME=value" strings; nil inherits the parent's environment.
    /// - `workingDirectory`: nil keeps the parent's.
    /// - `searchPath`: look `path` up in PATH when it has no slash (posix_spawnp).
    /// - `stdin`/`stdout`/`stderr`: what descriptors 0, 1 and 2 of the child are. A `.fd`
    ///   source should not itself be 0, 1 or 2 unless it is the same number as its target.
    ///   `.pipe` creates a pipe whose parent end comes back as `standardInput`,
    ///   `standardOutput` or `standardError`.
    /// - `loop`: the loop the parent ends of `.pipe` targets will be used with, so that they
    ///   are made blocking or non-blocking as it prefers (`prefersBlockingDescriptors`).
    ///   Required when any target is `.pipe` (`.invalidArgument` without it); unused
    ///   otherwise.
    ///
    /// A program that cannot be run is reported here (`.noSuchFile`, `.permissionDenied`),
    /// not as an exit status. Whatever fails, nothing is left behind: the pipes created for
    /// the call are closed, and a child that was started but cannot be watched is killed
    /// and reaped. On success the child's pipe ends are already closed in the parent, so
    /// the parent's ends see end of file (or a broken pipe) when the child exits.
    public static func spawn(path: String, arguments: [String] = [], environment: [String]? = nil,
                             workingDirectory: String? = nil, searchPath: Bool = false,
                             stdin: StdioTarget = .inherit, stdout: StdioTarget = .inherit,
                             stderr: StdioTarget = .inherit,
                             exitWatch: ExitWatchMethod = .automatic,
                             loop: (any EventLoop)? = nil) throws(EvError) -> Subprocess {
        try spawn(path: path, arguments: arguments, environment: environment, workingDirectory: workingDirectory,
                  searchPath: searchPath, stdin: stdin, stdout: stdout, stderr: stderr, exitWatch: exitWatch,
                  loop: loop, openPidfd: systemPidfdOpen)
    }

    /// `spawn` with an injectable pidfd_open (see `init(pid:exitWatch:openPidfd:)`).
    package static func spawn(path: String, arguments: [String], environment: [String]?,
                              workingDirectory: String?, searchPath: Bool,
                              stdin: StdioTarget, stdout: StdioTarget, stderr: StdioTarget,
                              exitWatch: ExitWatchMethod, loop: (any EventLoop)? = nil,
                              openPidfd: (pid_t) -> Int32) throws(EvError) -> Subprocess {
        var pipes = try ChildStdio(targets: [stdin, stdout, stderr], blockingParentEnds: loop?.prefersBlockingDescriptors)
        let argv = CStringArray([path] + arguments)
        let envp = environment.map { CStringArray($0) }
        var pid: Int32 = 0
        let r: Int32 = pipes.childDescriptors.withUnsafeBufferPointer { stdioPtr in
            argv.withPointer { argvPtr in
                func go(_ envPtr: UnsafePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
                    if let cwd = workingDirectory {
                        return cwd.withCString {
                            cevsys_spawn(&pid, path, argvPtr, envPtr, $0, stdioPtr.baseAddress, searchPath ? 1 : 0)
                        }
                    }
                    return cevsys_spawn(&pid, path, argvPtr, envPtr, nil, stdioPtr.baseAddress, searchPath ? 1 : 0)
                }
                if let envp { return envp.withPointer { go($0) } }
                return go(nil)
            }
        }
        // The child has its own copies of its ends now (or there is no child): the
        // parent's copies must go, or the parent's reads would never see end of file.
        pipes.closeChildEnds()
        guard r == 0 else {
            pipes.closeParentEnds()
            throw EvError(errno: r)
        }
        do {
            return try Subprocess(pid: pid, exitWatch: exitWatch, openPidfd: openPidfd, pipes: pipes.parentEnds)
        } catch {
            // No way to watch it (out of descriptors or threads): do not leave an
            // unwatched child behind. Kill and reap exactly this pid, then report.
            kill(pid, SIGKILL)
            var status = cevsys_child_status()
            _ = cevsys_waitid_pid(pid, 0, &status)
            pipes.closeParentEnds()
            throw error
        }
    }

    /// Arms `completion` to report the child's exit (at once, on the next tick, if it has
    /// already exited). The callback runs once per activation: `.disarm` ends the wait (the
    /// completion is then dead); `.rearm` waits again (after a cancel or an error, for the
    /// exit; once the child has exited, the same status is reported again on the next tick).
    public func wait(loop: some EventLoop, completion: Completion,
                     callback: @escaping ExitStatusCallback) throws(EvError) {
        if let status = exitStatus {
            // Reaped already: report the same status again, through the loop (callbacks
            // never run inside `add`).
            Self.reportAgain(status, in: completion, to: callback)
            try loop.add(completion)
            return
        }
        if let waiter {
            completion.operation = .poll(fd: waiter.notifier.fd, events: .readable)
        } else {
            completion.operation = .poll(fd: pidfd, events: .readable)
        }
        completion.callback = { [self] c, result in
            switch result {
            case .poll(.success):
                switch reap() {
                case .none:
                    return .rearm   // not exited yet (a spurious wake-up): keep waiting
                case .some(.success(let status)):
                    exitStatus = status
                    let action = callback(c, .success(status))
                    // The child is reaped: polling its descriptor again would find nothing
                    // to reap, so a rearm reports the status again instead.
                    if action == .rearm { Self.reportAgain(status, in: c, to: callback) }
                    return action
                case .some(.failure(let e)):
                    return callback(c, .failure(e))
                }
            case .poll(.failure(let e)):
                return callback(c, .failure(e))
            default:
                return callback(c, .failure(.invalidArgument))
            }
        }
        try loop.add(completion)
    }

    /// Configures `completion` to report `status` (of a child already reaped) through a
    /// `.nop`, on the next tick; a rearm reports it again.
    private static func reportAgain(_ status: ExitStatus, in completion: Completion, to callback: @escaping ExitStatusCallback) {
        completion.operation = .nop
        completion.callback = { c, _ in callback(c, .success(status)) }
    }

    /// After the wait's descriptor became readable: the status if the child has exited and
    /// is now reaped, nil if not yet.
    private func reap() -> Result<ExitStatus, EvError>? {
        if let waiter {
            if case .failure(let e) = waiter.notifier.consume() { return .failure(e) }
            return waiter.result
        }
        var s = cevsys_child_status()
        guard cevsys_waitid_pidfd(pidfd, 1, &s) == 0 else {
            return .failure(EvError(errno: cevsys_errno()))
        }
        if s.pid == 0 { return nil }
        guard let status = ExitStatus(s) else { return .failure(.invalidArgument) }
        return .success(status)
    }

    /// Sends `signal` to the child. Never reaches another process: through the pidfd, or
    /// (with the waiter thread) only while the child is not reaped, so its pid cannot have
    /// been reused. After the exit: `.errno(ESRCH)`.
    public func signal(_ signal: Int32) throws(EvError) {
        if let waiter {
            let r = waiter.signal(signal)
            guard r == 0 else { throw EvError(errno: r) }
            return
        }
        guard cevsys_pidfd_send_signal(pidfd, signal, 0) == 0 else { throw EvError(errno: cevsys_errno()) }
    }
}

/// The fallback exit watcher: one detached thread per child, blocked in waitid for that
/// pid only, which records the status and notifies the loop.
final class ExitWaiterThread: Sendable {
    struct State {
        var result: Result<Subprocess.ExitStatus, EvError>?
        /// Set once the pid must no longer be signalled: the child is reaped, or waiting
        /// for it failed (ECHILD: not our child, or someone else reaped it).
        var reaped = false
    }

    let pid: pid_t
    let notifier: AsyncNotifier
    private let state = Mutex(State())

    init(pid: pid_t) throws(EvError) {
        self.pid = pid
        notifier = try AsyncNotifier()
        let box = Unmanaged.passRetained(self).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        // The thread only blocks in waitid: a small stack is plenty.
        pthread_attr_setstacksize(&attr, 64 * 1024)
        var thread = pthread_t()
        let r = pthread_create(&thread, &attr, { arg in
            _ = cevsys_set_thread_name("ev-exit-wait")
            Unmanaged<ExitWaiterThread>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        guard r == 0 else {
            Unmanaged<ExitWaiterThread>.fromOpaque(box).release()
            throw EvError(errno: r)
        }
    }

    /// The status, once the thread has reaped the child.
    var result: Result<Subprocess.ExitStatus, EvError>? { state.withLock { $0.result } }

    private func run() {
        var s = cevsys_child_status()
        // Wait for the exit without reaping (WNOWAIT): while the zombie exists its pid
        // cannot be reused, so `signal` (under the lock) cannot hit another process.
        let waited = cevsys_waitid_pid(pid, 1, &s)
        let waitErrno = waited == 0 ? 0 : cevsys_errno()
        state.withLock { st in
            st.reaped = true
            if waitErrno != 0 {
                st.result = .failure(EvError(errno: waitErrno))
                return
            }
            var reaped = cevsys_child_status()
            if cevsys_waitid_pid(pid, 0, &reaped) != 0 {
                st.result = .failure(EvError(errno: cevsys_errno()))
                return
            }
            st.result = Subprocess.ExitStatus(reaped).map { .success($0) } ?? .failure(.invalidArgument)
        }
        notifier.notify()
    }

    /// kill(2) while the child is not reaped; returns 0 or an errno.
    func signal(_ signal: Int32) -> Int32 {
        state.withLock { st in
            if st.reaped { return ESRCH }
            return kill(pid, signal) == 0 ? 0 : cevsys_errno()
        }
    }
}

/// A NULL-terminated array of C strings (argv, envp), freed on deinit.
private final class CStringArray {
    private var pointers: [UnsafeMutablePointer<CChar>?]

    init(_ strings: [String]) {
        pointers = strings.map { strdup($0) }
        pointers.append(nil)
    }

    func withPointer<R>(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    deinit {
        for p in pointers { free(p) }
    }
}

extension Subprocess {
    /// How a child process ended: an exit code or a terminating signal, decoded from
    /// waitid(2) once so callers never touch the W* macros.
    ///
    /// Nested in `Subprocess` because Swift Testing (6.2+) has a top-level `ExitStatus` of
    /// its own, and a test file imports both.
    ///
    /// ```swift
    /// switch status {
    /// case .exited(0): print("ok")
    /// case .exited(let code): print("failed with", code)
    /// case .signaled(let signal, _): print("killed by signal", signal)
    /// }
    /// ```
    public enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
        /// It called exit (or returned from main) with this code (0-255).
        case exited(Int32)
        /// A signal terminated it (SIGKILL is 9); `coreDumped` when it left a core file.
        case signaled(Int32, coreDumped: Bool)

        public var description: String {
            switch self {
            case .exited(let code): return "exited with code \(code)"
            case .signaled(let sig, let core): return "terminated by signal \(sig)" + (core ? " (core dumped)" : "")
            }
        }

        /// Decodes a waitid(2) result (`si_code`, `si_status`).
        init?(_ s: cevsys_child_status) {
            switch s.code {
            case Int32(CEVSYS_CLD_EXITED): self = .exited(s.status)
            case Int32(CEVSYS_CLD_KILLED): self = .signaled(s.status, coreDumped: false)
            case Int32(CEVSYS_CLD_DUMPED): self = .signaled(s.status, coreDumped: true)
            default: return nil
            }
        }
    }
}
