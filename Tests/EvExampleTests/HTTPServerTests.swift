#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// What ev-http (and ev-http-async) answers to `GET /` on a keep-alive HTTP/1.1 connection.
private let hello = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"

private func get(_ target: String, _ extra: String = "") -> String {
    "GET \(target) HTTP/1.1\r\nHost: test\r\n\(extra)\r\n"
}

extension RawTCPClient {
    /// Receives until the server closes the connection (or `limit` bytes came).
    func receiveUntilClosed(limit: Int = 1 << 22) -> [UInt8] { receiveUntilEnd(limit: limit).bytes }

    /// Receives until the connection ends (or `limit` bytes came); `clean`: it ended with
    /// the server's FIN (recv returned 0), not with a reset or another error.
    func receiveUntilEnd(limit: Int = 1 << 22) -> (bytes: [UInt8], clean: Bool) {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { return (out, true) }
            guard n > 0 else { break }
            out += buffer[0..<n]
        }
        return (out, false)
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Sends `request` over and over without ever reading (a continuous stream: a short
    /// send goes on where it stopped), until nothing has been accepted for `stall` or
    /// `limit` bytes are out; returns the bytes sent.
    func floodRequests(_ request: [UInt8], limit: Int, stall: Duration) -> Int {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let copies = (256 * 1024) / request.count
        let chunk = Array([[UInt8]](repeating: request, count: copies).joined())
        var total = 0
        var offset = 0   // into `chunk`, a whole number of requests
        let stallMs = Int32(stall.components.seconds * 1000 + stall.components.attoseconds / 1_000_000_000_000_000)
        while total < limit {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                total += n
                offset = (offset + n) % chunk.count
                continue
            }
            if n < 0 && errno == EINTR { continue }
            guard n < 0 && errno == EAGAIN else { break }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, stallMs) == 0 { break }
        }
        return total
    }

    func receiveText(_ count: Int) throws -> String { String(decoding: try receive(count), as: UTF8.self) }
}

/// The resident memory of a process in KiB (VmRSS), or nil.
private func residentKiB(_ pid: pid_t) -> Int? {
    guard let f = fopen("/proc/\(pid)/status", "r") else { return nil }
    defer { fclose(f) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), f) != nil {
        let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if s.hasPrefix("VmRSS:") { return Int(s.dropFirst(6).filter { $0.isNumber }) }
    }
    return nil
}

/// The two HTTP servers: the callback one and the async one, which must behave alike (the
/// same responses, limits, timeouts and summary), so every test runs against both.
private let httpServers = [Examples.http, Examples.httpAsync]

/// End-to-end tests of ev-http and ev-http-async, on every backend. Serialized like the echo
/// servers' tests.
@Suite("Example programs: ev-http and ev-http-async end to end", .serialized)
struct HTTPServerTests {
    @Test("curl fetches / and /bytes/N over one keep-alive connection; SIGTERM exits 0 with the summary",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func curlKeepAlive(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let curl = try requireTool("curl")
        let dir = try TemporaryDirectory()
        let server = try RunningServer(program, ["--backend", backend.rawValue, "--port", "0"])
        #expect(server.process.stdoutText.contains("\(program): backend \(backend)"), "\(server.process.transcript)")
        let base = "http://127.0.0.1:\(server.port)"
        // Two URLs in one curl: the second reuses the first's connection.
        let (t, child) = try runToCompletion(
            curl, ["-sS", "--http1.1", "-o", dir.file("hello"), base + "/", "-o", dir.file("bytes"), base + "/bytes/100000",
                   "-w", "%{http_code} %{num_connects}\n"],
            timeout: .seconds(30))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText == "200 1\n200 0\n", "\(child.transcript)")
        let helloFile = try RawFile.read(dir.file("hello"))
        #expect(String(decoding: helloFile, as: UTF8.self) == "Hello, World!")
        let bytes = try RawFile.read(dir.file("bytes"))
        #expect(bytes.count == 100_000 && bytes.allSatisfy { $0 == UInt8(ascii: "x") })

        let (t404, c404) = try runToCompletion(curl, ["-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/missing"], timeout: .seconds(30))
        #expect(t404 == .exited(0) && c404.stdoutText == "404", "\(c404.transcript)")
        let (tHead, cHead) = try runToCompletion(curl, ["-sS", "-I", base + "/bytes/10"], timeout: .seconds(30))
        #expect(tHead == .exited(0) && cHead.stdoutText.contains("Content-Length: 10"), "\(cHead.transcript)")

        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.process.stdoutText.contains("received SIGTERM"), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == 3, "\(server.process.transcript)")
        #expect(server.summaryValue("requests answered") == 4, "\(server.process.transcript)")
        #expect(server.summaryValue("connections ended by an error") == 0, "\(server.process.transcript)")
    }

    @Test("pipelined requests in one write are answered in order; Connection: close ends the connection",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func pipelining(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(program, ["--backend", backend.rawValue])
        let c = try RawTCPClient(port: server.port)
        // A body (skipped), a HEAD, a small and a large /bytes/N, a 404, then a close.
        let requests = get("/") + "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello" + "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
            + get("/bytes/3") + get("/bytes/20000") + get("/nope") + get("/", "Connection: close\r\n") + get("/")
        try c.send(requests)
        let reply = String(decoding: c.receiveUntilClosed(), as: UTF8.self)
        let expected = hello
            + "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n"
            + "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nxxx"
            + "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 20000\r\n\r\n" + String(repeating: "x", count: 20000)
            + "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n"
            + "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 13\r\n\r\nHello, World!"
        #expect(reply == expected, "got \(reply.utf8.count) bytes, expected \(expected.utf8.count)")

        // A head split over many writes, and HTTP/1.0 without and with keep-alive.
        let split = try RawTCPClient(port: server.port)
        for byte in Array(get("/").utf8) { try split.send([byte]) }
        #expect(try split.receiveText(hello.utf8.count) == hello)
        try split.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let keep = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nContent-Length: 13\r\n\r\nHello, World!"
        #expect(try split.receiveText(keep.utf8.count) == keep)
        try split.send("GET / HTTP/1.0\r\n\r\n")
        #expect(String(decoding: split.receiveUntilClosed(), as: UTF8.self).hasSuffix("Connection: close\r\nContent-Length: 13\r\n\r\nHello, World!"))

        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("requests answered") == 10, "\(server.process.transcript)")
    }

    @Test("a malformed head gets 400, an oversized one 431, a Transfer-Encoding 501, and the connection closes",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func rejectedHeads(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(program, ["--backend", backend.rawValue])
        let cases: [(String, String)] = [
            ("GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n"),
            ("\u{16}\u{03}\u{01}\u{00}\u{a5}\u{01}\u{00}", "HTTP/1.1 400 Bad Request\r\n"),   // TLS to a plain port
            (get("/") + "GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: 9000))\r\n\r\n", hello + "HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            ("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 501 Not Implemented\r\n"),
        ]
        for (request, prefix) in cases {
            let c = try RawTCPClient(port: server.port)
            try c.send(request)
            // The client keeps sending after its bad head: the server still closes cleanly
            // (FIN, not a reset), and the response arrives whole.
            try? c.send(String(repeating: "more garbage ", count: 1000))
            let (bytes, clean) = c.receiveUntilEnd()
            let reply = String(decoding: bytes, as: UTF8.self)
            #expect(reply.hasPrefix(prefix), "\(request.prefix(40).debugDescription) -> \(reply.prefix(200).debugDescription)")
            #expect(clean, "\(request.prefix(40).debugDescription): the connection was reset, not closed (no lingering close)")
            #expect(reply.contains("Connection: close\r\n"), "\(reply.prefix(200).debugDescription)")
        }
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("requests rejected") == cases.count, "\(server.process.transcript)")
        #expect(server.summaryValue("connections ended by an error") == 0, "\(server.process.transcript)")
    }

    @Test("1,000 concurrent keep-alive connections against a 2-thread server, two requests each",
          .timeLimit(.minutes(2)), arguments: httpServers, exampleBackends)
    func thousandConnections(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let count = 1000
        // The connections are this process's descriptors: make sure the limit leaves room
        // (the test does not change the limit: that is process-wide state).
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(UInt32(RLIMIT_NOFILE.rawValue)), &limit)
        if limit.rlim_cur < UInt(count + 500) {
            let message = "EVLOOP TEST SKIPPED: RLIMIT_NOFILE \(limit.rlim_cur) leaves no room for \(count) connections (ulimit -n)"
            printToStderr(message)
            try Test.cancel(Comment(rawValue: message))
        }
        let server = try RunningServer(program, ["--backend", backend.rawValue, "--threads", "2"])
        var clients: [RawTCPClient] = []
        for _ in 0..<count { clients.append(try RawTCPClient(port: server.port)) }
        for round in 0..<2 {
            for c in clients { try c.send(get("/")) }
            // Every connection's reply, read as it comes (poll), so the server's ordering
            // across connections does not matter.
            var got = [[UInt8]](repeating: [], count: count)
            var done = 0
            var fds = clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let deadline = ContinuousClock.now + .seconds(60)
            var buffer = [UInt8](repeating: 0, count: 4096)
            while done < count && ContinuousClock.now < deadline {
                guard poll(&fds, nfds_t(fds.count), 1000) > 0 else { continue }
                for i in 0..<count where fds[i].fd >= 0 && fds[i].revents != 0 {
                    let r = buffer.withUnsafeMutableBytes { recv(fds[i].fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                    if r > 0 { got[i] += buffer[0..<r] }
                    if r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) || got[i].count >= hello.utf8.count {
                        done += 1
                        fds[i].fd = -1   // poll ignores negative descriptors
                    }
                }
            }
            let wrong = got.filter { $0 != Array(hello.utf8) }.count
            #expect(wrong == 0, "round \(round): \(wrong) of \(count) connections got no or a wrong answer")
        }
        for c in clients { c.close() }
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == count, "\(server.process.transcript)")
        #expect(server.summaryValue("requests answered") == 2 * count, "\(server.process.transcript)")
        let perThread = server.process.stdoutText.split(separator: "\n").filter { $0.hasPrefix("  thread ") }
        #expect(perThread.count == 2, "\(server.process.transcript)")
    }

    @Test("a client that pipelines without reading is throttled (bounded server memory); others are still served",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func neverReadingClient(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(program, ["--backend", backend.rawValue])
        let steady = try RawTCPClient(port: server.port)
        try steady.send(get("/"))
        #expect(try steady.receiveText(hello.utf8.count) == hello)
        let before = residentKiB(server.process.pid) ?? 0

        // Requests for 4 KiB each, sent without reading a byte: an unbounded server would
        // buffer 4 KiB of responses per 34 bytes received, some GiB for the 256 MiB sent.
        let flooder = try RawTCPClient(port: server.port)
        let request = Array(get("/bytes/4096").utf8)
        let sent = flooder.floodRequests(request, limit: 256 << 20, stall: .milliseconds(500))
        let after = residentKiB(server.process.pid) ?? 0
        printToStderr("\(program) on \(backend): a client that never reads got \(sent >> 10) KiB of requests in; server RSS \(before) -> \(after) KiB")
        #expect(sent < 16 << 20, "the server kept reading from a client that never reads (\(sent) bytes)")
        #expect(after - before < 32 << 10, "server memory grew by \(after - before) KiB")

        try steady.send(get("/"))
        #expect(try steady.receiveText(hello.utf8.count) == hello, "served while another client is stalled")
        flooder.reset()
        try steady.send(get("/"))
        #expect(try steady.receiveText(hello.utf8.count) == hello, "served after the stalled client reset")
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
    }

    @Test("SIGTERM with a client that never reads: that connection is closed after the grace period and the server exits 0",
          .timeLimit(.minutes(1)), arguments: httpServers)
    func shutdownGraceEndsAStalledClient(program: String) throws {
        let server = try RunningServer(program, [])
        let steady = try RawTCPClient(port: server.port)
        try steady.send(get("/"))
        #expect(try steady.receiveText(hello.utf8.count) == hello)
        // Responses queued that the client never takes: only the grace period ends it.
        let flooder = try RawTCPClient(port: server.port)
        let sent = flooder.floodRequests(Array(get("/bytes/4096").utf8), limit: 64 << 20, stall: .milliseconds(500))
        #expect(sent > 0)
        let started = ContinuousClock.now
        let end = server.stop(SIGTERM)
        let elapsed = ContinuousClock.now - started
        #expect(end == .exited(0), "\(server.process.transcript)")
        // The grace period is 5 s (HTTPLimits.shutdownGrace); without it the server would
        // wait for the stalled client forever (and `stop` would time out).
        #expect(elapsed >= .seconds(4) && elapsed < .seconds(15), "exited after \(elapsed)")
        #expect(server.summaryValue("connections open at shutdown") == 2, "\(server.process.transcript)")
        #expect(steady.seesEndOfFile(), "the idle keep-alive connection ends cleanly")
        flooder.close()
    }

    @Test("SIGTERM while responses are being written: they are finished, whole, before a clean end of stream, well within the grace period",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func shutdownFinishesResponsesInFlight(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(program, ["--backend", backend.rawValue])
        let client = try RawTCPClient(port: server.port)
        // 16 MiB of responses, more than the sockets buffer: the server is in the middle of
        // a write when the signal comes, and the client reads only after it.
        let size = 1 << 20   // the largest /bytes/N (HTTPResponse.maxBytes)
        try client.send(String(repeating: get("/bytes/\(size)"), count: 16))
        usleep(300_000)
        let started = ContinuousClock.now
        server.process.send(SIGTERM)
        usleep(300_000)   // the stop has begun before the client reads anything
        let (bytes, clean) = client.receiveUntilEnd(limit: 32 << 20)
        let end = server.process.finish(timeout: .seconds(20))
        let elapsed = ContinuousClock.now - started
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(clean, "the stream ended with a reset or an error after \(bytes.count) bytes")
        // Whole responses only: a head, then exactly `size` bytes of body, k times.
        let separator = Array("\r\n\r\n".utf8)
        let headLength = (0...(bytes.count - separator.count)).first { Array(bytes[$0..<($0 + separator.count)]) == separator }
            .map { $0 + separator.count } ?? 0
        let response = headLength + size
        #expect(headLength > 0 && bytes.count >= response && bytes.count % response == 0,
                "\(bytes.count) bytes are not whole responses of \(response) bytes: one was cut off")
        #expect(elapsed < .seconds(4), "the server waited for its grace period (\(elapsed)) instead of finishing")
        #expect(server.summaryValue("connections open at shutdown") == 1, "\(server.process.transcript)")
        client.close()
    }

    @Test("the idle timeout closes a connection that sends nothing, and one that stops after a request",
          .timeLimit(.minutes(1)), arguments: httpServers, exampleBackends)
    func idleTimeout(program: String, backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(program, ["--backend", backend.rawValue, "--idle-timeout", "0.5"])
        let silent = try RawTCPClient(port: server.port)
        let started = ContinuousClock.now
        let used = try RawTCPClient(port: server.port)
        try used.send(get("/"))
        #expect(try used.receiveText(hello.utf8.count) == hello)
        #expect(silent.seesEndOfFile(), "the silent connection must be closed")
        #expect(used.seesEndOfFile(), "the connection idle after its request must be closed")
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(400) && elapsed < .seconds(8), "closed after \(elapsed)")
        // Once the clients close too, the server's side is gone (it lingered for their close).
        silent.close()
        used.close()
        usleep(300_000)
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("connections open at shutdown") == 0, "\(server.process.transcript)")
        #expect(server.summaryValue("connections closed idle") == 2, "\(server.process.transcript)")
    }

    @Test("SIGINT closes an idle keep-alive connection cleanly (EOF) and exits 0",
          .timeLimit(.minutes(1)), arguments: httpServers)
    func shutdownClosesKeepAlive(program: String) throws {
        let server = try RunningServer(program, ["--threads", "2"])
        let c = try RawTCPClient(port: server.port)
        try c.send(get("/"))
        #expect(try c.receiveText(hello.utf8.count) == hello)
        #expect(server.stop(SIGINT) == .exited(0), "\(server.process.transcript)")
        #expect(c.seesEndOfFile(), "the server must close open connections when it stops")
        #expect(server.summaryValue("connections open at shutdown") == 1, "\(server.process.transcript)")
    }
}

/// Reading a whole small file (the tests' curl outputs).
enum RawFile {
    static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ExampleTestError("open \(path): errno \(errno)") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            out += buffer[0..<n]
        }
        return out
    }
}
