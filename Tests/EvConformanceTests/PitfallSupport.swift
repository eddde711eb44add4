// Helpers for the Pitfall* tests (docs/PITFALLS.md describes each PITFALLS item and names its
// test): counting the loop's kernel waits, spawning a child the way code outside this
// library would (no descriptor clean-up), the thread count, and a full descriptor table.
import Testing
import Ev
import EvReadiness
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

enum Pitfall {
    /// How many times the loop has entered the kernel to wait (readiness backends) or to
    /// submit and wait (io_uring). A loop that spins shows up as a count far above the
    /// number of events it handled.
    static func kernelWaits(_ loop: LoopCore) -> Int {
        if let r = loop as? ReadinessLoop { return r.waitCount }
        if let u = loop as? UringLoop { return u.enterCount }
        Issue.record("no wait counter for \(type(of: loop))")
        return 0
    }

    /// Runs `loop` for `duration` with nothing to do but a timer and returns how many
    /// kernel waits that took (an idle loop needs one or two).
    static func kernelWaitsWhileIdle(_ loop: LoopCore, _ duration: Duration = .milliseconds(30)) throws -> Int {
        let before = kernelWaits(loop)
        try runFor(loop, duration)
        return kernelWaits(loop) - before
    }

    /// Starts `path` with posix_spawn and no file actions, as code outside this library
    /// might: the child inherits every descriptor of this process that is not
    /// close-on-exec. Returns once the child has exec'd (glibc's posix_spawn waits for it).
    static func plainSpawn(_ path: String, _ arguments: [String]) throws -> pid_t {
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp: [UnsafeMutablePointer<CChar>?] = [nil]
        var pid: pid_t = 0
        let r = posix_spawn(&pid, path, nil, nil, argv, envp)
        guard r == 0 else { throw SysCallError("posix_spawn \(path)", errno: r) }
        return pid
    }

    /// Kills and reaps a child started with `plainSpawn`.
    static func killAndReap(_ pid: pid_t) {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && cevsys_errno() == EINTR {}
    }

    /// The descriptors open in process `pid`, with their /proc link targets.
    static func descriptors(of pid: pid_t) -> [Int32: String] {
        var out: [Int32: String] = [:]
        guard let dir = opendir("/proc/\(pid)/fd") else { return out }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = direntName(entry)
            guard let n = Int32(name) else { continue }
            var buffer = [CChar](repeating: 0, count: 512)
            let len = readlink("/proc/\(pid)/fd/\(n)", &buffer, buffer.count - 1)
            guard len > 0 else { continue }
            out[n] = String(decoding: buffer[0..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return out
    }

    /// How many threads this process has. Only meaningful where no other test runs
    /// (other tests' threads come and go): call it inside `ProcessIsolation.run`.
    static func threadCount() -> Int {
        ProcessIsolation.expectInChild("Pitfall.threadCount()")
        guard let dir = opendir("/proc/self/task") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            if !direntName(entry).hasPrefix(".") { n += 1 }
        }
        return n
    }

    /// Runs `body` with RLIMIT_NOFILE's soft limit lowered to the lowest free descriptor
    /// number, so that no new descriptor can be created (EMFILE) until it returns; the
    /// limit is restored afterwards whatever happens. `anyOpenFd` is used to find that
    /// number. The limit is process-wide (every other test's socket(2), epoll_create1 and
    /// io_uring_setup would fail with EMFILE meanwhile), so this runs only inside
    /// `ProcessIsolation.run`, in a child process where no other test runs.
    /// Nothing inside `body` may need a new descriptor (not even /proc/self/fd listings).
    static func withDescriptorTableFull(anyOpenFd: Int32, _ body: () throws -> Void) throws {
        guard ProcessIsolation.expectInChild("Pitfall.withDescriptorTableFull") else { return }
        var saved = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) == 0 else { throw SysCallError("getrlimit") }
        let lowest = fcntl(anyOpenFd, F_DUPFD_CLOEXEC, 0)
        guard lowest >= 0 else { throw SysCallError("F_DUPFD_CLOEXEC") }
        close(lowest)
        var lowered = saved
        lowered.rlim_cur = rlim_t(lowest)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lowered) == 0 else { throw SysCallError("setrlimit") }
        defer { _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &saved) }
        try body()
    }
}
