#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The fixed responses of the example HTTP servers, formatted straight into the caller's
/// output memory (a `memcpy` of constant pieces and one decimal length: no allocation, no
/// `String`).
///
/// Routes: `/` is "Hello, World!"; `/bytes/N` is N bytes of 'x' for 0 ≤ N ≤ `maxBytes` (a cap,
/// so that a request cannot ask for unbounded work); anything else is 404, and methods other
/// than GET and HEAD are 405. A query string is ignored. HEAD gets the GET response's head.
public enum HTTPResponse {
    /// What to answer.
    public enum Kind: Equatable, Sendable {
        case hello
        case bytes(Int)
        case notFound
        case methodNotAllowed
        /// 400: a malformed head.
        case badRequest
        /// 431: the head exceeds the limit.
        case headTooLarge
        /// 501: a transfer coding (the body's length is unknown).
        case notImplemented
    }

    /// The largest N of `/bytes/N`.
    public static let maxBytes = 1 << 20
    /// Bodies up to this size are copied behind their head (one write for a batch of
    /// responses); larger ones are sent from `body` by a write of their own.
    public static let inlineBodyLimit = 4096
    /// The most bytes `write` puts in the output (a head and an inline body).
    public static let maxWrite = 512 + inlineBodyLimit

    /// What `/bytes/N` sends: `maxBytes` bytes of 'x', made once per process and never
    /// freed (writes of every connection point into it).
    public static var body: UnsafeRawBufferPointer { StaticBody.shared.bytes }

    /// The response to `head`, which was parsed from `buffer`.
    public static func kind(for head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer) -> Kind {
        guard head.method != .other else { return .methodNotAllowed }
        let t = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self) + head.targetOffset
        var count = head.targetCount
        // The path ends at a query.
        if let q = memchr(t, Int32(UInt8(ascii: "?")), count) {
            count = UnsafePointer<UInt8>(q.assumingMemoryBound(to: UInt8.self)) - t
        }
        if count == 1 && t[0] == UInt8(ascii: "/") { return .hello }
        let prefix: StaticString = "/bytes/"
        guard count > 7, count <= 7 + 7, memcmp(t, prefix.utf8Start, 7) == 0 else { return .notFound }
        var n = 0
        for i in 7..<count {
            let d = t[i] &- UInt8(ascii: "0")
            guard d < 10 else { return .notFound }
            n = n * 10 + Int(d)
        }
        return n <= maxBytes ? .bytes(n) : .notFound
    }

    /// The `Connection` header a response carries.
    public enum ConnectionHeader: Sendable {
        /// None: HTTP/1.1 keep-alive, the default.
        case none
        /// `Connection: close`: the server closes after this response.
        case close
        /// `Connection: keep-alive`: an HTTP/1.0 client that asked to keep the connection.
        case keepAlive

        /// The header of the response to `head`: `close` when the connection ends after it,
        /// `keep-alive` for an HTTP/1.0 client that asked to keep it, none otherwise.
        public init(for head: HTTPRequestHead) {
            self = !head.keepAlive ? .close : head.minorVersion == 0 ? .keepAlive : .none
        }
    }

    /// Writes the response for `kind` at `out`, which has room for `maxWrite` bytes; returns
    /// the bytes written and how many bytes of `body` must be sent after them (a body above
    /// `inlineBodyLimit`). `headOnly`: a HEAD request (no body, the same head).
    public static func write(_ kind: Kind, connection: ConnectionHeader, headOnly: Bool,
                             to out: UnsafeMutableRawPointer) -> (count: Int, bodyAfter: Int) {
        if kind == .hello && connection == .none && !headOnly {
            // The hot path of the benchmark: one copy.
            let whole: StaticString = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"
            memcpy(out, whole.utf8Start, whole.utf8CodeUnitCount)
            return (whole.utf8CodeUnitCount, 0)
        }
        var w = Writer(out)
        let bodyCount: Int
        switch kind {
        case .hello:
            w.put("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
            bodyCount = 13
        case .bytes(let n):
            w.put("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n")
            bodyCount = n
        case .notFound:
            w.put("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n")
            bodyCount = 10
        case .methodNotAllowed:
            w.put("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Type: text/plain\r\n")
            bodyCount = 19
        case .badRequest:
            w.put("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n")
            bodyCount = 12
        case .headTooLarge:
            w.put("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n")
            bodyCount = 32
        case .notImplemented:
            w.put("HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\n")
            bodyCount = 16
        }
        switch connection {
        case .none: break
        case .close: w.put("Connection: close\r\n")
        case .keepAlive: w.put("Connection: keep-alive\r\n")
        }
        w.put("Content-Length: ")
        w.putDecimal(bodyCount)
        w.put("\r\n\r\n")
        if headOnly { return (w.count, 0) }
        switch kind {
        case .hello: w.put("Hello, World!")
        case .bytes(let n):
            guard n <= inlineBodyLimit else { return (w.count, n) }
            memcpy(out + w.count, body.baseAddress!, n)
            w.count += n
        case .notFound: w.put("Not Found\n")
        case .methodNotAllowed: w.put("Method Not Allowed\n")
        case .badRequest: w.put("Bad Request\n")
        case .headTooLarge: w.put("Request Header Fields Too Large\n")
        case .notImplemented: w.put("Not Implemented\n")
        }
        return (w.count, 0)
    }

    /// Appends constant pieces and numbers at a pointer.
    private struct Writer {
        let out: UnsafeMutableRawPointer
        var count = 0
        init(_ out: UnsafeMutableRawPointer) { self.out = out }

        @inline(__always)
        mutating func put(_ s: StaticString) {
            memcpy(out + count, s.utf8Start, s.utf8CodeUnitCount)
            count += s.utf8CodeUnitCount
        }

        mutating func putDecimal(_ value: Int) {
            var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes of scratch
            var n = value
            var len = 0
            withUnsafeMutableBytes(of: &digits) { d in
                repeat {
                    d[23 - len] = UInt8(ascii: "0") + UInt8(n % 10)
                    n /= 10
                    len += 1
                } while n > 0
                memcpy(out + count, d.baseAddress! + 24 - len, len)
            }
            count += len
        }
    }

    /// The shared body memory.
    private final class StaticBody: @unchecked Sendable {
        // Immutable after init: every thread only reads it.
        static let shared = StaticBody()
        let bytes: UnsafeRawBufferPointer
        private init() {
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: HTTPResponse.maxBytes, alignment: 64)
            memset(b.baseAddress!, Int32(UInt8(ascii: "x")), b.count)
            bytes = UnsafeRawBufferPointer(b)
        }
    }
}
