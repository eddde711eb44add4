// One run of a differential program (DifferentialProgram.swift) on one loop: the steps in
// order, then a final phase that finishes every stream's plan, ends every stream, lets the
// timers fire and waits for the last notification; then everything is closed through the
// loop. The run checks the loop's invariants as it goes and at the end, and returns the
// outcome that the semantics fix (`DifferentialOutcome`), which must be the same on every
// backend and equal to what the program alone predicts.
//
// Invariants checked (each violation is reported with the seed and the trace's tail):
// - exactly one callback per activation: every add (and every `.rearm`) is one expected
//   callback, with the activation's generation, never inside `add`, never a second one;
// - `activeCount` equals the completions the run has in flight, after every step and at
//   the end (where it must be 0);
// - cancel outcomes agree with their targets: a cancel that reports success saw its target
//   called back with `.canceled`; a target with its real result saw no successful cancel;
//   a cancel of a dead completion reports `.notFound`; `.canceled` only where a cancel (or
//   a close of the descriptor) asked for it;
// - deadlines: `.timedOut` only for an operation with a deadline, and never before it;
//   timers never fire before their (last reset) deadline;
// - bytes: every byte read is the next byte of what its stream's writer wrote, in order,
//   nothing twice and nothing lost: at the end a stream has delivered exactly the bytes
//   written (a prefix of them after a reset or a reader's close);
// - errors: only those the program can cause (a reset gives `.connectionReset`, a closed
//   reader `.brokenPipe`), nothing else;
// - no lost wake-up: the notifier's last notification is seen;
// - descriptors: no descriptor of the process refers to any socket or pipe the run made
//   once it has closed them (the whole table is counted in a child process by
//   DifferentialTests.descriptorsBackToBaseline).
import Testing
import Ev
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the semantics fix about a run: equal on every backend, and to `predicted(for:)`.
struct DifferentialOutcome: Equatable, CustomStringConvertible {
    /// Per stream, the bytes delivered when the stream's total is fixed (an orderly end
    /// that no step brought forward); nil when it depends on timing.
    var deliveredBytes: [Int?]
    /// The ordered timers' indices in the order they fired.
    var orderedTimerFirings: [Int]
    /// The last notification count the loop saw (the helper thread's total).
    var lastNotificationSeen: Int

    var description: String {
        "delivered \(deliveredBytes.map { $0.map(String.init) ?? "-" }), ordered timers \(orderedTimerFirings), notifications \(lastNotificationSeen)"
    }

    /// What the program alone says the outcome is.
    static func predicted(for program: DifferentialProgram) -> DifferentialOutcome {
        let delivered = program.streams.indices.map { i -> Int? in
            fixedTotal(program, stream: i) ? program.streams[i].plannedBytes : nil
        }
        let order = program.orderedTimerOffsets.indices.sorted { program.orderedTimerOffsets[$0] < program.orderedTimerOffsets[$1] }
        return DifferentialOutcome(deliveredBytes: delivered, orderedTimerFirings: order,
                                   lastNotificationSeen: program.notifyPauses.count)
    }

    /// Whether a stream's delivered total is fixed by the program: it ends in order
    /// (shutdown or close of the writer) in the final phase, after the whole plan.
    static func fixedTotal(_ program: DifferentialProgram, stream i: Int) -> Bool {
        let ending = program.streams[i].ending
        guard ending == .shutdownWriter || ending == .closeWriter else { return false }
        return !program.steps.contains { if case .end(let s) = $0 { return s == i }; return false }
    }
}

/// The helper thread's count of notifications sent (read by the loop's wait callback).
extension Result where Failure == EvError {
    /// The error, if any (`Result<Void, _>` is not `Equatable`).
    var evError: EvError? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

private final class NotificationCounter: Sendable {
    let sent = Atomic<Int>(0)
}

final class DifferentialRun {
    typealias Target = DifferentialProgram.Target

    /// One activation of a completion: one callback expected.
    struct Activation {
        var serial: Int
        var generation: UInt32
        /// `.within`/timer deadline, if any: a `.timedOut` or a timer's firing is not allowed
        /// before it.
        var notBefore: LoopInstant?
        var hasDeadline: Bool
        var cancelRequests = 0
        /// A close of the descriptor was issued while this activation was in flight.
        var closedUnder = false
    }

    /// A completion of the run, with its current activation.
    final class Slot {
        let name: String
        let completion = Completion()
        var current: Activation?
        /// The wait's completion rearms itself inside `Async` on a spurious wake-up, so its
        /// generation is not the run's to check.
        let checksGeneration: Bool
        init(_ name: String, checksGeneration: Bool = true) {
            self.name = name
            self.checksGeneration = checksGeneration
        }
    }

    /// What a cancel was aimed at, and what happened.
    struct CancelRecord {
        var target: String
        /// The target's activation serial when the cancel was added; nil: it was dead.
        var targetSerial: Int?
        var result: Result<Void, EvError>?
    }

    final class StreamState {
        let plan: DifferentialProgram.Stream
        let index: Int
        let readEnd: ByteStream, writeEnd: ByteStream
        /// The /proc link targets of both ends ("socket:[N]", "pipe:[N]"), for the leak check.
        var links: [String] = []
        let reader: Slot, writer: Slot, shutdown: Slot, closeReader: Slot, closeWriter: Slot
        let pattern: UnsafeMutableRawBufferPointer
        let readBuffer: UnsafeMutableRawBufferPointer
        var written = 0, received = 0
        var readRearmsLeft = 0
        /// The ending has been done (or is waiting for the writer to go idle: `endPending`).
        var ended = false, endPending = false
        var writerOpen = true, readerOpen = true
        /// Writes are over (ended, or failed after the reader went away).
        var writesOver = false
        /// The reader saw end of file or an error.
        var readsOver = false
        var endedEarly = false

        init(plan: DifferentialProgram.Stream, index: Int, seed: UInt64, readEnd: ByteStream, writeEnd: ByteStream) {
            self.plan = plan
            self.index = index
            self.readEnd = readEnd
            self.writeEnd = writeEnd
            reader = Slot("reader\(index)"); writer = Slot("writer\(index)")
            shutdown = Slot("shutdown\(index)")
            closeReader = Slot("closeReader\(index)"); closeWriter = Slot("closeWriter\(index)")
            let pattern = UnsafeMutableRawBufferPointer.allocate(byteCount: max(plan.plannedBytes, 1), alignment: 16)
            // A window of the shared pattern, at an offset of the seed's and the stream's:
            // copied, not computed byte by byte (a debug build spent more time on that
            // than on the run).
            let start = Int((seed &* 7919 &+ UInt64(index) &* 104_729) % UInt64(StreamState.sharedPattern.count - 200_001))
            StreamState.sharedPattern.withUnsafeBytes { all in
                pattern.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[start..<(start + plan.plannedBytes)]))
            }
            self.pattern = pattern
            readBuffer = .allocate(byteCount: 65_536, alignment: 16)
        }

        /// 512 KiB of `patternByte` (not periodic within a stream's window).
        static let sharedPattern: [UInt8] = (0..<(512 << 10)).map { patternByte($0) }

        func deallocate() {
            pattern.deallocate()
            readBuffer.deallocate()
        }
    }

    let program: DifferentialProgram
    let loop: LoopCore
    private(set) var violations: [String] = []
    /// Formatted only on failure or replay (a result's description is costly).
    private var trace: [() -> String] = []
    private var serial = 0
    private var inAdd = false
    private var streams: [StreamState] = []
    private var chaosTimers: [Slot] = []
    private var orderedTimers: [Slot] = []
    private var orderedFirings: [Int] = []
    private let nop = Slot("nop"), tick = Slot("tick"), wait = Slot("wait", checksGeneration: false)
    private var nopRearmsLeft = 0
    private var cancels: [Slot] = (0..<3).map { Slot("cancel\($0)") }
    private var cancelRecords: [CancelRecord] = []
    /// Target outcomes by activation serial: true when the callback reported `.canceled`.
    private var targetCanceled: [Int: Bool] = [:]
    private var successfulCancels: [Int: Int] = [:]
    private var closedUnder: Set<Int> = []
    private var async: Async?
    private let counter = NotificationCounter()
    private var lastSeen = 0
    private var notifyThread: TestThread?
    /// Bounds `run(.once)` in the final phase (does not hold the loop open).
    private let watchdog = Completion()
    private var abandoned = false

    init(program: DifferentialProgram, loop: LoopCore) {
        self.program = program
        self.loop = loop
    }

    // MARK: Reporting

    private func note(_ line: @escaping @autoclosure () -> String) {
        trace.append(line)
        if trace.count > 400 { trace.removeFirst(200) }
    }

    private func violation(_ what: String) {
        if violations.count < 20 { violations.append(what) }
        note("VIOLATION: \(what)")
    }

    /// The last `lines` events, for a failure report.
    func traceTail(_ lines: Int = 60) -> String { trace.suffix(lines).map { $0() }.joined(separator: "\n") }

    // MARK: Activations

    private var allSlots: [Slot] {
        var out = [nop, tick, wait] + chaosTimers + orderedTimers + cancels
        for s in streams { out += [s.reader, s.writer, s.shutdown, s.closeReader, s.closeWriter] }
        return out
    }

    private var inFlight: Int { allSlots.filter { $0.current != nil }.count }

    /// Starts an activation of `slot` with `body` (the watcher call).
    @discardableResult
    private func start(_ slot: Slot, notBefore: LoopInstant? = nil, hasDeadline: Bool = false,
                       _ what: @autoclosure () -> String, _ body: () throws(EvError) -> Void) -> Bool {
        guard slot.current == nil, slot.completion.state == .dead else {
            violation("\(slot.name): the run thinks it is free but its state is \(slot.completion.state)")
            return false
        }
        serial += 1
        slot.current = Activation(serial: serial, generation: slot.completion.generation &+ 1,
                                  notBefore: notBefore, hasDeadline: hasDeadline)
        let text = "#\(serial) \(slot.name): \(what())"
        note(text)
        inAdd = true
        defer { inAdd = false }
        do {
            try body()
        } catch {
            violation("\(text): starting it threw \(error)")
            slot.current = nil
            return false
        }
        return true
    }

    /// The callback of `slot`'s current activation: checks and ends it.
    private func finish(_ slot: Slot, _ result: @escaping @autoclosure () -> String) -> Activation? {
        if inAdd { violation("\(slot.name): callback ran inside add") }
        guard let a = slot.current else {
            violation("\(slot.name): a callback without an activation (a second callback?): \(result())")
            return nil
        }
        if slot.checksGeneration && slot.completion.generation != a.generation {
            violation("\(slot.name): callback for generation \(slot.completion.generation), the activation is \(a.generation)")
        }
        slot.current = nil
        note("#\(a.serial) \(slot.name) -> \(result())")
        return a
    }

    /// The callback is about to return `.rearm`: one more activation of the same kind.
    private func rearmed(_ slot: Slot, from a: Activation, notBefore: LoopInstant? = nil) {
        serial += 1
        slot.current = Activation(serial: serial, generation: a.generation &+ 1,
                                  notBefore: notBefore, hasDeadline: a.hasDeadline)
        let text = "#\(serial) \(slot.name): rearm"
        note(text)
    }

    /// Records a target's outcome for the cancel check.
    private func targetOutcome(_ slot: Slot, _ a: Activation, canceled: Bool) {
        if canceled && a.cancelRequests == 0 && !closedUnder.contains(a.serial) {
            violation("\(slot.name) #\(a.serial): .canceled, but nothing cancelled it")
        }
        if a.cancelRequests > 0 || closedUnder.contains(a.serial) { targetCanceled[a.serial] = canceled }
    }

    private func checkDeadline(_ slot: Slot, _ a: Activation, timedOut: Bool) {
        guard timedOut else { return }
        if !a.hasDeadline { violation("\(slot.name) #\(a.serial): .timedOut without a deadline") }
        if let t = a.notBefore, LoopInstant.now() < t {
            violation("\(slot.name) #\(a.serial): timed out \(t - LoopInstant.now()) early")
        }
    }

    // MARK: Set-up

    /// Makes the streams, arms the ordered timers, starts the notifier thread.
    private func setUp() throws {
        for (i, plan) in program.streams.enumerated() {
            let readEnd: ByteStream, writeEnd: ByteStream
            switch plan.kind {
            case .unixPair:
                let (a, b) = try UnixSocket.pair(loop: loop)
                (readEnd, writeEnd) = (ByteStream(a), ByteStream(b))
            case .tcpPair:
                let (a, b) = try Sock.tcpPair()
                Sock.setNonBlocking(a, !loop.prefersBlockingDescriptors)
                Sock.setNonBlocking(b, !loop.prefersBlockingDescriptors)
                (readEnd, writeEnd) = (ByteStream(fd: a, isSocket: true), ByteStream(fd: b, isSocket: true))
            case .pipe:
                (readEnd, writeEnd) = try ByteStream.pipe(loop: loop)
            }
            let s = StreamState(plan: plan, index: i, seed: program.seed, readEnd: readEnd, writeEnd: writeEnd)
            s.links = [Fds.link(readEnd.fd), Fds.link(writeEnd.fd)].compactMap { $0 }
            streams.append(s)
        }
        chaosTimers = (0..<program.chaosTimers).map { Slot("timer\($0)") }
        orderedTimers = program.orderedTimerOffsets.indices.map { Slot("ordered\($0)") }
        let base = loop.now + .microseconds(200)
        for (i, offset) in program.orderedTimerOffsets.enumerated() {
            let slot = orderedTimers[i]
            let at = base + .microseconds(Int64(offset))
            start(slot, notBefore: at, "timer at +\(offset) us") { () throws(EvError) in
                try LoopTimer.start(loop: loop, completion: slot.completion, deadline: at) { [unowned self, unowned slot] _, r in
                    guard let a = self.finish(slot, "\(r)") else { return .disarm }
                    switch r {
                    case .success:
                        self.orderedFirings.append(i)
                        if let t = a.notBefore, LoopInstant.now() < t { self.violation("\(slot.name) fired \(t - LoopInstant.now()) early") }
                    case .failure(let e): self.violation("\(slot.name): \(e), never cancelled")
                    }
                    return .disarm
                }
            }
        }
        if !program.notifyPauses.isEmpty {
            let async = try Async()
            self.async = async
            let notifier = async.notifier, counter = self.counter, pauses = program.notifyPauses
            notifyThread = try TestThread {
                for pause in pauses {
                    counter.sent.add(1, ordering: .sequentiallyConsistent)
                    notifier.notify()
                    if pause > 0 { usleep(pause) }
                }
            }
            armWait()
        }
    }

    // MARK: Operations

    private func startRead(_ s: StreamState, size: Int, deadlineMicros: Int?, rearms: Int) {
        guard s.reader.current == nil, s.readerOpen, !s.readsOver else { return }
        let c = s.reader.completion
        c.deadline = deadlineMicros.map { .within(.microseconds(Int64($0))) } ?? .none
        s.readRearmsLeft = rearms
        let buffer = UnsafeMutableRawBufferPointer(rebasing: s.readBuffer[0..<min(size, s.readBuffer.count)])
        let notBefore = deadlineMicros.map { loop.now + .microseconds(Int64($0)) }
        start(s.reader, notBefore: notBefore, hasDeadline: deadlineMicros != nil,
              "read \(buffer.count) B\(deadlineMicros.map { " within \($0) us" } ?? "")") { () throws(EvError) in
            try s.readEnd.read(loop: loop, completion: c, buffer: buffer) { [unowned self, unowned s] c, r in
                self.readDone(s, buffer: buffer, r)
            }
        }
    }

    private func readDone(_ s: StreamState, buffer: UnsafeMutableRawBufferPointer, _ r: Result<Int, EvError>) -> CallbackAction {
        guard let a = finish(s.reader, "\(r)") else { return .disarm }
        targetOutcome(s.reader, a, canceled: r.evError == .canceled)
        checkDeadline(s.reader, a, timedOut: r.evError == .timedOut)
        switch r {
        case .success(let n):
            if n <= 0 || n > buffer.count { violation("reader\(s.index): read \(n) into \(buffer.count) B") }
            if s.received + n > s.plan.plannedBytes {
                violation("reader\(s.index): \(s.received + n) B read, more than the \(s.plan.plannedBytes) B the writer can ever write")
            } else if memcmp(buffer.baseAddress!, s.pattern.baseAddress! + s.received, n) != 0 {
                let at = zip(buffer.prefix(n), s.pattern[s.received...]).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                violation("reader\(s.index): the bytes at \(s.received + at) differ from what was written (reordered, repeated or lost)")
            }
            s.received += n
            if s.readRearmsLeft > 0 && s.readerOpen {
                s.readRearmsLeft -= 1
                rearmed(s.reader, from: a, notBefore: s.reader.completion.hasDeadline ? deadlineOfRearm(s.reader.completion) : nil)
                return .rearm
            }
        case .failure(.endOfFile):
            s.readsOver = true
            if !s.ended && !s.endPending {
                violation("reader\(s.index): end of file before the writer ended")
            }
        case .failure(.connectionReset) where s.plan.ending == .resetWriter:
            s.readsOver = true
        case .failure(.canceled), .failure(.timedOut):
            break
        case .failure(let e):
            violation("reader\(s.index): unexpected \(e)")
            s.readsOver = true
        }
        return .disarm
    }

    /// A rearmed `.within` activation starts now: its deadline is measured from the tick's `now`.
    private func deadlineOfRearm(_ c: Completion) -> LoopInstant? {
        if case .within(let d) = c.deadline { return loop.now + d }
        return nil
    }

    private func startWrite(_ s: StreamState, size: Int, deadlineMicros: Int?) {
        guard s.writer.current == nil, s.writerOpen, !s.writesOver, !s.endPending else { return }
        let n = min(size, s.plan.plannedBytes - s.written)
        guard n > 0 else { return }
        let c = s.writer.completion
        c.deadline = deadlineMicros.map { .within(.microseconds(Int64($0))) } ?? .none
        let buffer = UnsafeRawBufferPointer(rebasing: s.pattern[s.written..<(s.written + n)])
        let notBefore = deadlineMicros.map { loop.now + .microseconds(Int64($0)) }
        start(s.writer, notBefore: notBefore, hasDeadline: deadlineMicros != nil,
              "write \(n) B at \(s.written)\(deadlineMicros.map { " within \($0) us" } ?? "")") { () throws(EvError) in
            try s.writeEnd.write(loop: loop, completion: c, buffer: buffer) { [unowned self, unowned s] _, r in
                self.writeDone(s, size: n, r)
            }
        }
    }

    private func writeDone(_ s: StreamState, size: Int, _ r: Result<Int, EvError>) -> CallbackAction {
        guard let a = finish(s.writer, "\(r)") else { return .disarm }
        targetOutcome(s.writer, a, canceled: r.evError == .canceled)
        checkDeadline(s.writer, a, timedOut: r.evError == .timedOut)
        switch r {
        case .success(let n):
            if n <= 0 || n > size { violation("writer\(s.index): wrote \(n) of \(size) B") }
            s.written += max(0, min(n, size))
        case .failure(.canceled), .failure(.timedOut):
            break
        case .failure(.brokenPipe), .failure(.connectionReset):
            if s.plan.ending != .closeReader || s.readerOpen {
                violation("writer\(s.index): \(r) with the reader still open")
            }
            s.writesOver = true
        case .failure(let e):
            violation("writer\(s.index): unexpected \(e)")
            s.writesOver = true
        }
        if s.endPending { endNow(s) }
        return .disarm
    }

    /// Ends the stream as its plan says (a shutdown waits until no write is in flight).
    private func end(_ s: StreamState, early: Bool) {
        guard !s.ended && !s.endPending else { return }
        s.endedEarly = s.endedEarly || early
        if s.plan.ending == .shutdownWriter && s.writer.current != nil {
            s.endPending = true
            note("s\(s.index): the shutdown waits for the write in flight")
            return
        }
        endNow(s)
    }

    private func endNow(_ s: StreamState) {
        s.endPending = false
        s.ended = true
        switch s.plan.ending {
        case .shutdownWriter:
            s.writesOver = true
            let slot = s.shutdown
            start(slot, "shutdown the writer") { () throws(EvError) in
                try s.writeEnd.shutdown(loop: loop, completion: slot.completion, how: .write) { [unowned self, unowned slot] _, r in
                    if self.finish(slot, "\(r)") != nil, case .failure(let e) = r { self.violation("\(slot.name): \(e)") }
                    return .disarm
                }
            }
        case .closeWriter:
            s.writesOver = true
            closeEnd(s, writer: true)
        case .resetWriter:
            s.writesOver = true
            var lin = linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(s.writeEnd.fd, SOL_SOCKET, SO_LINGER, &lin, socklen_t(MemoryLayout<linger>.size))
            closeEnd(s, writer: true)
        case .closeReader:
            closeEnd(s, writer: false)
        }
    }

    /// Closes one end through the loop; whatever waits on it is cancelled first.
    private func closeEnd(_ s: StreamState, writer: Bool) {
        guard writer ? s.writerOpen : s.readerOpen else { return }
        let stream = writer ? s.writeEnd : s.readEnd
        let slot = writer ? s.closeWriter : s.closeReader
        let waiting = writer ? s.writer : s.reader
        if let a = waiting.current { closedUnder.insert(a.serial) }
        if writer { s.writerOpen = false } else { s.readerOpen = false }
        start(slot, "close the \(writer ? "writer" : "reader")") { () throws(EvError) in
            try stream.close(loop: loop, completion: slot.completion) { [unowned self, unowned slot] _, r in
                if self.finish(slot, "\(r)") != nil, case .failure(let e) = r { self.violation("\(slot.name): \(e)") }
                return .disarm
            }
        }
    }

    private func timerStep(_ slot: Slot, micros: Int) {
        let at = loop.now + .microseconds(Int64(micros))
        if slot.current != nil {
            note("\(slot.name): reset to +\(micros) us")
            do {
                try LoopTimer.reset(loop: loop, completion: slot.completion, deadline: at)
                slot.current?.notBefore = at
            } catch .canceled where slot.current?.cancelRequests ?? 0 > 0 {
                note("\(slot.name): the reset is refused, the cancel has won")
            } catch {
                violation("\(slot.name): reset threw \(error)")
            }
            return
        }
        start(slot, notBefore: at, "timer +\(micros) us") { () throws(EvError) in
            try LoopTimer.start(loop: loop, completion: slot.completion, deadline: at) { [unowned self, unowned slot] _, r in
                guard let a = self.finish(slot, "\(r)") else { return .disarm }
                self.targetOutcome(slot, a, canceled: r.evError == .canceled)
                switch r {
                case .success:
                    if let t = a.notBefore, LoopInstant.now() < t { self.violation("\(slot.name) fired \(t - LoopInstant.now()) early") }
                case .failure(.canceled): break
                case .failure(let e): self.violation("\(slot.name): unexpected \(e)")
                }
                return .disarm
            }
        }
    }

    private func startNop(rearms: Int) {
        guard nop.current == nil else { return }
        nopRearmsLeft = rearms
        start(nop, "nop rearms \(rearms)") { () throws(EvError) in
            nop.completion.operation = .nop
            nop.completion.callback = { [unowned self] _, r in
                guard let a = self.finish(self.nop, "\(r)") else { return .disarm }
                self.targetOutcome(self.nop, a, canceled: r.isCanceled)
                guard case .nop = r else { self.violation("nop: \(r)"); return .disarm }
                if self.nopRearmsLeft > 0 {
                    self.nopRearmsLeft -= 1
                    self.rearmed(self.nop, from: a)
                    return .rearm
                }
                return .disarm
            }
            try loop.add(nop.completion)
        }
    }

    private func armTick(micros: Int) {
        guard tick.current == nil else { return }
        let at = loop.now + .microseconds(Int64(micros))
        start(tick, notBefore: at, "tick +\(micros) us") { () throws(EvError) in
            try LoopTimer.start(loop: loop, completion: tick.completion, deadline: at) { [unowned self] _, r in
                guard let a = self.finish(self.tick, "\(r)") else { return .disarm }
                self.targetOutcome(self.tick, a, canceled: r.evError == .canceled)
                return .disarm
            }
        }
    }

    private func armWait() {
        guard let async, wait.current == nil else { return }
        start(wait, "wait") { () throws(EvError) in
            try async.wait(loop: loop, completion: wait.completion) { [unowned self] _, r in
                guard let a = self.finish(self.wait, "\(r)") else { return .disarm }
                self.targetOutcome(self.wait, a, canceled: r.evError == .canceled)
                switch r {
                case .success:
                    let seen = self.counter.sent.load(ordering: .sequentiallyConsistent)
                    if seen < self.lastSeen { self.violation("wait: the count went back from \(self.lastSeen) to \(seen)") }
                    // (seen == lastSeen is possible: the helper counts before it notifies, so
                    // the last callback may have seen the count of a notification it had not
                    // consumed yet.)
                    self.lastSeen = max(self.lastSeen, seen)
                    if seen < self.program.notifyPauses.count {
                        self.rearmed(self.wait, from: a)
                        return .rearm
                    }
                case .failure(.canceled): break
                case .failure(let e): self.violation("wait: unexpected \(e)")
                }
                return .disarm
            }
        }
    }

    private func cancel(_ target: Target) {
        guard let using = cancels.first(where: { $0.current == nil }) else { return }
        let slot: Slot
        switch target {
        case .reader(let s): slot = streams[s].reader
        case .writer(let s): slot = streams[s].writer
        case .timer(let t): slot = chaosTimers[t]
        case .nop: slot = nop
        case .wait: slot = wait
        case .tick: slot = tick
        }
        // One cancel per activation: two cancels racing each other have no single outcome
        // to check (either may be the one that succeeds).
        if let a = slot.current, a.cancelRequests > 0 { return }
        slot.current?.cancelRequests += 1
        let index = cancelRecords.count
        cancelRecords.append(CancelRecord(target: slot.name, targetSerial: slot.current?.serial))
        start(using, "cancel \(slot.name)\(slot.current.map { " #\($0.serial)" } ?? " (dead)")") { () throws(EvError) in
            try loop.cancel(slot.completion, using: using.completion) { [unowned self, unowned using] _, r in
                guard self.finish(using, "\(r)") != nil else { return .disarm }
                guard case .cancel(let outcome) = r else { self.violation("\(using.name): \(r)"); return .disarm }
                self.cancelRecords[index].result = outcome
                if outcome.evError == nil, let serial = self.cancelRecords[index].targetSerial {
                    self.successfulCancels[serial, default: 0] += 1
                }
                return .disarm
            }
        }
    }

    // MARK: Running

    private func checkActiveCount(_ when: @autoclosure () -> String) {
        let expected = inFlight + (watchdog.state == .active ? 1 : 0)
        if loop.activeCount != expected {
            violation("activeCount \(loop.activeCount), the run has \(expected) in flight (\(when()))")
        }
    }

    private func perform(_ step: DifferentialProgram.Step) throws {
        switch step {
        case .read(let s, let size, let d, let rearms): startRead(streams[s], size: size, deadlineMicros: d, rearms: rearms)
        case .write(let s, let size, let d): startWrite(streams[s], size: size, deadlineMicros: d)
        case .cancel(let t): cancel(t)
        case .timer(let t, let us): timerStep(chaosTimers[t], micros: us)
        case .nop(let r): startNop(rearms: r)
        case .tick(let us):
            armTick(micros: us)
            try loop.run(.once)
        case .noWait: try loop.run(.noWait)
        case .armWait: armWait()
        case .end(let s): end(streams[s], early: true)
        }
    }

    /// Drives every stream to its end and every completion to its callback, within `limit`.
    private func finalPhase(limit: Duration) throws -> Bool {
        let deadline = LoopInstant.now() + limit
        watchdog.keepsLoopAlive = false
        try loop.timer(watchdog, deadline: deadline) { _, _ in .disarm }
        defer {
            if watchdog.state == .active {
                // Not an activation of the run: withdraw it quietly.
                try? loop.resetTimer(watchdog, deadline: loop.now)
            }
        }
        while LoopInstant.now() < deadline {
            var open = false
            for s in streams {
                // A reader's close comes first (the writer then finishes or fails); the
                // writer's ending comes once the plan is written.
                if s.plan.ending == .closeReader || s.writesOver || s.written >= s.plan.plannedBytes {
                    end(s, early: false)
                }
                startWrite(s, size: 65_536, deadlineMicros: nil)
                startRead(s, size: 65_536, deadlineMicros: nil, rearms: 0)
                let writerDone = s.writer.current == nil && (s.writesOver || !s.writerOpen || s.written >= s.plan.plannedBytes)
                let readerDone = s.readsOver || !s.readerOpen
                if !(writerDone && readerDone && s.ended && !s.endPending) { open = true }
            }
            if async != nil && lastSeen < program.notifyPauses.count {
                open = true
                armWait()
            }
            checkActiveCount("final phase")
            if !open && inFlight == 0 { return true }
            if !open, wait.current != nil, lastSeen >= program.notifyPauses.count { cancel(.wait) }
            try loop.run(.once)
        }
        return false
    }

    /// Closes every end still open, through the loop, and lets the closes finish.
    private func closeEverything() throws {
        for s in streams {
            closeEnd(s, writer: true)
            closeEnd(s, writer: false)
        }
        var spins = 0
        while inFlight > 0 && spins < 10_000 {
            try loop.run(.noWait)
            spins += 1
            if spins > 100 { usleep(100) }
        }
        if inFlight > 0 { violation("closes still in flight after 10,000 ticks") }
    }

    /// Runs the program; returns its fixed outcome (check `violations` first).
    func run() throws -> DifferentialOutcome {
        defer { tearDown() }
        let header = program.description
        note(header)
        try setUp()
        checkActiveCount("after set-up")
        for (i, step) in program.steps.enumerated() {
            note("step \(i): \(step)")
            try perform(step)
            checkActiveCount("after step \(i), \(step)")
        }
        note("final phase")
        if !(try finalPhase(limit: .seconds(10))) {
            let left = allSlots.filter { $0.current != nil }.map { "\($0.name) #\($0.current!.serial)" }
            violation("the final phase did not end within 10 s: in flight \(left), notifications seen \(lastSeen) of \(program.notifyPauses.count)")
        }
        try closeEverything()
        try loop.run(.noWait)   // the withdrawn watchdog's callback
        notifyThread?.join()
        notifyThread = nil
        checkActiveCount("at the end")
        if loop.activeCount != 0 { violation("activeCount \(loop.activeCount) at the end") }
        checkCancels()
        checkStreams()
        checkDescriptorsClosed()
        return DifferentialOutcome(
            deliveredBytes: streams.indices.map { DifferentialOutcome.fixedTotal(program, stream: $0) ? streams[$0].received : nil },
            orderedTimerFirings: orderedFirings, lastNotificationSeen: lastSeen)
    }

    private func checkCancels() {
        for (i, record) in cancelRecords.enumerated() {
            guard let result = record.result else {
                violation("cancel \(i) of \(record.target): no callback"); continue
            }
            guard let serial = record.targetSerial else {
                if result.evError != .notFound { violation("cancel \(i) of a dead \(record.target): \(result), not .notFound") }
                continue
            }
            switch result {
            case .success, .failure(.notFound), .failure(.inProgress): break
            case .failure(let e): violation("cancel \(i) of \(record.target) #\(serial): \(e)")
            }
            let canceled = targetCanceled[serial]
            let wins = successfulCancels[serial] ?? 0
            if canceled == nil { violation("cancel \(i): its target \(record.target) #\(serial) never called back") }
            if canceled == false && wins > 0 {
                violation("cancel \(i) of \(record.target) #\(serial) reported success, but the target got its real result")
            }
            if canceled == true && wins == 0 && !closedUnder.contains(serial) {
                violation("\(record.target) #\(serial) was cancelled, but its cancel reported \(result)")
            }
        }
    }

    private func checkStreams() {
        for s in streams {
            let prefixOnly = s.plan.ending == .resetWriter || s.plan.ending == .closeReader
            if s.received > s.written { violation("stream \(s.index): \(s.received) B read, only \(s.written) B written") }
            if !prefixOnly && s.received != s.written {
                violation("stream \(s.index) (\(s.plan.ending)): \(s.written) B written, \(s.received) B read")
            }
            if s.plan.protected && s.written != s.plan.plannedBytes && !s.endedEarly {
                violation("protected stream \(s.index): \(s.written) of \(s.plan.plannedBytes) B written")
            }
        }
    }

    /// No descriptor of the process still refers to a socket or pipe of the run (other
    /// tests' descriptors never do: the link names the object's inode).
    private func checkDescriptorsClosed() {
        let mine = Set(streams.flatMap(\.links))
        guard !mine.isEmpty else { return }
        let leaked = Fds.table().filter { mine.contains($0.value) }
        if !leaked.isEmpty { violation("descriptors still open on the run's sockets and pipes: \(leaked)") }
    }

    /// Drains the loop if the run was cut short, and frees the buffers (or leaks them with
    /// the loop when it could not drain: the kernel may still write into them).
    private func tearDown() {
        if loop.activeCount > 0 {
            loop.cancelAll()
            _ = try? runUntilDone(loop, timeout: .seconds(5))
        }
        notifyThread?.join()
        if loop.activeCount != 0 {
            abandoned = true
            _ = Unmanaged.passRetained(loop)
            return
        }
        for s in streams {
            if s.readerOpen { close(s.readEnd.fd) }
            if s.writerOpen { close(s.writeEnd.fd) }
            s.deallocate()
        }
    }
}
