import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

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
func makeTestLoop(_ backend: Backend) throws -> LoopCore {
    do {
        return try makeLoop(backend)
    } catch {
        let message = "EVLOOP TEST SKIPPED on \(backend): \(error)\n"
        // write(2) on descriptor 2: Swift 6 rejects the C global `stderr` (shared mutable state).
        _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        try Test.cancel(Comment(rawValue: message))
    }
}
