import Testing
@testable import EvLoop

/// LoopInstant arithmetic saturates instead of trapping (PITFALLS F5): absurd timer
/// durations must become "never", not an overflow in a backend's timeout computation.
@Suite struct LoopInstantTests {
    @Test(.tags(.pitfallF5)) func additionSaturatesAtDistantFuture() {
        let far = LoopInstant.distantFuture
        #expect(far + .nanoseconds(1) == far)
        #expect(far + .seconds(Int64.max) == far)
        let late = LoopInstant(nanoseconds: UInt64.max - 10)
        #expect(late + .nanoseconds(10) == far)
        #expect(late + .nanoseconds(11) == far)
        #expect(late + .nanoseconds(9) == LoopInstant(nanoseconds: UInt64.max - 1))
        let big = LoopInstant(nanoseconds: UInt64.max / 2 + 10)
        #expect(big + .seconds(Int64.max) == far, "Int64.max ns from past the middle overflows UInt64")
    }

    @Test(.tags(.pitfallF5)) func hugeDurationsClampToInt64Nanoseconds() {
        let t = LoopInstant(nanoseconds: 1_000)
        #expect((t + .seconds(Int64.max)).nanoseconds == 1_000 + UInt64(Int64.max))
        #expect(Duration.seconds(Int64.max).nanosecondsSaturating == .max)
        #expect(Duration.seconds(Int64.min).nanosecondsSaturating == .min)
        #expect(Duration.seconds(Int64.max / 1_000_000_000).nanosecondsSaturating > 0)
        #expect(Duration.milliseconds(3).nanosecondsSaturating == 3_000_000)
        #expect(Duration.microseconds(-7).nanosecondsSaturating == -7_000)
        #expect(Duration(secondsComponent: 1, attosecondsComponent: 999_999_999).nanosecondsSaturating == 1_000_000_000,
                "sub-nanosecond parts are truncated")
    }

    @Test(.tags(.pitfallF5)) func negativeDurationsClampAtZero() {
        let t = LoopInstant(nanoseconds: 10)
        #expect(t + .nanoseconds(-3) == LoopInstant(nanoseconds: 7))
        #expect(t + .nanoseconds(-10) == LoopInstant(nanoseconds: 0))
        #expect(t + .nanoseconds(-20) == LoopInstant(nanoseconds: 0))
        #expect(t + .nanoseconds(Int64.min) == LoopInstant(nanoseconds: 0))
        #expect(t + .seconds(Int64.min) == LoopInstant(nanoseconds: 0))
        #expect(t + .zero == t)
    }

    @Test(.tags(.pitfallF5)) func subtractionIsSignedAndClamped() {
        let a = LoopInstant(nanoseconds: 5_000), b = LoopInstant(nanoseconds: 2_000)
        #expect(a - b == .nanoseconds(3_000))
        #expect(b - a == .nanoseconds(-3_000))
        #expect(a - a == .zero)
        #expect(LoopInstant.distantFuture - LoopInstant(nanoseconds: 0) == .nanoseconds(Int64.max))
        #expect(LoopInstant(nanoseconds: 0) - .distantFuture == .nanoseconds(-Int64.max))
    }

    @Test func nowIsMonotonicAndOrdered() {
        var last = LoopInstant.now()
        for _ in 0..<1000 {
            let t = LoopInstant.now()
            #expect(t >= last)
            last = t
        }
        #expect(LoopInstant(nanoseconds: 1) < LoopInstant(nanoseconds: 2))
        #expect(LoopInstant.now() < .distantFuture)
        #expect(LoopInstant(nanoseconds: 42).description.contains("42"))
    }
}
