import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

// The conformance suite: every test is `@Test(arguments: conformanceBackends)` and starts
// with `let loop = try makeTestLoop(backend)`, then `let h = Harness(loop)` and
// `defer { h.finish() }` (SocketHelpers.swift), which drains the loop before its descriptors
// are closed and its buffers freed. Sockets given to the loop go through `h.forLoop(_:)`,
// which makes them blocking or non-blocking as the loop prefers; the test's own side of a
// connection uses plain system calls (`Sock`), and `runUntil(loop) { condition }` runs the
// loop with a bound on time. Narrow a run with EV_TEST_BACKENDS=epoll,poll.

/// The backends the conformance suite runs on: all of them, unless EV_TEST_BACKENDS
/// (a comma-separated list such as "epoll,poll") narrows the run.
let conformanceBackends: [Backend] = {
    guard let list = getenv("EV_TEST_BACKENDS").map({ String(cString: $0) }), !list.isEmpty else {
        return Backend.allCases
    }
    return list.split(separator: ",").compactMap { Backend(name: String($0)) }
}()

/// Makes a loop on `backend` for a test. A backend this machine cannot run is reported
/// loudly (on stderr) and the test case is cancelled, which Swift Testing reports as
/// skipped, never as passed.
///
/// Running out of descriptors (EMFILE, ENFILE) is not a property of the machine but of the
/// test run (a test that lowered RLIMIT_NOFILE in this process, or leaked descriptors), so
/// it fails the test instead of skipping it: under parallel `swift test` a lowered limit
/// once turned most of the suite into "skipped" with only a handful of failures.
func makeTestLoop(_ backend: Backend) throws -> LoopCore {
    do {
        return try makeLoop(backend)
    } catch where error.errno == EMFILE || error.errno == ENFILE {
        throw error
    } catch {
        let message = "EVLOOP TEST SKIPPED on \(backend): \(error)\n"
        // write(2) on descriptor 2: Swift 6 rejects the C global `stderr` (shared mutable state).
        _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        try Test.cancel(Comment(rawValue: message))
    }
}
