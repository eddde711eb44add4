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

#endif
