// The random programs of the differential tester (DifferentialTests.swift): what a program
// is, and how one is made from a seed. A program is data, fixed by its seed alone, so the
// same seed is the same program on every backend and on every replay; what the loop does
// with it (which step finds which completion free, which cancel wins) is left to the run
// (DifferentialRun.swift).

/// One random program over the public API: a few byte streams, timers, nops, a
/// cross-thread notifier, and a list of steps that use them.
struct DifferentialProgram: CustomStringConvertible {
    /// How a stream's two ends are made.
    enum StreamKind: CaseIterable, CustomStringConvertible {
        case unixPair   // UnixSocket.pair(loop:)
        case tcpPair    // a loopback TCP connection
        case pipe       // ByteStream.pipe(loop:)

        var isSocket: Bool { self != .pipe }
        var description: String {
            switch self {
            case .unixPair: return "unix"
            case .tcpPair: return "tcp"
            case .pipe: return "pipe"
            }
        }
    }

    /// How a stream ends (in the run's final phase, or earlier by an `.end` step).
    enum Ending: CustomStringConvertible {
        /// The writer half-closes (shutdown SHUT_WR, sockets only) once its last write is
        /// done; the reader reads everything, then end of file.
        case shutdownWriter
        /// The writer's end is closed through the loop (cancelling a pending write); the
        /// reader reads everything that was written, then end of file.
        case closeWriter
        /// TCP only: the writer's end is closed with SO_LINGER 0 (a reset); the reader gets
        /// a prefix of what was written, then end of file or `.connectionReset`.
        case resetWriter
        /// Sockets only: the reader's end is closed through the loop; later writes fail with
        /// `.brokenPipe` or `.connectionReset`.
        case closeReader

        var description: String {
            switch self {
            case .shutdownWriter: return "shutdown-writer"
            case .closeWriter: return "close-writer"
            case .resetWriter: return "reset-writer"
            case .closeReader: return "close-reader"
            }
        }
    }

    struct Stream: CustomStringConvertible {
        var kind: StreamKind
        /// Protected streams get no cancels and no deadlines on their writes, and end
        /// with the writer's orderly end: every planned byte must arrive, on every backend.
        var protected: Bool
        /// Bytes the final phase writes in all (a protected stream's whole content).
        var plannedBytes: Int
        var ending: Ending
        var description: String {
            "\(kind)\(protected ? " protected" : "") \(plannedBytes) B, \(ending)"
        }
    }

    /// The completions a step can aim a cancel at.
    enum Target: Equatable, CustomStringConvertible {
        case reader(Int), writer(Int), timer(Int), nop, wait, tick
        var description: String {
            switch self {
            case .reader(let s): return "reader\(s)"
            case .writer(let s): return "writer\(s)"
            case .timer(let t): return "timer\(t)"
            case .nop: return "nop"
            case .wait: return "wait"
            case .tick: return "tick"
            }
        }
    }

    /// One step. Steps that find their completion busy (or the stream ended) do nothing:
    /// which ones do is the loop's business, and may differ between backends.
    enum Step: CustomStringConvertible {
        /// Start a read of `size` bytes (deadline `.within(deadlineMicros)` if given) that
        /// rearms itself up to `rearms` times while it gets data.
        case read(stream: Int, size: Int, deadlineMicros: Int?, rearms: Int)
        /// Start a write of up to `size` bytes of the stream's pattern (a deadline only on
        /// unprotected streams).
        case write(stream: Int, size: Int, deadlineMicros: Int?)
        /// Cancel the target's current activation (or a dead target: `.notFound`).
        case cancel(Target)
        /// Start chaos timer `slot` after `micros`, or, if it is pending, reset it to then.
        case timer(slot: Int, micros: Int)
        /// A nop that rearms itself `rearms` times.
        case nop(rearms: Int)
        /// Arm the tick timer `micros` from now and run the loop `.once`.
        case tick(micros: Int)
        /// `run(.noWait)`.
        case noWait
        /// Arm the notifier's wait if it is not armed.
        case armWait
        /// End the stream now (its `Ending`), instead of in the final phase.
        case end(stream: Int)

        var description: String {
            switch self {
            case .read(let s, let n, let d, let r):
                return "read s\(s) \(n) B\(d.map { " within \($0) us" } ?? "") rearms \(r)"
            case .write(let s, let n, let d): return "write s\(s) \(n) B\(d.map { " within \($0) us" } ?? "")"
            case .cancel(let t): return "cancel \(t)"
            case .timer(let t, let us): return "timer\(t) \(us) us"
            case .nop(let r): return "nop rearms \(r)"
            case .tick(let us): return "tick \(us) us"
            case .noWait: return "noWait"
            case .armWait: return "arm wait"
            case .end(let s): return "end s\(s)"
            }
        }
    }

    let seed: UInt64
    var streams: [Stream] = []
    /// Chaos timers: started, reset and cancelled by the steps.
    var chaosTimers = 0
    /// Ordered timers: all armed before the first step, at distinct offsets (µs) from one
    /// instant, never cancelled or reset, so they fire in offset order on every backend.
    var orderedTimerOffsets: [Int] = []
    /// Notifications a helper thread sends (0: no notifier), with a pause (µs) after each.
    var notifyPauses: [UInt32] = []
    var steps: [Step] = []

    var description: String {
        var lines = ["seed \(seed): \(steps.count) steps"]
        for (i, s) in streams.enumerated() { lines.append("  stream \(i): \(s)") }
        lines.append("  chaos timers \(chaosTimers), ordered timers at \(orderedTimerOffsets) us, notifications \(notifyPauses.count)")
        return lines.joined(separator: "\n")
    }

    /// The program of `seed`.
    init(seed: UInt64) {
        self.seed = seed
        var r = SeededRandom(seed: seed)
        let streamCount = Int.random(in: 1...3, using: &r)
        for _ in 0..<streamCount {
            let kind = StreamKind.allCases.randomElement(using: &r)!
            let protected = Bool.random(using: &r)
            var endings: [Ending] = [.closeWriter]
            if kind.isSocket { endings += [.shutdownWriter, .shutdownWriter] }
            if !protected && kind.isSocket { endings.append(.closeReader) }
            if !protected && kind == .tcpPair { endings.append(.resetWriter) }
            // Mostly small, now and then more than a pipe or a small socket buffer holds,
            // so that writes wait for the reader.
            let planned = Int.random(in: 0..<10, using: &r) == 0
                ? Int.random(in: 65_536...200_000, using: &r) : Int.random(in: 0...12_000, using: &r)
            streams.append(Stream(kind: kind, protected: protected, plannedBytes: planned,
                                  ending: endings.randomElement(using: &r)!))
        }
        chaosTimers = Int.random(in: 0...3, using: &r)
        let orderedCount = Int.random(in: 0...4, using: &r)
        // Distinct offsets, 100 µs apart at least, within 3 ms.
        orderedTimerOffsets = Array((0...30).shuffled(using: &r).prefix(orderedCount)).map { $0 * 100 }
        if Int.random(in: 0..<3, using: &r) > 0 {
            notifyPauses = (0..<Int.random(in: 1...40, using: &r)).map { _ in
                UInt32(Int.random(in: 0..<4, using: &r) == 0 ? Int.random(in: 0...300, using: &r) : 0)
            }
        }

        let stepCount = Int.random(in: 10...60, using: &r)
        func deadline() -> Int? {
            switch Int.random(in: 0..<6, using: &r) {
            case 0: return 0                                   // expired at once: try once
            case 1: return Int.random(in: 50...2_000, using: &r)
            default: return nil
            }
        }
        func size() -> Int {
            Int.random(in: 0..<4, using: &r) == 0 ? Int.random(in: 1...65_536, using: &r) : Int.random(in: 1...2_048, using: &r)
        }
        for _ in 0..<stepCount {
            let s = Int.random(in: 0..<streamCount, using: &r)
            switch Int.random(in: 0..<20, using: &r) {
            case 0...3:
                steps.append(.read(stream: s, size: size(), deadlineMicros: deadline(),
                                   rearms: Int.random(in: 0...3, using: &r)))
            case 4...7:
                steps.append(.write(stream: s, size: size(), deadlineMicros: streams[s].protected ? nil : deadline()))
            case 8...10:
                var targets: [Target] = [.reader(s), .nop, .tick]
                if !streams[s].protected { targets.append(.writer(s)) }
                if chaosTimers > 0 { targets.append(.timer(Int.random(in: 0..<chaosTimers, using: &r))) }
                if !notifyPauses.isEmpty { targets.append(.wait) }
                steps.append(.cancel(targets.randomElement(using: &r)!))
            case 11, 12:
                if chaosTimers > 0 {
                    steps.append(.timer(slot: Int.random(in: 0..<chaosTimers, using: &r), micros: Int.random(in: 0...2_000, using: &r)))
                } else {
                    steps.append(.noWait)
                }
            case 13:
                steps.append(.nop(rearms: Int.random(in: 0...3, using: &r)))
            case 14, 15:
                steps.append(.tick(micros: Int.random(in: 0...500, using: &r)))
            case 16, 17:
                steps.append(.noWait)
            case 18:
                steps.append(notifyPauses.isEmpty ? .noWait : .armWait)
            default:
                // Ending a stream early is rarer than the rest: it ends the stream's traffic.
                steps.append(Int.random(in: 0..<3, using: &r) == 0 ? .end(stream: s) : .noWait)
            }
        }
    }
}
