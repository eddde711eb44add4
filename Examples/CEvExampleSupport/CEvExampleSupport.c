// seccomp filter used by ev-backend-probe to show how the runtime backend selection falls
// back when io_uring is blocked. See the header for the contract.
#include "CEvExampleSupport.h"

#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425 // the same number on every architecture since Linux 5.1
#endif

#if defined(__x86_64__)
#define EVEX_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define EVEX_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#define EVEX_AUDIT_ARCH 0
#endif

int evex_errno(void) { return errno; }

int evex_deny_io_uring_setup(int errno_value) {
    if (EVEX_AUDIT_ARCH == 0 || errno_value <= 0 || errno_value > SECCOMP_RET_DATA) {
        errno = EINVAL;
        return -1;
    }
    struct sock_filter program[] = {
        // A syscall made through another ABI (x32 or 32-bit compat on x86_64) has other
        // numbers: let it through untouched rather than misread it.
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, EVEX_AUDIT_ARCH, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)errno_value & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {
        .len = (unsigned short)(sizeof(program) / sizeof(program[0])),
        .filter = program,
    };
    // Without CAP_SYS_ADMIN the kernel accepts a filter only once no_new_privs is set, so
    // a filtered process can never gain privileges through a setuid exec.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    // TSYNC: apply to every thread already running (the Swift runtime may have started
    // some), not only the caller; threads started later inherit the filter anyway.
    long r = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
    if (r > 0) {
        // TSYNC reports the id of a thread that could not be synchronized.
        errno = EAGAIN;
        return -1;
    }
    return r == 0 ? 0 : -1;
}
