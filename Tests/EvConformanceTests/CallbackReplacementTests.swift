// Conformance: a callback may replace its own completion's callback while it runs (every
// watcher operation started from a callback does). The loop calls the stored closure without
// retaining it (Completion.callBorrowedCallback), so the closure that is running must stay
// alive until it returns, and be released once it has: no use after free, no leak.
import Testing
import Ev

/// An object whose lifetime the tests watch through weak references.
private final class Token {
    let name: String
    init(_ name: String) { self.name = name }
}

@Suite("Conformance: replacing a callback while it runs")
struct CallbackReplacementTests {

    /// The running closure's captures stay alive after it replaces itself, until it
    /// returns; then they are released. The replacement runs on the next activation.
    @Test(arguments: conformanceBackends)
    func runningCallbackLivesUntilItReturns(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        var log: [String] = []
        weak var firstCapture: Token?
        let c = Completion(.nop)
        do {
            let token = Token("first")
            firstCapture = token
            c.callback = { c, _ in
                c.callback = { _, _ in
                    log.append("second")
                    return .disarm
                }
                // Only the running closure holds `token`: had the replacement released it,
                // the weak reference would be nil here.
                log.append(firstCapture == nil ? "first released while running" : "first alive")
                log.append(token.name)
                return .rearm
            }
        }
        try loop.add(c)
        #expect(try runUntilDone(loop))
        #expect(log == ["first alive", "first", "second"])
        #expect(firstCapture == nil, "the replaced closure was never released")
    }

    /// Replaced twice in one call: the middle closure (never running) is released at once,
    /// the running one when the call returns, and the last one is what runs next.
    @Test(arguments: conformanceBackends)
    func replacedTwiceWhileRunning(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        var log: [String] = []
        weak var runningCapture: Token?
        weak var middleCapture: Token?
        let c = Completion(.nop)
        do {
            let token = Token("running")
            runningCapture = token
            c.callback = { c, _ in
                do {
                    let middle = Token("middle")
                    middleCapture = middle
                    c.callback = { _, _ in
                        log.append(middle.name)
                        return .disarm
                    }
                }
                #expect(middleCapture != nil)
                c.callback = { _, _ in
                    log.append("last")
                    return .disarm
                }
                #expect(middleCapture == nil, "the middle closure, never running, is released when replaced")
                #expect(runningCapture != nil, "the running closure lives until it returns")
                log.append(token.name)
                return .rearm
            }
        }
        try loop.add(c)
        #expect(try runUntilDone(loop))
        #expect(log == ["running", "last"])
        #expect(runningCapture == nil, "the running closure was never released")
    }

    /// A callback replaced from outside, between activations, is released at once (the
    /// ordinary path), and one replaced by the next activation's own callback too.
    @Test(arguments: conformanceBackends)
    func replacementOutsideACallbackReleasesAtOnce(backend: Backend) throws {
        let loop = try makeTestLoop(backend)
        weak var capture: Token?
        var runs = 0
        let c = Completion(.nop)
        do {
            let token = Token("outside")
            capture = token
            c.callback = { _, _ in
                runs += token.name.count
                return .disarm
            }
        }
        #expect(capture != nil)
        c.callback = { _, _ in
            runs += 1
            return .disarm
        }
        #expect(capture == nil)
        for _ in 0..<3 {
            try loop.add(c)
            #expect(try runUntilDone(loop))
        }
        #expect(runs == 3)
    }
}
