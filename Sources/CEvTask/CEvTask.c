#include "CEvTask.h"

// The runtime's declarations (swift/Runtime/Concurrency.h): both use the Swift calling
// convention, and the handler is called with its context in the Swift context register.
typedef void (*cevtask_swift_handler)(void *context __attribute__((swift_context)))
    __attribute__((swiftcall));
extern void *swift_task_addCancellationHandler(cevtask_swift_handler handler, void *context)
    __attribute__((swiftcall));
extern void swift_task_removeCancellationHandler(void *record) __attribute__((swiftcall));
extern void *swift_task_getCurrent(void) __attribute__((swiftcall));
extern _Bool swift_task_isCancelled(void *task) __attribute__((swiftcall));

__attribute__((swiftcall))
static void cevtask_run_handler(void *context __attribute__((swift_context))) {
    cevtask_cancel_handler *handler = context;
    handler->function(handler->argument);
}

void *cevtask_add_cancellation_handler(cevtask_cancel_handler *handler) {
    return swift_task_addCancellationHandler(cevtask_run_handler, handler);
}

void cevtask_remove_cancellation_handler(void *record) {
    swift_task_removeCancellationHandler(record);
}

_Bool cevtask_current_is_cancelled(void) {
    void *task = swift_task_getCurrent();
    return task != 0 && swift_task_isCancelled(task);
}
