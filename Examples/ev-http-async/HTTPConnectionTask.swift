#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev
import EvExampleSupport
import EvHTTPSupport

/// One HTTP/1.1 connection served by one task on the loop, as straight-line code: read,
/// answer every request the read completed, write the answers, read again.
///
/// The same protocol as ev-http's `HTTPConnection`, from the same shared parts
/// (`HTTPConnectionInput` frames the requests, `HTTPResponse` formats the answers,
/// `HTTPLimits` sizes everything), so that the two servers answer byte for byte alike and
/// differ only in how they wait:
///
/// - **Pipelining**: the responses to one read are formatted into one output buffer and go
///   out as one write (a buffer that fills up is written and the next batch continues), a
///   large `/bytes/N` body straight from the shared body memory after its head.
/// - **Backpressure is the await**: the task reads again only once its answers are written,
///   so a client that pipelines without reading stalls its own task in a write while TCP
///   flow control stops it; the server holds one read buffer and one output buffer for it,
///   no more. (The callback server needs a write queue with water marks for this; the
///   write queue's awaited `enqueue` says the same: awaiting each write is the
///   backpressure. It would cost an `OwnedBytes` per batch for the same order.)
/// - **Idle timeout**: a deadline on each read and on each write (a client that takes none
///   of its response for that long).
/// - **Ending**: `Connection: close`, HTTP/1.0 without keep-alive, a rejected head
///   (400/431/501) and the idle timeout end with a lingering close: our FIN (SHUT_WR) once
///   everything is written, then reads that drop what the client still sends until it
///   closes or goes quiet for `HTTPLimits.lingerQuiet`, then close. Closing with unread
///   input at once would make TCP reset the connection, and the client could lose the
///   response it was sent (the 400 above all). A client that closes its side is answered
///   and closed.
/// - **Shutdown** (SIGINT, SIGTERM): the loop's `ConnectionDrain` shuts down the read side
///   of every connection, so the read this task awaits returns what had arrived and then end
///   of file: an idle keep-alive connection, the usual case, ends at once with a clean end of
///   stream for its client, and one in the middle of a response writes it first (as ev-http,
///   which also waits up to `HTTPLimits.shutdownGrace`). A task still writing after the
///   grace period is cancelled: its pending write ends at once and the socket is closed
///   (`close(on:)` ignores cancellation).
final class HTTPConnectionTask {
    private let socket: TCPSocket
    private let executor: LoopExecutor
    /// The deadline of each read and write (nil: none).
    private let idleTimeout: Duration?

    private let readBuffer: UnsafeMutableRawBufferPointer
    private let input = HTTPConnectionInput(headLimit: HTTPLimits.headLimit)
    /// The responses being batched.
    private let output: UnsafeMutableRawPointer
    private var outputCount = 0

    /// This connection's counters, added to the loop's when it ends.
    private var stats = HTTPStatistics()

    /// How the request loop ended.
    private enum Ending {
        /// No more requests (`Connection: close`, HTTP/1.0, a rejected head): linger.
        case finished
        /// The read deadline passed: linger.
        case idle
        /// The client closed its side: every complete request was answered; close.
        case clientClosed
        /// The task was cancelled (the shutdown's grace period is over): close.
        case cancelled
        /// A read or write failed (a reset, a broken pipe, a write deadline): close.
        case failed(any Error)
    }

    /// Serves `socket` until it ends, closes it and adds its counters to `statistics`.
    nonisolated(nonsending)
    static func serve(_ socket: TCPSocket, idleTimeout: Duration?, on executor: LoopExecutor,
                      statistics: LoopStatistics<HTTPStatistics>) async {
        let connection = HTTPConnectionTask(socket: socket, idleTimeout: idleTimeout, executor: executor)
        await connection.run()
        await statistics.add(connection.stats)
    }

    private init(socket: TCPSocket, idleTimeout: Duration?, executor: LoopExecutor) {
        self.socket = socket
        self.idleTimeout = idleTimeout
        self.executor = executor
        readBuffer = .allocate(byteCount: HTTPLimits.readCapacity, alignment: 16)
        output = .allocate(byteCount: HTTPLimits.chunkCapacity, alignment: 64)
        stats.connectionsServed = 1
    }

    deinit {
        readBuffer.deallocate()
        output.deallocate()
    }

    private var deadline: Deadline { idleTimeout.map { .within($0) } ?? .none }

    nonisolated(nonsending)
    private func run() async {
        switch await answerRequests() {
        case .finished:
            await linger()
        case .idle:
            stats.closedIdle += 1
            await linger()
        case .clientClosed:
            break
        case .cancelled:
            break   // counted in "open at shutdown" by the loop's drain (HTTPServerTask)
        case .failed(let error):
            stats.connectionsFailed += 1
            switch error {
            case EvError.connectionReset, EvError.brokenPipe, EvError.timedOut:
                break   // the client's business; it ends this connection only
            default:
                Report.warn("ev-http-async: connection error: \(error)")
            }
        }
        // Cancellation does not stop a close: a shutdown still closes every socket.
        do { try await socket.close(on: executor) } catch { Report.warn("ev-http-async: close: \(error)") }
    }

    /// Reads and answers requests until the connection must end.
    nonisolated(nonsending)
    private func answerRequests() async -> Ending {
        do {
            for try await bytes in socket.reads(into: readBuffer, deadline: deadline, on: executor) {
                input.received(bytes)
                let more: Bool
                do {
                    more = try await answerReceived()
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    return .failed(error)
                }
                input.keepRest()   // the next read reuses the buffer
                if !more { return .finished }
            }
        } catch EvError.timedOut {
            return .idle
        } catch {
            return .failed(error)
        }
        // The sequence ends at the end of the stream, and when the task is cancelled.
        return Task.isCancelled ? .cancelled : .clientClosed
    }

    /// Answers every complete request in the input and writes the answers; false when the
    /// connection ends after them.
    nonisolated(nonsending)
    private func answerReceived() async throws -> Bool {
        while let item = input.next() {
            switch item {
            case .request(let head, let kind):
                stats.requests += 1
                try await respond(kind, connection: HTTPResponse.ConnectionHeader(for: head), headOnly: head.method == .head)
                if !head.keepAlive {
                    try await flush()
                    return false
                }
            case .rejected(let kind):
                stats.rejected += 1
                try await respond(kind, connection: .close, headOnly: false)
                try await flush()
                return false
            }
        }
        try await flush()
        return true
    }

    /// Formats one response into the output buffer (writing a full buffer first, and a
    /// large body after its head).
    nonisolated(nonsending)
    private func respond(_ kind: HTTPResponse.Kind, connection: HTTPResponse.ConnectionHeader, headOnly: Bool) async throws {
        if HTTPLimits.chunkCapacity - outputCount < HTTPResponse.maxWrite { try await flush() }
        let (count, bodyAfter) = HTTPResponse.write(kind, connection: connection, headOnly: headOnly, to: output + outputCount)
        outputCount += count
        guard bodyAfter > 0 else { return }
        try await flush()
        try await write(UnsafeRawBufferPointer(rebasing: HTTPResponse.body[0..<bodyAfter]))
    }

    /// Writes the batched responses.
    nonisolated(nonsending)
    private func flush() async throws {
        guard outputCount > 0 else { return }
        try await write(UnsafeRawBufferPointer(start: output, count: outputCount))
        outputCount = 0
    }

    /// Writes all of `bytes`, with the idle deadline on each write (not `writeAll`, whose
    /// deadline bounds the whole: a client that reads a 1 MiB body slowly but steadily is
    /// not idle).
    nonisolated(nonsending)
    private func write(_ bytes: UnsafeRawBufferPointer) async throws {
        var offset = 0
        while offset < bytes.count {
            offset += try await socket.write(UnsafeRawBufferPointer(rebasing: bytes[offset...]), deadline: deadline, on: executor)
        }
    }

    /// Everything is written: our FIN, then drop what the client still sends until it
    /// closes, goes quiet for `lingerQuiet`, or has sent `lingerDropLimit` more bytes.
    nonisolated(nonsending)
    private func linger() async {
        do { try await socket.shutdown(.write, on: executor) } catch { return }
        var dropped = 0
        while dropped <= HTTPLimits.lingerDropLimit {
            do {
                dropped += try await socket.read(into: readBuffer, deadline: .within(HTTPLimits.lingerQuiet), on: executor)
            } catch {
                return   // the client's end of stream, quiet (.timedOut), an error, cancellation
            }
        }
    }
}
