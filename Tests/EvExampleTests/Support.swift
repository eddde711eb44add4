#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// Where the example executables are: next to this test bundle, which SwiftPM builds into
/// the same directory (`<scratch>/<triple>/debug`). `EV_EXAMPLES_BIN` overrides it, e.g. to
/// test a release build.
enum Examples {
    static let directory: String = {
        if let dir = getenv("EV_EXAMPLES_BIN").map({ String(cString: $0) }), !dir.isEmpty { return dir }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return "." }
        let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // On Linux the test bundle is an executable file, "<dir>/EvLoopPackageTests.xctest";
        // if it is a directory bundle instead, step out of it as well.
        var parts = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        while let last = parts.last, last.hasSuffix(".xctest") || last == "Contents" || last == "MacOS" {
            parts = parts.dropLast()
        }
        return parts.joined(separator: "/")
    }()

    /// The path of `program`; the test fails (not skips) if it was not built, because a
    /// missing example is a build problem, not a property of the machine.
    static func path(_ program: String) throws -> String {
        let p = directory + "/" + program
        guard access(p, X_OK) == 0 else {
            Issue.record("\(program) not found in \(directory): build the examples first (swift build --product \(program)) or set EV_EXAMPLES_BIN")
            throw ExampleTestError("missing executable \(p)")
        }
        return p
    }

    static let tcpServer = "ev-echo-tcp"
    static let udpServer = "ev-echo-udp"
    static let client = "ev-echo-client"
    static let probe = "ev-backend-probe"
    static let run = "ev-run"
    static let http = "ev-http"
    static let httpAsync = "ev-http-async"
}

struct ExampleTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The backends the end-to-end tests run on: all, unless EV_TEST_BACKENDS narrows them
/// (the same variable the conformance suite reads).
let exampleBackends: [Backend] = {
    guard let list = getenv("EV_TEST_BACKENDS").map({ String(cString: $0) }), !list.isEmpty else {
        return Backend.allCases
    }
    return list.split(separator: ",").compactMap { Backend(name: String($0)) }
}()

/// Cancels the current test, loudly, when `backend` cannot run on this machine: the test
/// is then reported as skipped, and stderr carries a line scripts/test.sh counts, so an
/// unavailable backend can never look like a pass.
func requireBackend(_ backend: Backend) throws {
    do {
        _ = try makeLoop(backend)
    } catch {
        let message = "EVLOOP TEST SKIPPED on \(backend): \(error)"
        printToStderr(message)
        try Test.cancel(Comment(rawValue: message))
    }
}

/// Writes a line to stderr with write(2) (Swift 6 rejects the C global `stderr`).
func printToStderr(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Cancels the current test, loudly, when a command-line tool it drives is not installed
/// (scripts/setup.sh installs socat and netcat-openbsd).
func requireTool(_ tool: String) throws -> String {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] where access(dir + "/" + tool, X_OK) == 0 {
        return dir + "/" + tool
    }
    let message = "EVLOOP TEST SKIPPED: \(tool) is not installed (run scripts/setup.sh)"
    printToStderr(message)
    try Test.cancel(Comment(rawValue: message))
}

/// A private temporary directory, removed with everything in it when the value goes away.
final class TemporaryDirectory {
    let path: String

    init() throws {
        // In TMPDIR when it is set (else the system's temporary directory).
        let dir = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array(((dir.hasSuffix("/") ? dir : dir + "/") + "evloop-examples-XXXXXX").utf8CString)
        guard let p = mkdtemp(&template) else { throw ExampleTestError("mkdtemp failed: errno \(errno)") }
        path = String(cString: p)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                // Through a pointer: an entry is allocated only as long as its name, so
                // copying the whole `d_name` tuple would read past it.
                let offset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
                let name = String(cString: (UnsafeRawPointer(entry) + offset).assumingMemoryBound(to: CChar.self))
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// Writes `count` pseudo-random bytes to `path` (xorshift64*: fast, and deterministic for a
/// given seed so a failure can be reproduced).
func writeRandomFile(_ path: String, count: Int, seed: UInt64) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw ExampleTestError("open \(path): errno \(errno)") }
    defer { close(fd) }
    var state = seed | 1
    let chunkWords = 1 << 16
    let chunk = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: chunkWords)
    defer { chunk.deallocate() }
    var left = count
    while left > 0 {
        for i in 0..<chunkWords {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            chunk[i] = state &* 0x2545_F491_4F6C_DD1D
        }
        let bytes = min(left, chunkWords * 8)
        var off = 0
        while off < bytes {
            let n = write(fd, UnsafeRawPointer(chunk.baseAddress!) + off, bytes - off)
            if n < 0 && errno == EINTR { continue }   // a signal before any byte was written
            guard n > 0 else { throw ExampleTestError("write \(path): errno \(errno)") }
            off += n
        }
        left -= bytes
    }
}

/// The size of a file, or -1.
func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : -1
}

/// The SHA-256 of a file, computed by coreutils' sha256sum (hashing 100 MiB in a debug
/// build of Swift would take longer than the transfer).
func sha256(_ path: String) throws -> String {
    let (t, child) = try runToCompletion("/usr/bin/sha256sum", [path], timeout: .seconds(60))
    guard t == .exited(0), let hash = child.stdoutText.split(separator: " ").first else {
        throw ExampleTestError("sha256sum \(path): \(t)\n\(child.transcript)")
    }
    return String(hash)
}

/// A running example server: spawned, its `listening on HOST:PORT` line read.
final class RunningServer {
    let process: ChildProcess
    let port: UInt16
    let host: String

    /// Starts `program` with `arguments` and waits (up to 20 s) for its `listening on` line.
    init(_ program: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process = try ChildProcess(try Examples.path(program), arguments, environment: environment)
        guard let line = process.waitForLine(containing: "listening on ", timeout: .seconds(20)) else {
            process.send(SIGKILL)
            let t = process.finish(timeout: .seconds(5))
            throw ExampleTestError("\(program) never printed 'listening on' (\(t))\n\(process.transcript)")
        }
        // "listening on unix:PATH" (--unix): no port; `host` is the socket's address.
        if let unix = line.split(separator: " ").first(where: { $0.hasPrefix("unix:") }) {
            port = 0
            host = String(unix)
            return
        }
        // "listening on 127.0.0.1:PORT" or "listening on [::1]:PORT", possibly followed by more.
        let address = line.split(separator: " ").first(where: { $0.contains(":") && $0.last?.isNumber == true }) ?? ""
        guard let colon = address.lastIndex(of: ":"), let p = UInt16(address[address.index(after: colon)...]), p != 0 else {
            throw ExampleTestError("cannot read the port from '\(line)'")
        }
        port = p
        host = String(address[..<colon])
    }

    /// Sends `signal` and waits for a clean exit; returns the termination.
    func stop(_ signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) -> Termination {
        process.send(signal)
        return process.finish(timeout: timeout)
    }

    /// A number from a `name: VALUE` summary line, if the server printed one.
    func summaryValue(_ name: String) -> Int? {
        summaryNumber(name, in: process.stdoutText)
    }
}

/// Reads the number of a `name: NUMBER` line of program output.
func summaryNumber(_ name: String, in text: String) -> Int? {
    let key = name + ": "
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        let digits = line.dropFirst(key.count).prefix { $0.isNumber }
        if let v = Int(digits) { return v }
    }
    return nil
}
