// The Swift Concurrency runtime's cancellation-handler entry points, reachable from Swift.
//
// Why: in Swift 6.3, `withTaskCancellationHandler(operation:onCancel:isolation:)` is an
// opaque library function with an `isolated` parameter, and calling it costs three task
// switches per call (its entry, its operation closure's entry and its return); for a task
// with an executor preference every switch looks the preference up under the task's
// status-record lock. EvAsync installs one handler per await, so that was about 950
// instructions of every await (BENCHMARKS.md, "Where an await's instructions go"). What the
// function does is add a cancellation status record, run the operation and remove the
// record, with two runtime entry points that are part of the runtime's ABI (the function's
// back-deployed body, inlined into clients built for older Apple systems, calls them).
// Swift code cannot name them (their names are reserved for the runtime), and they use the
// Swift calling convention, so this C shim calls them. (The development branch's
// `withTaskCancellationHandler` is `nonisolated(nonsending)` and inlined, with no switch;
// this target can go once EvLoop requires a toolchain with it.)
//
// Toolchain assumption: the declarations in CEvTask.c are copied by hand from the
// runtime's swift/Runtime/Concurrency.h (checked against Swift 6.3.1; the entry points
// exist since Swift 5.5). The compiler cannot check them against the runtime it links.
// They are part of the runtime's stable ABI on Apple platforms (binaries built for older
// systems call them), so their signatures and calling convention cannot change there, and
// Linux builds the same runtime source. Should that ever break, the test suite
// says so by name rather than through a hang or corrupted memory: CancellationShimTests
// (EvConformanceTests) checks that the handler runs exactly once, with its argument, only
// between the add and the remove, and on a cancel from another thread.
#ifndef CEVTASK_H
#define CEVTASK_H

/// A cancellation handler: `function(argument)`. It must stay at the same address until the
/// record that names it has been removed.
typedef struct cevtask_cancel_handler {
    void (*function)(void *argument);
    void *argument;
} cevtask_cancel_handler;

/// Adds a cancellation record for `handler` to the current task and returns the record.
/// The runtime calls the handler at most once: on the thread that cancels the task, under
/// the task's status-record lock (so strictly between this call and the record's removal),
/// or right here, on this thread, when the task is already cancelled. Call it from a task
/// only.
void *cevtask_add_cancellation_handler(cevtask_cancel_handler *handler);

/// Removes the record `cevtask_add_cancellation_handler` returned, in the same task. The
/// record comes from the task's stack allocator: remove it before anything allocated after
/// it is freed, that is in the function that added it, after its awaits.
void cevtask_remove_cancellation_handler(void *record);

/// Whether the current task is cancelled (false outside a task): `Task.isCancelled`
/// without its retain and release of the task, or `withUnsafeCurrentTask`'s generic closure
/// call (about 150 instructions a look, callgrind, where this is two runtime calls).
/// Through `swift_task_getCurrent` and `swift_task_isCancelled`, under the same toolchain
/// assumption as the two functions above (CancellationShimTests checks it).
_Bool cevtask_current_is_cancelled(void);

#endif
