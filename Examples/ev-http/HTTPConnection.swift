#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

/// One HTTP/1.1 connection: a `StreamReader` for its requests, a `WriteQueue` with water
/// marks for its responses, and reusable output chunks, all made when the connection is
/// accepted (nothing is allocated per request in steady state).
///
/// Pipelining: each read is parsed for every complete request head in it (framing is
/// `HTTPConnectionInput`'s, shared with ev-http-async); the responses are formatted, in
/// order, into one output chunk that goes out as one write per read (a 16 KiB chunk that
/// fills up is queued and the next one continues). A head cut by the end of a read waits in
/// the input for the rest; request bodies (`Content-Length`) are skipped.
///
/// Backpressure: once more than `waterMark.high` bytes wait to be sent (the client
/// does not read its responses), the queue becomes unwritable: the connection stops
/// parsing, keeps what it has not parsed in its input, and pauses its reader; the kernel's
/// receive buffer then fills and TCP flow control stops the client. When the queue drains
/// below the low mark, the connection parses what it kept and reads again. So a client
/// that pipelines without reading costs the server a bounded amount of memory.
///
/// Ending: `Connection: close`, HTTP/1.0 without keep-alive, a malformed (400) or oversized
/// (431) head, the idle timeout (a deadline on each read) and the server's shutdown all
/// finish the same way: stop parsing, send what is queued, then shut down our side
/// (SHUT_WR, the client reads an orderly end) and read and drop what the client still sends
/// until it closes or goes quiet for `Limits.lingerQuiet`, then close. Closing with unread
/// input at once would make TCP reset the connection, and a client could lose the response
/// it was sent (the 400 above all).
final class HTTPConnection: GracefullyEndingConnection {
    typealias Limits = HTTPLimits

    /// Stop parsing and reading when more than `high` bytes wait to be sent; start again
    /// below `low` (the async server needs none: its awaited writes are the backpressure).
    static let waterMark = try! WriteBufferWaterMark(low: 16 * 1024, high: 64 * 1024)

    private enum State {
        /// Parsing and answering requests.
        case open
        /// No more requests: the queued responses go out, then `startLinger`.
        case finishing
        /// Our FIN is out; reads are dropped until the client closes or goes quiet.
        case lingering
        /// Closing through the loop; the connection leaves once every callback has run.
        case closing
    }

    let socket: TCPSocket
    unowned let server: HTTPServer
    /// The server's loop, held here too: every read, write and pause names it, and a read
    /// through the `unowned` server reference is a reference-count check each time.
    private let loop: LoopCore
    /// Position in the server's connection list (for O(1) removal).
    var slot = -1

    // The connection's mutable state is `@exclusivity(unchecked)`, as the library's
    // `WriteQueue` and `StreamReader` are: Swift's run-time exclusivity checks on class
    // properties (a call and a thread-local lookup per access) were about 450 of the 4,000
    // user-space instructions per request (callgrind under wrk, issue 14). Every access
    // below is instantaneous, on the loop thread, and none spans a callback, which is the
    // overlap the checks exist to catch; debug builds, which the end-to-end tests run, keep
    // them.
    @exclusivity(unchecked) private var state = State.open
    private let reader: StreamReader
    private let queue: WriteQueue
    private let closer = ConnectionClose(program: "ev-http")
    /// The client's end of stream (or an error) was seen: do not linger, close.
    @exclusivity(unchecked) private var peerDone = false
    /// Bytes dropped while lingering (a client that keeps sending is cut off at a limit).
    @exclusivity(unchecked) private var dropped = 0

    /// The requests read and not answered yet: a head cut by the end of a read, or what
    /// was left when the queue became unwritable (bounded: reading stops meanwhile).
    private let input = HTTPConnectionInput(headLimit: Limits.headLimit)

    /// The chunk being filled with responses, and spare ones. `chunks` owns every chunk
    /// made (a queued chunk is in neither of the others).
    @exclusivity(unchecked) private var chunk: OutputChunk?
    @exclusivity(unchecked) private var spareChunks: [OutputChunk] = []
    @exclusivity(unchecked) private var chunks: [OutputChunk] = []
    /// Writes of large `/bytes/N` bodies (from the shared `HTTPResponse.body`).
    @exclusivity(unchecked) private var spareBodyWrites: [WriteRequest] = []

    init(socket: TCPSocket, server: HTTPServer) throws(EvError) {
        self.socket = socket
        self.server = server
        loop = server.loop
        reader = try StreamReader(socket: socket, capacity: Limits.readCapacity)
        queue = WriteQueue(socket: socket)
        if let idle = server.idleTimeout {
            // Each read and each write (a client that takes none of its response) in turn.
            reader.completion.deadline = .within(idle)
            queue.completion.deadline = .within(idle)
        }
    }

    func start() {
        queue.setWaterMark(Self.waterMark) { [unowned self] _, writable in
            self.writabilityChanged(writable)
            return .rearm
        }
        do {
            try reader.start(loop: loop) { [unowned self] _, result in
                self.received(result)
            }
        } catch {
            fail(error)
        }
    }

    /// Server shutdown: answer nothing more, send what is queued, then end without a reset.
    func finishGracefully() {
        if state == .open { finish() }
    }

    /// Closes at once (the server's shutdown grace period is over).
    func abort() {
        beginClose()
    }

    // MARK: Reading and parsing

    private func received(_ result: Result<UnsafeRawBufferPointer, EvError>) -> CallbackAction {
        switch state {
        case .closing:
            finishIfIdle()
            return .disarm
        case .lingering:
            switch result {
            case .success(let bytes):
                dropped += bytes.count
                if dropped <= Limits.lingerDropLimit { return .rearm }
                beginClose()
            default:
                // The client's end of stream, quiet for `lingerQuiet` (.timedOut), an error.
                beginClose()
            }
            return .disarm
        case .finishing:
            // A read that was on its way when the connection finished: dropped.
            if case .success = result { return .rearm }
            peerDone = true
            if queue.isEmpty { beginClose() }
            return .disarm
        case .open:
            break
        }
        // Inside this callback the reader cannot be resumed (its answer decides): a
        // connection that went straight to lingering (nothing queued) reads on by `.rearm`,
        // with the linger's deadline.
        let readOn: CallbackAction
        switch result {
        case .success(let bytes):
            consume(bytes)
            readOn = state == .open || state == .lingering ? .rearm : .disarm
        case .failure(.endOfFile):
            // The client is done sending; what it asked for is answered (pipelined requests
            // were parsed above), then we close.
            peerDone = true
            finish()
            readOn = .disarm
        case .failure(.timedOut):
            server.stats.closedIdle += 1
            finish()
            readOn = state == .lingering ? .rearm : .disarm
        case .failure(.canceled):
            readOn = .disarm
        case .failure(let error):
            fail(error)
            readOn = .disarm
        }
        return readOn
    }

    /// Parses and answers what `bytes` (just read) completes, together with what was kept.
    private func consume(_ bytes: UnsafeRawBufferPointer) {
        input.received(bytes)
        process()
        input.keepRest()   // the reader's buffer is reused by the next read
        flush()
    }

    /// Answers every complete request in the input while the connection is open and the
    /// queue writable.
    private func process() {
        // Counted here and added to the server's statistics once per batch.
        var answered: UInt64 = 0
        while state == .open && queue.isWritable, let item = input.next() {
            switch item {
            case .request(let head, let kind):
                answered += 1
                respond(kind, connection: HTTPResponse.ConnectionHeader(for: head), headOnly: head.method == .head)
                if !head.keepAlive { finish() }
            case .rejected(let kind):
                server.stats.rejected += 1
                respond(kind, connection: .close, headOnly: false)
                finish()
            }
        }
        if answered > 0 { server.stats.requests += answered }
    }

    // MARK: Responding

    /// Formats one response into the current chunk (queueing a full chunk first, and a
    /// large body after it).
    private func respond(_ kind: HTTPResponse.Kind, connection: HTTPResponse.ConnectionHeader, headOnly: Bool) {
        if let c = chunk, c.capacity - c.used < HTTPResponse.maxWrite { flush() }
        let c = chunk ?? takeChunk()
        let (count, bodyAfter) = HTTPResponse.write(kind, connection: connection, headOnly: headOnly, to: c.memory + c.used)
        c.used += count
        guard bodyAfter > 0 else { return }
        flush()
        let write = spareBodyWrites.popLast() ?? WriteRequest { [unowned self] request, result in
            self.spareBodyWrites.append(request)
            self.sent(result)
            return .disarm
        }
        write.buffer = UnsafeRawBufferPointer(rebasing: HTTPResponse.body[0..<bodyAfter])
        enqueue(write)
    }

    private func takeChunk() -> OutputChunk {
        let c: OutputChunk
        if let spare = spareChunks.popLast() {
            c = spare
        } else {
            c = OutputChunk(capacity: Limits.chunkCapacity) { [unowned self] chunk, result in
                chunk.used = 0
                self.spareChunks.append(chunk)
                self.sent(result)
            }
            chunks.append(c)
        }
        chunk = c
        return c
    }

    /// Queues the chunk being filled (the batch of this read's responses) as one write.
    private func flush() {
        guard let c = chunk, c.used > 0 else { return }
        chunk = nil
        c.request.buffer = UnsafeRawBufferPointer(start: c.memory, count: c.used)
        enqueue(c.request)
    }

    private func enqueue(_ request: WriteRequest) {
        do {
            try queue.enqueue(loop: loop, request)
        } catch {
            fail(error)
        }
    }

    /// A write finished (its request is back in its spare list).
    private func sent(_ result: Result<Int, EvError>) {
        switch result {
        case .success:
            if state == .finishing && queue.isEmpty { startLinger() }
        case .failure(let error):
            if state == .closing {
                finishIfIdle()
            } else {
                fail(error)
            }
        }
    }

    private func writabilityChanged(_ writable: Bool) {
        guard state == .open else { return }
        if !writable {
            try? reader.pause(loop: loop)
            return
        }
        // Answer what was kept while the client was not reading, then read again (unless
        // that filled the queue again, or ended the connection).
        process()
        input.keepRest()
        flush()
        if state == .open && queue.isWritable {
            do { try reader.resume(loop: loop) } catch { fail(error) }
        }
    }

    // MARK: Ending

    /// No more requests: send what is queued, then linger (or close if the client is gone).
    private func finish() {
        guard state == .open else { return }
        state = .finishing
        try? reader.pause(loop: loop)
        flush()
        if queue.isEmpty { startLinger() }
    }

    /// Everything is sent: our FIN, then drop what the client still sends (see the type).
    private func startLinger() {
        guard !peerDone, shutdown(socket.fd, Int32(SHUT_WR)) == 0 else {
            beginClose()
            return
        }
        state = .lingering
        reader.completion.deadline = .within(Limits.lingerQuiet)
        do {
            // `finish` paused the reader; a reader whose callback disarmed it (the idle
            // timeout) is started again, which a pause would otherwise outlast.
            try reader.resume(loop: loop)
            if !reader.isStarted {
                try reader.start(loop: loop) { [unowned self] _, result in self.received(result) }
            }
        } catch {
            beginClose()
        }
    }

    private func fail(_ error: EvError) {
        closer.note(error)
        server.stats.connectionsFailed += 1
        beginClose()
    }

    private func beginClose() {
        guard state != .closing else { return }
        state = .closing
        closer.close(socket, loop: loop) { [unowned self] in self.finishIfIdle() }
    }

    /// Once the close and everything it cancelled have called back, the connection leaves
    /// the server (and its memory is freed).
    private func finishIfIdle() {
        if state == .closing && !closer.isCloseInFlight && reader.completion.state == .dead && queue.isEmpty {
            // This can run inside the queue's completion callback (a cancelled write's
            // callback), which reports the queue's fall below the low water mark after it:
            // the writability callback, `unowned` on this connection, must be gone before
            // the server lets go of the connection (found at SIGTERM with a client that
            // never read: the grace period's abort crashed the server).
            queue.removeWaterMark()
            server.remove(self)
        }
    }
}

/// One reusable block of output memory and the write request that sends it.
final class OutputChunk {
    let memory: UnsafeMutableRawPointer
    let capacity: Int
    var used = 0
    private(set) var request: WriteRequest!

    init(capacity: Int, sent: @escaping (OutputChunk, Result<Int, EvError>) -> Void) {
        memory = .allocate(byteCount: capacity, alignment: 64)
        self.capacity = capacity
        // Unowned: the chunk owns its request.
        request = WriteRequest { [unowned self] _, result in
            sent(self, result)
            return .disarm
        }
    }

    deinit { memory.deallocate() }
}
