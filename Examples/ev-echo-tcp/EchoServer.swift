#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// One loop, one listening socket, and the connections it accepted: everything one server
/// thread owns. With `--threads N` there are N of these, one per loop of a `LoopGroup`
/// (`ServerThreads`), each with its own SO_REUSEPORT socket, so the threads share nothing
/// while serving.
final class EchoServer<Socket: ConnectionSocket>: LoopServer {
    let loop: LoopCore
    let listener: Socket
    private let acceptor: ConnectionAcceptor<Socket>
    private let connections = ConnectionList<EchoConnection<Socket>>()
    /// No grace period: each connection's linger timer bounds its own ending.
    private let shutdown = ServerShutdown<EchoConnection<Socket>>(grace: nil)

    /// What this thread did; the connections update it too.
    var stats = TCPEchoStatistics()

    /// How long a connection may send nothing before it is closed (nil: forever). A
    /// deadline on each receive (`Completion.deadline = .within`), restarted by every one.
    let idleTimeout: Duration?

    init(loop: LoopCore, listener: Socket, idleTimeout: Duration?) {
        self.loop = loop
        self.listener = listener
        self.idleTimeout = idleTimeout
        acceptor = ConnectionAcceptor(program: "ev-echo-tcp", loop: loop, listener: listener)
    }

    /// Starts accepting; the loop group runs the loop until the server is stopped.
    func start() throws(EvError) {
        try acceptor.start { [unowned self] socket in
            self.stats.connectionsServed += 1
            let connection = EchoConnection(socket: socket, server: self)
            self.connections.add(connection)
            connection.start()
        }
    }

    /// Stops accepting and closes every connection (the group's stop handler, on the loop
    /// thread); the loop finishes once their callbacks have all run.
    func stop() {
        if let open = shutdown.begin(connections, loop: loop, stopAccepting: acceptor.stop) {
            stats.openAtShutdown = UInt64(open)
        }
    }

    /// Called by a connection once it is closed and idle.
    func remove(_ connection: EchoConnection<Socket>) {
        connections.remove(connection)
        shutdown.connectionLeft(connections, loop: loop)
    }

    func submit(_ c: Completion) {
        do {
            try loop.add(c)
        } catch {
            fatalError("ev-echo-tcp: add failed: \(error)")
        }
    }
}
