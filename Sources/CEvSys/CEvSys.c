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
