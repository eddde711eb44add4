#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// One echoed TCP connection: a ring buffer, a `WriteQueue` with a few reusable
/// `WriteRequest`s, and completions for receiving and closing, all allocated when the
/// connection is accepted and reused for every byte it echoes (no allocation per echo in
/// steady state).
///
/// Receiving and sending overlap: each receive fills the ring's free space, and what it
/// got is queued at once as a write of that region; the queue sends regions in order,
/// resuming partial writes, while the next receive is already waiting. So a large transfer
/// streams instead of alternating read, write, read.
///
/// Backpressure: once `highWater` bytes wait to be sent (the client is not reading its
/// echo), the connection stops receiving; the kernel's receive buffer then fills and TCP
/// flow control slows the client. Receiving resumes when the backlog is down to `lowWater`.
/// A client that sends without ever reading therefore costs the server one ring, never
/// unbounded memory. Any error on the connection (a reset mid-stream, a broken pipe)
/// closes only this connection.
final class EchoConnection<Socket: ConnectionSocket>: GracefullyEndingConnection {
    typealias Limits = EchoLimits

    let socket: Socket
    unowned let server: EchoServer<Socket>
    /// Position in the server's connection list (for O(1) removal).
    var slot = -1

    private let ring: UnsafeMutableRawBufferPointer
    /// Index of the first byte received but not yet sent.
    private var head = 0
    /// Bytes received but not yet sent.
    private var queued = 0

    private let queue: WriteQueue
    private var freeRequests: [WriteRequest] = []
    private let receiveCompletion = Completion()
    private let closer = ConnectionClose(program: "ev-echo-tcp")
    private var receiving = false
    private var closing: Bool { closer.isClosing }
    /// Receiving stopped for backpressure (backlog at `highWater`, or no free request).
    private var paused = false
    /// The client shut down its side: finish sending, then close.
    private var peerFinished = false
    /// Server shutdown: our FIN is out, and what the client still sends is read and
    /// dropped until it closes or `Limits.linger` passes (see `finishGracefully`).
    private var lingering = false
    private let lingerTimer = Completion()
    private let lingerCancel = Completion()
    private let receiveCancel = Completion()
    /// Where the lingering reads drop what they get (the ring may still be in use by
    /// writes that are failing); allocated at shutdown only.
    private var drain: UnsafeMutableRawBufferPointer?

    init(socket: Socket, server: EchoServer<Socket>) {
        self.socket = socket
        self.server = server
        ring = .allocate(byteCount: Limits.capacity, alignment: 64)
        queue = WriteQueue(fd: socket.fd)
        if let idle = server.idleTimeout { receiveCompletion.deadline = .within(idle) }
        freeRequests.reserveCapacity(Limits.requests)
        for _ in 0..<Limits.requests {
            freeRequests.append(WriteRequest { [unowned self] request, result in
                self.sent(request, result)
                return .disarm
            })
        }
    }

    deinit {
        ring.deallocate()
        drain?.deallocate()
    }

    /// Starts echoing: the first receive goes through the TCP watcher, which sets the
    /// completion's callback once; every later receive rearms the same completion.
    func start() {
        guard let region = freeRegion() else { return }
        receiving = true
        do {
            try socket.read(loop: server.loop, completion: receiveCompletion, buffer: region) { [unowned self] _, result in
                self.received(result)
            }
        } catch {
            receiving = false
            fail(error)
        }
    }

    /// Closes the connection now. The close cancels the pending receive and write first;
    /// their callbacks still run, once each, before the connection goes.
    func abort() {
        beginClose()
    }

    /// Ends the connection at server shutdown without a reset: stop echoing, send our FIN
    /// (shutdown SHUT_WR) so the client reads an orderly end of stream, then read and drop
    /// what it still sends until it closes its side, goes quiet for `Limits.lingerQuiet`
    /// (a deadline on each drop read), or `Limits.linger` passes, and close. Data arriving
    /// after the close would be answered with a reset too, hence the wait for quiet.
    /// Closing at once would reset every client whose data we had not read yet: TCP answers
    /// a close with unread input with RST, which the client then sees before our FIN
    /// (issue 16: 200 of 200 busy clients reset on epoll, 57 of 200 on io_uring).
    func finishGracefully() {
        guard !closing, !lingering else { return }
        lingering = true
        peerFinished = true
        // Non-blocking; ENOTCONN (the client is gone) leaves nothing to be graceful about.
        guard shutdown(socket.fd, Int32(SHUT_WR)) == 0 else { beginClose(); return }
        do {
            try server.loop.timer(lingerTimer, after: Limits.linger) { [unowned self] _, result in
                if case .timer(.success) = result { self.beginClose() } else { self.finishIfIdle() }
                return .disarm
            }
        } catch {
            beginClose()
            return
        }
        if receiving {
            // The armed receive may wait for a long time (an idle client): cancel it, and its
            // callback starts the drop reads (data that won the race is dropped too).
            try? server.loop.cancel(receiveCompletion, using: receiveCancel)
        } else {
            startDraining()
        }
    }

    /// One lingering read into the drop buffer.
    private func startDraining() {
        let buffer = drain ?? .allocate(byteCount: 64 * 1024, alignment: 16)
        drain = buffer
        receiveCompletion.operation = .recv(socket: socket.fd, buffer: buffer)
        receiveCompletion.deadline = .within(Limits.lingerQuiet)
        receiving = true
        server.submit(receiveCompletion)
    }

    // MARK: Receiving

    /// The ring's largest contiguous free region, if receiving is allowed now; otherwise
    /// nil, with `paused` set when the reason is backpressure.
    private func freeRegion() -> UnsafeMutableRawBufferPointer? {
        guard !closing, !peerFinished, !receiving else { return nil }
        if queued == 0 && queue.isEmpty { head = 0 }   // empty ring: start over for the longest run
        let tail = (head + queued) % Limits.capacity
        let free: Int
        if queued == Limits.capacity {
            free = 0
        } else if tail >= head {
            free = Limits.capacity - tail     // up to the end of the ring; the next receive wraps
        } else {
            free = head - tail              // the gap before the unsent bytes
        }
        guard queued < Limits.highWater, free > 0, !freeRequests.isEmpty else {
            paused = true
            return nil
        }
        paused = false
        return UnsafeMutableRawBufferPointer(rebasing: ring[tail..<(tail + free)])
    }

    private func received(_ result: Result<Int, EvError>) -> CallbackAction {
        receiving = false
        if closing {
            finishIfIdle()
            return .disarm
        }
        if lingering {
            // Shutting down: drop what arrives; the client's end of stream, an error, or quiet
            // for `Limits.lingerQuiet` (.timedOut) ends the linger.
            switch result {
            case .success, .failure(.canceled):
                startDraining()
            default:
                beginClose()
            }
            return .disarm
        }
        switch result {
        case .success(let n):
            let start = (head + queued) % Limits.capacity
            queued += n
            let request = freeRequests.removeLast()
            request.buffer = UnsafeRawBufferPointer(rebasing: ring[start..<(start + n)])
            do {
                try queue.enqueue(loop: server.loop, request)
            } catch {
                freeRequests.append(request)
                fail(error)
                return .disarm
            }
            // Receive again into the next free region: same completion, same callback,
            // only the buffer changes (no allocation).
            guard let region = freeRegion() else { return .disarm }
            receiveCompletion.operation = .recv(socket: socket.fd, buffer: region)
            receiving = true
            return .rearm
        case .failure(.endOfFile):
            // The client shut down its sending side: echo what is left, then close.
            peerFinished = true
            if queued == 0 && queue.isEmpty { beginClose() }
            return .disarm
        case .failure(.timedOut):
            // Nothing received for the idle timeout (the deadline restarts with each
            // receive): close, after the echo of what came before is out.
            server.stats.closedIdle += 1
            peerFinished = true
            if queued == 0 && queue.isEmpty { beginClose() }
            return .disarm
        case .failure(let error):
            fail(error)
            return .disarm
        }
    }

    // MARK: Sending

    /// A write request's callback: its region of the ring has been sent (requests finish
    /// in the order they were queued, so the region starts at `head`).
    private func sent(_ request: WriteRequest, _ result: Result<Int, EvError>) {
        freeRequests.append(request)
        switch result {
        case .success(let n):
            head = (head + n) % Limits.capacity
            queued -= n
            server.stats.bytesEchoed += UInt64(n)
            if closing || lingering { return }
            if paused && queued <= Limits.lowWater, let region = freeRegion() {
                receiveCompletion.operation = .recv(socket: socket.fd, buffer: region)
                receiving = true
                server.submit(receiveCompletion)
            }
            if peerFinished && queued == 0 && queue.isEmpty { beginClose() }
        case .failure(let error):
            if closing {
                finishIfIdle()
            } else if !lingering {
                fail(error)
            }
            // Lingering: a write failing after our own SHUT_WR (EPIPE) is expected.
        }
    }

    // MARK: Closing

    private func fail(_ error: EvError) {
        closer.note(error)
        server.stats.connectionsFailed += 1
        beginClose()
    }

    private func beginClose() {
        guard !closing else { return }
        if lingerTimer.state == .active { try? server.loop.cancel(lingerTimer, using: lingerCancel) }
        closer.close(socket, loop: server.loop) { [unowned self] in self.finishIfIdle() }
    }

    /// Once the close and everything it cancelled have called back, the connection leaves
    /// the server (and its memory is freed).
    private func finishIfIdle() {
        // (The linger timer's cancel may still be in flight: it touches nothing of ours.)
        if closing && !receiving && !closer.isCloseInFlight && queue.isEmpty && lingerTimer.state == .dead {
            server.remove(self)
        }
    }
}

/// The per-connection limits of `EchoConnection` (a generic class cannot hold static
/// stored properties).
enum EchoLimits {
    /// Bytes in each connection's ring.
    static let capacity = 64 * 1024
    /// Stop receiving when this many bytes wait to be sent...
    static let highWater = 48 * 1024
    /// ...and start again once the backlog has drained to this.
    static let lowWater = 16 * 1024
    /// Write requests per connection: one per receive not yet fully sent. When all are in
    /// the queue, receiving pauses like it does at `highWater`.
    static let requests = 8
    /// How long a connection reads and drops its client's data at server shutdown before it
    /// closes anyway (`EchoConnection.finishGracefully`).
    static let linger: Duration = .seconds(5)
    /// ...or once nothing has arrived from the client for this long.
    static let lingerQuiet: Duration = .milliseconds(200)

}
