#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// How many bytes the large-transfer test pushes through ev-echo-tcp per backend:
/// 100 MiB unless EV_EXAMPLES_TRANSFER_MIB says otherwise.
let largeTransferBytes: Int = {
    if let v = getenv("EV_EXAMPLES_TRANSFER_MIB").map({ String(cString: $0) }), let mib = Int(v), mib > 0 {
        return mib << 20
    }
    return 100 << 20
}()

/// End-to-end tests of the echo servers and the load client, run on every backend.
/// Serialized: each spawns servers and clients that want both cores, and running them at
/// once would only make every time bound less meaningful.
@Suite("Example programs: echo servers end to end", .serialized)
struct EchoServerTests {
    @Test("ev-echo-tcp echoes a large file byte-exact through socat, then exits 0 on SIGTERM with its summary",
          .timeLimit(.minutes(3)), arguments: exampleBackends)
    func tcpLargeTransfer(backend: Backend) throws {
        try requireBackend(backend)
        let socat = try requireTool("socat")
        let dir = try TemporaryDirectory()
        let input = dir.file("in.bin")
        let output = dir.file("out.bin")
        try writeRandomFile(input, count: largeTransferBytes, seed: 0xEC40 &+ UInt64(largeTransferBytes))

        let server = try RunningServer(Examples.tcpServer, ["--backend", backend.rawValue, "--port", "0"])
        #expect(server.process.stdoutText.contains("ev-echo-tcp: backend \(backend)"), "\(server.process.transcript)")

        let started = ContinuousClock.now
        // -t/-T: after sending everything socat waits for the echo to end (the server
        // closes once it has echoed all), and gives up only after 90 s without traffic.
        let (t, child) = try runToCompletion(
            socat, ["-b", "131072", "-t", "90", "-T", "90", "-", "TCP:127.0.0.1:\(server.port)"],
            stdinPath: input, stdoutPath: output, timeout: .seconds(150))
        let elapsed = ContinuousClock.now - started
        printToStderr("ev-echo-tcp on \(backend): \(largeTransferBytes >> 20) MiB echoed in \(elapsed)")
        #expect(t == .exited(0), "socat \(t)\n\(child.transcript)")
        #expect(fileSize(output) == largeTransferBytes)
        #expect(try sha256(output) == sha256(input))

        let end = server.stop(SIGTERM)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(server.process.stdoutText.contains("received SIGTERM"), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == 1, "\(server.process.transcript)")
        #expect(server.summaryValue("bytes echoed") == largeTransferBytes, "\(server.process.transcript)")
    }

    @Test("1,000 concurrent ev-echo-client connections against a 2-thread ev-echo-tcp",
          .timeLimit(.minutes(2)), arguments: exampleBackends)
    func thousandClients(backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(Examples.tcpServer, ["--backend", backend.rawValue, "--threads", "2"])
        let (t, client) = try runToCompletion(
            try Examples.path(Examples.client),
            ["--backend", backend.rawValue, "--port", "\(server.port)", "--connections", "1000",
             "--duration", "2", "--size", "128"],
            timeout: .seconds(60))
        #expect(t == .exited(0), "ev-echo-client \(t)\n\(client.transcript)\n\(server.process.transcript)")
        let out = client.stdoutText
        #expect(out.contains("connected: 1000 of 1000"), "\(client.transcript)")
        #expect((summaryNumber("roundtrips", in: out) ?? 0) >= 1000, "every connection completes at least one roundtrip\n\(client.transcript)")
        #expect(summaryNumber("mismatches", in: out) == 0)
        #expect(summaryNumber("errors", in: out) == 0)
        #expect(out.contains("latency: p50 "), "\(client.transcript)")

        let end = server.stop(SIGTERM)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == 1000, "\(server.process.transcript)")
        #expect(server.summaryValue("connections ended by an error") == 0, "\(server.process.transcript)")
        // SO_REUSEPORT hashes the 1,000 connections (distinct source ports) over both
        // threads' sockets; every thread must have served some.
        let perThread = server.process.stdoutText.split(separator: "\n").filter { $0.hasPrefix("  thread ") }
        #expect(perThread.count == 2, "\(server.process.transcript)")
        for line in perThread {
            let served = Int(line.split(separator: " ").dropFirst(2).first ?? "") ?? 0
            #expect(served > 0, "a thread served no connection: \(line)")
        }
    }

    @Test("ev-echo-udp sends socat's datagrams back unchanged, then exits 0 on SIGINT",
          .timeLimit(.minutes(1)), arguments: exampleBackends)
    func udpDatagrams(backend: Backend) throws {
        try requireBackend(backend)
        let socat = try requireTool("socat")
        let dir = try TemporaryDirectory()
        let server = try RunningServer(Examples.udpServer, ["--backend", backend.rawValue, "--threads", "2"])
        #expect(server.process.stdoutText.contains("ev-echo-udp: backend \(backend)"), "\(server.process.transcript)")

        // One socat per datagram (socat turns each read of its stdin into one datagram);
        // they run at once. -t 1: after its datagram, wait up to 1 s for the echo.
        let sizes = [1, 100, 1_400, 9_000, 65_000]
        var runs: [(size: Int, input: String, output: String, child: ChildProcess)] = []
        for (i, size) in sizes.enumerated() {
            let input = dir.file("dgram\(i).in")
            let output = dir.file("dgram\(i).out")
            try writeRandomFile(input, count: size, seed: UInt64(1000 + i))
            let child = try ChildProcess(socat, ["-b", "65536", "-t", "1", "-T", "10", "-",
                                                 "UDP4:127.0.0.1:\(server.port)"],
                                         stdinPath: input, stdoutPath: output)
            runs.append((size, input, output, child))
        }
        for run in runs {
            let t = run.child.finish(timeout: .seconds(20))
            #expect(t == .exited(0), "socat (\(run.size) bytes) \(t)\n\(run.child.transcript)")
            #expect(fileSize(run.output) == run.size, "datagram of \(run.size) bytes came back with \(fileSize(run.output))")
            #expect(try sha256(run.output) == sha256(run.input), "datagram of \(run.size) bytes changed")
        }

        let end = server.stop(SIGINT)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(server.process.stdoutText.contains("received SIGINT"), "\(server.process.transcript)")
        #expect(server.summaryValue("datagrams echoed") == sizes.count, "\(server.process.transcript)")
        #expect(server.summaryValue("bytes echoed") == sizes.reduce(0, +), "\(server.process.transcript)")
    }

    @Test("a client that never reads is throttled, and resets mid-stream disturb no one else",
          .timeLimit(.minutes(1)), arguments: exampleBackends)
    func backpressureAndResets(backend: Backend) throws {
        try requireBackend(backend)
        // One thread: every connection shares one loop, so a stalled or resetting client
        // would visibly hold up the others if the server let it.
        let server = try RunningServer(Examples.tcpServer, ["--backend", backend.rawValue, "--threads", "1"])
        let steady = try RawTCPClient(port: server.port)
        #expect(try steady.roundtrip(randomBytes(1 << 20, seed: 1)), "echo before the flood")

        // The flooder sends without reading. With a bounded server it stalls once its own
        // send buffer, the server's receive buffer, the server's bounded ring, the server's
        // send buffer and its own receive buffer are full: some MiB. An unbounded server
        // would soak up all 256 MiB.
        let flooder = try RawTCPClient(port: server.port)
        let flooded = flooder.flood(limit: 256 << 20, stall: .milliseconds(500))
        printToStderr("ev-echo-tcp on \(backend): a client that never reads got \(flooded >> 10) KiB in before stalling")
        #expect(flooded < 64 << 20, "the server kept reading from a client that never reads (\(flooded) bytes)")
        #expect(try steady.roundtrip(randomBytes(300_000, seed: 2)), "echo while another client is stalled")

        // Reset the stalled client (queued data and all), and another one mid-message.
        flooder.reset()
        let resetter = try RawTCPClient(port: server.port)
        try resetter.send(randomBytes(200_000, seed: 3))
        resetter.reset()
        #expect(try steady.roundtrip(randomBytes(100_000, seed: 4)), "echo after two resets")

        // An idle connection at shutdown is closed by the server (we see EOF).
        let idle = try RawTCPClient(port: server.port)
        #expect(try idle.roundtrip([1, 2, 3]))
        let end = server.stop(SIGTERM)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(idle.seesEndOfFile(), "the server must close open connections when it stops")
        #expect(server.summaryValue("connections served") == 4, "\(server.process.transcript)")
        #expect(server.summaryValue("connections open at shutdown") == 2, "\(server.process.transcript)")
        // The flooder and the resetter, each counted once however many of its operations failed.
        #expect(server.summaryValue("connections ended by an error") == 2, "\(server.process.transcript)")
    }

    @Test("EV_BACKEND=poll is honoured by ev-echo-tcp, which then still echoes")
    func environmentSelectsPoll() throws {
        try requireBackend(.poll)
        let server = try RunningServer(Examples.tcpServer, [], environment: ["EV_BACKEND": "poll"])
        #expect(server.process.stdoutText.contains("ev-echo-tcp: backend poll (forced by EV_BACKEND)"),
                "\(server.process.transcript)")
        #expect(server.process.stdoutText.contains("(backend poll,"), "\(server.process.transcript)")
        let c = try RawTCPClient(port: server.port)
        #expect(try c.roundtrip(randomBytes(10_000, seed: 5)))
        c.shutdownWrite()
        #expect(c.seesEndOfFile(), "after the client shuts down its side, the server finishes and closes")
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("bytes echoed") == 10_000, "\(server.process.transcript)")
    }

    @Test("server and client work over IPv6 loopback (::1)")
    func ipv6Loopback() throws {
        // Some containers have no IPv6 loopback; that is the machine, not the program.
        let probe = socket(AF_INET6, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in6()
        addr.sin6_family = sa_family_t(AF_INET6)
        addr.sin6_addr = in6addr_loopback
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        close(probe)
        if probe < 0 || bound != 0 {
            let message = "EVLOOP TEST SKIPPED: no IPv6 loopback (::1) on this machine"
            printToStderr(message)
            try Test.cancel(Comment(rawValue: message))
        }
        let server = try RunningServer(Examples.tcpServer, ["--host", "::1"])
        #expect(server.host == "[::1]", "\(server.process.transcript)")
        let (t, client) = try runToCompletion(
            try Examples.path(Examples.client),
            ["--host", "::1", "--port", "\(server.port)", "--connections", "4", "--duration", "0.5", "--size", "4096"],
            timeout: .seconds(30))
        #expect(t == .exited(0), "\(client.transcript)")
        #expect(server.stop(SIGTERM) == .exited(0), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == 4, "\(server.process.transcript)")
    }

    @Test("ev-echo-client exits non-zero when nothing listens")
    func clientReportsRefusedConnections() throws {
        // Find a port with nothing on it: bind, read the port, close.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, len)
                _ = getsockname(fd, $0, &len)
            }
        }
        let port = UInt16(bigEndian: addr.sin_port)
        close(fd)
        let (t, client) = try runToCompletion(
            try Examples.path(Examples.client),
            ["--port", "\(port)", "--connections", "3", "--duration", "0.2"], timeout: .seconds(30))
        #expect(t == .exited(1), "\(client.transcript)")
        #expect(client.stderrText.contains("connection refused"), "\(client.transcript)")
    }
}
