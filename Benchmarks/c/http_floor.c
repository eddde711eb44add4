// http_floor.c: the plain-C floors of the http benchmark group: the least a server can do
// to answer wrk's keep-alive GETs with ev-http's "Hello, World!" response, on epoll or on
// io_uring, so that ev-http's CPU per request has something to be compared with.
//
//   http_floor --mode epoll|io_uring [--port N] [--threads N]
//
// Both print "listening on 127.0.0.1:PORT" and run until SIGINT or SIGTERM. Each thread has
// its own SO_REUSEPORT listener and its own epoll instance or ring (as ev-http's loop group).
// A "request" is whatever ends with an empty line (memmem for CRLF CRLF): no parsing, no
// routing, so the floor is the system calls and the event handling only. The responses to
// the requests of one read go out in one write, as ev-http batches them.
//
// epoll: level-triggered; one recv per readiness event, then one send; a short send keeps
// the rest and waits for EPOLLOUT.
// io_uring: a multishot accept on the listener, and per connection a multishot receive into
// a provided-buffer ring (the kernel picks a buffer per completion, nothing is armed per
// read), and one send at a time per connection; responses that arrive while a send is in
// flight go into a second buffer, sent when the first is out. Debian 12's liburing 2.3
// predates io_uring_setup_buf_ring (2.4), so the buffer ring is mmapped and registered by
// hand (io_uring_register_buf_ring), which is what that function does.
//
// Build (run.sh does): cc -O2 -o http_floor http_floor.c -luring -lpthread
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)
#define IN_CAP 16384
#define OUT_CAP 65536

static void die(const char *what) {
    perror(what);
    exit(1);
}

struct conn {
    int fd;
    size_t in_len;          // a partial request kept from the last read
    char in[IN_CAP];
    // io_uring: out[sending] is in flight (from out_off), out[!sending] collects.
    char out[2][OUT_CAP];
    size_t out_len[2];
    size_t out_off;
    int sending;            // -1: no send in flight
    int closing;
};

static struct conn *conn_new(int fd) {
    struct conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    c->sending = -1;
    return c;
}

// Appends the data to the connection's partial request and writes one response per
// complete request to out (of room out_cap); returns the bytes written.
static size_t answer(struct conn *c, const char *data, size_t n, char *out, size_t out_cap) {
    size_t written = 0;
    if (c->in_len + n > IN_CAP) {   // a head larger than the buffer: not wrk; drop it
        c->in_len = 0;
        return 0;
    }
    memcpy(c->in + c->in_len, data, n);
    c->in_len += n;
    char *p = c->in, *end = c->in + c->in_len;
    for (;;) {
        char *e = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!e || written + RESPONSE_LEN > out_cap) break;
        memcpy(out + written, RESPONSE, RESPONSE_LEN);
        written += RESPONSE_LEN;
        p = e + 4;
    }
    c->in_len = (size_t)(end - p);
    if (c->in_len && p != c->in) memmove(c->in, p, c->in_len);
    return written;
}

static int port_arg = 0;
static int listen_port;   // resolved by the first listener
static pthread_barrier_t started;

static int make_listener(int port, int nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    listen_port = ntohs(a.sin_port);
    return fd;
}

// Written once by the main thread at SIGINT/SIGTERM and never read: every thread polls it
// (level-triggered), so one write stops them all.
static int stop_efd;

// ---- epoll ----------------------------------------------------------------------------

static void *epoll_thread(void *arg) {
    int lfd = (int)(long)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int sfd = stop_efd;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &sfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &sev);
    pthread_barrier_wait(&started);
    struct epoll_event events[256];
    static __thread char buf[IN_CAP];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &sfd) return NULL;
            if (tag == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = conn_new(fd);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            struct conn *c = tag;
            if (events[i].events & EPOLLOUT) {
                // The rest of a short send (out[0] from out_off).
                ssize_t w = send(c->fd, c->out[0] + c->out_off, c->out_len[0] - c->out_off, MSG_NOSIGNAL);
                if (w > 0) c->out_off += (size_t)w;
                if (w < 0 && errno != EAGAIN) goto close_conn;
                if (c->out_off == c->out_len[0]) {
                    c->out_len[0] = c->out_off = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
                continue;
            }
            ssize_t r = recv(c->fd, buf, sizeof buf, 0);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) goto close_conn;
            size_t len = answer(c, buf, (size_t)r, c->out[0], OUT_CAP);
            if (len == 0) continue;
            ssize_t w = send(c->fd, c->out[0], len, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN) goto close_conn;
            if (w < (ssize_t)len) {
                c->out_len[0] = len;
                c->out_off = w > 0 ? (size_t)w : 0;
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
            continue;
        close_conn:
            close(c->fd);   // also leaves the epoll set
            free(c);
        }
    }
}

// ---- io_uring -------------------------------------------------------------------------

#define RING_ENTRIES 4096
#define BUF_COUNT 1024       // provided buffers (a power of two)
#define BUF_SIZE 4096
#define BGID 1
enum { TAG_ACCEPT = 1, TAG_RECV = 2, TAG_SEND = 3, TAG_STOP = 4 };
#define TAG_BITS 3

static inline __u64 tag(void *p, int t) { return (__u64)(uintptr_t)p | (__u64)t; }

struct uring_thread {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    int lfd;
};

static struct io_uring_sqe *sqe_get(struct io_uring *ring) {
    struct io_uring_sqe *s = io_uring_get_sqe(ring);
    if (!s) {
        io_uring_submit(ring);
        s = io_uring_get_sqe(ring);
        if (!s) die("io_uring_get_sqe");
    }
    return s;
}

static void arm_accept(struct uring_thread *t) {
    struct io_uring_sqe *s = sqe_get(&t->ring);
    io_uring_prep_multishot_accept(s, t->lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, TAG_ACCEPT);
}

static void arm_recv(struct uring_thread *t, struct conn *c) {
    struct io_uring_sqe *s = sqe_get(&t->ring);
    io_uring_prep_recv_multishot(s, c->fd, NULL, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = BGID;
    io_uring_sqe_set_data64(s, tag(c, TAG_RECV));
}

static void start_send(struct uring_thread *t, struct conn *c) {
    struct io_uring_sqe *s = sqe_get(&t->ring);
    io_uring_prep_send(s, c->fd, c->out[c->sending] + c->out_off, c->out_len[c->sending] - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c, TAG_SEND));
}

static void conn_close(struct conn *c) {
    // The multishot receive ends with the close (a final CQE without F_MORE); the
    // connection is freed when nothing of it is in flight.
    if (!c->closing) {
        c->closing = 1;
        shutdown(c->fd, SHUT_RDWR);
    }
}

static void *uring_thread(void *arg) {
    struct uring_thread *t = arg;
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
    if (io_uring_queue_init_params(RING_ENTRIES, &t->ring, &p) < 0) {
        memset(&p, 0, sizeof p);
        if (io_uring_queue_init_params(RING_ENTRIES, &t->ring, &p) < 0) die("io_uring_queue_init");
    }
    // The provided-buffer ring: BUF_COUNT entries of BUF_SIZE bytes, page-aligned.
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    t->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (t->br == MAP_FAILED) die("mmap");
    io_uring_buf_ring_init(t->br);
    struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)t->br, .ring_entries = BUF_COUNT, .bgid = BGID};
    if (io_uring_register_buf_ring(&t->ring, &reg, 0) < 0) die("io_uring_register_buf_ring");
    t->bufs = aligned_alloc(4096, (size_t)BUF_COUNT * BUF_SIZE);
    int mask = io_uring_buf_ring_mask(BUF_COUNT);
    for (int i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(t->br, t->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i, mask, i);
    io_uring_buf_ring_advance(t->br, BUF_COUNT);

    arm_accept(t);
    struct io_uring_sqe *s = sqe_get(&t->ring);
    io_uring_prep_poll_add(s, stop_efd, POLLIN);
    io_uring_sqe_set_data64(s, TAG_STOP);
    pthread_barrier_wait(&started);
    for (;;) {
        io_uring_submit_and_wait(&t->ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe) {
            seen++;
            __u64 d = cqe->user_data;
            int kind = (int)(d & ((1 << TAG_BITS) - 1));
            struct conn *c = (struct conn *)(uintptr_t)(d & ~(__u64)((1 << TAG_BITS) - 1));
            int res = cqe->res;
            switch (kind) {
            case TAG_STOP:
                return NULL;
            case TAG_ACCEPT:
                if (res >= 0) {
                    int one = 1;
                    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    arm_recv(t, conn_new(res));
                }
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept(t);
                break;
            case TAG_RECV: {
                int more = cqe->flags & IORING_CQE_F_MORE;
                if (res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
                    int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
                    char *b = t->bufs + (size_t)bid * BUF_SIZE;
                    if (!c->closing) {
                        int collect = c->sending < 0 ? 0 : !c->sending;
                        size_t room = OUT_CAP - c->out_len[collect];
                        c->out_len[collect] += answer(c, b, (size_t)res, c->out[collect] + c->out_len[collect], room);
                        if (c->sending < 0 && c->out_len[collect] > 0) {
                            c->sending = collect;
                            c->out_off = 0;
                            start_send(t, c);
                        }
                    }
                    // The buffer goes back to the ring at once.
                    io_uring_buf_ring_add(t->br, b, BUF_SIZE, (unsigned short)bid, mask, 0);
                    io_uring_buf_ring_advance(t->br, 1);
                } else if (res == -ENOBUFS) {
                    // Every buffer in use: the multishot receive ended; arm it again below.
                } else if (res <= 0) {
                    conn_close(c);
                }
                if (!more) {
                    if (!c->closing && (res > 0 || res == -ENOBUFS)) {
                        arm_recv(t, c);
                    } else {
                        conn_close(c);
                        if (c->sending < 0) { close(c->fd); free(c); }
                        else c->fd = -c->fd - 1;   // freed when its send completes
                    }
                }
                break;
            }
            case TAG_SEND:
                if (c->fd < 0) {   // the receive ended meanwhile
                    close(-c->fd - 1);
                    free(c);
                    break;
                }
                if (res < 0) {
                    conn_close(c);
                    c->sending = -1;
                    break;
                }
                c->out_off += (size_t)res;
                if (c->out_off < c->out_len[c->sending]) {
                    start_send(t, c);
                    break;
                }
                c->out_len[c->sending] = 0;
                c->out_off = 0;
                {
                    int other = !c->sending;
                    c->sending = c->out_len[other] > 0 ? other : -1;
                    if (c->sending >= 0 && !c->closing) start_send(t, c);
                    else c->sending = -1;
                }
                break;
            }
        }
        io_uring_cq_advance(&t->ring, seen);
    }
}

int main(int argc, char **argv) {
    const char *mode = "epoll";
    int threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode")) mode = argv[i + 1];
        else if (!strcmp(argv[i], "--port")) port_arg = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: http_floor --mode epoll|io_uring [--port N] [--threads N]\n"); return 2; }
    }
    int uring = !strcmp(mode, "io_uring");
    if (!uring && strcmp(mode, "epoll")) { fprintf(stderr, "http_floor: unknown mode %s\n", mode); return 2; }
    if (threads < 1 || threads > 64) threads = 1;
    // Signals are read from a signalfd per thread: block them everywhere first.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    stop_efd = eventfd(0, EFD_CLOEXEC);
    if (stop_efd < 0) die("eventfd");
    pthread_barrier_init(&started, NULL, (unsigned)threads + 1);
    pthread_t tids[64];
    int port = port_arg;
    for (int i = 0; i < threads; i++) {
        int lfd = make_listener(port, !uring);
        port = listen_port;   // the first listener resolves port 0; the others bind it
        if (uring) {
            struct uring_thread *t = calloc(1, sizeof *t);
            t->lfd = lfd;
            pthread_create(&tids[i], NULL, uring_thread, t);
        } else {
            pthread_create(&tids[i], NULL, epoll_thread, (void *)(long)lfd);
        }
    }
    pthread_barrier_wait(&started);
    printf("listening on 127.0.0.1:%d (%s, threads %d)\n", port, mode, threads);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    uint64_t one = 1;
    if (write(stop_efd, &one, sizeof one) != sizeof one) die("write");
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    return 0;
}
