#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// The parts of the examples that need no network: help text, option errors, and the
/// backend probe (whose seccomp filter is what proves that detection falls back).
@Suite("Example programs: command line and backend probe")
struct CommandLineTests {
    static let programs = [Examples.tcpServer, Examples.udpServer, Examples.client, Examples.probe]

    @Test("--help prints usage and every option, and exits 0", arguments: programs)
    func help(program: String) throws {
        let (t, child) = try runToCompletion(try Examples.path(program), ["--help"], timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.hasPrefix("USAGE: \(program) "), "\(child.transcript)")
        #expect(child.stdoutText.contains("--help"))
        if program != Examples.probe {
            #expect(child.stdoutText.contains("--backend"))
            #expect(child.stdoutText.contains("--port"))
        }
        if program == Examples.tcpServer {
            #expect(child.stdoutText.contains("--threads"))
            #expect(child.stdoutText.contains("--backlog"))
        }
        if program == Examples.client {
            for option in ["--connections", "--size", "--duration"] {
                #expect(child.stdoutText.contains(option))
            }
        }
    }

    @Test("an unknown option or a bad value is a usage error (exit 2, message on stderr)", arguments: programs)
    func usageErrors(program: String) throws {
        let path = try Examples.path(program)
        let (t1, c1) = try runToCompletion(path, ["--no-such-option"], timeout: .seconds(20))
        #expect(t1 == .exited(2), "\(c1.transcript)")
        #expect(c1.stderrText.contains("unknown option '--no-such-option'"), "\(c1.transcript)")
        #expect(c1.stdoutText.isEmpty)
        if program != Examples.probe {
            let (t2, c2) = try runToCompletion(path, ["--backend", "kqueue"], timeout: .seconds(20))
            #expect(t2 == .exited(2), "\(c2.transcript)")
            #expect(c2.stderrText.contains("kqueue"), "\(c2.transcript)")
            let (t3, c3) = try runToCompletion(path, ["--port=70000"], timeout: .seconds(20))
            #expect(t3 == .exited(2), "\(c3.transcript)")
            #expect(c3.stderrText.contains("70000"), "\(c3.transcript)")
        }
    }

    @Test("with io_uring_setup denied by seccomp, detection selects epoll and names the errno",
          arguments: ["EPERM", "ENOSYS"])
    func probeFallsBackToEpoll(errnoName: String) throws {
        let (t, child) = try runToCompletion(try Examples.path(Examples.probe), ["--deny-io-uring", errnoName],
                                             timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        let out = child.stdoutText
        #expect(out.contains("seccomp: io_uring_setup now fails with \(errnoName)"), "\(child.transcript)")
        #expect(out.contains("selected: epoll\n"), "\(child.transcript)")
        // The selection explains the skip, with the errno the backend saw: both the errno
        // recorded in BackendUnavailable and the human-readable reason.
        let skipped = out.split(separator: "\n").first { $0.hasPrefix("skipped io_uring") }
        #expect(skipped?.contains("[\(errnoName)]") == true, "io_uring skip must name \(errnoName):\n\(child.transcript)")
        let selection = out.split(separator: "\n").first { $0.hasPrefix("selection: ") } ?? ""
        let strerrorText = String(cString: strerror(errnoName == "EPERM" ? EPERM : ENOSYS))
        #expect(selection.contains("skipped io_uring"), "\(child.transcript)")
        #expect(selection.contains(errnoName) || selection.contains(strerrorText),
                "the selection's reason must name the errno (\(errnoName) or '\(strerrorText)'):\n\(child.transcript)")
        #expect(out.contains("unavailable: io_uring"), "\(child.transcript)")
        #expect(out.contains("available: epoll\n"), "\(child.transcript)")
    }

    @Test("the probe reports EV_BACKEND=poll as a forced choice")
    func probeHonoursEnvironment() throws {
        try requireBackend(.poll)
        let (t, child) = try runToCompletion(try Examples.path(Examples.probe), [],
                                             environment: ["EV_BACKEND": "poll"], timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.contains("selected: poll\n"), "\(child.transcript)")
        #expect(child.stdoutText.contains("forced by EV_BACKEND"), "\(child.transcript)")
    }
}
