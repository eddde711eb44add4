#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// Keeps several accepts armed on a listening socket and hands every accepted connection to
/// the server: what ev-echo-tcp and ev-http share about accepting.
///
/// `acceptsInFlight` completions (64 by default), each rearmed for every connection (the
/// watcher sets its callback once). Why several: the loop reports a rearmed operation on the
/// next tick, so one accept admits one connection per tick, and the last of a burst (wrk
/// opens 500 connections at once) waited hundreds of ticks, each serving every connection
/// admitted before it; with several, all are tried when the listener becomes readable
/// (`serveConnections` does the same for the async servers). A
/// client that gave up between its SYN and the accept (`.connectionAborted`) is skipped.
/// A persistent error such as EMFILE or ENFILE (out of descriptors) leaves the connection in
/// the backlog, so accepting again at once would spin the loop at 100 % CPU (PITFALLS E8):
/// the error is reported once and the accepts it stopped are retried after 100 ms. After `stop`, a connection
/// accepted in the same tick is closed at once. A TCP connection is handed over with
/// TCP_NODELAY set: the examples' small replies go out at once (with Nagle's algorithm a
/// second small segment would wait for the client's delayed ACK, up to 40 ms).
public final class ConnectionAcceptor<Socket: ConnectionSocket> {
    private let program: String
    private let loop: LoopCore
    private let listener: Socket
    private let accepts: [Completion]
    /// Accepts stopped by a persistent error, re-added when `backoff` fires.
    private var parked: [Completion] = []
    private let backoff = Completion()
    private var stopped = false

    public init(program: String, loop: LoopCore, listener: Socket,
                acceptsInFlight: Int = Socket.defaultAcceptsInFlight) {
        precondition(acceptsInFlight >= 1, "ConnectionAcceptor needs at least one accept in flight")
        self.program = program
        self.loop = loop
        self.listener = listener
        accepts = (0..<acceptsInFlight).map { _ in Completion() }
    }

    /// Starts accepting; `connected` gets each new connection (its to own and close).
    public func start(_ connected: @escaping (Socket) -> Void) throws(EvError) {
        for accept in accepts {
            try listener.accept(loop: loop, completion: accept) { [unowned self] c, result in
                self.accepted(result, c, connected)
            }
        }
    }

    /// Stops accepting (the pending accepts and any backoff are cancelled).
    public func stop() {
        guard !stopped else { return }
        stopped = true
        for accept in accepts where accept.state == .active { try? loop.cancel(accept, using: Completion()) }
        parked.removeAll()
        if backoff.state == .active { try? LoopTimer.cancel(loop: loop, completion: backoff, using: Completion()) }
    }

    private func accepted(_ result: Result<Socket, EvError>, _ accept: Completion, _ connected: (Socket) -> Void) -> CallbackAction {
        switch result {
        case .success(let socket):
            if stopped {
                close(socket.fd)
                return .disarm
            }
            if let tcp = socket as? TCPSocket { try? tcp.setNoDelay(true) }
            connected(socket)
            return .rearm
        case .failure(.canceled):
            return .disarm
        case .failure(.connectionAborted):
            return .rearm
        case .failure(let error):
            if stopped { return .disarm }
            parked.append(accept)
            // The other accepts meet the same error in the same moment: one report, one timer.
            guard backoff.state == .dead else { return .disarm }
            Report.warn("\(program): accept: \(error); retrying in 100 ms")
            do {
                try LoopTimer.start(loop: loop, completion: backoff, after: .milliseconds(100)) { [unowned self] _, result in
                    let retry = self.parked
                    self.parked.removeAll()
                    if case .success = result, !self.stopped {
                        for accept in retry {
                            do { try self.loop.add(accept) } catch { fatalError("\(self.program): accept: \(error)") }
                        }
                    }
                    return .disarm
                }
            } catch {
                fatalError("\(program): timer: \(error)")
            }
            return .disarm
        }
    }
}
