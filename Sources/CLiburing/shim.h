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
