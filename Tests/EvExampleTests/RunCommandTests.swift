#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// End-to-end tests of ev-run (a command's stdout and stderr through child stdio pipes and
/// the loop), on every backend.
@Suite("Example programs: ev-run end to end")
struct RunCommandTests {
    /// The child's lines arrive labelled by stream, a last line without a newline is not
    /// lost, the summary counts both streams, and ev-run exits with the child's code.
    @Test("ev-run relays stdout and stderr line by line and exits with the child's code", arguments: exampleBackends)
    func relaysLinesAndExitCode(backend: Backend) throws {
        try requireBackend(backend)
        let script = "echo one; echo two >&2; echo three; printf partial; exit 3"
        let (t, child) = try runToCompletion(try Examples.path(Examples.run),
                                             ["--backend", backend.rawValue, "--", "/bin/sh", "-c", script],
                                             timeout: .seconds(20))
        #expect(t == .exited(3), "\(child.transcript)")
        let lines = child.stdoutText.split(separator: "\n").map(String.init)
        #expect(lines.first == "ev-run: backend \(backend) (requested with --backend)", "\(child.transcript)")
        #expect(lines.filter { $0.hasPrefix("out: ") } == ["out: one", "out: three", "out: partial"], "\(child.transcript)")
        #expect(lines.filter { $0.hasPrefix("err: ") } == ["err: two"], "\(child.transcript)")
        #expect(lines.contains("stdout: 17 bytes, 3 lines") && lines.contains("stderr: 4 bytes, 1 line"), "\(child.transcript)")
        #expect(lines.last == "exit: exited with code 3", "\(child.transcript)")
    }

    /// With --count, a megabyte through each pipe (many reads, and more than a pipe holds)
    /// is counted exactly (one line each: output without a newline is a last, unterminated
    /// line); a command ended by a signal makes ev-run exit with 128 + N.
    @Test("ev-run --count counts a megabyte per stream; a signal is 128 + N", arguments: exampleBackends)
    func countsBytesAndReportsSignals(backend: Backend) throws {
        try requireBackend(backend)
        let path = try Examples.path(Examples.run)
        let script = "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"
        let (t, child) = try runToCompletion(path, ["--count", "--backend", backend.rawValue, "sh", "-c", script],
                                             timeout: .seconds(30))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.contains("stdout: 1048576 bytes, 1 line\n"), "\(child.transcript)")
        #expect(child.stdoutText.contains("stderr: 1048576 bytes, 1 line\n"), "\(child.transcript)")
        #expect(!child.stdoutText.contains("\nout: ") && !child.stdoutText.contains("\nerr: "), "--count prints no lines")

        let (t2, killed) = try runToCompletion(path, ["--backend", backend.rawValue, "sh", "-c", "kill -TERM $$"],
                                               timeout: .seconds(20))
        #expect(t2 == .exited(128 + SIGTERM), "\(killed.transcript)")
        #expect(killed.stdoutText.contains("exit: terminated by signal \(SIGTERM)"), "\(killed.transcript)")
    }

    /// A command that does not exist is a runtime failure (exit 1, the reason on stderr);
    /// no command at all is a usage error (exit 2).
    @Test("ev-run reports a missing program (exit 1) and a missing command (exit 2)")
    func missingProgramAndCommand() throws {
        let path = try Examples.path(Examples.run)
        let (t, child) = try runToCompletion(path, ["/nonexistent/evloop-no-such-program"], timeout: .seconds(20))
        #expect(t == .exited(1), "\(child.transcript)")
        #expect(child.stderrText.contains("cannot run /nonexistent/evloop-no-such-program: no such file or directory"),
                "\(child.transcript)")
        let (t2, none) = try runToCompletion(path, [], timeout: .seconds(20))
        #expect(t2 == .exited(2), "\(none.transcript)")
        #expect(none.stderrText.contains("missing COMMAND"), "\(none.transcript)")
    }
}
