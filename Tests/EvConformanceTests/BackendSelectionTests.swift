import Testing
import Ev

/// Runtime selection (issue 6): EV_BACKEND forces a backend strictly, detection prefers
/// io_uring then epoll then poll and says why it skipped any. (The seccomp-denied io_uring
/// case runs in a child process: see EvExampleTests' ev-backend-probe tests.)
@Suite struct BackendSelectionTests {
    @Test(.tags(.pitfallC8), arguments: Backend.allCases)
    func environmentVariableForcesTheBackend(backend: Backend) throws {
        let outcome = Result { () throws(BackendSelectionError) in
            try makeBestLoop(environment: ["EV_BACKEND": backend.rawValue])
        }
        switch outcome {
        case .success(let (loop, selection)):
            #expect(loop.backend == backend)
            #expect(selection.backend == backend)
            #expect(selection.forced)
            #expect(selection.forcedBy == "EV_BACKEND")
            #expect(selection.description.contains("forced by EV_BACKEND"))
        case .failure(let error):
            // Strict: a forced backend that cannot run is an error, never a fallback.
            guard case .forcedBackendUnavailable(let reason) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(reason.backend == backend)
            _ = try makeTestLoop(backend)   // reports the skip loudly and cancels the case
        }
    }

    @Test(.tags(.pitfallC8)) func explicitRequestWinsOverTheEnvironment() throws {
        let (loop, selection) = try makeBestLoop(backend: .poll, environment: ["EV_BACKEND": "epoll"])
        #expect(loop.backend == .poll)
        #expect(selection.forcedBy == "an explicit request")
    }

    @Test(.tags(.pitfallC8)) func unknownNameIsATypedError() {
        #expect(throws: BackendSelectionError.self) {
            _ = try makeBestLoop(environment: ["EV_BACKEND": "kqueue"])
        }
        #expect(throws: BackendSelectionError.self) { _ = try parseBackendOption("select") }
    }

    @Test(.tags(.pitfallC9)) func detectionPicksTheFirstBackendThatInitializes() throws {
        for value in [nil, "", "auto"] as [String?] {
            let env = value.map { ["EV_BACKEND": $0] } ?? [:]
            let (loop, selection) = try makeBestLoop(environment: env)
            #expect(!selection.forced)
            #expect(loop.backend == selection.backend)
            // Every backend ahead of the chosen one was tried and has a reason.
            let ahead = Backend.allCases.prefix { $0 != selection.backend }
            #expect(selection.skipped.map(\.backend) == Array(ahead))
            #expect(selection.skipped.allSatisfy { !$0.reason.isEmpty })
            // And the chosen one is the first that initializes on its own.
            for b in ahead { #expect(throws: BackendUnavailable.self) { _ = try makeLoop(b) } }
        }
    }

    @Test func backendNamesParse() {
        #expect(Backend(name: "io_uring") == .ioUring)
        #expect(Backend(name: "uring") == .ioUring)
        #expect(Backend(name: "EPOLL") == .epoll)
        #expect(Backend(name: "poll") == .poll)
        #expect(Backend(name: "select") == nil)
    }
}
