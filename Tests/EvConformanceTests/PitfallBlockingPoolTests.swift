#if canImport(Glibc)
import Glibc
#endif
import Testing
import Synchronization
import EvLoop

/// PITFALLS I6 (libxev PR #113, #130): the readiness backends' thread pool is created and
/// shut down with work queued and running, 1,000 times, without a hang, a leaked thread
/// or a leaked pool, and without a worker touching a job's buffer after `shutdown()`
/// returned. (The loop-level variant, loops torn down with pool work queued, is in
/// PitfallResourceTests.) See docs/PITFALLS.md.
///
/// It counts the process's threads, so it runs in a child process of its own
/// (ProcessIsolation.swift): under parallel `swift test` other tests' threads come and go.
/// That helper is why this file sits with the conformance tests rather than EvLoopTests.
@Suite("Pitfall: thread pool shutdown")
struct PitfallBlockingPoolTests {

    private final class ShutDownFlag: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// What the rounds share with the thread that runs them; read by the test thread only
    /// after `done` is set (or never, if the rounds hang).
    private final class Rounds: @unchecked Sendable {
        let zero: Int32
        let buffers: [UnsafeMutableRawBufferPointer]
        let done = Atomic<Bool>(false)
        let wakes = Atomic<Int>(0)
        let lateWakes = Atomic<Int>(0)
        var drained = 0
        var completedRounds = 0
        var pools: [() -> BlockingPool?] = []
        var scribbledAfterShutdown = 0

        init(zero: Int32, jobs: Int, size: Int) {
            self.zero = zero
            buffers = (0..<jobs).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16) }
        }

        func run(count: Int) {
            let size = buffers[0].count
            for round in 0..<count {
                for b in buffers { b.initializeMemory(as: UInt8.self, repeating: 0xFF) }
                // A wake-up (a worker posting a result) after shutdown() returned means a
                // worker outlived the shutdown.
                let shutDown = ShutDownFlag()
                let pool = BlockingPool(threads: 2, wake: { [self] in
                    self.wakes.add(1, ordering: .relaxed)
                    if shutDown.flag.load(ordering: .acquiring) { self.lateWakes.add(1, ordering: .relaxed) }
                })
                weak let weakPool = pool
                pools.append { weakPool }
                for (i, b) in buffers.enumerated() {
                    pool.submit(BlockingPool.Job(id: UInt64(i + 1), kind: .read, fd: zero,
                                                 address: UInt(bitPattern: b.baseAddress), count: size, offset: 0))
                }
                if round % 4 == 1 {
                    // Let some of it run (and post results) before the shutdown.
                    usleep(200)
                    pool.drainResults { _, raw in if raw == size { drained += 1 } }
                }
                if round % 8 == 3 {
                    _ = pool.cancel(id: UInt64(buffers.count))   // withdraw a queued job
                }
                pool.shutdown()
                shutDown.flag.store(true, ordering: .releasing)
                // No worker runs after shutdown() returned: mark the buffers, and check
                // below that no read of /dev/zero (which writes zeros) lands after this.
                for b in buffers { b.initializeMemory(as: UInt8.self, repeating: 0xFF) }
                usleep(50)
                let sample = stride(from: 0, to: size, by: 256)
                if !buffers.allSatisfy({ b in sample.allSatisfy { b[$0] == 0xFF } }) { scribbledAfterShutdown += 1 }
                completedRounds += 1
            }
            done.store(true, ordering: .releasing)
        }
    }

    @Test func createAndShutDownWithQueuedWorkAThousandTimes() throws {
        try ProcessIsolation.run(Self.self) {
            let zero = open("/dev/zero", O_RDONLY | O_CLOEXEC)
            try #require(zero >= 0)
            let threadsBefore = Pitfall.threadCount()
            let rounds = Rounds(zero: zero, jobs: 16, size: 65536)
            // The rounds run on a thread of their own, so that a shutdown that hangs fails the
            // test after a bound instead of blocking the suite (the thread is then leaked).
            let box = Unmanaged.passRetained(rounds).toOpaque()
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { arg in
                let r = Unmanaged<Rounds>.fromOpaque(arg!).takeRetainedValue()
                r.run(count: 1000)
                return nil
            }, box)
            try #require(created == 0)
            let deadline = ContinuousClock.now + .seconds(60)
            while !rounds.done.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
            guard rounds.done.load(ordering: .acquiring) else {
                Issue.record("the 1,000 create/shutdown rounds did not finish within 60 s: a shutdown hangs")
                return   // leaks the thread, the descriptor and the buffers on purpose
            }
            pthread_join(thread, nil)
            defer {
                close(zero)
                for b in rounds.buffers { b.deallocate() }
            }
            #expect(rounds.completedRounds == 1000)
            usleep(20_000)   // time for a worker that outlived its pool's shutdown to show itself
            #expect(rounds.lateWakes.load(ordering: .relaxed) == 0, "a worker posted a result after shutdown() returned")
            #expect(rounds.scribbledAfterShutdown == 0, "a worker wrote into a buffer after shutdown() returned")
            #expect(rounds.pools.allSatisfy { $0() == nil }, "a pool outlived its shutdown and release")
            #expect(rounds.wakes.load(ordering: .relaxed) > 0 && rounds.drained > 0, "the pools did work before their shutdowns")
            let threadsAfter = Pitfall.threadCount()
            #expect(threadsAfter <= threadsBefore + 4, "threads: \(threadsBefore) before, \(threadsAfter) after 1,000 pools")

            // A pool that never got work starts no thread and needs no shutdown.
            let before = Pitfall.threadCount()
            do {
                let idle = BlockingPool(threads: 2, wake: {})
                _ = idle
            }
            #expect(Pitfall.threadCount() == before)
        }
    }
}
