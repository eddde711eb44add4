// liburing's header: its static inline helpers (io_uring_get_sqe, io_uring_prep_*,
// io_uring_cqe_seen, ...) import into Swift directly (checked with Debian's liburing 2.3).
#include <liburing.h>
