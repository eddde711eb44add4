#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Ev

/// End-to-end tests of ev-echo-tcp-async (the echo server written with async/await on the
/// loop's executor), on every backend. Serialized like the other server tests: each spawns
/// a server and clients that want both cores.
@Suite("Example programs: ev-echo-tcp-async end to end", .serialized)
struct AsyncEchoServerTests {
    static let program = "ev-echo-tcp-async"

    @Test("--help prints usage with --host, --port, --backend and exits 0; a bad option is a usage error")
    func commandLine() throws {
        let path = try Examples.path(Self.program)
        let (t, child) = try runToCompletion(path, ["--help"], timeout: .seconds(20))
        #expect(t == .exited(0), "\(child.transcript)")
        #expect(child.stdoutText.hasPrefix("USAGE: \(Self.program) "), "\(child.transcript)")
        for option in ["--host", "--port", "--backend", "--help"] {
            #expect(child.stdoutText.contains(option), "\(option) missing\n\(child.transcript)")
        }
        let (bad, badChild) = try runToCompletion(path, ["--port", "70000"], timeout: .seconds(20))
        #expect(bad == .exited(2), "\(badChild.transcript)")
    }

    @Test("200 ev-echo-client connections are echoed byte-exact; SIGINT exits 0 with the summary",
          .timeLimit(.minutes(2)), arguments: exampleBackends)
    func clients(backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(Self.program, ["--backend", backend.rawValue])
        #expect(server.process.stdoutText.contains("\(Self.program): backend \(backend)"), "\(server.process.transcript)")
        let (t, client) = try runToCompletion(
            try Examples.path(Examples.client),
            ["--backend", backend.rawValue, "--port", "\(server.port)", "--connections", "200",
             "--duration", "1", "--size", "2048"],
            timeout: .seconds(60))
        #expect(t == .exited(0), "ev-echo-client \(t)\n\(client.transcript)\n\(server.process.transcript)")
        #expect(summaryNumber("mismatches", in: client.stdoutText) == 0, "\(client.transcript)")
        #expect(summaryNumber("errors", in: client.stdoutText) == 0, "\(client.transcript)")

        let end = server.stop(SIGINT)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(server.process.stdoutText.contains("received SIGINT"), "\(server.process.transcript)")
        #expect(server.summaryValue("connections served") == 200, "\(server.process.transcript)")
        #expect(server.summaryValue("connections ended by an error") == 0, "\(server.process.transcript)")
        #expect((server.summaryValue("bytes echoed") ?? 0) > 0, "\(server.process.transcript)")
    }

    @Test("SIGTERM drains the server: open connections are closed (the peer sees end of file) and counted",
          .timeLimit(.minutes(1)), arguments: exampleBackends)
    func shutdownClosesOpenConnections(backend: Backend) throws {
        try requireBackend(backend)
        let server = try RunningServer(Self.program, ["--backend", backend.rawValue, "--host", "127.0.0.1"])
        let a = try RawTCPClient(port: server.port)
        let b = try RawTCPClient(port: server.port)
        #expect(try a.roundtrip(Array("hello".utf8)))
        #expect(try b.roundtrip(randomBytes(100_000, seed: 8)))
        let end = server.stop(SIGTERM)
        #expect(end == .exited(0), "\(server.process.transcript)")
        #expect(a.seesEndOfFile(), "the server closed the connection on shutdown")
        #expect(b.seesEndOfFile(), "the server closed the connection on shutdown")
        #expect(server.summaryValue("connections open at shutdown") == 2, "\(server.process.transcript)")
        #expect(server.summaryValue("bytes echoed") == 100_005, "\(server.process.transcript)")
    }
}
