// Tests that depend on process-wide state run in a child process of their own.
//
// Plain `swift test` runs the tests of every suite in parallel in one process, and
// `.serialized` only orders the tests *within* one suite: the other suites keep running
// beside it. So a test that lowers RLIMIT_NOFILE (every other test's socket(2),
// epoll_create1 and io_uring_setup then fail with EMFILE), or that compares the whole
// descriptor table or the process's thread count before and after (every other test's
// descriptors and threads come and go meanwhile), cannot share the process with them.
//
// `ProcessIsolation.run` re-runs the calling test case in a child: the test binary itself
// (/proc/self/exe, which is the EvLoopPackageTests.xctest bundle that `swift test` runs),
// started with `--testing-library swift-testing --filter` selecting exactly that test, so
// nothing else runs in the child. The child runs the body and prints a marker; the parent
// passes only if the child exited with status 0 *and* printed the marker (a filter that
// matched nothing runs no test: Swift Testing 6.3 then exits 69, EX_UNAVAILABLE, and older
// versions 0, so the marker is what proves the body ran), fails with the child's failure
// lines otherwise, and reports a skip when the child skipped (a backend unavailable on
// this machine). The child is spawned with cevsys_spawn, the library's own
// posix_spawn wrapper: every descriptor above stderr closed (so the child holds no end of
// another test's socket, which would hide an EOF that test waits for) and signals reset.
import Testing
import CEvSys
#if canImport(Glibc)
import Glibc
#endif

enum ProcessIsolation {
    /// Set in the child to the key of the one test case it runs (see `run`).
    static let variable = "EVLOOP_ISOLATED_TEST"
    /// What the child prints when the body returned without throwing.
    static let marker = "EVLOOP ISOLATED TEST RAN: "

    /// Runs `body` in a child process that runs nothing else (see the top of this file).
    ///
    /// - Parameters:
    ///   - suite: the suite type (`Self.self`); with `function` it names the test for the
    ///     child's `--filter` (`Module.Suite/function(labels:)`).
    ///   - argument: the test case's argument, for a parameterized test (`"\(backend)"`):
    ///     the child runs the whole parameterized test, and only the case whose argument
    ///     matches runs the body; the others return at once.
    ///   - timeout: the child is killed, and the test fails, if it runs longer.
    static func run(
        _ suite: Any.Type, _ function: String = #function, argument: String = "",
        timeout: Duration = .seconds(300),
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) throws {
        let id = "\(String(reflecting: suite))/\(function)"
        let key = argument.isEmpty ? id : "\(id) [\(argument)]"
        if let inChild = getenv(variable).map({ String(cString: $0) }) {
            // In the child. Never spawn again from here: a filter that selected a test it
            // was not meant to would otherwise start children of children.
            if inChild == key {
                try body()
                say(1, "\(marker)\(key)\n")
            } else if !inChild.hasPrefix(id + " [") {
                Issue.record("the isolated child for \(inChild) ran \(key) as well: the filter is too wide",
                             sourceLocation: sourceLocation)
            }
            return
        }
        let outcome = try spawnSelf(filter: "^" + escapeRegex(id), environment: [variable: key, "NO_COLOR": "1"],
                                    timeout: timeout)
        let lines = outcome.output.split(separator: "\n").map(String.init)
        // Pass on what the test itself printed ("[backend] ..." summaries) and its skips.
        for line in lines where line.hasPrefix("[") { print(line) }
        let skips = lines.filter { $0.contains("EVLOOP TEST SKIPPED") }
        if !skips.isEmpty {
            for s in skips { say(2, s + "\n") }   // scripts/test.sh counts these on stderr
            try Test.cancel(Comment(rawValue: skips.joined(separator: "; ")), sourceLocation: sourceLocation)
        }
        let ran = lines.contains(marker + key)
        guard outcome.status == .exited(0), ran else {
            // Swift Testing's failure lines start with ✘ (and name the issue's location).
            let failures = lines.filter { $0.hasPrefix("\u{2718}") }
            let tail = lines.suffix(30).joined(separator: "\n")
            Issue.record("""
                isolated child for \(key): \(outcome.status)\(ran ? "" : ", and the body did not run to the end")
                \(failures.isEmpty ? "(no failure lines)" : failures.joined(separator: "\n"))
                ---- last lines of the child's output ----
                \(tail)
                """, sourceLocation: sourceLocation)
            return
        }
    }

    /// Whether this process is an isolated child. Helpers that read or change
    /// process-wide state call this, so a test that uses them outside `run` fails at once
    /// with the reason instead of failing (or passing) at random under parallel `swift test`.
    @discardableResult
    static func expectInChild(_ what: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if getenv(variable) != nil { return true }
        Issue.record("\(what) reads or changes process-wide state: use it only inside ProcessIsolation.run",
                     sourceLocation: sourceLocation)
        return false
    }

    enum Status: Equatable, CustomStringConvertible {
        case exited(Int32), signaled(Int32), timedOut
        var description: String {
            switch self {
            case .exited(let c): return "exited with status \(c)"
            case .signaled(let s): return "killed by signal \(s)"
            case .timedOut: return "did not finish in time (killed with SIGKILL)"
            }
        }
    }

    /// Starts this test binary with a Swift Testing filter and the environment plus
    /// `environment`, stdout and stderr both into an unlinked temporary file (a file, not a
    /// pipe, so a chatty child can never block on a full pipe while the parent waits), and
    /// waits for it with a deadline.
    private static func spawnSelf(filter: String, environment: [String: String],
                                  timeout: Duration) throws -> (status: Status, output: String) {
        var exe = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &exe, exe.count - 1)
        guard n > 0 else { throw SysCallError("readlink /proc/self/exe") }
        let path = String(decoding: exe[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let output = try makeTempFile()   // close-on-exec; dup2 makes it the child's 1 and 2
        defer { close(output) }

        var env: [String] = []
        var e = environ
        while let entry = e.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "="), environment[String(s[..<eq])] == nil { env.append(s) }
            e += 1
        }
        env += environment.map { "\($0.key)=\($0.value)" }
        let args = [path, "--testing-library", "swift-testing", "--filter", filter]
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: Int32 = 0
        let stdio: [Int32] = [Int32(CEVSYS_STDIO_NULL), output, output]
        let r = cevsys_spawn(&pid, path, argv, envp, nil, stdio, 0)
        guard r == 0 else { throw SysCallError("spawning \(path)", errno: r) }

        var status: Int32 = 0
        var result: Status?
        let deadline = ContinuousClock.now + timeout
        while result == nil {
            let w = waitpid(pid, &status, WNOHANG)
            if w == pid {
                // WIFEXITED / WEXITSTATUS / WTERMSIG on Linux (macros, not importable).
                result = status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
            } else if w < 0 && cevsys_errno() != EINTR {
                throw SysCallError("waitpid \(pid)")
            } else if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && cevsys_errno() == EINTR {}   // EINTR: wait again
                result = .timedOut
            } else {
                usleep(5_000)
            }
        }
        return (result!, String(decoding: fileContent(output), as: UTF8.self))
    }

    /// `s` as a regular expression that matches exactly `s`.
    private static func escapeRegex(_ s: String) -> String {
        var out = ""
        for ch in s {
            if "\\^$.|?*+()[]{}".contains(ch) { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    /// write(2) to descriptor 1 or 2 (Swift 6 rejects the C globals stdout and stderr, and
    /// print's buffer could be lost if the child is killed).
    private static func say(_ fd: Int32, _ message: String) {
        _ = Array(message.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}
