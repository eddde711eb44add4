#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing

/// How a child process ended.
enum Termination: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// It did not end within the time allowed and was killed with SIGKILL.
    case timedOut

    init(waitStatus s: Int32) {
        // The WIFEXITED/WEXITSTATUS/WTERMSIG encoding on Linux (macros, so not importable).
        if s & 0x7f == 0 { self = .exited((s >> 8) & 0xff) } else { self = .signaled(s & 0x7f) }
    }

    var description: String {
        switch self {
        case .exited(let c): return "exited with status \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        case .timedOut: return "did not finish in time (killed)"
        }
    }
}

/// A child process spawned for a test, with its stdout and stderr captured through pipes
/// (or redirected to files, for bulk data).
///
/// Written on posix_spawn rather than Foundation's Process so the test controls exactly
/// which descriptors the child gets (the pipes are O_CLOEXEC, so children spawned by tests
/// running in parallel never inherit each other's pipe ends, which would keep a pipe open
/// and hide an EOF), and so every wait has a deadline: a hung child is killed, and the
/// test fails instead of hanging the suite.
final class ChildProcess {
    let pid: pid_t
    let name: String
    private var stdoutFD: Int32 = -1
    private var stderrFD: Int32 = -1
    private(set) var stdoutText = ""
    private(set) var stderrText = ""
    private var stdoutBytes: [UInt8] = []
    private var stderrBytes: [UInt8] = []
    private var termination: Termination?

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Starts `path` with `arguments`. The environment is this process's, minus `EV_BACKEND`
    /// (so a developer's setting cannot change what a test checks), plus `environment`.
    /// `stdinPath` / `stdoutPath` redirect from / to files; otherwise stdin is /dev/null and
    /// stdout is captured. stderr is always captured.
    init(_ path: String, _ arguments: [String], environment: [String: String] = [:],
         stdinPath: String? = nil, stdoutPath: String? = nil) throws {
        name = String(path.split(separator: "/").last ?? "child")
        // Socket pairs rather than pipes: Glibc does not export pipe2 to Swift, and
        // pipe() + fcntl(FD_CLOEXEC) would leave a window in which a child spawned by a
        // test running in parallel inherits the write end (and then our EOF never comes).
        // SOCK_CLOEXEC sets the flag atomically.
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        let kind = Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, kind, 0, &outPipe) == 0 else {
            throw SpawnError(description: "socketpair failed: errno \(errno)")
        }
        guard socketpair(AF_UNIX, kind, 0, &errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw SpawnError(description: "socketpair failed: errno \(errno)")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdinPath ?? "/dev/null", O_RDONLY, 0)
        if let stdoutPath {
            posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        } else {
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        }
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)

        // The child starts with every signal unblocked and at its default action, whatever
        // the test runner's threads have set (an inherited blocked SIGTERM would make the
        // shutdown tests meaningless; an inherited ignored SIGPIPE would hide a bug).
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var env: [String: String] = [:]
        var e = environ
        while let entry = e.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                env[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            e += 1
        }
        env["EV_BACKEND"] = nil
        for (k, v) in environment { env[k] = v }

        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, &attr, argv, envp)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw SpawnError(description: "posix_spawn \(path) failed: \(String(cString: strerror(rc)))")
        }
        pid = child
        stdoutFD = outPipe[0]
        stderrFD = errPipe[0]
        if stdoutPath != nil {
            // Nothing will ever be written to the pipe: the child's stdout is the file.
            close(stdoutFD)
            stdoutFD = -1
        }
    }

    deinit {
        if termination == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            // EINTR: a signal reached this thread during the wait; the child is still ours.
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if stdoutFD >= 0 { close(stdoutFD) }
        if stderrFD >= 0 { close(stderrFD) }
    }

    /// Reads whatever the pipes hold, waiting at most `timeoutMs` for something to arrive.
    /// Returns false once both pipes are at end of file.
    @discardableResult
    private func pump(timeoutMs: Int32) -> Bool {
        var fds: [pollfd] = []
        if stdoutFD >= 0 { fds.append(pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)) }
        if stderrFD >= 0 { fds.append(pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)) }
        if fds.isEmpty { return false }
        let n = poll(&fds, nfds_t(fds.count), timeoutMs)
        if n <= 0 { return true }   // timeout, or EINTR: the caller's deadline decides
        var chunk = [UInt8](repeating: 0, count: 65536)
        for p in fds where p.revents != 0 {
            let r = chunk.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
            if r > 0 {
                if p.fd == stdoutFD {
                    stdoutBytes += chunk[0..<r]
                    stdoutText = String(decoding: stdoutBytes, as: UTF8.self)
                } else {
                    stderrBytes += chunk[0..<r]
                    stderrText = String(decoding: stderrBytes, as: UTF8.self)
                }
            } else if r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN) {
                // EOF or a real error closes the pipe; EINTR (a signal) and EAGAIN (poll
                // reported a spurious readiness) just mean "try on the next pump".
                close(p.fd)
                if p.fd == stdoutFD { stdoutFD = -1 } else { stderrFD = -1 }
            }
        }
        return stdoutFD >= 0 || stderrFD >= 0
    }

    /// Waits until stdout has a complete line containing `marker`; returns that line, or nil
    /// if the child closed its output or the time ran out.
    func waitForLine(containing marker: String, timeout: Duration) -> String? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let line = stdoutText.split(separator: "\n", omittingEmptySubsequences: false)
                .dropLast() // the part after the last newline is not a complete line yet
                .first(where: { $0.contains(marker) }) {
                return String(line)
            }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return nil }
            if !pump(timeoutMs: Int32(min(100, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))) {
                return nil
            }
        }
    }

    /// Sends `signal` to the child.
    func send(_ signal: Int32) {
        if termination == nil { kill(pid, signal) }
    }

    /// Collects all output and waits for the child to end; kills it (and reports
    /// `.timedOut`) if it is still running after `timeout`.
    @discardableResult
    func finish(timeout: Duration) -> Termination {
        if let termination { return termination }
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                // Drain what is left in the pipes (the child may have had a grandchild
                // holding them, so do not wait for EOF forever).
                let drainUntil = ContinuousClock.now + .seconds(2)
                while pump(timeoutMs: 20), ContinuousClock.now < drainUntil {}
                let t = Termination(waitStatus: status)
                termination = t
                return t
            }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                // EINTR: a signal reached this thread during the wait; wait again.
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                pump(timeoutMs: 0)
                termination = .timedOut
                return .timedOut
            }
            pump(timeoutMs: 20)
        }
    }

    /// Everything the child printed, for failure messages.
    var transcript: String {
        "---- \(name) stdout ----\n\(stdoutText)\n---- \(name) stderr ----\n\(stderrText)"
    }
}

/// Runs a program to completion and returns its termination with its output.
func runToCompletion(_ path: String, _ arguments: [String], environment: [String: String] = [:],
                     stdinPath: String? = nil, stdoutPath: String? = nil,
                     timeout: Duration) throws -> (Termination, ChildProcess) {
    let child = try ChildProcess(path, arguments, environment: environment,
                                 stdinPath: stdinPath, stdoutPath: stdoutPath)
    let t = child.finish(timeout: timeout)
    return (t, child)
}
