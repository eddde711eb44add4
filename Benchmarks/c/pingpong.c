// pingpong.c: the floor for libxev's ping-pongs benchmark, in plain C.
//
// Same shape as evbench's ping-pongs (and libxev's): one TCP connection over loopback, a
// server thread that echoes what it reads, a client (the main thread) that sends "PING\n",
// waits for the whole echo and sends the next. Three ways to wait, chosen by --mode:
//
//   blocking   blocking read(2)/write(2) on both sides: 2 syscalls per side per roundtrip
//              (plus the sleeps and wake-ups inside them).
//   epoll      non-blocking sockets, one level-triggered EPOLLIN registration per side,
//              made once: epoll_wait + read + write per side per roundtrip.
//   io_uring   liburing, one ring per side: after a receive completes, the send and the next
//              receive are submitted together and waited for in one io_uring_enter; the
//              send is flagged IOSQE_CQE_SKIP_SUCCESS, so a successful send posts no
//              completion and each side enters the kernel once per roundtrip. The rings use
//              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN when the kernel has
//              them (6.1+), plain rings otherwise.
//
// No library, no allocation after setup, no error recovery beyond reporting: this is what
// an event loop library cannot beat. The client measures a window after a warm-up and
// prints the same RESULT line as the Swift benchmarks (roundtrips/s, CPU µs per roundtrip
// from getrusage for the whole process, allocations per roundtrip when the counting shim
// is preloaded).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include "sample.h"
#include <unistd.h>

enum mode { MODE_BLOCKING, MODE_EPOLL, MODE_URING };

static enum mode mode;
static const char PING[] = "PING\n";
#define PING_LEN 5

static void die(const char *what) {
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void die_res(const char *what, int res) {
    fprintf(stderr, "pingpong: %s: %s\n", what, strerror(-res));
    exit(1);
}

// ---- measurement: sample.h -----------------------------------------------------------

// ---- the ping parser (libxev's state machine) ----------------------------------------

static int parse_state;

// Returns the number of complete echoes in buf[0..n).
static int parse(const char *buf, ssize_t n) {
    int complete = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] != PING[parse_state]) {
            fprintf(stderr, "pingpong: unexpected byte %d in the echo\n", buf[i]);
            exit(1);
        }
        if (++parse_state == PING_LEN) {
            parse_state = 0;
            complete++;
        }
    }
    return complete;
}

static void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl");
}

static void write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) continue;   // never happens with 5 bytes in flight
            die("write");
        }
        buf += w;
        n -= (size_t)w;
    }
}

// ---- io_uring helpers ----------------------------------------------------------------

static unsigned ring_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;

static void ring_init(struct io_uring *ring) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = ring_flags;
    int r = io_uring_queue_init_params(8, ring, &p);
    if (r == -EINVAL) {
        memset(&p, 0, sizeof p);
        r = io_uring_queue_init_params(8, ring, &p);
    }
    if (r < 0) die_res("io_uring_queue_init", r);
}

#define TAG_RECV 1
#define TAG_SEND 2

static void prep_recv(struct io_uring *ring, int fd, char *buf, size_t len) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, TAG_RECV);
}

static void prep_send(struct io_uring *ring, int fd, const char *buf, size_t len) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, TAG_SEND);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

// Submits what is queued and waits for the next receive; returns its result. A send CQE
// appears only when a send failed or was short, which a 5-byte echo never is.
static int ring_wait_recv(struct io_uring *ring) {
    for (;;) {
        int r = io_uring_submit_and_wait(ring, 1);
        if (r < 0 && r != -EINTR) die_res("io_uring_submit_and_wait", r);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(ring, &cqe) == 0) {
            uint64_t tag = io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            io_uring_cqe_seen(ring, cqe);
            if (tag == TAG_RECV) return res;
            if (res < 0) die_res("send", res);
            fprintf(stderr, "pingpong: short send of %d bytes\n", res);
            exit(1);
        }
    }
}

// ---- server ------------------------------------------------------------------------

static int listen_fd;

static void *server_main(void *arg) {
    (void)arg;
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) die("accept");
    close(listen_fd);
    char buf[4096];
    char out[4096];
    if (mode == MODE_BLOCKING) {
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            write_all(fd, buf, (size_t)n);
        }
    } else if (mode == MODE_EPOLL) {
        set_nonblocking(fd);
        int ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) die("epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        for (;;) {
            struct epoll_event events[8];
            int k = epoll_wait(ep, events, 8, -1);
            if (k < 0) {
                if (errno == EINTR) continue;
                die("epoll_wait");
            }
            ssize_t n = read(fd, buf, sizeof buf);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (n <= 0) break;
            write_all(fd, buf, (size_t)n);
        }
        close(ep);
    } else {
        struct io_uring ring;
        ring_init(&ring);
        prep_recv(&ring, fd, buf, sizeof buf);
        for (;;) {
            int n = ring_wait_recv(&ring);
            if (n <= 0) break;
            // The next receive reuses `buf`, so the echo goes out of `out`.
            memcpy(out, buf, (size_t)n);
            prep_send(&ring, fd, out, (size_t)n);
            prep_recv(&ring, fd, buf, sizeof buf);
        }
        io_uring_queue_exit(&ring);
    }
    close(fd);
    return NULL;
}

// ---- client ------------------------------------------------------------------------

int main(int argc, char **argv) {
    long count = 100000, warmup = 2000;
    const char *mode_name = "epoll";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--mode") == 0) mode_name = argv[i + 1];
        else if (strcmp(argv[i], "--count") == 0) count = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0) warmup = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--ring") == 0) {
            // Ring setup flags, for comparing: defer (the default), coop, none.
            if (strcmp(argv[i + 1], "none") == 0) ring_flags = 0;
            else if (strcmp(argv[i + 1], "coop") == 0) ring_flags = IORING_SETUP_COOP_TASKRUN;
            else ring_flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        }
        else {
            fprintf(stderr, "usage: pingpong --mode blocking|epoll|io_uring [--count N] [--warmup N] [--ring defer|coop|none]\n");
            return 2;
        }
    }
    if (strcmp(mode_name, "blocking") == 0) mode = MODE_BLOCKING;
    else if (strcmp(mode_name, "epoll") == 0) mode = MODE_EPOLL;
    else if (strcmp(mode_name, "io_uring") == 0) mode = MODE_URING;
    else {
        fprintf(stderr, "pingpong: unknown mode %s\n", mode_name);
        return 2;
    }
    if (warmup < 1) warmup = 1;
    sample_init();

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) die("socket");
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listen_fd, 128) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");

    pthread_t server;
    if (pthread_create(&server, NULL, server_main, NULL) != 0) die("pthread_create");

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");

    char buf[1024];
    long pongs = 0, total = warmup + count;
    struct sample start = {0}, end = {0};
    struct io_uring ring;
    int ep = -1;
    if (mode == MODE_EPOLL) {
        set_nonblocking(fd);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0) die("epoll_create1");
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    } else if (mode == MODE_URING) {
        ring_init(&ring);
    }

    if (mode == MODE_URING) {
        prep_send(&ring, fd, PING, PING_LEN);
        prep_recv(&ring, fd, buf, sizeof buf);
    } else {
        write_all(fd, PING, PING_LEN);
    }
    while (pongs < total) {
        ssize_t n;
        if (mode == MODE_BLOCKING) {
            n = read(fd, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
        } else if (mode == MODE_EPOLL) {
            struct epoll_event events[8];
            int k = epoll_wait(ep, events, 8, -1);
            if (k < 0) {
                if (errno == EINTR) continue;
                die("epoll_wait");
            }
            n = read(fd, buf, sizeof buf);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        } else {
            n = ring_wait_recv(&ring);
            if (n < 0) {
                errno = (int)-n;
                n = -1;
            }
        }
        if (n <= 0) die("client read");
        int echoes = parse(buf, n);
        int send_next = 0;
        for (int e = 0; e < echoes; e++) {
            pongs++;
            if (pongs == warmup) start = sample_now();
            if (pongs == total) {
                end = sample_now();
                break;
            }
            send_next = 1;
        }
        if (pongs >= total) break;
        if (mode == MODE_URING) {
            if (send_next) prep_send(&ring, fd, PING, PING_LEN);
            prep_recv(&ring, fd, buf, sizeof buf);
        } else if (send_next) {
            write_all(fd, PING, PING_LEN);
        }
    }
    shutdown(fd, SHUT_WR);
    pthread_join(server, NULL);
    close(fd);
    if (mode == MODE_URING) io_uring_queue_exit(&ring);
    if (ep >= 0) close(ep);

    double seconds = (double)(end.wall_ns - start.wall_ns) / 1e9;
    double rate = (double)count / seconds;
    double cpu = (double)(end.cpu_us - start.cpu_us) / (double)count;
    printf("ping-pongs [c/%s]: %.2f roundtrips/s, %.3f s window of %ld roundtrips, CPU %.3f µs/roundtrip",
           mode_name, rate, seconds, count, cpu);
    if (start.have_allocs) {
        printf(", %.4f allocations/roundtrip\n", (double)(end.allocs - start.allocs) / (double)count);
    } else {
        printf(", allocations n/a\n");
    }
    printf("RESULT bench=ping-pongs impl=c/%s value=%.3f unit=roundtrips/s op=roundtrip ops=%ld seconds=%.6f cpu_us_per_op=%.4f",
           mode_name, rate, count, seconds, cpu);
    print_allocation_fields(&start, &end, count);
    printf("\n");
    return 0;
}
