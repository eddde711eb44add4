// Thin wrappers for Linux system calls that Swift cannot call directly, because glibc
// exposes them only through the variadic syscall(2) or as macros. Every function follows
// the raw-syscall convention: it returns -1 and sets errno on failure.
#ifndef CEVSYS_H
#define CEVSYS_H

// This header includes no system header but <stdint.h>: a C module that textually
// includes <sys/types.h> gets its own fd_set, and clang refuses to import two modules
// whose fd_set definitions differ (liburing.h sets _XOPEN_SOURCE, Swift's Glibc does not).
// So pids are plain ints (pid_t is int on Linux) and pointers to system structs are void*.

#include <stdint.h>

/// pidfd_open(2), Linux 5.3+. ENOSYS on older kernels, EPERM under some seccomp profiles.
int cevsys_pidfd_open(int pid, unsigned int flags);

/// pidfd_send_signal(2), Linux 5.1+.
int cevsys_pidfd_send_signal(int pidfd, int sig, unsigned int flags);

/// The calling thread's kernel thread id (gettid(2)), for tgkill in tests.
int cevsys_gettid(void);

/// tgkill(2): deliver a signal to one thread of this process.
int cevsys_tgkill(int tgid, int tid, int sig);

/// errno of the calling thread (a macro in glibc, so Swift reads it through this).
int cevsys_errno(void);
void cevsys_set_errno(int value);

/// The WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG macros.
int cevsys_wifexited(int status);
int cevsys_wexitstatus(int status);
int cevsys_wifsignaled(int status);
int cevsys_wtermsig(int status);

/// sigemptyset/sigaddset wrappers taking a plain signal list (glibc's are macros on some arches).
int cevsys_sigset_make(void *set, const int *signals, int count);

/// accept4(2) (declared by glibc only under _GNU_SOURCE).
int cevsys_accept4(int fd, void *addr, void *len, int flags);

// MARK: readiness backends (epoll, poll, the loop's eventfd)

/// One ready descriptor as the readiness backends consume it. The kernel's
/// `struct epoll_event` is packed on x86_64, so it never crosses into Swift: the wait
/// wrappers below convert it into this naturally aligned pair (data = the descriptor).
typedef struct cevsys_ready_event {
    int32_t fd;
    uint32_t events;
} cevsys_ready_event;

/// epoll_create1(EPOLL_CLOEXEC).
int cevsys_epoll_create(void);

/// epoll_ctl operations (the values of EPOLL_CTL_ADD/DEL/MOD).
enum { CEVSYS_EPOLL_CTL_ADD = 1, CEVSYS_EPOLL_CTL_DEL = 2, CEVSYS_EPOLL_CTL_MOD = 3 };

/// epoll_ctl(epfd, op, fd, {events, data.fd = fd}).
int cevsys_epoll_ctl(int epfd, int op, int fd, uint32_t events);

/// epoll_pwait2(2) (Linux 5.11+, nanosecond timeout) through syscall(2), so it does not
/// depend on the C library's version. `seconds < 0` waits forever. ENOSYS on older
/// kernels (and always on Android, whose seccomp policy kills callers of unknown syscalls).
/// Fills `out` with up to `maxevents` ready descriptors; returns their number.
int cevsys_epoll_pwait2(int epfd, cevsys_ready_event *out, int maxevents,
                        int64_t seconds, int64_t nanoseconds);

/// epoll_wait(2) with a millisecond timeout (-1: forever); fills `out` like the above.
int cevsys_epoll_wait(int epfd, cevsys_ready_event *out, int maxevents, int timeout_ms);

/// ppoll(2) with a nanosecond timeout (`seconds < 0`: forever) and no signal mask.
/// `fds` points to `struct pollfd`s (declared by Glibc for Swift).
int cevsys_ppoll(void *fds, uint64_t nfds, int64_t seconds, int64_t nanoseconds);

/// eventfd(2). `flags` may combine O_CLOEXEC and O_NONBLOCK (equal to EFD_CLOEXEC and
/// EFD_NONBLOCK on Linux, and visible to Swift where the EFD_ names are not).
int cevsys_eventfd(unsigned int initval, int flags);

#endif
