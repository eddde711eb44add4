// liburing's header: its static inline helpers (io_uring_get_sqe, io_uring_prep_*,
// io_uring_cqe_seen, ...) import into Swift directly (checked with Debian's liburing 2.3).
//
// liburing.h defines _XOPEN_SOURCE 500 and _GNU_SOURCE before including system headers.
// Swift's Glibc module is built without them, and under _XOPEN_SOURCE glibc names fd_set's
// member `fds_bits` instead of `__fds_bits`: clang then refuses to import both modules
// ("'__fds_bits' from module 'SwiftGlibc' is not present in definition of 'fd_set' in module
// 'CLiburing'"), intermittently, depending on which module a fresh build compiles first.
// So the system headers liburing.h uses are included here first, with the default feature
// set that Swift's Glibc uses; liburing.h's own includes then hit their include guards.
// (Its macros come too late to change anything; everything it needs, cpu_set_t and sigset_t
// included, is declared under the default feature set.)
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <inttypes.h>
#include <time.h>
#include <fcntl.h>
#include <sched.h>
#include <liburing.h>

// MARK: EvLoop's helpers
//
// A few one-liners Swift cannot write itself: they need the C11 acquire/release ordering
// that liburing's barrier.h macros provide (Swift has no atomic access to memory it does
// not own, such as the ring indices the kernel shares with us).

/// Publishes the SQEs obtained with io_uring_get_sqe since the last call, so the next
/// io_uring_enter can submit them, and returns how many the kernel has not consumed yet.
/// The release store orders the SQE contents before the new tail (the kernel reads the
/// tail with an acquire load).
static inline unsigned evuring_publish_sq(struct io_uring *ring) {
    struct io_uring_sq *sq = &ring->sq;
    if (sq->sqe_head != sq->sqe_tail) {
        sq->sqe_head = sq->sqe_tail;
        io_uring_smp_store_release(sq->ktail, sq->sqe_tail);
    }
    return sq->sqe_tail - *sq->khead;
}

/// The SQ ring's flags word (IORING_SQ_CQ_OVERFLOW, IORING_SQ_TASKRUN), read once.
static inline unsigned evuring_sq_flags(const struct io_uring *ring) {
    return IO_URING_READ_ONCE(*ring->sq.kflags);
}

/// The CQE at `index` (not masked) of the completion ring.
static inline struct io_uring_cqe *evuring_cqe_at(const struct io_uring *ring, unsigned index) {
    return &ring->cq.cqes[index & ring->cq.ring_mask];
}

/// The completion ring's head (only this process moves it, so a plain load is enough).
static inline unsigned evuring_cq_head(const struct io_uring *ring) {
    return *ring->cq.khead;
}
