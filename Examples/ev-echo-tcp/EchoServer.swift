#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// What one server thread did, reported when it ends.
struct EchoStats: Sendable {
    var connectionsServed: UInt64 = 0
    var connectionsFailed: UInt64 = 0
    var bytesEchoed: UInt64 = 0
    var openAtShutdown: Int = 0

    static func + (a: EchoStats, b: EchoStats) -> EchoStats {
        EchoStats(connectionsServed: a.connectionsServed + b.connectionsServed,
                  connectionsFailed: a.connectionsFailed + b.connectionsFailed,
                  bytesEchoed: a.bytesEchoed + b.bytesEchoed,
                  openAtShutdown: a.openAtShutdown + b.openAtShutdown)
    }
}

/// One loop, one listening socket, and the connections it accepted: everything one server
/// thread owns. With `--threads N` there are N of these, each on its own thread with its
/// own SO_REUSEPORT socket, so the threads share nothing while serving.
final class EchoServer {
    let loop: LoopCore
    let listener: Int32
    private let accept = Completion()
    private let backoff = Completion()
    private let stopListener: StopListener
    private var connections: [EchoConnection] = []
    private var stopping = false

    var connectionsServed: UInt64 = 0
    var connectionsFailed: UInt64 = 0
    var bytesEchoed: UInt64 = 0
    private var openAtShutdown = 0

    init(loop: LoopCore, listener: Int32, stop: StopListener) {
        self.loop = loop
        self.listener = listener
        self.stopListener = stop
        accept.operation = .accept(socket: listener)
        accept.callback = { [unowned self] _, result in self.accepted(result) }
        backoff.callback = { [unowned self] _, _ in
            if !self.stopping { self.submit(self.accept) }
            return .disarm
        }
    }

    /// Serves until asked to stop, then closes every connection and returns what it did.
    func serve() -> EchoStats {
        submit(accept)
        stopListener.start { [unowned self] in self.stop() }
        do {
            try loop.run(.untilDone)
        } catch {
            Report.fail("ev-echo-tcp", "loop failed: \(error)")
        }
        return EchoStats(connectionsServed: connectionsServed, connectionsFailed: connectionsFailed,
                         bytesEchoed: bytesEchoed, openAtShutdown: openAtShutdown)
    }

    private func accepted(_ result: CompletionResult) -> CallbackAction {
        switch result {
        case .accept(.success(let fd)):
            if stopping {
                close(fd)
                return .disarm
            }
            // Small echoes go out at once: with Nagle's algorithm a second small segment
            // would wait for the client's delayed ACK (up to 40 ms).
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            connectionsServed += 1
            let connection = EchoConnection(fd: fd, server: self)
            connection.slot = connections.count
            connections.append(connection)
            connection.start()
            return .rearm
        case .accept(.failure(.canceled)):
            return .disarm
        case .accept(.failure(.connectionAborted)):
            // The client gave up between its SYN and our accept; nothing to serve.
            return .rearm
        case .accept(.failure(let error)):
            if stopping { return .disarm }
            // EMFILE/ENFILE (out of descriptors) and other persistent errors: the pending
            // connection stays in the backlog, so accepting again at once would spin the
            // loop at 100 % CPU (PITFALLS E8). Report it and try again in 100 ms.
            note("accept: \(error); retrying in 100 ms")
            backoff.operation = .timer(deadline: loop.now + .milliseconds(100))
            submit(backoff)
            return .disarm
        default:
            return .disarm
        }
    }

    /// Stops accepting and closes every connection; `serve` returns once their callbacks
    /// have all run.
    func stop() {
        guard !stopping else { return }
        stopping = true
        openAtShutdown = connections.count
        if accept.state == .active { try? loop.cancel(accept, using: Completion()) }
        if backoff.state == .active { try? loop.cancel(backoff, using: Completion()) }
        stopListener.cancel()
        for c in connections { c.abort() }
    }

    /// Called by a connection once it is closed and idle.
    func remove(_ connection: EchoConnection) {
        let i = connection.slot
        guard i >= 0, i < connections.count, connections[i] === connection else { return }
        let last = connections.removeLast()
        if i < connections.count {
            connections[i] = last
            last.slot = i
        }
        connection.slot = -1
    }

    func note(_ message: String) {
        Report.warn("ev-echo-tcp: \(message)")
    }

    func submit(_ c: Completion) {
        do {
            try loop.add(c)
        } catch {
            fatalError("ev-echo-tcp: add failed: \(error)")
        }
    }
}
