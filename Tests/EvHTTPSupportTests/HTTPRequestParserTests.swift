import Testing
import EvHTTPSupport

/// Parses `text` (a Swift string for readability; the parser sees its UTF-8 bytes).
private func parse(_ text: String, limit: Int = HTTPRequestParser.defaultHeadLimit) -> HTTPParseOutcome {
    Array(text.utf8).withUnsafeBytes { HTTPRequestParser.parse($0, headLimit: limit) }
}

private func head(_ text: String) -> HTTPRequestHead? {
    if case .complete(let h) = parse(text) { return h }
    return nil
}

private func target(_ text: String) -> String? {
    guard let h = head(text) else { return nil }
    let bytes = Array(text.utf8)
    return String(decoding: bytes[h.targetOffset..<(h.targetOffset + h.targetCount)], as: UTF8.self)
}

@Suite("HTTP request-head parser")
struct HTTPRequestParserTests {
    @Test("a minimal HTTP/1.1 GET: keep-alive, no body, the head's length")
    func minimalGet() {
        let text = "GET /index HTTP/1.1\r\nHost: a\r\n\r\n"
        let h = head(text)
        #expect(h == HTTPRequestHead(method: .get, targetOffset: 4, targetCount: 6, minorVersion: 1,
                                     keepAlive: true, contentLength: 0, headLength: text.utf8.count))
        #expect(target(text) == "/index")
    }

    @Test("only the first of pipelined requests is parsed; its length says where the next starts")
    func pipelined() {
        let first = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        let text = first + "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(head(text)?.headLength == first.utf8.count)
        #expect(head(String(text.dropFirst(first.count)))?.method == .head)
    }

    @Test("every prefix of a valid head is incomplete, never an error")
    func prefixesAreIncomplete() {
        let text = "POST /upload?x=1 HTTP/1.1\r\nHost: example\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        for n in 0..<text.utf8.count {
            let prefix = String(decoding: Array(text.utf8)[0..<n], as: UTF8.self)
            #expect(parse(prefix) == .incomplete, "prefix of \(n) bytes")
        }
        #expect(head(text)?.method == .other)
        #expect(head(text)?.contentLength == 5)
    }

    @Test("Connection: close ends HTTP/1.1; HTTP/1.0 keeps the connection only when asked")
    func keepAliveRules() {
        #expect(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")?.keepAlive == false)
        #expect(head("GET / HTTP/1.1\r\nHost: a\r\nconnection:  Upgrade, CLOSE \r\n\r\n")?.keepAlive == false)
        #expect(head("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n")?.keepAlive == true)
        #expect(head("GET / HTTP/1.0\r\n\r\n")?.keepAlive == false)
        #expect(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")?.keepAlive == true)
        #expect(head("GET / HTTP/1.0\r\n\r\n")?.minorVersion == 0)
    }

    @Test("header names are case-insensitive; whitespace around values is trimmed")
    func headerNames() {
        #expect(head("GET / HTTP/1.1\r\nHOST: a\r\nCONTENT-length:\t12 \r\n\r\n")?.contentLength == 12)
        #expect(head("GET / HTTP/1.1\r\nhost:a\r\nX-Other: anything, at all\r\n\r\n") != nil)
    }

    @Test("empty lines before the request line are skipped (RFC 9112 §2.2)")
    func leadingEmptyLines() {
        let text = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect(head(text)?.targetOffset == 8)
        #expect(head(text)?.headLength == text.utf8.count)
    }

    @Test("malformed heads", arguments: [
        "GET / HTTP/1.1\nHost: a\n\n",                    // bare LF
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",             // two spaces
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",              // version
        "GET / http/1.1\r\nHost: a\r\n\r\n",
        "GET /\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n",        // DEL in the target
        "G(T / HTTP/1.1\r\n",                              // not a token
        " GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",             // space before the colon
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",   // obsolete line folding
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\u{01}b\r\n\r\n",      // a control character in a value
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                           // no Host in HTTP/1.1
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "\r\r\n",
        "\u{16}\u{03}\u{01}\u{02}\u{00}",                  // a TLS ClientHello
    ])
    func malformed(text: String) {
        #expect(parse(text) == .malformed, "\(text.debugDescription)")
    }

    @Test("malformed input is reported before the head is complete")
    func earlyMalformed() {
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\n folded") == .malformed)
        #expect(parse("BAD\u{00}") == .malformed)
    }

    @Test("a head longer than the limit is too large; at the limit it is accepted")
    func headLimit() {
        let base = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let exact = base + String(repeating: "v", count: 100 - base.utf8.count - 4) + "\r\n\r\n"
        #expect(exact.utf8.count == 100)
        #expect(parse(exact, limit: 100) != .headTooLarge)
        #expect(head(exact) != nil)
        #expect(parse(exact, limit: 99) == .headTooLarge)
        #expect(parse(String(repeating: "a", count: 9000)) == .headTooLarge)
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 9000)) == .headTooLarge)
        // Below the limit and unfinished: wait for more.
        #expect(parse("GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 8000)) == .incomplete)
    }

    @Test("a Transfer-Encoding is reported as unsupported")
    func transferEncoding() {
        #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n") == .unsupportedTransferCoding)
    }
}

@Suite("HTTP fixed responses")
struct HTTPResponseTests {
    private func response(_ kind: HTTPResponse.Kind, _ connection: HTTPResponse.ConnectionHeader = .none,
                          headOnly: Bool = false) -> (text: String, bodyAfter: Int) {
        var out = [UInt8](repeating: 0, count: HTTPResponse.maxWrite)
        let (n, after) = out.withUnsafeMutableBytes {
            HTTPResponse.write(kind, connection: connection, headOnly: headOnly, to: $0.baseAddress!)
        }
        return (String(decoding: out[0..<n], as: UTF8.self), after)
    }

    private func kind(_ target: String, method: String = "GET") -> HTTPResponse.Kind? {
        let text = "\(method) \(target) HTTP/1.1\r\nHost: a\r\n\r\n"
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { b in
            guard case .complete(let h) = HTTPRequestParser.parse(b) else { return nil }
            return HTTPResponse.kind(for: h, in: b)
        }
    }

    @Test("routes: /, /bytes/N up to the cap, 404, 405")
    func routes() {
        #expect(kind("/") == .hello)
        #expect(kind("/?q=1") == .hello)
        #expect(kind("/bytes/0") == .bytes(0))
        #expect(kind("/bytes/1048576") == .bytes(1 << 20))
        #expect(kind("/bytes/1048577") == .notFound)
        #expect(kind("/bytes/") == .notFound)
        #expect(kind("/bytes/12a") == .notFound)
        #expect(kind("/bytes/99999999999999999999") == .notFound)
        #expect(kind("/other") == .notFound)
        #expect(kind("/", method: "POST") == .methodNotAllowed)
        #expect(kind("/", method: "HEAD") == .hello)
    }

    @Test("every response's Content-Length is its body's length", arguments: [
        HTTPResponse.Kind.hello, .bytes(0), .bytes(7), .bytes(4096), .notFound, .methodNotAllowed,
        .badRequest, .headTooLarge, .notImplemented,
    ])
    func contentLengths(kind: HTTPResponse.Kind) throws {
        for connection in [HTTPResponse.ConnectionHeader.none, .close, .keepAlive] {
            let (text, after) = response(kind, connection)
            #expect(after == 0)
            let parts = text.split(separator: "\r\n\r\n", maxSplits: 1, omittingEmptySubsequences: false)
            try #require(parts.count == 2, "\(text.debugDescription)")
            let length = parts[0].split(separator: "\r\n").first { $0.hasPrefix("Content-Length: ") }
            #expect(length.map { Int($0.dropFirst(16)) } == parts[1].utf8.count, "\(text.debugDescription)")
            #expect(text.contains("Connection: close") == (connection == .close))
            #expect(text.contains("Connection: keep-alive") == (connection == .keepAlive))
        }
    }

    @Test("the hello fast path equals the general form; HEAD has the same head and no body")
    func hello() {
        #expect(response(.hello).text == "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")
        let head = response(.hello, headOnly: true).text
        #expect(head.hasSuffix("Content-Length: 13\r\n\r\n"))
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test("a body above the inline limit is sent after the head, from the shared body")
    func largeBody() {
        let (text, after) = response(.bytes(100_000))
        #expect(after == 100_000)
        #expect(text.hasSuffix("Content-Length: 100000\r\n\r\n"))
        #expect(HTTPResponse.body.count == HTTPResponse.maxBytes)
        #expect(HTTPResponse.body.allSatisfy { $0 == UInt8(ascii: "x") })
    }
}
