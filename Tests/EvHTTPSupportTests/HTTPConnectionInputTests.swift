import Testing
import EvHTTPSupport

/// What `input` yields for `reads`, fed one read at a time through a reused buffer (as a
/// server's read buffer is reused), with `keepRest()` after each; a compact description
/// per item ("GET /x", "HEAD /", "reject 400").
private func frames(_ reads: [String], input: HTTPConnectionInput = HTTPConnectionInput(),
                    stopAfter: Int = .max) -> [String] {
    var out: [String] = []
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    defer { buffer.deallocate() }
    for read in reads {
        let bytes = Array(read.utf8)
        // Whatever the previous read left there is overwritten, as by the next recv.
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        buffer.copyBytes(from: bytes)
        input.received(UnsafeRawBufferPointer(rebasing: buffer[..<bytes.count]))
        var taken = 0
        while taken < stopAfter, let item = input.next() {
            taken += 1
            out.append(describe(item))
        }
        input.keepRest()
    }
    return out
}

private func describe(_ item: HTTPInputItem) -> String {
    switch item {
    case .request(let head, let kind):
        let method = head.method == .get ? "GET" : head.method == .head ? "HEAD" : "OTHER"
        switch kind {
        case .hello: return "\(method) /"
        case .bytes(let n): return "\(method) /bytes/\(n)"
        case .notFound: return "\(method) 404"
        case .methodNotAllowed: return "\(method) 405"
        default: return "\(method) \(kind)"
        }
    case .rejected(let kind):
        switch kind {
        case .badRequest: return "reject 400"
        case .headTooLarge: return "reject 431"
        case .notImplemented: return "reject 501"
        default: return "reject \(kind)"
        }
    }
}

private func get(_ target: String) -> String { "GET \(target) HTTP/1.1\r\nHost: a\r\n\r\n" }

@Suite("HTTP connection input (request framing across reads)")
struct HTTPConnectionInputTests {
    @Test("pipelined requests in one read are yielded in order")
    func pipelinedInOneRead() {
        #expect(frames([get("/") + get("/bytes/5") + "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"])
            == ["GET /", "GET /bytes/5", "HEAD /"])
    }

    @Test("a head cut anywhere by the end of a read is completed by the next read")
    func cutHeads() {
        let text = get("/bytes/7") + get("/")
        let bytes = Array(text.utf8)
        for cut in 1..<bytes.count {
            let a = String(decoding: bytes[..<cut], as: UTF8.self)
            let b = String(decoding: bytes[cut...], as: UTF8.self)
            #expect(frames([a, b]) == ["GET /bytes/7", "GET /"], "cut at \(cut)")
        }
        // One byte per read.
        #expect(frames(bytes.map { String(decoding: [$0], as: UTF8.self) }) == ["GET /bytes/7", "GET /"])
    }

    @Test("a request body is skipped, also when it ends in a later read")
    func bodiesAreSkipped() {
        let post = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
        #expect(frames([post + "0123456789" + get("/")]) == ["OTHER 405", "GET /"])
        #expect(frames([post + "0123", "456", "789" + get("/")]) == ["OTHER 405", "GET /"])
        // A body that looks like a request is not parsed as one.
        let sneaky = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \(get("/x").utf8.count)\r\n\r\n" + get("/x")
        #expect(frames([sneaky, get("/")]) == ["OTHER 405", "GET /"])
    }

    @Test("a server that stops early keeps the rest and goes on from it without new input")
    func stoppingEarly() {
        let input = HTTPConnectionInput()
        #expect(frames([get("/") + get("/bytes/1") + get("/bytes/2")], input: input, stopAfter: 1) == ["GET /"])
        #expect(input.hasUnparsed)
        // Later (the output drained): the kept requests, then what a new read adds.
        var rest: [String] = []
        while let item = input.next() { rest.append(describe(item)) }
        input.keepRest()
        #expect(rest == ["GET /bytes/1", "GET /bytes/2"])
        #expect(!input.hasUnparsed)
        #expect(frames([get("/")], input: input) == ["GET /"])
    }

    @Test("malformed, oversized and chunked heads are rejected once, and nothing after them is parsed")
    func rejections() {
        #expect(frames([get("/") + "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n" + get("/")]) == ["GET /", "reject 400"])
        #expect(frames(["POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"]) == ["reject 501"])
        // An oversized head spread over reads that are each under the limit.
        let big = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 3000)
        #expect(frames([big, String(repeating: "b", count: 3000), String(repeating: "c", count: 3000), "\r\n\r\n"])
            == ["reject 431"])
        #expect(frames([String(repeating: "a", count: 100)], input: HTTPConnectionInput(headLimit: 64)) == ["reject 431"])
    }

    @Test("the response's Connection header follows the request's version and options")
    func connectionHeader() {
        func header(_ text: String) -> HTTPResponse.ConnectionHeader? {
            let input = HTTPConnectionInput()
            return Array(text.utf8).withUnsafeBytes { bytes -> HTTPResponse.ConnectionHeader? in
                input.received(bytes)
                guard case .request(let head, _) = input.next() else { return nil }
                return HTTPResponse.ConnectionHeader(for: head)
            }
        }
        #expect(header(get("/")) == HTTPResponse.ConnectionHeader.none)
        #expect(header("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") == .close)
        #expect(header("GET / HTTP/1.0\r\n\r\n") == .close)
        #expect(header("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == .keepAlive)
    }
}
