#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What a request's method is, as far as the example servers care: they serve GET and HEAD
/// and answer anything else with 405.
public enum HTTPMethod: UInt8, Sendable {
    case get
    case head
    case other
}

/// The parts of one request head that ev-http acts on, as offsets into the buffer it was
/// parsed from (no `String` is made per request: the target is looked at in place).
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: HTTPMethod
    /// Where the request target starts in the parsed buffer, and its length.
    public var targetOffset: Int
    public var targetCount: Int
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var minorVersion: Int
    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    public var keepAlive: Bool
    /// The request's body length (`Content-Length`, 0 without one): the bytes after the head
    /// that belong to this request and are skipped.
    public var contentLength: Int
    /// Bytes of the head, from the buffer's start (empty lines before the request line
    /// included) through the blank line that ends it.
    public var headLength: Int

    public init(method: HTTPMethod, targetOffset: Int, targetCount: Int, minorVersion: Int,
                keepAlive: Bool, contentLength: Int, headLength: Int) {
        self.method = method
        self.targetOffset = targetOffset
        self.targetCount = targetCount
        self.minorVersion = minorVersion
        self.keepAlive = keepAlive
        self.contentLength = contentLength
        self.headLength = headLength
    }
}

/// What parsing the start of a buffer found.
public enum HTTPParseOutcome: Equatable, Sendable {
    /// A whole request head; the request's body (if any) follows it.
    case complete(HTTPRequestHead)
    /// No error so far, but the head is not complete: read more and parse again.
    case incomplete
    /// Not HTTP/1.x as RFC 9112 writes it (answer 400 and close).
    case malformed
    /// No end of the head within the limit (answer 431 and close).
    case headTooLarge
    /// A `Transfer-Encoding` header: the body's length is not known without decoding the
    /// coding, which the examples do not (answer 501 and close).
    case unsupportedTransferCoding
}

/// A request-head parser for HTTP/1.0 and 1.1 (RFC 9112), written for speed: it scans the
/// bytes where they are (a `memchr` per header line, a byte loop over the request line and
/// the few header values it needs), allocates nothing, and never makes a `String`.
///
/// Why a parser of our own: the examples take no dependencies, and a server that answers
/// keep-alive pipelined requests spends most of its user-space time here, so the parse is
/// part of what the `http` benchmark group measures.
///
/// Strict where a lenient parser would let a request be read two ways (request smuggling):
/// lines end in CRLF, no whitespace before a header's colon, no obsolete line folding, one
/// `Content-Length` value of digits only, at most one `Host` (and one is required in
/// HTTP/1.1), only the versions 1.0 and 1.1. Empty lines before the request line are
/// skipped, as RFC 9112 §2.2 asks. It reads `Content-Length`, `Connection` (`close`,
/// `keep-alive`), `Transfer-Encoding` (not supported: reported) and `Host`; other headers
/// are checked for syntax and skipped.
///
/// Stateless: a caller with an incomplete head parses again from the head's start once
/// more bytes have arrived. That rescans at most `headLimit` bytes per read, and keeps no
/// per-connection parser state.
public enum HTTPRequestParser {
    /// The largest head accepted by default (8 KiB, as most servers).
    public static let defaultHeadLimit = 8 * 1024

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let sp = UInt8(ascii: " ")
    private static let ht = UInt8(ascii: "\t")

    /// Parses the request head at the start of `buffer`. A head longer than `headLimit`
    /// bytes (everything through its blank line) is `.headTooLarge`; malformed input is
    /// reported as soon as it is seen, even before the head is complete.
    public static func parse(_ buffer: UnsafeRawBufferPointer, headLimit: Int = defaultHeadLimit) -> HTTPParseOutcome {
        guard let raw = buffer.baseAddress, buffer.count > 0 else { return .incomplete }
        let p = raw.assumingMemoryBound(to: UInt8.self)
        let n = buffer.count
        let limit = min(n, headLimit)
        // Not complete within what is here: more may come, unless the limit is reached.
        let short: HTTPParseOutcome = n >= headLimit ? .headTooLarge : .incomplete

        // Empty lines before the request line (RFC 9112 §2.2).
        var i = 0
        while i < limit && p[i] == cr {
            guard i + 1 < limit else { return short }
            guard p[i + 1] == lf else { return .malformed }
            i += 2
        }

        // The method: a token, then one space.
        let methodStart = i
        while i < limit && isToken(p[i]) { i += 1 }
        guard i < limit else { return short }
        guard p[i] == sp, i > methodStart else { return .malformed }
        let method = methodOf(p + methodStart, i - methodStart)
        i += 1

        // The target: visible ASCII up to the next space.
        let targetStart = i
        while i < limit && p[i] > sp && p[i] < 0x7F { i += 1 }
        guard i < limit else { return short }
        guard p[i] == sp, i > targetStart else { return .malformed }
        let targetCount = i - targetStart
        i += 1

        // The version, then CRLF: "HTTP/1.0" or "HTTP/1.1".
        let version: StaticString = "HTTP/1."
        var k = 0
        while k < 7 {
            guard i < limit else { return short }
            guard p[i] == version.utf8Start[k] else { return .malformed }
            i += 1
            k += 1
        }
        guard i < limit else { return short }
        let minor: Int
        switch p[i] {
        case UInt8(ascii: "0"): minor = 0
        case UInt8(ascii: "1"): minor = 1
        default: return .malformed
        }
        i += 1
        guard i < limit else { return short }
        guard p[i] == cr else { return .malformed }
        i += 1
        guard i < limit else { return short }
        guard p[i] == lf else { return .malformed }
        i += 1

        // Header lines until the empty one.
        var contentLength = -1
        var close = false
        var keepAliveToken = false
        var transferCoding = false
        var hosts = 0
        while true {
            guard i < limit else { return short }
            guard let found = memchr(p + i, Int32(lf), limit - i) else {
                // No line end yet: check what is there for the errors that can be told now.
                if p[i] == sp || p[i] == ht { return .malformed }
                return short
            }
            let lineEnd = UnsafePointer<UInt8>(found.assumingMemoryBound(to: UInt8.self)) - p   // index of LF
            guard lineEnd > i, p[lineEnd - 1] == cr else { return .malformed }
            let contentEnd = lineEnd - 1
            if contentEnd == i {
                i = lineEnd + 1
                break   // the empty line: end of the head
            }
            // name ":" OWS value OWS; a line starting with whitespace is obsolete folding.
            var j = i
            while j < contentEnd && isToken(p[j]) { j += 1 }
            guard j > i, j < contentEnd, p[j] == UInt8(ascii: ":") else { return .malformed }
            let nameStart = i
            let nameCount = j - i
            var valueStart = j + 1
            while valueStart < contentEnd && (p[valueStart] == sp || p[valueStart] == ht) { valueStart += 1 }
            var valueEnd = contentEnd
            while valueEnd > valueStart && (p[valueEnd - 1] == sp || p[valueEnd - 1] == ht) { valueEnd -= 1 }
            var v = valueStart
            while v < valueEnd {
                let c = p[v]
                guard c >= sp || c == ht, c != 0x7F else { return .malformed }
                v += 1
            }
            switch nameCount {
            case 4 where matches(p + nameStart, 4, "host"):
                hosts += 1
                guard hosts == 1 else { return .malformed }
            case 10 where matches(p + nameStart, 10, "connection"):
                scanConnection(p, from: valueStart, to: valueEnd, close: &close, keepAlive: &keepAliveToken)
            case 14 where matches(p + nameStart, 14, "content-length"):
                guard valueEnd > valueStart, valueEnd - valueStart <= 15 else { return .malformed }
                var length = 0
                for d in valueStart..<valueEnd {
                    let c = p[d] &- UInt8(ascii: "0")
                    guard c < 10 else { return .malformed }
                    length = length * 10 + Int(c)
                }
                guard contentLength < 0 || contentLength == length else { return .malformed }
                contentLength = length
            case 17 where matches(p + nameStart, 17, "transfer-encoding"):
                transferCoding = true
            default:
                break
            }
            i = lineEnd + 1
        }
        if minor == 1 && hosts == 0 { return .malformed }   // RFC 9112 §3.2: Host is required
        if transferCoding { return .unsupportedTransferCoding }
        return .complete(HTTPRequestHead(
            method: method, targetOffset: targetStart, targetCount: targetCount, minorVersion: minor,
            keepAlive: minor == 1 ? !close : (keepAliveToken && !close),
            contentLength: max(contentLength, 0), headLength: i))
    }

    /// The `Connection` header's options (a comma-separated list, RFC 9110 §7.6.1).
    @inline(__always)
    private static func scanConnection(_ p: UnsafePointer<UInt8>, from start: Int, to end: Int,
                                       close: inout Bool, keepAlive: inout Bool) {
        var i = start
        while i < end {
            while i < end && (p[i] == sp || p[i] == ht || p[i] == UInt8(ascii: ",")) { i += 1 }
            let elementStart = i
            while i < end && p[i] != UInt8(ascii: ",") { i += 1 }
            var elementEnd = i
            while elementEnd > elementStart && (p[elementEnd - 1] == sp || p[elementEnd - 1] == ht) { elementEnd -= 1 }
            let count = elementEnd - elementStart
            if count == 5 && matches(p + elementStart, 5, "close") { close = true }
            if count == 10 && matches(p + elementStart, 10, "keep-alive") { keepAlive = true }
        }
    }

    @inline(__always)
    private static func methodOf(_ p: UnsafePointer<UInt8>, _ count: Int) -> HTTPMethod {
        // Methods are case-sensitive (RFC 9110 §9.1).
        if count == 3 && p[0] == UInt8(ascii: "G") && p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "T") { return .get }
        if count == 4 && p[0] == UInt8(ascii: "H") && p[1] == UInt8(ascii: "E") && p[2] == UInt8(ascii: "A")
            && p[3] == UInt8(ascii: "D") { return .head }
        return .other
    }

    /// Whether `count` bytes at `p` equal `lowercase` ignoring ASCII case. Correct for the
    /// names and options compared here (letters and '-'): setting bit 0x20 maps only an
    /// uppercase letter to its lowercase one, and only CR (never in a checked line) to '-'.
    @inline(__always)
    private static func matches(_ p: UnsafePointer<UInt8>, _ count: Int, _ lowercase: StaticString) -> Bool {
        let s = lowercase.utf8Start
        var k = 0
        while k < count {
            guard p[k] | 0x20 == s[k] else { return false }
            k += 1
        }
        return true
    }

    /// RFC 9110 §5.6.2 tchar.
    @inline(__always)
    static func isToken(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}
