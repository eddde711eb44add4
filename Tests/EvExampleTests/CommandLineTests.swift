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
    static let programs = [Examples.tcpServer, Examples.udpServer, Examples.client, Examples.probe, Examples.run, Examples.http, Examples.httpAsync]

    @Test("--help prints usage and every option, and exits 0", arguments: programs)
    func help(program: String) throws {
        let (t, child) = try runToCompletion(try Examples.path(program), ["--help"], timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.hasPrefix("USAGE: \(program) "), "\(child.transcript)")
        #expect(child.stdoutText.contains("--help"))
        if program != Examples.probe {
            #expect(child.stdoutText.contains("--backend"))
        }
        if program != Examples.probe && program != Examples.run {
            #expect(child.stdoutText.contains("--port"))
        }
        if program == Examples.run {
            #expect(child.stdoutText.contains("[--] COMMAND [ARGUMENT...]") && child.stdoutText.contains("--count"))
        }
        if program == Examples.tcpServer || program == Examples.http || program == Examples.httpAsync {
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
        }
        if program != Examples.probe && program != Examples.run {
            let (t3, c3) = try runToCompletion(path, ["--port=70000"], timeout: .seconds(20))
            #expect(t3 == .exited(2), "\(c3.transcript)")
            #expect(c3.stderrText.contains("70000"), "\(c3.transcript)")
        }
    }

    @Test("with io_uring_setup denied by seccomp, detection selects epoll and names the errno", .tags(.pitfallC2, .pitfallC4, .pitfallK2),
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

    @Test("the probe reports EV_BACKEND=poll as a forced choice", .tags(.pitfallC8))
    func probeHonoursEnvironment() throws {
        try requireBackend(.poll)
        let (t, child) = try runToCompletion(try Examples.path(Examples.probe), [],
                                             environment: ["EV_BACKEND": "poll"], timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.contains("selected: poll\n"), "\(child.transcript)")
        #expect(child.stdoutText.contains("forced by EV_BACKEND"), "\(child.transcript)")
    }

    // MARK: - Strict backend selection (pitfalls C9, C2, C3)

    // Forcing a backend is strict. With io_uring_setup denied by a seccomp filter (as
    // Docker's default profile does), `EV_BACKEND=io_uring` makes selection fail with the
    // reason, instead of falling back to epoll behind the user's back; without the variable
    // the same process falls back and says why. The filter can only be installed in a child
    // process, so this drives ev-backend-probe.

    /// The first line of a /proc/sys file, or nil when it cannot be read.
    static func sysctl(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buffer, buffer.count)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    }

    @Test(.tags(.pitfallC2, .pitfallC3, .pitfallC9), arguments: ["EPERM", "ENOSYS"])
    func forcedIoUringThatCannotStartIsAnErrorNotAFallback(errnoName: String) throws {
        let probe = try Examples.path(Examples.probe)
        let (t, child) = try runToCompletion(probe, ["--deny-io-uring", errnoName],
                                             environment: ["EV_BACKEND": "io_uring"], timeout: .seconds(20))
        #expect(t == .exited(1), "\(child.transcript)")
        let out = child.stdoutText
        #expect(out.contains("selected: none\n"), "\(child.transcript)")
        #expect(!out.contains("selected: epoll"), "a forced backend fell back:\n\(child.transcript)")
        let failure = out.split(separator: "\n").first { $0.hasPrefix("selection failed: ") } ?? ""
        #expect(failure.contains("forced io_uring unavailable"), "\(child.transcript)")
        let strerrorText = String(cString: strerror(errnoName == "EPERM" ? EPERM : ENOSYS))
        #expect(failure.contains(errnoName) || failure.contains(strerrorText),
                "the failure must name the errno (\(errnoName) or '\(strerrorText)'):\n\(child.transcript)")
        // PITFALLS C3: an EPERM names the kernel.io_uring_disabled setting when it is readable,
        // so a sysctl can be told from a sandbox.
        if errnoName == "EPERM" {
            if let value = Self.sysctl("/proc/sys/kernel/io_uring_disabled") {
                let setting = "kernel.io_uring_disabled=\(value)"
                #expect(failure.contains(setting), "the failure must name \(setting):\n\(child.transcript)")
            } else {
                #expect(failure.contains("io_uring_disabled"), "\(child.transcript)")
            }
        }
        // The other backends are still reported as available to a program that asks for them.
        #expect(out.contains("available: epoll\n"), "\(child.transcript)")
    }
}
