import Testing
@testable import EvLoop

/// The userland timer heap every backend uses: ordering, removal and update keep the
/// heap's and the sorted run's invariants and the completions' own positions consistent,
/// checked against a straightforward model.
@Suite struct TimerHeapTests {
    @Test func popsInDeadlineThenArmOrder() {
        let heap = TimerHeap()
        var cs: [Completion] = []
        // The deadline and arm order of each timer, kept by the test (the heap keeps them
        // in its entries, not in the completions).
        var armed: [ObjectIdentifier: (UInt64, UInt64)] = [:]
        var rng = SystemRandomNumberGenerator()
        for i in 0..<1000 {
            let c = Completion()
            cs.append(c)
            let deadline = UInt64.random(in: 0..<50, using: &rng)
            armed[ObjectIdentifier(c)] = (deadline, UInt64(i))
            heap.insert(c, deadline: deadline)
        }
        var last: (UInt64, UInt64) = (0, 0)
        var n = 0
        while let c = heap.popExpired(now: .max) {
            let key = armed[ObjectIdentifier(c)]!
            #expect(key >= last)
            last = key
            n += 1
        }
        #expect(n == 1000)
        // The heap does not retain its timers (the loop does): they must outlive the pops
        // (a release build frees them after their last use in the test otherwise).
        withExtendedLifetime(cs) {}
    }

    @Test func removeAndUpdateKeepOrder() {
        let heap = TimerHeap()
        let cs = (0..<100).map { _ in Completion() }
        for (i, c) in cs.enumerated() { heap.insert(c, deadline: UInt64(i)) }
        for (i, c) in cs.enumerated() where i % 3 == 0 { heap.remove(c) }
        heap.update(cs[1], deadline: 1000)
        var out: [UInt64] = []
        while let deadline = heap.minDeadline, heap.popExpired(now: .max) != nil { out.append(deadline) }
        #expect(out == out.sorted())
        #expect(out.count == 100 - 34)
        #expect(out.last == 1000)
        withExtendedLifetime(cs) {}   // unretained by the heap, as above
    }

    @Test func popExpiredRespectsNowAndMinDeadline() {
        let heap = TimerHeap()
        #expect(heap.minDeadline == nil && heap.min == nil && heap.isEmpty)
        let a = Completion(), b = Completion(), c = Completion()
        heap.insert(a, deadline: 30)
        heap.insert(b, deadline: 10)
        heap.insert(c, deadline: 20)
        #expect(heap.minDeadline == 10 && heap.min === b && heap.count == 3)
        let p9 = heap.popExpired(now: 9), p10 = heap.popExpired(now: 10), p15 = heap.popExpired(now: 15)
        #expect(p9 == nil, "nothing before its deadline")
        #expect(p10 === b, "a deadline equal to now has expired")
        #expect(p15 == nil)
        let rest = [heap.popExpired(now: .max), heap.popExpired(now: .max)]
        #expect(rest[0] === c && rest[1] === a)
        #expect(heap.isEmpty && !b.isTimerPending)
    }

    @Test func equalDeadlinesFireInArmOrderAndUpdateMovesToTheBack() {
        let heap = TimerHeap()
        let cs = (0..<10).map { _ in Completion() }
        for c in cs { heap.insert(c, deadline: 5) }
        heap.update(cs[0], deadline: 5)   // re-armed: now the newest among equals
        var out: [Completion] = []
        while let c = heap.popExpired(now: 5) { out.append(c) }
        #expect(out.map { ObjectIdentifier($0) } == (Array(cs[1...]) + [cs[0]]).map { ObjectIdentifier($0) })
    }

    @Test func removeOfANonMemberIsFalse() {
        let heap = TimerHeap()
        let other = TimerHeap()
        let a = Completion(), b = Completion()
        heap.insert(a, deadline: 1)
        other.insert(b, deadline: 1)
        let stranger = heap.remove(Completion())
        let foreign = heap.remove(b)
        let own = heap.remove(a)
        let twice = heap.remove(a)
        #expect(!stranger)
        #expect(!foreign, "a timer of another heap, at the same index, is not ours")
        #expect(own)
        #expect(!twice, "removing twice")
        #expect(heap.isEmpty && other.count == 1)
    }

    @Test func removeAllClearsIndexes() {
        let heap = TimerHeap()
        let cs = (0..<50).map { _ in Completion() }
        for (i, c) in cs.enumerated() { heap.insert(c, deadline: UInt64(50 - i)) }
        let all = heap.removeAll()
        #expect(all.count == 50 && heap.isEmpty)
        #expect(cs.allSatisfy { !$0.isTimerPending })
        heap.insert(cs[0], deadline: 1)
        #expect(heap.count == 1)
    }

    /// A random mix of insert, remove, update and pop against a sorted-array model; after
    /// every step the heap's indexes point back at their completions. Random deadlines go
    /// mostly to the heap.
    @Test func randomOperationsMatchAModel() {
        #expect(runAgainstModel(seed: 42, timers: 64, steps: 10_000) { now, rng in now + rng.next() % 100 } == 0)
    }

    /// The same with deadlines armed mostly in order (`now` plus a fixed duration, as idle
    /// timeouts are), which go to the sorted run, and some earlier ones that go to the
    /// heap: pops interleave the two in (deadline, arm order); enough timers and removals
    /// that the run wraps around its ring, grows while wrapped, and compacts its holes.
    @Test func deadlinesArmedInOrderMatchAModel() {
        #expect(runAgainstModel(seed: 7, timers: 500, steps: 60_000) { now, rng in
            rng.next() % 8 == 0 ? now + rng.next() % 40 : now + 40
        } == 0)
    }

    /// Growing the run while its entries wrap around the ring's end moves the wrapped ones;
    /// their stored slots follow, so they can still be removed, and the order holds.
    @Test func theRunGrowsWhileWrapped() {
        let heap = TimerHeap()
        let cs = (0..<160).map { _ in Completion() }
        for (i, c) in cs[0..<64].enumerated() { heap.insert(c, deadline: UInt64(i)) }
        for _ in 0..<32 { _ = heap.popExpired(now: .max) }
        // 32 left at slots 32..63; the next 32 wrap to slots 0..31, then the ring is full
        // and the 97th timer grows it.
        for (i, c) in cs[64..<160].enumerated() { heap.insert(c, deadline: UInt64(64 + i)) }
        #expect(heap.count == 128)
        #expect(heap.remove(cs[70]) && heap.remove(cs[95]), "entries that had wrapped and moved")
        #expect(!cs[70].isTimerPending)
        var out: [Int] = []
        while let c = heap.popExpired(now: .max) { out.append(cs.firstIndex { $0 === c }!) }
        #expect(out == Array(32..<160).filter { $0 != 70 && $0 != 95 })
    }

    /// Timers removed from the middle of the run leave holes; once the holes outnumber the
    /// timers the run is compacted, and the timers that moved can still be removed and
    /// fire in order.
    @Test func holesInTheRunAreCompacted() {
        let heap = TimerHeap()
        let cs = (0..<300).map { _ in Completion() }
        for (i, c) in cs.enumerated() { heap.insert(c, deadline: UInt64(i)) }
        // Keep the front and every sixth timer; the 249 others become holes.
        let kept = Set(Array(0..<300).filter { $0 == 0 || $0 % 6 == 0 })
        for i in 0..<300 where !kept.contains(i) { #expect(heap.remove(cs[i])) }
        #expect(heap.count == kept.count)
        #expect(heap.remove(cs[294]), "a timer the compaction moved")
        var out: [Int] = []
        while let c = heap.popExpired(now: .max) { out.append(cs.firstIndex { $0 === c }!) }
        #expect(out == kept.sorted().filter { $0 != 294 })
    }

    /// Ties between the run and the heap: equal deadlines still fire in arm order.
    @Test func equalDeadlinesAcrossTheRunAndTheHeapFireInArmOrder() {
        let heap = TimerHeap()
        let cs = (0..<6).map { _ in Completion() }
        heap.insert(cs[0], deadline: 10)   // run
        heap.insert(cs[1], deadline: 20)   // run
        heap.insert(cs[2], deadline: 10)   // heap: earlier than the run's back
        heap.insert(cs[3], deadline: 20)   // run
        heap.insert(cs[4], deadline: 5)    // heap
        heap.insert(cs[5], deadline: 10)   // heap
        var out: [Int] = []
        while let c = heap.popExpired(now: .max) { out.append(cs.firstIndex { $0 === c }!) }
        #expect(out == [4, 0, 2, 5, 1, 3])
    }

    /// Runs `steps` random inserts, removes, updates and pops over `timers` completions,
    /// deadlines from `deadline(now, rng)`; returns how many times the heap disagreed with
    /// the model.
    private func runAgainstModel(seed: UInt64, timers: Int, steps: Int,
                                 deadline: (UInt64, inout SplitMix) -> UInt64) -> Int {
        var rng = SplitMix(seed: seed)
        let heap = TimerHeap()
        let pool = (0..<timers).map { _ in Completion() }
        var model: [ObjectIdentifier: (deadline: UInt64, seq: UInt64)] = [:]
        var seq: UInt64 = 0
        var now: UInt64 = 0
        var mismatches = 0
        for _ in 0..<steps {
            let c = pool[Int(rng.next() % UInt64(timers))]
            let id = ObjectIdentifier(c)
            switch rng.next() % 5 {
            case 0, 1:
                if model[id] == nil {
                    let d = deadline(now, &rng)
                    heap.insert(c, deadline: d)
                    seq += 1
                    model[id] = (d, seq)
                }
            case 2:
                if heap.remove(c) != (model[id] != nil) { mismatches += 1 }
                model[id] = nil
            case 3:
                if model[id] != nil {
                    let d = deadline(now, &rng)
                    heap.update(c, deadline: d)
                    seq += 1
                    model[id] = (d, seq)
                }
            default:
                now += rng.next() % 20
                let expected = model.filter { $0.value.deadline <= now }.sorted { ($0.value.deadline, $0.value.seq) < ($1.value.deadline, $1.value.seq) }
                var popped: [ObjectIdentifier] = []
                while let x = heap.popExpired(now: now) { popped.append(ObjectIdentifier(x)) }
                if popped != expected.map(\.key) { mismatches += 1 }
                for k in popped { model[k] = nil }
            }
            if heap.count != model.count || heap.minDeadline != model.values.map(\.deadline).min() { mismatches += 1 }
            for p in pool where p.isTimerPending != (model[ObjectIdentifier(p)] != nil) { mismatches += 1 }
        }
        return mismatches
    }
}

/// SplitMix64, for reproducible random sequences in unit tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
