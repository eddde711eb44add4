#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport

/// Drives every connection of the load test on one loop and checks every echoed byte.
///
/// Each connection repeats a roundtrip: send a `size`-byte message, receive until the whole
/// echo is back, compare it with what was sent, record the latency. The send and the
/// receive run at once (a message larger than the socket buffers could otherwise never
/// complete: the server stops reading while its echo is not being read). Message bytes
/// differ per connection and carry the roundtrip number, so an echo delivered to the wrong
/// connection, duplicated, reordered or stale fails the comparison. Buffers and completions
/// are allocated per connection up front: the measuring itself allocates nothing.
///
/// Generic over the socket type: `TCPSocket` for `--host`/`--port`, `UnixSocket` for
/// `--unix PATH`; both are `ConnectionSocket`s, so a connection does the same on either.
final class LoadClient<Socket: ClientSocket> {
    let loop: LoopCore
    let address: SocketAddress
    /// How long a connect may take (`Completion.deadline`); nil: as long as the kernel tries.
    let connectTimeout: Duration?
    let size: Int
    let duration: Duration
    /// How long after `duration` unfinished roundtrips are given before the run fails.
    let grace: Duration

    private(set) var connections: [ClientConnection<Socket>] = []
    private let durationTimer = Completion()
    private let deadlineTimer = Completion()
    private(set) var stopping = false
    private(set) var timedOut = false

    var histogram = LatencyHistogram()
    private(set) var roundtrips: UInt64 = 0
    private(set) var connected = 0
    private(set) var finished = 0
    private(set) var failures: [LoadFailure] = []
    /// Every failure, including those not kept in `failures`.
    private(set) var errorCount = 0
    private(set) var mismatches = 0
    private(set) var startNanoseconds: UInt64 = 0
    private(set) var lastRoundtripNanoseconds: UInt64 = 0

    init(loop: LoopCore, address: SocketAddress, connectTimeout: Duration?, connections count: Int,
         size: Int, duration: Duration) {
        self.loop = loop
        self.address = address
        self.connectTimeout = connectTimeout
        self.size = size
        self.duration = duration
        self.grace = max(.seconds(10), duration)
        for i in 0..<count {
            connections.append(ClientConnection(id: i, client: self))
        }
    }

    /// Runs the whole test; returns when every connection has finished (or the deadline passed).
    func run() throws(EvError) {
        startNanoseconds = Report.monotonicNanoseconds()
        lastRoundtripNanoseconds = startNanoseconds
        loop.updateNow()
        try LoopTimer.start(loop: loop, completion: durationTimer, after: duration) { [unowned self] _, result in
            if case .success = result { self.beginStopping() }
            return .disarm
        }
        try LoopTimer.start(loop: loop, completion: deadlineTimer, after: duration + grace) { [unowned self] _, result in
            if case .success = result { self.giveUp() }
            return .disarm
        }
        for c in connections { c.start() }
        try loop.run(.untilDone)
    }

    // MARK: Called by connections

    func didConnect() { connected += 1 }

    func recordRoundtrip(startedAt: UInt64) {
        let now = Report.monotonicNanoseconds()
        histogram.record(now &- startedAt)
        roundtrips += 1
        lastRoundtripNanoseconds = now
    }

    func mismatch(_ connection: Int, _ message: String) {
        mismatches += 1
        fail(connection, message)
    }

    func fail(_ connection: Int, _ message: String) {
        // Keep the first thousand in full; count them all.
        errorCount += 1
        if failures.count < 1000 { failures.append(LoadFailure(connection: connection, message: message)) }
    }

    /// A connection has closed; when the last one has, the timers go and `run` returns.
    func connectionFinished() {
        finished += 1
        if finished == connections.count {
            cancelTimers()
        }
    }

    // MARK: Ending

    private func beginStopping() {
        stopping = true
        // Idle connections (not mid-roundtrip) are closed by their next roundtrip check;
        // connections still connecting close when the connect completes.
        for c in connections { c.stopIfIdle() }
    }

    private func giveUp() {
        timedOut = true
        stopping = true
        let busy = connections.count - finished
        fail(-1, "\(busy) connection(s) did not finish their roundtrip within \(Report.fixed(Report.seconds(grace), 1)) s after the test ended")
        for c in connections { c.abort() }
        if durationTimer.state == .active { try? LoopTimer.cancel(loop: loop, completion: durationTimer, using: Completion()) }
    }

    private func cancelTimers() {
        for t in [durationTimer, deadlineTimer] where t.state == .active {
            try? LoopTimer.cancel(loop: loop, completion: t, using: Completion())
        }
    }

    var elapsedSeconds: Double {
        Double(lastRoundtripNanoseconds &- startNanoseconds) / 1e9
    }
}

/// One client connection: its message and echo buffers, a `WriteQueue` with one reusable
/// `WriteRequest` (the message), and completions to connect, receive and close.
///
/// The socket, the connect and the close go through the TCP watcher; the message goes out
/// through the write queue, which resumes partial writes by itself; the receive is set up
/// through the watcher on the first roundtrip and then re-added as it is (only its buffer
/// changes), so a roundtrip allocates nothing.
final class ClientConnection<Socket: ClientSocket> {
    let id: Int
    unowned let client: LoadClient<Socket>
    private var socket = Socket(fd: -1)
    private var queue: WriteQueue?
    private let message: UnsafeMutableRawBufferPointer
    private let echo: UnsafeMutableRawBufferPointer
    private let request = WriteRequest()
    private let connectCompletion = Completion()
    private let receiveCompletion = Completion()
    private let closeCompletion = Completion()
    private var receiveConfigured = false
    private var round: UInt64 = 0
    private var sendDone = false
    private var received = 0
    private var startedAt: UInt64 = 0
    private var inRoundtrip = false
    private var connecting = false
    private var closing = false

    init(id: Int, client: LoadClient<Socket>) {
        self.id = id
        self.client = client
        message = .allocate(byteCount: client.size, alignment: 16)
        echo = .allocate(byteCount: client.size, alignment: 16)
        // A per-connection pattern (xorshift seeded by the connection number).
        var state = UInt64(id) &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<client.size {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            message[i] = UInt8(truncatingIfNeeded: state)
        }
        request.buffer = UnsafeRawBufferPointer(message)
        request.callback = { [unowned self] _, result in
            self.sent(result)
            return .disarm
        }
    }

    deinit {
        message.deallocate()
        echo.deallocate()
    }

    func start() {
        do {
            socket = try Socket.make(for: client.address, loop: client.loop)
            queue = WriteQueue(fd: socket.fd)
            connecting = true
            if let timeout = client.connectTimeout { connectCompletion.deadline = .within(timeout) }
            try socket.connect(loop: client.loop, completion: connectCompletion, to: client.address) { [unowned self] _, result in
                self.connected(result)
            }
        } catch {
            connecting = false
            client.fail(id, "\(error)")
            close()
        }
    }

    private func connected(_ result: Result<Void, EvError>) -> CallbackAction {
        connecting = false
        if case .failure(let e) = result {
            if !closing { client.fail(id, "connect to \(client.address): \(e)") }
            close()
            return .disarm
        }
        client.didConnect()
        if client.stopping || closing {
            close()
        } else {
            startRoundtrip()
        }
        return .disarm
    }

    private func startRoundtrip() {
        guard let queue else { return }
        round &+= 1
        // The roundtrip number in the first bytes: a stale or repeated echo cannot match.
        withUnsafeBytes(of: round.littleEndian) { r in
            for i in 0..<min(8, message.count) { message[i] = r[i] }
        }
        sendDone = false
        received = 0
        inRoundtrip = true
        startedAt = Report.monotonicNanoseconds()
        do {
            // The send and the receive run at the same time (see LoadClient).
            try queue.enqueue(loop: client.loop, request)
            if receiveConfigured {
                receiveCompletion.operation = .recv(socket: socket.fd, buffer: echo)
                try client.loop.add(receiveCompletion)
            } else {
                receiveConfigured = true
                try socket.read(loop: client.loop, completion: receiveCompletion, buffer: echo) { [unowned self] _, result in
                    self.receivedSome(result)
                }
            }
        } catch {
            fatalError("ev-echo-client: cannot start a roundtrip: \(error)")
        }
    }

    /// The write request's callback: the whole message is out (or the write failed).
    private func sent(_ result: Result<Int, EvError>) {
        switch result {
        case .success:
            sendDone = true
            roundtripStepDone()
        case .failure(let e):
            if !closing { client.fail(id, "send: \(e)") }
            close()
        }
    }

    private func receivedSome(_ result: Result<Int, EvError>) -> CallbackAction {
        switch result {
        case .success(let n):
            received += n
            if received < echo.count && !closing {
                receiveCompletion.operation = .recv(socket: socket.fd, buffer: UnsafeMutableRawBufferPointer(rebasing: echo[received...]))
                return .rearm
            }
            roundtripStepDone()
        case .failure(.endOfFile):
            if !closing { client.fail(id, "the server closed the connection after \(received) of \(echo.count) echoed bytes") }
            close()
        case .failure(let e):
            if !closing { client.fail(id, "receive: \(e)") }
            close()
        }
        return .disarm
    }

    /// Called when the send or the receive of a roundtrip has finished; the roundtrip is
    /// complete when both have.
    private func roundtripStepDone() {
        guard !closing, sendDone, received == echo.count, receiveCompletion.state == .dead else { return }
        inRoundtrip = false
        if memcmp(message.baseAddress!, echo.baseAddress!, message.count) != 0 {
            var at = 0
            while at < message.count && message[at] == echo[at] { at += 1 }
            client.mismatch(id, "echo differs from the message at byte \(at) of \(message.count) (roundtrip \(round))")
            close()
            return
        }
        client.recordRoundtrip(startedAt: startedAt)
        if client.stopping {
            close()
        } else {
            startRoundtrip()
        }
    }

    /// At the end of the test: close now unless a roundtrip is in flight (it finishes first).
    func stopIfIdle() {
        if !inRoundtrip && !connecting { close() }
    }

    /// Closes now, whatever is in flight (the close cancels it).
    func abort() {
        close()
    }

    private func close() {
        guard !closing else { return }
        closing = true
        if socket.fd < 0 {
            client.connectionFinished()
            return
        }
        // Closing through the loop cancels a pending connect, send or receive first; their
        // callbacks still run once each (and find `closing` set).
        do {
            try socket.close(loop: client.loop, completion: closeCompletion) { [unowned self] _, _ in
                self.client.connectionFinished()
                return .disarm
            }
        } catch {
            fatalError("ev-echo-client: close: \(error)")
        }
    }
}

/// The two kinds of socket the client connects with, made the way each needs.
protocol ClientSocket: ConnectionSocket {
    /// A socket ready to connect to `address`, in the mode `loop` prefers.
    static func make(for address: SocketAddress, loop: LoopCore) throws(EvError) -> Self
}

extension TCPSocket: ClientSocket {
    static func make(for address: SocketAddress, loop: LoopCore) throws(EvError) -> TCPSocket {
        let socket = try TCPSocket(for: address, loop: loop)
        // Each message goes out at once; Nagle's algorithm would hold back the tail of a
        // message split across segments until the server's delayed ACK.
        try? socket.setNoDelay(true)
        return socket
    }
}

extension UnixSocket: ClientSocket {
    static func make(for address: SocketAddress, loop: LoopCore) throws(EvError) -> UnixSocket {
        try UnixSocket(kind: .stream, loop: loop)
    }
}

/// One connection's failure (connection -1: the whole run).
struct LoadFailure {
    var connection: Int
    var message: String
}

/// What a run measured, whatever socket type it used.
struct LoadReport {
    let histogram: LatencyHistogram
    let elapsedSeconds: Double
    let roundtrips: UInt64
    let connected: Int
    let mismatches: Int
    let errorCount: Int
    let failures: [LoadFailure]
    let timedOut: Bool

    init<Socket>(_ client: LoadClient<Socket>) {
        histogram = client.histogram
        elapsedSeconds = client.elapsedSeconds
        roundtrips = client.roundtrips
        connected = client.connected
        mismatches = client.mismatches
        errorCount = client.errorCount
        failures = client.failures
        timedOut = client.timedOut
    }
}
