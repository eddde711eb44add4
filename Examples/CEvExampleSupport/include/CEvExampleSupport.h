// C helpers for the example programs only (not part of the library).
#ifndef CEVEXAMPLESUPPORT_H
#define CEVEXAMPLESUPPORT_H

// No system headers here, on purpose: a C module that textually includes <sys/types.h>
// gets its own fd_set, and clang refuses to import two modules whose fd_set definitions
// differ (liburing.h, reached through Ev, sets _XOPEN_SOURCE; Swift's Glibc does not).

/// Makes io_uring_setup(2) fail with `errno_value` (for example EPERM or ENOSYS) in every
/// thread of this process and in its future children, the way Docker's default seccomp
/// profile (EPERM) or a kernel without CONFIG_IO_URING (ENOSYS) does. The other io_uring
/// calls are left alone: without a ring they have nothing to act on.
///
/// Sets PR_SET_NO_NEW_PRIVS first (required to install a filter without CAP_SYS_ADMIN),
/// then installs a small classic-BPF program with seccomp(SECCOMP_SET_MODE_FILTER,
/// SECCOMP_FILTER_FLAG_TSYNC). Irreversible for the life of the process.
///
/// Returns 0 on success; -1 with errno set on failure (EINVAL: unsupported architecture
/// or errno_value outside 1...4095).
int evex_deny_io_uring_setup(int errno_value);

/// errno of the calling thread (a macro in glibc).
int evex_errno(void);

#endif
