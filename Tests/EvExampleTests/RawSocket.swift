#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Ev

/// A plain blocking TCP client socket for driving the servers from a test, with send and
/// receive timeouts so a misbehaving server fails the test instead of hanging it.
final class RawTCPClient {
    let fd: Int32
    private var closed = false

    init(host: String = "127.0.0.1", port: UInt16, timeout: Duration = .seconds(10)) throws {
        let address = try SocketAddress(host: host, port: port)
        fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ExampleTestError("socket: errno \(errno)") }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var r = address.withSockAddr { connect(fd, $0, $1) }
        var e = r == 0 ? 0 : errno
        if r != 0 && e == EINTR {
            // A signal (another test's child exiting, with the suite running in parallel)
            // interrupted the connect; connect(2): the connection goes on asynchronously.
            // Wait until the socket is writable, then SO_ERROR tells the outcome.
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var n: Int32
            repeat { n = poll(&p, 1, Int32(timeout.components.seconds * 1000)) } while n < 0 && errno == EINTR
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            if n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len) == 0 {
                r = soError == 0 ? 0 : -1
                e = soError
            } else {
                e = n == 0 ? ETIMEDOUT : errno
            }
        }
        guard r == 0 else {
            Glibc.close(fd)
            throw ExampleTestError("connect \(address): errno \(e)")
        }
    }

    deinit { close() }

    /// Sends all of `bytes`.
    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }   // a signal before anything was sent
            guard n > 0 else { throw ExampleTestError("send: errno \(errno)") }
            off += n
        }
    }

    /// Receives exactly `count` bytes (fails on EOF or timeout).
    func receive(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var off = 0
        while off < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + off, count - off, 0) }
            if n < 0 && errno == EINTR { continue }   // a signal before anything arrived
            guard n > 0 else { throw ExampleTestError(n == 0 ? "EOF after \(off) of \(count) bytes" : "recv: errno \(errno) after \(off) of \(count) bytes") }
            off += n
        }
        return out
    }

    /// Sends `bytes` and receives them back, checking they are identical. The receive runs
    /// alongside the send (in chunks), so a message larger than the socket buffers works.
    func roundtrip(_ bytes: [UInt8]) throws -> Bool {
        var received: [UInt8] = []
        received.reserveCapacity(bytes.count)
        var sent = 0
        let chunk = 64 * 1024
        while sent < bytes.count {
            let end = min(bytes.count, sent + chunk)
            try send(Array(bytes[sent..<end]))
            sent = end
            // Take whatever has come back so far without blocking.
            while received.count < sent {
                var buffer = [UInt8](repeating: 0, count: chunk)
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 { received += buffer[0..<n] } else { break }
            }
        }
        received += try receive(bytes.count - received.count)
        return received == bytes
    }

    /// Whether the server has closed the connection: a receive sees end of file (or a
    /// reset) within the socket's receive timeout.
    func seesEndOfFile() -> Bool {
        var b: UInt8 = 0
        while true {
            let n = recv(fd, &b, 1, 0)
            if n < 0 && errno == EINTR { continue }   // a signal before anything arrived
            return n == 0 || (n < 0 && errno == ECONNRESET)
        }
    }

    /// Closes with SO_LINGER 0, so the kernel sends a reset instead of a FIN.
    func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    func close() {
        if !closed {
            closed = true
            Glibc.close(fd)
        }
    }

    /// Sends without ever reading, until the connection has accepted nothing more for
    /// `stall` or `limit` bytes have gone out; returns the bytes sent.
    func flood(limit: Int, stall: Duration) -> Int {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let chunk = [UInt8](repeating: 0x5A, count: 256 * 1024)
        var total = 0
        let stallMs = Int32(stall.components.seconds * 1000 + stall.components.attoseconds / 1_000_000_000_000_000)
        while total < limit {
            let n = chunk.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                total += n
                continue
            }
            if n < 0 && errno == EINTR { continue }   // a signal before anything was sent
            guard n < 0 && errno == EAGAIN else { break }
            var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&p, 1, stallMs) == 0 { break }   // nothing accepted for `stall`: stalled
        }
        return total
    }
}

/// Random bytes from a seeded generator (reproducible).
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state >> 24)
    }
}
