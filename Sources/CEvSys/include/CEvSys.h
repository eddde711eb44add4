// Thin wrappers for Linux system calls that Swift cannot call directly, because glibc
// exposes them only through the variadic syscall(2) or as macros. Every function returns
// -1 and sets errno on failure, except the loop's I/O calls (cevsys_read and the rest
// below), which return the kernel's -errno and leave errno alone.
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

/// The loop's I/O calls (readiness backends, thread pool, eventfds), made without glibc's
/// cancellation-point wrappers (see CEvSys.c for why). Each returns the kernel's raw
/// result: a count, or -errno on failure (errno is not set).
///
/// On x86_64 and aarch64 they are inline `syscall`/`svc` instructions, so that a call from
/// Swift is the system call and nothing around it: through syscall(2) each cost a call
/// into the shim, glibc's syscall(2) shuffling six arguments, and a second call to read
/// errno from thread-local storage, about 25 instructions per call and 3-6 calls per
/// round trip (callgrind, issue 11). Elsewhere they are functions in CEvSys.c calling
/// syscall(2). The numbers below are checked against <sys/syscall.h> when CEvSys.c is
/// compiled.
#if defined(__x86_64__) || defined(__aarch64__)
#define CEVSYS_INLINE_SYSCALLS 1

#if defined(__x86_64__)
enum {
    CEVSYS_NR_read = 0, CEVSYS_NR_write = 1, CEVSYS_NR_pread64 = 17, CEVSYS_NR_pwrite64 = 18,
    CEVSYS_NR_sendto = 44, CEVSYS_NR_recvfrom = 45, CEVSYS_NR_sendmsg = 46, CEVSYS_NR_recvmsg = 47,
};

static inline long cevsys_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    // The kernel clobbers rcx (return address) and r11 (flags); "memory": it reads and
    // writes the buffers the arguments point to.
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}
#else
enum {
    CEVSYS_NR_read = 63, CEVSYS_NR_write = 64, CEVSYS_NR_pread64 = 67, CEVSYS_NR_pwrite64 = 68,
    CEVSYS_NR_sendto = 206, CEVSYS_NR_recvfrom = 207, CEVSYS_NR_sendmsg = 211, CEVSYS_NR_recvmsg = 212,
};

static inline long cevsys_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0"
                     : "+r"(x0)
                     : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
                     : "memory");
    return x0;
}
#endif

static inline long cevsys_read(int fd, void *buffer, unsigned long count) {
    return cevsys_syscall6(CEVSYS_NR_read, fd, (long)buffer, (long)count, 0, 0, 0);
}
static inline long cevsys_write(int fd, const void *buffer, unsigned long count) {
    return cevsys_syscall6(CEVSYS_NR_write, fd, (long)buffer, (long)count, 0, 0, 0);
}
static inline long cevsys_pread(int fd, void *buffer, unsigned long count, int64_t offset) {
    return cevsys_syscall6(CEVSYS_NR_pread64, fd, (long)buffer, (long)count, (long)offset, 0, 0);
}
static inline long cevsys_pwrite(int fd, const void *buffer, unsigned long count, int64_t offset) {
    return cevsys_syscall6(CEVSYS_NR_pwrite64, fd, (long)buffer, (long)count, (long)offset, 0, 0);
}
static inline long cevsys_recv(int fd, void *buffer, unsigned long count, int flags) {
    return cevsys_syscall6(CEVSYS_NR_recvfrom, fd, (long)buffer, (long)count, flags, 0, 0);
}
static inline long cevsys_send(int fd, const void *buffer, unsigned long count, int flags) {
    return cevsys_syscall6(CEVSYS_NR_sendto, fd, (long)buffer, (long)count, flags, 0, 0);
}
static inline long cevsys_recvmsg(int fd, void *message, int flags) {
    return cevsys_syscall6(CEVSYS_NR_recvmsg, fd, (long)message, flags, 0, 0, 0);
}
static inline long cevsys_sendmsg(int fd, const void *message, int flags) {
    return cevsys_syscall6(CEVSYS_NR_sendmsg, fd, (long)message, flags, 0, 0, 0);
}
#else
long cevsys_read(int fd, void *buffer, unsigned long count);
long cevsys_write(int fd, const void *buffer, unsigned long count);
long cevsys_pread(int fd, void *buffer, unsigned long count, int64_t offset);
long cevsys_pwrite(int fd, const void *buffer, unsigned long count, int64_t offset);
long cevsys_recv(int fd, void *buffer, unsigned long count, int flags);
long cevsys_send(int fd, const void *buffer, unsigned long count, int flags);
long cevsys_recvmsg(int fd, void *message, int flags);
long cevsys_sendmsg(int fd, const void *message, int flags);
#endif

/// The WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG macros.
int cevsys_wifexited(int status);
int cevsys_wexitstatus(int status);
int cevsys_wifsignaled(int status);
int cevsys_wtermsig(int status);

/// sigemptyset/sigaddset wrappers taking a plain signal list (glibc's are macros on some arches).
int cevsys_sigset_make(void *set, const int *signals, int count);

/// accept4(2) (declared by glibc only under _GNU_SOURCE).
int cevsys_accept4(int fd, void *addr, void *len, int flags);

/// pipe2(2) (declared by glibc only under _GNU_SOURCE, so Swift's Glibc has no pipe2):
/// `fds[0]` is the read end, `fds[1]` the write end. `flags` may combine O_CLOEXEC and
/// O_NONBLOCK (visible to Swift); creating both ends close-on-exec in the same call is the
/// point, since pipe(2) + fcntl leaves a window in which another thread's fork inherits them.
int cevsys_pipe2(int fds[2], int flags);

/// getsockopt(fd, SOL_SOCKET, SO_PEERCRED) (struct ucred is declared only under
/// _GNU_SOURCE): the process id, user id and group id of the peer of a connected Unix
/// socket, as they were when it connected (or when the socketpair was made).
int cevsys_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

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

// MARK: watchers (process, signal)

/// What to connect a child's standard descriptor (0, 1 or 2) to.
enum {
    CEVSYS_STDIO_INHERIT = -1,   ///< keep the parent's descriptor
    CEVSYS_STDIO_NULL = -2       ///< open /dev/null (read-only for stdin, write-only otherwise)
};

/// posix_spawn(p) with the hygiene a library owes its users' children:
/// - descriptors 0-2 are inherited, /dev/null or dup2'ed from `stdio[i]` (>= 0);
/// - every other descriptor is closed in the child (closefrom(3) through
///   posix_spawn_file_actions_addclosefrom_np, glibc 2.34+; older C libraries rely on every
///   loop descriptor being close-on-exec);
/// - the signal mask is emptied and every signal's disposition reset to default, so a
///   parent that blocks signals for a signalfd or ignores SIGPIPE does not pass that on;
/// - `cwd` (nullable) is entered with posix_spawn_file_actions_addchdir_np (glibc 2.29+).
/// `search_path` selects posix_spawnp. `envp` NULL inherits the environment.
/// Returns 0 and stores the pid, or returns the errno (posix_spawn's own convention;
/// glibc reports exec failures such as ENOENT this way too).
int cevsys_spawn(int *pid_out, const char *path, char *const argv[], char *const envp[],
                 const char *cwd, const int stdio[3], int search_path);

/// How a child ended, decoded from a waitid(2) siginfo.
typedef struct cevsys_child_status {
    int32_t pid;      ///< 0 when WNOHANG found nothing to report
    int32_t code;     ///< CLD_EXITED (1), CLD_KILLED (2), CLD_DUMPED (3), ...
    int32_t status;   ///< the exit code (CLD_EXITED) or the signal number
} cevsys_child_status;

/// waitid(P_PIDFD, pidfd, WEXITED [| WNOHANG]) (Linux 5.4+): reaps exactly that child.
int cevsys_waitid_pidfd(int pidfd, int nohang, cevsys_child_status *out);

/// waitid(P_PID, pid, WEXITED [| WNOWAIT]): without WNOWAIT reaps exactly that child;
/// with it, waits for the exit but leaves the zombie (so its pid cannot be reused yet).
int cevsys_waitid_pid(int pid, int nowait, cevsys_child_status *out);

/// The constants a Swift caller compares `cevsys_child_status.code` with.
enum { CEVSYS_CLD_EXITED = 1, CEVSYS_CLD_KILLED = 2, CEVSYS_CLD_DUMPED = 3 };

/// signalfd(-1, {signals}, SFD_CLOEXEC | SFD_NONBLOCK).
int cevsys_signalfd(const int *signals, int count);

/// One record read from a signalfd (the fields of struct signalfd_siginfo a caller needs).
typedef struct cevsys_signal_info {
    int32_t signal;
    int32_t code;        ///< si_code: SI_USER (kill), SI_TKILL (raise/tgkill), SI_QUEUE, ...
    int32_t sender_pid;
    uint32_t sender_uid;
} cevsys_signal_info;

/// Reads one record from a (non-blocking) signalfd: 1, or -1 with errno (EAGAIN: none).
int cevsys_signalfd_read(int fd, cevsys_signal_info *out);

/// pthread_sigmask(how, {signals}, NULL) for the calling thread; how: 0 block, 1 unblock.
/// Returns 0 or the error number.
int cevsys_sigmask(int how, const int *signals, int count);

/// Whether `signal` is pending for the calling thread or the process (sigpending).
int cevsys_signal_pending(int signal);

/// Consumes a pending, blocked `signal` without waiting (sigtimedwait with a zero
/// timeout): 1 if one was consumed, 0 if none was pending.
int cevsys_signal_consume(int signal);

// MARK: files (FileSystem, direct I/O)

/// The kernel's `struct statx` (linux/stat.h, 256 bytes), declared here because glibc's
/// copy stops before the fields newer kernels fill (stx_mnt_id, STATX_DIOALIGN's
/// stx_dio_mem_align and stx_dio_offset_align, Linux 6.1). Fields a kernel does not know
/// stay zero; `stx_mask` says which ones it filled.
typedef struct cevsys_statx_timestamp {
    int64_t tv_sec;
    uint32_t tv_nsec;
    int32_t reserved;
} cevsys_statx_timestamp;

typedef struct cevsys_statx {
    uint32_t stx_mask;
    uint32_t stx_blksize;
    uint64_t stx_attributes;
    uint32_t stx_nlink;
    uint32_t stx_uid;
    uint32_t stx_gid;
    uint16_t stx_mode;
    uint16_t pad1;
    uint64_t stx_ino;
    uint64_t stx_size;
    uint64_t stx_blocks;
    uint64_t stx_attributes_mask;
    cevsys_statx_timestamp stx_atime;
    cevsys_statx_timestamp stx_btime;
    cevsys_statx_timestamp stx_ctime;
    cevsys_statx_timestamp stx_mtime;
    uint32_t stx_rdev_major;
    uint32_t stx_rdev_minor;
    uint32_t stx_dev_major;
    uint32_t stx_dev_minor;
    uint64_t stx_mnt_id;
    uint32_t stx_dio_mem_align;
    uint32_t stx_dio_offset_align;
    uint64_t spare[12];
} cevsys_statx;

/// STATX_BASIC_STATS | STATX_BTIME | STATX_DIOALIGN: what `FileStatus` asks for.
enum { CEVSYS_STATX_MASK = 0x07ffU | 0x0800U | 0x2000U, CEVSYS_STATX_DIOALIGN = 0x2000U,
       CEVSYS_STATX_BTIME = 0x0800U };

/// statx(2) through syscall(2) (glibc's wrapper takes its own struct): fills `out`.
int cevsys_statx_call(int dirfd, const char *path, int flags, unsigned int mask, cevsys_statx *out);

/// O_DIRECT, AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, AT_FDCWD and AT_REMOVEDIR on this
/// architecture (O_DIRECT is declared only under _GNU_SOURCE and differs between x86_64
/// and arm64).
int cevsys_o_direct(void);
int cevsys_at_empty_path(void);
int cevsys_at_symlink_nofollow(void);
int cevsys_at_fdcwd(void);
int cevsys_at_removedir(void);

/// fallocate(2) (declared by glibc only under _GNU_SOURCE).
int cevsys_fallocate(int fd, int mode, int64_t offset, int64_t length);

/// Names the calling thread (pthread_setname_np, a GNU extension Swift's Glibc does not
/// import): what top -H, gdb and /proc/self/task/*/comm show. Linux keeps 15 bytes; a longer
/// name is cut there. Returns 0 or the errno.
int cevsys_set_thread_name(const char *name);

#endif
