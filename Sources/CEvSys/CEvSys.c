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
#include <spawn.h>
#include <fcntl.h>
#include <string.h>
#include <sys/signalfd.h>
#include <pthread.h>

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

// MARK: I/O without glibc's cancellation-point wrappers
//
// glibc's read, write, recv, send (and the rest below) are pthread cancellation points:
// each call switches asynchronous cancellation on and off around the system call, about
// 29 instructions per call (__pthread_enable_asynccancel and __pthread_disable_asynccancel;
// callgrind, December 2026: 6 calls and 174 instructions per epoll ping-pong roundtrip,
// as many per cross-thread notification round trip). A loop thread is never cancelled
// with pthread_cancel (it would leave its completions in flight), so the loop calls the
// kernel directly: with inline system call instructions on x86_64 and aarch64 (CEvSys.h),
// with syscall(2), which is not a cancellation point, elsewhere.

#if defined(CEVSYS_INLINE_SYSCALLS)
// The header's inline system calls use their own numbers (it may include no system
// header): check them against the C library's here, on every build.
_Static_assert(CEVSYS_NR_read == SYS_read, "SYS_read");
_Static_assert(CEVSYS_NR_write == SYS_write, "SYS_write");
_Static_assert(CEVSYS_NR_pread64 == SYS_pread64, "SYS_pread64");
_Static_assert(CEVSYS_NR_pwrite64 == SYS_pwrite64, "SYS_pwrite64");
_Static_assert(CEVSYS_NR_sendto == SYS_sendto, "SYS_sendto");
_Static_assert(CEVSYS_NR_recvfrom == SYS_recvfrom, "SYS_recvfrom");
_Static_assert(CEVSYS_NR_sendmsg == SYS_sendmsg, "SYS_sendmsg");
_Static_assert(CEVSYS_NR_recvmsg == SYS_recvmsg, "SYS_recvmsg");
#else
// Other architectures: syscall(2), converted to the raw convention of the inline ones.
static long cevsys_raw(long r) { return r < 0 ? -(long)errno : r; }

long cevsys_read(int fd, void *buffer, unsigned long count) {
    return cevsys_raw(syscall(SYS_read, fd, buffer, count));
}

long cevsys_write(int fd, const void *buffer, unsigned long count) {
    return cevsys_raw(syscall(SYS_write, fd, buffer, count));
}

long cevsys_pread(int fd, void *buffer, unsigned long count, int64_t offset) {
    return cevsys_raw(syscall(SYS_pread64, fd, buffer, count, (off_t)offset));
}

long cevsys_pwrite(int fd, const void *buffer, unsigned long count, int64_t offset) {
    return cevsys_raw(syscall(SYS_pwrite64, fd, buffer, count, (off_t)offset));
}

long cevsys_recv(int fd, void *buffer, unsigned long count, int flags) {
    return cevsys_raw(syscall(SYS_recvfrom, fd, buffer, count, flags, NULL, NULL));
}

long cevsys_send(int fd, const void *buffer, unsigned long count, int flags) {
    return cevsys_raw(syscall(SYS_sendto, fd, buffer, count, flags, NULL, 0));
}

long cevsys_recvmsg(int fd, void *message, int flags) {
    return cevsys_raw(syscall(SYS_recvmsg, fd, message, flags));
}

long cevsys_sendmsg(int fd, const void *message, int flags) {
    return cevsys_raw(syscall(SYS_sendmsg, fd, message, flags));
}
#endif

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

int cevsys_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

int cevsys_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = (int32_t)cred.pid;
    *uid = (uint32_t)cred.uid;
    *gid = (uint32_t)cred.gid;
    return 0;
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

// The waits' system call: -1 with errno set on failure, as the epoll wrappers report.
// Inline on x86_64 and aarch64 (see CEvSys.h: glibc's syscall(2) and its errno write
// were about 15 instructions of every wait).
static inline long cevsys_wait_syscall(long nr, long a, long b, long c, long d, long e, long f) {
#if defined(CEVSYS_INLINE_SYSCALLS)
    long r = cevsys_syscall6(nr, a, b, c, d, e, f);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
#else
    return syscall(nr, a, b, c, d, e, f);
#endif
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
    long n = cevsys_wait_syscall(SYS_epoll_pwait2, epfd, (long)kev, maxevents,
                                 seconds < 0 ? 0 : (long)&ts, 0, 8);
    if (n < 0) return -1;
    return cevsys_copy_ready(kev, (int)n, out);
#endif
}

int cevsys_epoll_wait(int epfd, cevsys_ready_event *out, int maxevents, int timeout_ms) {
    struct epoll_event kev[CEVSYS_MAX_READY];
    if (maxevents > CEVSYS_MAX_READY) maxevents = CEVSYS_MAX_READY;
    // epoll_pwait with no signal mask is epoll_wait (which aarch64 lacks), called directly
    // to skip glibc's cancellation-point wrapper (see "I/O without glibc's
    // cancellation-point wrappers" above).
    long n = cevsys_wait_syscall(SYS_epoll_pwait, epfd, (long)kev, maxevents, timeout_ms, 0, 8);
    if (n < 0) return -1;
    return cevsys_copy_ready(kev, (int)n, out);
}

int cevsys_ppoll(void *fds, uint64_t nfds, int64_t seconds, int64_t nanoseconds) {
    struct timespec ts = { (time_t)seconds, (long)nanoseconds };
    // Without glibc's cancellation-point wrapper (see above); no signal mask, so the mask
    // size is not read.
    return (int)cevsys_wait_syscall(SYS_ppoll, (long)fds, (long)nfds, seconds < 0 ? 0 : (long)&ts,
                                    0, 8, 0);
}

int cevsys_eventfd(unsigned int initval, int flags) { return eventfd(initval, flags); }

// MARK: watchers (process, signal)

int cevsys_spawn(int *pid_out, const char *path, char *const argv[], char *const envp[],
                 const char *cwd, const int stdio[3], int search_path) {
    extern char **environ;
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int r = posix_spawn_file_actions_init(&actions);
    if (r != 0) return r;
    r = posix_spawnattr_init(&attr);
    if (r != 0) { posix_spawn_file_actions_destroy(&actions); return r; }

    for (int i = 0; i < 3 && r == 0; i++) {
        if (stdio[i] == CEVSYS_STDIO_NULL) {
            r = posix_spawn_file_actions_addopen(&actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        } else if (stdio[i] >= 0) {
            // dup2 onto the same number clears FD_CLOEXEC in the child (glibc 2.29+, BZ #23640).
            r = posix_spawn_file_actions_adddup2(&actions, stdio[i], i);
        }
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    // Close everything above stderr in the child, so nothing the parent opened without
    // close-on-exec (by another library, or by a race with another thread's fork) leaks.
    if (r == 0) r = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
    if (r == 0 && cwd != NULL) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
        r = posix_spawn_file_actions_addchdir_np(&actions, cwd);
#else
        r = ENOSYS;
#endif
    }
    if (r == 0) {
        sigset_t empty, all;
        sigemptyset(&empty);
        sigfillset(&all);
        r = posix_spawnattr_setsigmask(&attr, &empty);
        if (r == 0) r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0) r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    }
    if (r == 0) {
        pid_t pid = 0;
        char *const *env = envp != NULL ? envp : environ;
        r = search_path ? posix_spawnp(&pid, path, &actions, &attr, argv, env)
                        : posix_spawn(&pid, path, &actions, &attr, argv, env);
        if (r == 0) *pid_out = (int)pid;
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    return r;
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int cevsys_waitid(idtype_t type, id_t id, int options, cevsys_child_status *out) {
    siginfo_t info;
    memset(&info, 0, sizeof info);   // WNOHANG with nothing to report leaves si_pid 0
    int r;
    // EINTR: a signal handler ran while waiting; the child has not been reaped, so retry.
    do { r = waitid(type, id, &info, options); } while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    out->pid = info.si_pid;
    out->code = info.si_code;
    out->status = info.si_status;
    return 0;
}

int cevsys_waitid_pidfd(int pidfd, int nohang, cevsys_child_status *out) {
    return cevsys_waitid((idtype_t)P_PIDFD, (id_t)pidfd, WEXITED | (nohang ? WNOHANG : 0), out);
}

int cevsys_waitid_pid(int pid, int nowait, cevsys_child_status *out) {
    return cevsys_waitid(P_PID, (id_t)pid, WEXITED | (nowait ? WNOWAIT : 0), out);
}

static int cevsys_fill_sigset(sigset_t *set, const int *signals, int count) {
    sigemptyset(set);
    for (int i = 0; i < count; i++) {
        if (sigaddset(set, signals[i]) != 0) return -1;
    }
    return 0;
}

int cevsys_signalfd(const int *signals, int count) {
    sigset_t set;
    if (cevsys_fill_sigset(&set, signals, count) != 0) return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int cevsys_signalfd_read(int fd, cevsys_signal_info *out) {
    struct signalfd_siginfo info;
    ssize_t n;
    // EINTR: retry; the signalfd is non-blocking, so this never waits.
    do { n = read(fd, &info, sizeof info); } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n != (ssize_t)sizeof info) { errno = EIO; return -1; }
    out->signal = (int32_t)info.ssi_signo;
    out->code = info.ssi_code;
    out->sender_pid = (int32_t)info.ssi_pid;
    out->sender_uid = info.ssi_uid;
    return 1;
}

int cevsys_sigmask(int how, const int *signals, int count) {
    sigset_t set;
    if (cevsys_fill_sigset(&set, signals, count) != 0) return EINVAL;
    return pthread_sigmask(how == 0 ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int cevsys_signal_pending(int signal) {
    sigset_t set;
    sigemptyset(&set);
    if (sigpending(&set) != 0) return 0;
    return sigismember(&set, signal) == 1;
}

int cevsys_signal_consume(int signal) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    struct timespec zero = { 0, 0 };
    int r;
    do { r = sigtimedwait(&set, NULL, &zero); } while (r < 0 && errno == EINTR);
    return r == signal ? 1 : 0;
}

// MARK: files

#include <sys/stat.h>
#ifndef SYS_statx
#define SYS_statx 332
#endif

_Static_assert(sizeof(cevsys_statx) == 256, "cevsys_statx must have the kernel's layout");

int cevsys_statx_call(int dirfd, const char *path, int flags, unsigned int mask, cevsys_statx *out) {
    return (int)syscall(SYS_statx, dirfd, path, flags, mask, out);
}

int cevsys_o_direct(void) { return O_DIRECT; }
int cevsys_at_empty_path(void) { return AT_EMPTY_PATH; }
int cevsys_at_symlink_nofollow(void) { return AT_SYMLINK_NOFOLLOW; }
int cevsys_at_fdcwd(void) { return AT_FDCWD; }
int cevsys_at_removedir(void) { return AT_REMOVEDIR; }

int cevsys_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

int cevsys_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = 0;
    return pthread_setname_np(pthread_self(), cut);
}
