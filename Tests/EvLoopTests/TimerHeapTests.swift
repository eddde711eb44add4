import Testing
@testable import EvLoop

@Suite struct TimerHeapTests {
    @Test func popsInDeadlineThenArmOrder() {
        var heap = TimerHeap()
        var cs: [Completion] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let c = Completion()
            cs.append(c)
            heap.insert(c, deadline: UInt64.random(in: 0..<50, using: &rng))
        }
        var last: (UInt64, UInt64) = (0, 0)
        var n = 0
        while let c = heap.popExpired(now: .max) {
            #expect((c.timerDeadline, c.timerSequence) >= last)
            last = (c.timerDeadline, c.timerSequence)
            n += 1
        }
        #expect(n == 1000)
    }

    @Test func removeAndUpdateKeepOrder() {
        var heap = TimerHeap()
        let cs = (0..<100).map { _ in Completion() }
        for (i, c) in cs.enumerated() { heap.insert(c, deadline: UInt64(i)) }
        for c in cs where c.timerDeadline % 3 == 0 { heap.remove(c) }
        heap.update(cs[1], deadline: 1000)
        var out: [UInt64] = []
        while let c = heap.popExpired(now: .max) { out.append(c.timerDeadline) }
        #expect(out == out.sorted())
        #expect(out.count == 100 - 34)
        #expect(out.last == 1000)
    }
}
