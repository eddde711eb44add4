#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What one request of a connection's input asks for: the next thing a server answers.
public enum HTTPInputItem: Equatable, Sendable {
    /// A complete request head (its body, if any, is skipped), and the response it gets.
    case request(HTTPRequestHead, HTTPResponse.Kind)
    /// A head that cannot be answered (400, 431 or 501): answer `Kind` and end the
    /// connection; the input has nothing more to give.
    case rejected(HTTPResponse.Kind)
}

/// The request side of one HTTP/1.1 connection: frames the pipelined requests out of the
/// bytes read, one `next()` at a time, keeping a head cut by the end of a read (and what a
/// server chose not to parse yet) until more bytes come.
///
/// Why a type of its own: the callback server (ev-http) and the async one (ev-http-async)
/// read differently but frame requests the same way, and framing is where the easy mistakes
/// are (a head split over reads, a body to skip that ends in a later read, a head longer
/// than the limit spread over several reads). One copy, unit-tested by EvHTTPSupportTests.
///
/// Use, per read:
///
/// ```swift
/// input.received(bytes)                 // the bytes just read (not copied)
/// while let item = input.next() { ... } // answer each; stopping early is fine
/// input.keepRest()                      // before the read buffer is reused
/// ```
///
/// Nothing is copied while every read ends on a request boundary (the usual case under
/// keep-alive load): `next()` parses the caller's bytes in place, and only `keepRest` copies
/// what is left, into storage allocated the first time it is needed. A server that stops
/// calling `next()` (its output is full) calls `keepRest()` too, and later `next()` again
/// without new input: parsing goes on from what was kept.
///
/// Bounded: what is kept is at most what one read delivered plus an unfinished head (which
/// is under `headLimit`, or `next()` rejects it with 431).
public final class HTTPConnectionInput {
    /// The longest head accepted.
    public let headLimit: Int

    /// The bytes being parsed: the caller's last read, or `kept`'s contents.
    private var view = UnsafeRawBufferPointer(start: nil, count: 0)
    /// Whether `view` points into `kept` (or into the caller's buffer).
    private var viewIsKept = false
    /// Input kept across reads, allocated the first time it is needed.
    private var kept: UnsafeMutableRawPointer?
    private var keptCapacity = 0
    /// Body bytes of the last request still to be skipped.
    private var bodyToSkip = 0

    public init(headLimit: Int = HTTPRequestParser.defaultHeadLimit) {
        self.headLimit = headLimit
    }

    deinit { kept?.deallocate() }

    /// Whether bytes are waiting to be parsed (a cut head, or what was kept unparsed).
    public var hasUnparsed: Bool { view.count > 0 }

    /// Takes the bytes just read. They are parsed in place by `next()` and must stay valid
    /// until `keepRest()`; what was kept before comes first.
    public func received(_ bytes: UnsafeRawBufferPointer) {
        precondition(view.count == 0 || viewIsKept, "HTTPConnectionInput: received() before keepRest() for the previous read")
        guard bytes.count > 0 else { return }
        if view.count > 0 {
            append(bytes)
        } else {
            view = bytes
            viewIsKept = false
        }
    }

    /// The next request (or rejection) in the input; nil when no complete head is there
    /// yet (read more, then `received` and `next` again).
    public func next() -> HTTPInputItem? {
        if bodyToSkip > 0 {
            let skip = min(bodyToSkip, view.count)
            bodyToSkip -= skip
            consume(skip)
            if bodyToSkip > 0 { return nil }
        }
        switch HTTPRequestParser.parse(view, headLimit: headLimit) {
        case .complete(let head):
            let kind = HTTPResponse.kind(for: head, in: view)
            consume(head.headLength)
            bodyToSkip = head.contentLength
            return .request(head, kind)
        case .incomplete:
            return nil
        case .malformed:
            return reject(.badRequest)
        case .headTooLarge:
            return reject(.headTooLarge)
        case .unsupportedTransferCoding:
            return reject(.notImplemented)
        }
    }

    /// Keeps what `next()` has not used, so that the caller may reuse its read buffer.
    public func keepRest() {
        guard view.count > 0 else { return }
        if viewIsKept {
            // Move what is left to the front (the space before it is used up).
            if let k = kept, view.baseAddress! != UnsafeRawPointer(k) {
                memmove(k, view.baseAddress!, view.count)
                view = UnsafeRawBufferPointer(start: k, count: view.count)
            }
        } else {
            let rest = view
            view = UnsafeRawBufferPointer(start: nil, count: 0)
            viewIsKept = true
            append(rest)
        }
    }

    /// After a rejection: nothing more is parsed.
    private func reject(_ kind: HTTPResponse.Kind) -> HTTPInputItem {
        view = UnsafeRawBufferPointer(start: nil, count: 0)
        viewIsKept = false
        bodyToSkip = 0
        return .rejected(kind)
    }

    private func consume(_ count: Int) {
        view = count == view.count ? UnsafeRawBufferPointer(start: nil, count: 0)
            : UnsafeRawBufferPointer(rebasing: view[count...])
        if view.count == 0 { viewIsKept = false }
    }

    /// Appends `bytes` to the kept input (which `view` is, or is empty), growing it.
    private func append(_ bytes: UnsafeRawBufferPointer) {
        var start = 0
        if viewIsKept, let k = kept, let v = view.baseAddress { start = v - UnsafeRawPointer(k) }
        let count = view.count
        let needed = count + bytes.count
        if start + needed > keptCapacity {
            if needed <= keptCapacity, let k = kept {
                memmove(k, k + start, count)
            } else {
                let capacity = max(needed, max(keptCapacity * 2, headLimit))
                let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
                if let old = kept {
                    if count > 0 { memcpy(grown, old + start, count) }
                    old.deallocate()
                }
                kept = grown
                keptCapacity = capacity
            }
            start = 0
        }
        let k = kept!
        memcpy(k + start + count, bytes.baseAddress!, bytes.count)
        view = UnsafeRawBufferPointer(start: k + start, count: needed)
        viewIsKept = true
    }
}
