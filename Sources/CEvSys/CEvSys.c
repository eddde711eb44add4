#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CEvSys.h"
#include <signal.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <time.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

int cevsys_pidfd_open(int pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

int cevsys_pidfd_send_signal(int pidfd, int sig, unsigned int flags) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

int cevsys_gettid(void) { return (int)syscall(SYS_gettid); }

int cevsys_tgkill(int tgid, int tid, int sig) {
    return (int)syscall(SYS_tgkill, tgid, tid, sig);
}

int cevsys_errno(void) { return errno; }
void cevsys_set_errno(int value) { errno = value; }

int cevsys_wifexited(int status) { return WIFEXITED(status); }
int cevsys_wexitstatus(int status) { return WEXITSTATUS(status); }
int cevsys_wifsignaled(int status) { return WIFSIGNALED(status); }
int cevsys_wtermsig(int status) { return WTERMSIG(status); }

int cevsys_sigset_make(void *setp, const int *signals, int count) {
    sigset_t *set = (sigset_t *)setp;
    if (sigemptyset(set) != 0) return -1;
    for (int i = 0; i < count; i++) {
        if (sigaddset(set, signals[i]) != 0) return -1;
    }
    return 0;
}

int cevsys_accept4(int fd, void *addr, void *len, int flags) {
    return accept4(fd, (struct sockaddr *)addr, (socklen_t *)len, flags);
}

// MARK: readiness backends

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif

enum { CEVSYS_MAX_READY = 256 };

int cevsys_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int cevsys_epoll_ctl(int epfd, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

static int cevsys_copy_ready(const struct epoll_event *kev, int n, cevsys_ready_event *out) {
    for (int i = 0; i < n; i++) {
        out[i].fd = kev[i].data.fd;
        out[i].events = kev[i].events;
    }
    return n;
}

int cevsys_epoll_pwait2(int epfd, cevsys_ready_event *out, int maxevents,
                        int64_t seconds, int64_t nanoseconds) {
#if defined(__ANDROID__)
    (void)epfd; (void)out; (void)maxevents; (void)seconds; (void)nanoseconds;
    errno = ENOSYS;   // Android's seccomp policy kills the process on epoll_pwait2 before API 35
    return -1;
#else
    struct epoll_event kev[CEVSYS_MAX_READY];
    if (maxevents > CEVSYS_MAX_READY) maxevents = CEVSYS_MAX_READY;
    // The kernel reads a struct __kernel_timespec: two 64-bit fields on every architecture.
    struct { int64_t tv_sec; int64_t tv_nsec; } ts = { seconds, nanoseconds };
    long n = syscall(SYS_epoll_pwait2, epfd, kev, maxevents, seconds < 0 ? NULL : (void *)&ts,
                     NULL, (size_t)8);
    if (n < 0) return -1;
    return cevsys_copy_ready(kev, (int)n, out);
#endif
}

int cevsys_epoll_wait(int epfd, cevsys_ready_event *out, int maxevents, int timeout_ms) {
    struct epoll_event kev[CEVSYS_MAX_READY];
    if (maxevents > CEVSYS_MAX_READY) maxevents = CEVSYS_MAX_READY;
    int n = epoll_wait(epfd, kev, maxevents, timeout_ms);
    if (n < 0) return -1;
    return cevsys_copy_ready(kev, n, out);
}

int cevsys_ppoll(void *fds, uint64_t nfds, int64_t seconds, int64_t nanoseconds) {
    struct timespec ts = { (time_t)seconds, (long)nanoseconds };
    return ppoll((struct pollfd *)fds, (nfds_t)nfds, seconds < 0 ? NULL : &ts, NULL);
}

int cevsys_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }
