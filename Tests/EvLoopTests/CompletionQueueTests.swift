import Testing
@testable import EvLoop

/// The intrusive FIFO behind the loop's completed and unqueued lists: order, removal
/// from any position, and the links and flags it leaves on the completions.
@Suite struct CompletionQueueTests {
    private func ids(_ q: CompletionQueue) -> [ObjectIdentifier] {
        var out: [ObjectIdentifier] = []
        var cur = q.head
        while let c = cur { out.append(ObjectIdentifier(c)); cur = c.queueNext }
        return out
    }

    @Test func popsInPushOrder() {
        var q = CompletionQueue()
        let none = q.pop()
        #expect(q.isEmpty && q.count == 0 && none == nil)
        let cs = (0..<5).map { _ in Completion() }
        for c in cs { q.push(c) }
        #expect(q.count == 5 && q.head === cs[0] && q.tail === cs[4])
        #expect(cs.allSatisfy { $0.isQueued })
        for c in cs {
            let p = q.pop()
            #expect(p === c)
            #expect(p?.queueNext == nil && p?.isQueued == false)
        }
        #expect(q.isEmpty && q.head == nil && q.tail == nil && q.count == 0)
        // Popped completions can be pushed again.
        q.push(cs[3])
        #expect(q.pop() === cs[3])
    }

    @Test func removeFromEveryPosition() {
        var q = CompletionQueue()
        let cs = (0..<5).map { _ in Completion() }
        for c in cs { q.push(c) }
        let middle = q.remove(cs[2])
        #expect(middle)
        #expect(ids(q) == [0, 1, 3, 4].map { ObjectIdentifier(cs[$0]) })
        let head = q.remove(cs[0])
        #expect(head)
        #expect(q.head === cs[1])
        let tail = q.remove(cs[4])
        #expect(tail)
        #expect(q.tail === cs[3])
        #expect(q.count == 2)
        #expect(!cs[2].isQueued && cs[2].queueNext == nil)
        q.push(cs[4])                     // the tail link was repaired
        #expect(ids(q) == [1, 3, 4].map { ObjectIdentifier(cs[$0]) })
        let rest = [q.remove(cs[1]), q.remove(cs[3]), q.remove(cs[4])]
        #expect(rest == [true, true, true])
        #expect(q.isEmpty && q.head == nil && q.tail == nil)
    }

    @Test func removeOfANonMemberIsFalseAndHarmless() {
        var q = CompletionQueue(), other = CompletionQueue()
        let a = Completion(), b = Completion(), stranger = Completion()
        q.push(a)
        other.push(b)
        let removedStranger = q.remove(stranger)
        let removedOther = q.remove(b)
        #expect(!removedStranger, "never queued")
        #expect(!removedOther, "queued elsewhere")
        #expect(b.isQueued && other.count == 1, "the other queue is untouched")
        #expect(q.count == 1 && q.head === a && q.tail === a)
    }

    @Test func randomOperationsMatchAModel() {
        var rng = SplitMix(seed: 7)
        var q = CompletionQueue()
        let pool = (0..<16).map { _ in Completion() }
        var model: [ObjectIdentifier] = []
        var mismatches = 0
        for _ in 0..<20_000 {
            let c = pool[Int(rng.next() % 16)]
            switch rng.next() % 3 {
            case 0:
                if !c.isQueued { q.push(c); model.append(ObjectIdentifier(c)) }
            case 1:
                let expected = model.first
                if q.pop().map(ObjectIdentifier.init) != expected { mismatches += 1 }
                if !model.isEmpty { model.removeFirst() }
            default:
                let inModel = model.firstIndex(of: ObjectIdentifier(c))
                if q.remove(c) != (inModel != nil) { mismatches += 1 }
                if let i = inModel { model.remove(at: i) }
            }
            if q.count != model.count || q.tail.map(ObjectIdentifier.init) != model.last { mismatches += 1 }
        }
        // The queue does not retain its members: the pool must outlive the last look at
        // it (a release build frees the completions after their last use otherwise).
        withExtendedLifetime(pool) { #expect(ids(q) == model) }
        #expect(mismatches == 0)
    }
}
