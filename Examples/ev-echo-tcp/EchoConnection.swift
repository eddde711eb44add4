#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// One echoed TCP connection: a ring buffer, and one completion each for receiving,
/// sending and closing, all allocated when the connection is accepted and reused for every
/// byte it echoes (no allocation per echo in steady state).
///
/// Receiving and sending overlap: the receive fills the ring's free space while the send
/// drains the bytes already received, so a large transfer streams instead of alternating
/// read, write, read. Backpressure: once `highWater` bytes wait to be sent, the connection
/// stops receiving (the kernel's receive buffer then fills and TCP flow control slows the
/// client), and it resumes only when the backlog is down to `lowWater`; a client that
/// sends without ever reading therefore costs the server at most one ring, not unbounded
/// memory. Any error on the connection (a reset mid-stream, a broken pipe) closes only
/// this connection.
final class EchoConnection {
    /// Bytes in each connection's ring.
    static let capacity = 64 * 1024
    /// Stop receiving when this many bytes wait to be sent...
    static let highWater = 48 * 1024
    /// ...and start again once the backlog has drained to this.
    static let lowWater = 16 * 1024

    let fd: Int32
    unowned let server: EchoServer
    /// Position in the server's connection list (for O(1) removal).
    var slot = -1

    private let ring: UnsafeMutableRawBufferPointer
    /// Index of the first byte received but not yet sent.
    private var head = 0
    /// Bytes received but not yet sent.
    private var queued = 0

    private let receiveCompletion = Completion()
    private let sendCompletion = Completion()
    private let closeCompletion = Completion()
    private var receiving = false
    private var sending = false
    private var closing = false
    private var closeInFlight = false
    /// Receiving stopped because the backlog reached `highWater`.
    private var paused = false
    /// The client shut down its side: finish sending, then close.
    private var peerFinished = false

    init(fd: Int32, server: EchoServer) {
        self.fd = fd
        self.server = server
        ring = .allocate(byteCount: Self.capacity, alignment: 64)
        receiveCompletion.callback = { [unowned self] _, result in self.received(result) }
        sendCompletion.callback = { [unowned self] _, result in self.sent(result) }
        closeCompletion.callback = { [unowned self] _, result in self.closed(result) }
    }

    deinit {
        ring.deallocate()
    }

    /// Starts echoing.
    func start() {
        _ = receiveIfRoom(adding: true)
    }

    /// Closes the connection now (server shutdown). Pending operations are cancelled by
    /// the close itself; their callbacks still run, once each, before the connection goes.
    func abort() {
        beginClose()
    }

    // MARK: Receiving

    /// Points the receive at the ring's largest contiguous free region, if receiving is
    /// allowed; adds it when `adding` (otherwise the caller returns `.rearm`).
    private func receiveIfRoom(adding: Bool) -> Bool {
        guard !closing, !peerFinished, !receiving else { return false }
        if queued >= Self.highWater {
            paused = true
            return false
        }
        paused = false
        if queued == 0 && !sending { head = 0 }   // empty ring: start over for the longest run
        let tail = (head + queued) % Self.capacity
        let free: Int
        if queued == Self.capacity {
            free = 0
        } else if tail >= head {
            free = Self.capacity - tail     // up to the end of the ring; the next receive wraps
        } else {
            free = head - tail              // the gap before the unsent bytes
        }
        guard free > 0 else {
            paused = true
            return false
        }
        receiveCompletion.operation = .recv(socket: fd, buffer: UnsafeMutableRawBufferPointer(rebasing: ring[tail..<(tail + free)]))
        receiving = true
        if adding { submit(receiveCompletion) }
        return true
    }

    private func received(_ result: CompletionResult) -> CallbackAction {
        receiving = false
        if closing {
            finishIfIdle()
            return .disarm
        }
        switch result {
        case .read(.success(let n)):
            queued += n
            sendIfNeeded(adding: true)
            return receiveIfRoom(adding: false) ? .rearm : .disarm
        case .read(.failure(.endOfFile)):
            // The client shut down its sending side: echo what is left, then close.
            peerFinished = true
            if queued == 0 && !sending { beginClose() }
            return .disarm
        case .read(.failure(let error)):
            fail(error)
            return .disarm
        default:
            fail(.invalidArgument)
            return .disarm
        }
    }

    // MARK: Sending

    /// Sends the contiguous run of queued bytes at `head`, if any and none is in flight.
    @discardableResult
    private func sendIfNeeded(adding: Bool) -> Bool {
        guard !closing, !sending, queued > 0 else { return false }
        let run = min(queued, Self.capacity - head)
        sendCompletion.operation = .send(socket: fd, buffer: UnsafeRawBufferPointer(rebasing: ring[head..<(head + run)]))
        sending = true
        if adding { submit(sendCompletion) }
        return true
    }

    private func sent(_ result: CompletionResult) -> CallbackAction {
        sending = false
        if closing {
            finishIfIdle()
            return .disarm
        }
        switch result {
        case .write(.success(let n)):
            head = (head + n) % Self.capacity
            queued -= n
            server.bytesEchoed += UInt64(n)
            let again = sendIfNeeded(adding: false)
            if paused && queued <= Self.lowWater { _ = receiveIfRoom(adding: true) }
            if !again && peerFinished && queued == 0 { beginClose() }
            return again ? .rearm : .disarm
        case .write(.failure(let error)):
            fail(error)
            return .disarm
        default:
            fail(.invalidArgument)
            return .disarm
        }
    }

    // MARK: Closing

    private func fail(_ error: EvError) {
        // A reset or broken pipe is the client's business; it ends this connection only.
        switch error {
        case .connectionReset, .brokenPipe, .canceled, .timedOut:
            break
        default:
            server.note("connection error: \(error)")
        }
        server.connectionsFailed += 1
        beginClose()
    }

    private func beginClose() {
        guard !closing else { return }
        closing = true
        closeInFlight = true
        closeCompletion.operation = .close(fd: fd)
        submit(closeCompletion)
    }

    private func closed(_ result: CompletionResult) -> CallbackAction {
        closeInFlight = false
        if case .close(.failure(let e)) = result { server.note("close: \(e)") }
        finishIfIdle()
        return .disarm
    }

    /// Once the close and any operation it cancelled have called back, the connection
    /// leaves the server (and its memory is freed).
    private func finishIfIdle() {
        if closing && !receiving && !sending && !closeInFlight { server.remove(self) }
    }

    private func submit(_ c: Completion) {
        do {
            try server.loop.add(c)
        } catch {
            // Only a programming error can get here (adding an active completion).
            fatalError("ev-echo-tcp: add failed: \(error)")
        }
    }
}
