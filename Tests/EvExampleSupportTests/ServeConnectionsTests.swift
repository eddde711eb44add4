#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Testing
import Synchronization
import Ev
import EvExampleSupport

/// How many connections the serve closure has been handed, and whether the server's task
/// has returned.
private final class Admitted: Sendable {
    let count = Atomic<Int>(0)
    let serverReturned = Atomic<Bool>(false)
}

/// `serveConnections` admits a burst of waiting connections several per loop tick: the
/// fairness property behind the async HTTP server's tail latency at 500 connections (with
/// one accept in flight, the last of a burst waits one tick per connection before it).
@Suite("EvExampleSupport: serveConnections")
struct ServeConnectionsTests {
    static let clients = 48
    static let acceptsInFlight = 8

    /// 48 clients connected before the loop runs are all handed to `serve` within 16 loop
    /// ticks with 8 accepts in flight (6 rounds of 8, plus start-up and the ticks whose
    /// zero-timeout wait a readiness backend skips); one accept in flight needs 48 or more.
    @Test(arguments: Backend.allCases)
    func burstIsAdmittedSeveralPerTick(backend: Backend) throws {
        let loop: LoopCore
        do {
            loop = try makeLoop(backend)
        } catch {
            let message = "EVLOOP TEST SKIPPED on \(backend): \(error)\n"
            _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            try Test.cancel(Comment(rawValue: message))
        }
        let executor = try LoopExecutor(loop)
        let listener = try TCPSocket(for: SocketAddress(ipv4: "127.0.0.1", port: 0), loop: loop)
        try listener.bind(to: SocketAddress(ipv4: "127.0.0.1", port: 0))
        try listener.listen(backlog: 128)
        let address = try listener.localAddress()

        // Blocking connects on loopback: each returns with its connection in the backlog.
        var clientFDs: [Int32] = []
        defer { for fd in clientFDs { close(fd) } }
        for _ in 0..<Self.clients {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(fd >= 0)
            clientFDs.append(fd)
            let r = address.withSockAddr { connect(fd, $0, $1) }
            try #require(r == 0, "connect: errno \(errno)")
        }

        let admitted = Admitted()
        let server = Task(executorPreference: executor) {
            await listener.serveConnections(program: "test", on: executor, acceptsInFlight: Self.acceptsInFlight) { connection in
                admitted.count.add(1, ordering: .relaxed)
                try? await connection.close(on: executor)
            }
            try? await listener.close(on: executor)
            admitted.serverReturned.store(true, ordering: .relaxed)
        }
        var ticks = 0
        while admitted.count.load(ordering: .relaxed) < Self.clients && ticks < 1000 {
            try loop.run(.noWait)
            ticks += 1
        }
        let count = admitted.count.load(ordering: .relaxed)
        #expect(count == Self.clients)
        #expect(ticks <= 16, "\(Self.clients) waiting connections took \(ticks) loop ticks to be admitted")

        // Cancelling the server's task stops every acceptor; the listener is closed after.
        server.cancel()
        var rounds = 0
        while !admitted.serverReturned.load(ordering: .relaxed) && rounds < 1000 {
            try loop.run(.once)
            rounds += 1
        }
        let returned = admitted.serverReturned.load(ordering: .relaxed)
        #expect(returned, "the server's task returned once cancelled")
        executor.shutdown()
        try loop.run(.untilDone)
        #expect(loop.activeCount == 0)
    }
}
