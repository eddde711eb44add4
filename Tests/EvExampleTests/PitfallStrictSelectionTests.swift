#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// PITFALLS C9 (and C2): forcing a backend is strict. With io_uring_setup denied by a
/// seccomp filter (as Docker's default profile does), `EV_BACKEND=io_uring` makes
/// selection fail with the reason, instead of falling back to epoll behind the user's
/// back; without the variable the same process falls back and says why. The filter can
/// only be installed in a child process, so this drives ev-backend-probe.
/// See docs/PITFALLS.md.
@Suite("Pitfall: strict backend selection")
struct PitfallStrictSelectionTests {
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

    @Test(arguments: ["EPERM", "ENOSYS"])
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
