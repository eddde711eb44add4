// The CEvTask shim against the Concurrency runtime it was built with. EvAsync's awaits
// install their cancellation handlers through `swift_task_addCancellationHandler` and
// `swift_task_removeCancellationHandler`, declared by hand in CEvTask.c (Swift code cannot
// name them). If a toolchain changed their signatures or the handler's calling convention,
// the async suites would hang on their first cancellation or corrupt memory; these tests
// name the cause instead: the handler runs exactly once, with its argument, strictly
// between the add and the remove, and never after the remove. The cancellation flag that
// EvAsync reads through `swift_task_getCurrent` and `swift_task_isCancelled` agrees with
// `Task.isCancelled`.
import Testing
import CEvTask
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A handler that records how many times it ran and with which argument (itself).
private final class HandlerLog: @unchecked Sendable {
    // @unchecked Sendable: `handler` is written once, in init; the rest is atomic.
    let calls = Atomic<Int>(0)
    let lastArgument = Atomic<UInt>(0)
    let installed = Atomic<Bool>(false)
    /// The handler, at a stable address for as long as a record may name it.
    let handler: UnsafeMutablePointer<cevtask_cancel_handler>

    init() {
        handler = .allocate(capacity: 1)
        handler.initialize(to: cevtask_cancel_handler(function: { argument in
            let log = Unmanaged<HandlerLog>.fromOpaque(argument.unsafelyUnwrapped).takeUnretainedValue()
            log.lastArgument.store(UInt(bitPattern: argument), ordering: .relaxed)
            log.calls.add(1, ordering: .sequentiallyConsistent)
        }, argument: nil))
        handler.pointee.argument = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { handler.deallocate() }

    var callCount: Int { calls.load(ordering: .sequentiallyConsistent) }
}

/// Carries the atomic to a plain pthread (no task there).
private final class OutsideBox: @unchecked Sendable {
    // @unchecked Sendable: only the atomic is shared.
    let value = Atomic<Int>(-1)
}

@Suite("CEvTask: the runtime's cancellation-handler entry points")
struct CancellationShimTests {
    @Test("cancelling the task runs the handler once, with its argument, while the record is installed")
    func cancelRunsHandlerOnce() async {
        let log = HandlerLog()
        let argument = UInt(bitPattern: Unmanaged.passUnretained(log).toOpaque())
        let callsBeforeRemove = await Task.detached { () -> Int in
            let record = cevtask_add_cancellation_handler(log.handler)
            #expect(log.callCount == 0)
            withUnsafeCurrentTask { $0?.cancel() }
            let calls = log.callCount
            cevtask_remove_cancellation_handler(record)
            return calls
        }.value
        #expect(callsBeforeRemove == 1)
        #expect(log.callCount == 1)
        #expect(log.lastArgument.load(ordering: .relaxed) == argument)
    }

    @Test("a task cancelled before the add runs the handler at once, in the add")
    func alreadyCancelledRunsHandlerInAdd() async {
        let log = HandlerLog()
        let callsAfterAdd = await Task.detached { () -> Int in
            withUnsafeCurrentTask { $0?.cancel() }
            let record = cevtask_add_cancellation_handler(log.handler)
            let calls = log.callCount
            cevtask_remove_cancellation_handler(record)
            return calls
        }.value
        #expect(callsAfterAdd == 1)
        #expect(log.callCount == 1)
    }

    @Test("the current task's cancellation flag agrees with Task.isCancelled, and is false outside a task")
    func currentIsCancelledAgrees() async {
        #expect(!cevtask_current_is_cancelled())   // a test's task, not cancelled
        let (before, after, swiftAfter) = await Task.detached { () -> (Bool, Bool, Bool) in
            let before = cevtask_current_is_cancelled()
            withUnsafeCurrentTask { $0?.cancel() }
            return (before, cevtask_current_is_cancelled(), Task.isCancelled)
        }.value
        #expect(!before)
        #expect(after)
        #expect(swiftAfter)
        let box = OutsideBox()
        var thread = pthread_t()
        pthread_create(&thread, nil, { argument in
            let b = Unmanaged<OutsideBox>.fromOpaque(argument!).takeUnretainedValue()
            b.value.store(cevtask_current_is_cancelled() ? 1 : 0, ordering: .relaxed)
            return nil
        }, Unmanaged.passUnretained(box).toOpaque())
        pthread_join(thread, nil)
        #expect(box.value.load(ordering: .relaxed) == 0, "no task on a plain thread")
    }

    @Test("after the remove, cancelling the task leaves the handler alone")
    func removedHandlerNeverRuns() async {
        let log = HandlerLog()
        await Task.detached {
            let record = cevtask_add_cancellation_handler(log.handler)
            cevtask_remove_cancellation_handler(record)
            withUnsafeCurrentTask { $0?.cancel() }
        }.value
        #expect(log.callCount == 0)
    }

    @Test("a cancel from another thread reaches the handler of a suspended task")
    func crossThreadCancelReachesHandler() async {
        let log = HandlerLog()
        let task = Task.detached { () -> Int in
            let record = cevtask_add_cancellation_handler(log.handler)
            log.installed.store(true, ordering: .sequentiallyConsistent)
            // Waits for the cancel, with the record installed (bounded: about 10 s).
            for _ in 0..<10_000 where log.callCount == 0 {
                try? await Task.sleep(for: .milliseconds(1))
            }
            let calls = log.callCount
            cevtask_remove_cancellation_handler(record)
            return calls
        }
        while !log.installed.load(ordering: .sequentiallyConsistent) { await Task.yield() }
        task.cancel()
        #expect(await task.value == 1)
        #expect(log.callCount == 1)
    }
}
