#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

/// One loop, one listening socket, and the HTTP connections it accepted: everything one
/// server thread owns (with `--threads N`, one per loop of a `LoopGroup`, each with its own
/// SO_REUSEPORT socket, sharing nothing while serving).
final class HTTPServer: LoopServer {
    let loop: LoopCore
    let listener: TCPSocket
    private let acceptor: ConnectionAcceptor<TCPSocket>
    private let connections = ConnectionList<HTTPConnection>()
    /// At shutdown: connections still not ended after `HTTPLimits.shutdownGrace` are closed.
    private let shutdown = ServerShutdown<HTTPConnection>(grace: HTTPLimits.shutdownGrace)

    var stats = HTTPStatistics()

    /// How long a connection may send nothing (or take nothing of a write) before it is
    /// closed; nil: forever. A deadline on each read and each write.
    let idleTimeout: Duration?

    init(loop: LoopCore, listener: TCPSocket, idleTimeout: Duration?) {
        self.loop = loop
        self.listener = listener
        self.idleTimeout = idleTimeout
        acceptor = ConnectionAcceptor(program: "ev-http", loop: loop, listener: listener)
    }

    func start() throws(EvError) {
        try acceptor.start { [unowned self] socket in self.accepted(socket) }
    }

    private func accepted(_ socket: TCPSocket) {
        stats.connectionsServed += 1
        let connection: HTTPConnection
        do {
            connection = try HTTPConnection(socket: socket, server: self)
        } catch {
            note("connection set-up: \(error)")
            close(socket.fd)
            return
        }
        connections.add(connection)
        connection.start()
    }

    /// Stops accepting and ends every connection gracefully; those still open after
    /// `HTTPLimits.shutdownGrace` (a client that reads nothing) are closed.
    func stop() {
        if let open = shutdown.begin(connections, loop: loop, stopAccepting: acceptor.stop) {
            stats.openAtShutdown = UInt64(open)
        }
    }

    /// Called by a connection once it is closed and idle.
    func remove(_ connection: HTTPConnection) {
        connections.remove(connection)
        shutdown.connectionLeft(connections, loop: loop)
    }

    func note(_ message: String) {
        Report.warn("ev-http: \(message)")
    }
}
