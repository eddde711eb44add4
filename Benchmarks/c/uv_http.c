// uv_http.c: an HTTP hello server on libuv, the libuv peer of the http benchmark group.
//
//   uv_http [--port N] [--threads N]
//
// Prints "listening on 127.0.0.1:PORT" and answers every request (whatever ends with an
// empty line) with ev-http's "Hello, World!" response, keep-alive, until SIGINT or SIGTERM.
// Written as a careful libuv user writes one: one uv_loop per thread, each with its own
// SO_REUSEPORT listener (made by hand and given to libuv with uv_tcp_open: Debian 12's
// libuv 1.44 has no UV_TCP_REUSEPORT), a read buffer per connection handed out by
// alloc_cb, the responses to one read written with one uv_write, write requests from a
// free list (no allocation per request in steady state). On Linux libuv polls sockets
// with epoll, hence the implementation name libuv/epoll.
//
// Build (run.sh does): cc -O2 -o uv_http uv_http.c $(pkg-config --cflags --libs libuv) -lpthread
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)
#define IN_CAP 16384
#define OUT_CAP 65536

static void die_uv(const char *what, int err) {
    fprintf(stderr, "uv_http: %s: %s\n", what, uv_strerror(err));
    exit(1);
}

struct wreq {
    uv_write_t req;          // first member
    struct wreq *next;
    char data[OUT_CAP];
};

struct server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    struct wreq *free_writes;
    int fd;
};

struct conn {
    uv_tcp_t tcp;            // first member: a uv_tcp_t* is a struct conn*
    struct server *server;
    size_t in_len;
    char in[IN_CAP];
};

static struct wreq *wreq_get(struct server *s) {
    struct wreq *w = s->free_writes;
    if (w) {
        s->free_writes = w->next;
        return w;
    }
    w = malloc(sizeof *w);
    if (!w) { perror("malloc"); exit(1); }
    return w;
}

static void on_close(uv_handle_t *h) { free(h); }

static void on_write(uv_write_t *req, int status) {
    struct wreq *w = (struct wreq *)req;
    struct conn *c = req->data;
    w->next = c->server->free_writes;
    c->server->free_writes = w;
    if (status < 0 && !uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    struct conn *c = (struct conn *)h;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(IN_CAP - c->in_len));
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
    (void)buf;
    struct conn *c = (struct conn *)stream;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)stream)) uv_close((uv_handle_t *)stream, on_close);
        return;
    }
    c->in_len += (size_t)n;
    struct wreq *w = NULL;
    size_t len = 0;
    char *p = c->in, *end = c->in + c->in_len;
    for (;;) {
        char *e = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!e) break;
        if (!w) w = wreq_get(c->server);
        if (len + RESPONSE_LEN > OUT_CAP) break;
        memcpy(w->data + len, RESPONSE, RESPONSE_LEN);
        len += RESPONSE_LEN;
        p = e + 4;
    }
    c->in_len = (size_t)(end - p);
    if (c->in_len == IN_CAP) c->in_len = 0;   // a head larger than the buffer: not wrk
    if (c->in_len && p != c->in) memmove(c->in, p, c->in_len);
    if (!w) return;
    w->req.data = c;
    uv_buf_t out = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, stream, &out, 1, on_write);
    if (r < 0) {
        w->next = c->server->free_writes;
        c->server->free_writes = w;
        if (!uv_is_closing((uv_handle_t *)stream)) uv_close((uv_handle_t *)stream, on_close);
    }
}

static void on_connection(uv_stream_t *listener, int status) {
    if (status < 0) return;
    struct server *s = listener->data;
    struct conn *c = calloc(1, sizeof *c);
    c->server = s;
    uv_tcp_init(&s->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_all(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, h->type == UV_TCP && h->data == NULL ? on_close : NULL);
}

static void on_stop(uv_async_t *a) {
    struct server *s = a->data;
    uv_walk(&s->loop, close_all, NULL);
}

static void *server_thread(void *arg) {
    struct server *s = arg;
    int r = uv_run(&s->loop, UV_RUN_DEFAULT);
    (void)r;
    return NULL;
}

static int make_listener(int port, int *bound) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *bound = ntohs(a.sin_port);
    return fd;
}

int main(int argc, char **argv) {
    int port = 0, threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else { fprintf(stderr, "usage: uv_http [--port N] [--threads N]\n"); return 2; }
    }
    if (threads < 1 || threads > 64) threads = 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct server *servers = calloc((size_t)threads, sizeof *servers);
    pthread_t tids[64];
    for (int i = 0; i < threads; i++) {
        struct server *s = &servers[i];
        int r;
        if ((r = uv_loop_init(&s->loop)) < 0) die_uv("uv_loop_init", r);
        s->fd = make_listener(port, &port);   // the first resolves port 0
        uv_tcp_init(&s->loop, &s->listener);
        s->listener.data = s;
        if ((r = uv_tcp_open(&s->listener, s->fd)) < 0) die_uv("uv_tcp_open", r);
        if ((r = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection)) < 0) die_uv("uv_listen", r);
        uv_async_init(&s->loop, &s->stop, on_stop);
        s->stop.data = s;
    }
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, server_thread, &servers[i]);
    printf("listening on 127.0.0.1:%d (libuv %s, threads %d)\n", port, uv_version_string(), threads);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    for (int i = 0; i < threads; i++) uv_async_send(&servers[i].stop);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    return 0;
}
