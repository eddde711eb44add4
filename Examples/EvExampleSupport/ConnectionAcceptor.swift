#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// Keeps one accept armed on a listening socket and hands every accepted connection to the
/// server: what ev-echo-tcp and ev-http share about accepting.
///
/// One completion is rearmed for every connection (the watcher sets its callback once). A
/// client that gave up between its SYN and the accept (`.connectionAborted`) is skipped.
/// A persistent error such as EMFILE or ENFILE (out of descriptors) leaves the connection in
/// the backlog, so accepting again at once would spin the loop at 100 % CPU (PITFALLS E8):
/// the error is reported and the accept retried after 100 ms. After `stop`, a connection
/// accepted in the same tick is closed at once. A TCP connection is handed over with
/// TCP_NODELAY set: the examples' small replies go out at once (with Nagle's algorithm a
/// second small segment would wait for the client's delayed ACK, up to 40 ms).
public final class ConnectionAcceptor<Socket: ConnectionSocket> {
    private let program: String
    private let loop: LoopCore
    private let listener: Socket
    private let accept = Completion()
    private let backoff = Completion()
    private var stopped = false

    public init(program: String, loop: LoopCore, listener: Socket) {
        self.program = program
        self.loop = loop
        self.listener = listener
    }

    /// Starts accepting; `connected` gets each new connection (its to own and close).
    public func start(_ connected: @escaping (Socket) -> Void) throws(EvError) {
        try listener.accept(loop: loop, completion: accept) { [unowned self] _, result in
            self.accepted(result, connected)
        }
    }

    /// Stops accepting (the pending accept and any backoff are cancelled).
    public func stop() {
        guard !stopped else { return }
        stopped = true
        if accept.state == .active { try? loop.cancel(accept, using: Completion()) }
        if backoff.state == .active { try? LoopTimer.cancel(loop: loop, completion: backoff, using: Completion()) }
    }

    private func accepted(_ result: Result<Socket, EvError>, _ connected: (Socket) -> Void) -> CallbackAction {
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
            Report.warn("\(program): accept: \(error); retrying in 100 ms")
            do {
                try LoopTimer.start(loop: loop, completion: backoff, after: .milliseconds(100)) { [unowned self] _, result in
                    if case .success = result, !self.stopped {
                        do { try self.loop.add(self.accept) } catch { fatalError("\(self.program): accept: \(error)") }
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
