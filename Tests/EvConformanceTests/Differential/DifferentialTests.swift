// Differential testing across backends (issue 16): random programs over the public API
// (DifferentialProgram.swift), run on every backend (DifferentialRun.swift), each run
// checking the loop's invariants and returning the outcome its semantics fix, which must
// equal what the program predicts, and so be the same on io_uring, epoll and poll.
//
// docs/TESTING.md says which results are compared and which are not (callback order
// within a tick, the winner of a cancel race), and how to replay a failing seed:
//
//   EV_DIFFTEST_SEED=1234 swift test --filter DifferentialTests   (one seed, full trace)
//   EV_DIFFTEST_FIRST=5000 EV_DIFFTEST_SEEDS=20000 swift test --filter DifferentialTests
//   bash scripts/difftest.sh --minutes 10                          (a longer soak)
import Testing
import Ev
#if canImport(Glibc)
import Glibc
#endif

/// The seeds a run covers, from the environment (see the top of this file).
private struct SeedRange {
    var seeds: Range<UInt64>
    /// One seed asked for by EV_DIFFTEST_SEED: its whole trace is printed.
    var replay: Bool

    init(defaultCount: UInt64) {
        func number(_ name: String) -> UInt64? { getenv(name).flatMap { UInt64(String(cString: $0)) } }
        if let one = number("EV_DIFFTEST_SEED") {
            seeds = one..<(one + 1)
            replay = true
        } else {
            let first = number("EV_DIFFTEST_FIRST") ?? 0
            seeds = first..<(first + (number("EV_DIFFTEST_SEEDS") ?? defaultCount))
            replay = false
        }
    }
}

@Suite struct DifferentialTests {
    /// Seeds per backend in the test command (about 2 ms of CPU each, and a few ms of
    /// waiting for timers, which the rest of the parallel suite fills).
    static let seedsPerBackend: UInt64 = 3_000

    /// Runs one seed on one backend: the violations (with the trace) or the outcome.
    private static func runOne(seed: UInt64, backend: Backend, replay: Bool) throws -> Result<DifferentialOutcome, DifferentialFailure> {
        let program = DifferentialProgram(seed: seed)
        let loop = try makeTestLoop(backend)
        let run = DifferentialRun(program: program, loop: loop)
        let outcome = try run.run()
        var problems = run.violations
        let predicted = DifferentialOutcome.predicted(for: program)
        if problems.isEmpty && outcome != predicted {
            problems.append("outcome \(outcome), the program predicts \(predicted)")
        }
        if replay {
            print("[\(backend)] seed \(seed) trace:\n\(run.traceTail(100_000))\n[\(backend)] outcome \(outcome)")
        }
        guard problems.isEmpty else {
            return .failure(DifferentialFailure(seed: seed, backend: backend, problems: problems, trace: run.traceTail()))
        }
        return .success(outcome)
    }

    /// Random programs keep every invariant and reach the predicted outcome, on each backend.
    @Test(arguments: conformanceBackends)
    func randomProgramsKeepTheInvariants(backend: Backend) throws {
        let range = SeedRange(defaultCount: Self.seedsPerBackend)
        let started = LoopInstant.now()
        var ran = 0
        for seed in range.seeds {
            let result = try Self.runOne(seed: seed, backend: backend, replay: range.replay)
            ran += 1
            if case .failure(let failure) = result {
                Issue.record(Comment(rawValue: failure.description))
                break   // one failing seed is enough to replay; the rest would repeat it
            }
        }
        print("[\(backend)] differential: \(ran) seeds from \(range.seeds.lowerBound) in \(LoopInstant.now() - started)")
    }

    /// The same seeds on every backend reach the same outcome (compared directly, not only
    /// with the prediction): the bytes each stream delivered, the order of the ordered
    /// timers, the last notification seen.
    @Test func sameOutcomeOnEveryBackend() throws {
        var backends: [Backend] = []
        for backend in conformanceBackends {
            do {
                _ = try makeLoop(backend)
                backends.append(backend)
            } catch {
                let message = "EVLOOP TEST SKIPPED on \(backend): \(error)\n"
                _ = Array(message.utf8).withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            }
        }
        guard backends.count > 1 else {
            try Test.cancel("fewer than two backends available: \(backends)")
        }
        let range = SeedRange(defaultCount: 300)
        for seed in range.seeds {
            var outcomes: [(Backend, DifferentialOutcome)] = []
            for backend in backends {
                switch try Self.runOne(seed: seed, backend: backend, replay: false) {
                case .success(let outcome): outcomes.append((backend, outcome))
                case .failure(let failure):
                    Issue.record(Comment(rawValue: failure.description))
                    return
                }
            }
            let (first, expected) = outcomes[0]
            for (backend, outcome) in outcomes.dropFirst() where outcome != expected {
                Issue.record("""
                    seed \(seed): \(first) and \(backend) differ
                      \(first): \(expected)
                      \(backend): \(outcome)
                    replay: EV_DIFFTEST_SEED=\(seed) EV_TEST_BACKENDS=\(first),\(backend) swift test --filter DifferentialTests
                    """)
                return
            }
        }
    }

    /// After 200 programs the process has exactly the descriptors it had before (the whole
    /// table, in a child process of its own: ProcessIsolation), so neither the runs nor the
    /// loops they made and released leave one behind.
    @Test(arguments: conformanceBackends)
    func descriptorsBackToBaseline(backend: Backend) throws {
        try ProcessIsolation.run(Self.self, argument: "\(backend)") {
            // Warm-up: one-time set-up (a pool thread's descriptors, lazily opened files).
            _ = try Self.runOne(seed: 0, backend: backend, replay: false)
            let baseline = Fds.table()
            for seed in UInt64(1)...200 {
                if case .failure(let failure) = try Self.runOne(seed: seed, backend: backend, replay: false) {
                    Issue.record(Comment(rawValue: failure.description))
                    return
                }
            }
            let after = Fds.table()
            let added = after.filter { baseline[$0.key] != $0.value }
            #expect(Fds.count() == baseline.count, "descriptors open after 200 programs that were not before: \(added)")
        }
    }
}

/// A seed that broke an invariant, with what a replay needs.
struct DifferentialFailure: Error, CustomStringConvertible {
    var seed: UInt64
    var backend: Backend
    var problems: [String]
    var trace: String

    var description: String {
        """
        differential seed \(seed) on \(backend):
        \(problems.map { "  - " + $0 }.joined(separator: "\n"))
        replay: EV_DIFFTEST_SEED=\(seed) EV_TEST_BACKENDS=\(backend) swift test --filter DifferentialTests
        ---- the trace's last events ----
        \(trace)
        """
    }
}
