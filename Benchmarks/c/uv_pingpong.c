// uv_pingpong.c: libxev's ping-pongs benchmark on libuv, the peer for EvLoop's ping-pongs.
//
// The same protocol as pingpong.c (and evbench's and libxev's ping-pongs): one TCP
// connection over loopback, a server thread with its own uv_loop that echoes what it reads,
// a client (the main thread, its own uv_loop) that sends "PING\n", waits for the whole
// echo and sends the next. run.sh pins the process to CPU 0, so both ends share one CPU.
//
// It is written as a careful libuv user would write it, not as libuv's own benchmark is
// (which mallocs a request per write and a 64 KiB buffer per read): every read goes into
// one static buffer per side (alloc_cb hands out the same buffer each time), and the write
// requests come from a free list, so the steady state allocates nothing. Writes go through
// uv_write (libuv writes at once when its queue is empty, and calls the write callback on
// the next loop iteration). On Linux, libuv polls sockets with epoll (Debian's libuv1 1.44
// has no io_uring support for sockets), hence the implementation name libuv/epoll.
//
// Measured like pingpong.c: a window after a warm-up, roundtrips/s, CPU µs per roundtrip
// from getrusage for the whole process (both threads), allocations per roundtrip when the
// counting shim (malloc_count.c) is preloaded. Build (run.sh does):
//   cc -O2 -o uv_pingpong uv_pingpong.c $(pkg-config --cflags --libs libuv) -lpthread -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "sample.h"
#include <uv.h>

static const char PING[] = "PING\n";
#define PING_LEN 5

static void die_uv(const char *what, int err) {
    fprintf(stderr, "uv_pingpong: %s: %s\n", what, uv_strerror(err));
    exit(1);
}

#define CHECK(what, call)                       \
    do {                                        \
        int check_r = (call);                   \
        if (check_r < 0) die_uv(what, check_r); \
    } while (0)

// ---- measurement: sample.h -----------------------------------------------------------

// ---- write requests: a free list, grown on demand, never freed while running ---------

struct wreq {
    uv_write_t req;          // first member: a uv_write_t* is a struct wreq*
    struct wreq *next;
    char data[4096];         // the server's copy of what it echoes
};

struct wpool {
    struct wreq *free;
};

static struct wreq *wreq_get(struct wpool *pool) {
    struct wreq *w = pool->free;
    if (w) {
        pool->free = w->next;
        return w;
    }
    w = malloc(sizeof *w);
    if (!w) {
        fprintf(stderr, "uv_pingpong: out of memory\n");
        exit(1);
    }
    return w;
}

static void wreq_put(struct wpool *pool, struct wreq *w) {
    w->next = pool->free;
    pool->free = w;
}

static void wpool_free(struct wpool *pool) {
    while (pool->free) {
        struct wreq *w = pool->free;
        pool->free = w->next;
        free(w);
    }
}

// ---- server --------------------------------------------------------------------------

static uv_loop_t server_loop;
static uv_tcp_t listener;
static uv_tcp_t server_conn;
static struct wpool server_pool;
static char server_buf[4096];

static void server_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(server_buf, sizeof server_buf);
}

static void server_write_cb(uv_write_t *req, int status) {
    if (status < 0) die_uv("server write", status);
    wreq_put(&server_pool, (struct wreq *)req);
}

static void server_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    if (nread > 0) {
        // The next read reuses server_buf, so the echo goes out of the request's copy.
        struct wreq *w = wreq_get(&server_pool);
        memcpy(w->data, buf->base, (size_t)nread);
        uv_buf_t out = uv_buf_init(w->data, (unsigned)nread);
        CHECK("server uv_write", uv_write(&w->req, s, &out, 1, server_write_cb));
    } else if (nread < 0) {
        if (nread != UV_EOF) die_uv("server read", (int)nread);
        uv_close((uv_handle_t *)s, NULL);
    }
}

static void on_connection(uv_stream_t *l, int status) {
    if (status < 0) die_uv("listen", status);
    CHECK("uv_tcp_init", uv_tcp_init(&server_loop, &server_conn));
    CHECK("uv_accept", uv_accept(l, (uv_stream_t *)&server_conn));
    uv_close((uv_handle_t *)&listener, NULL);  // one connection only
    CHECK("server uv_read_start", uv_read_start((uv_stream_t *)&server_conn, server_alloc, server_read));
}

static void *server_main(void *arg) {
    (void)arg;
    CHECK("server uv_run", uv_run(&server_loop, UV_RUN_DEFAULT));
    return NULL;
}

// ---- client --------------------------------------------------------------------------

static uv_loop_t client_loop;
static uv_tcp_t client;
static uv_connect_t connect_req;
static uv_shutdown_t shutdown_req;
static struct wpool client_pool;
static char client_buf[1024];
static long pongs, warmup = 2000, count = 100000, total;
static int parse_state;
static struct sample start_sample, end_sample;

static void client_write_cb(uv_write_t *req, int status) {
    if (status < 0) die_uv("client write", status);
    wreq_put(&client_pool, (struct wreq *)req);
}

static void send_ping(void) {
    struct wreq *w = wreq_get(&client_pool);
    uv_buf_t out = uv_buf_init((char *)PING, PING_LEN);
    CHECK("client uv_write", uv_write(&w->req, (uv_stream_t *)&client, &out, 1, client_write_cb));
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(client_buf, sizeof client_buf);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    uv_close((uv_handle_t *)req->handle, NULL);
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    if (nread < 0) die_uv("client read", (int)nread);
    int send_next = 0;
    for (ssize_t i = 0; i < nread; i++) {
        if (buf->base[i] != PING[parse_state]) {
            fprintf(stderr, "uv_pingpong: unexpected byte %d in the echo\n", buf->base[i]);
            exit(1);
        }
        if (++parse_state < PING_LEN) continue;
        parse_state = 0;
        pongs++;
        if (pongs == warmup) start_sample = sample_now();
        if (pongs == total) {
            end_sample = sample_now();
            uv_read_stop(s);
            CHECK("uv_shutdown", uv_shutdown(&shutdown_req, s, on_shutdown));
            return;
        }
        send_next = 1;
    }
    if (send_next) send_ping();
}

static void on_connect(uv_connect_t *req, int status) {
    if (status < 0) die_uv("connect", status);
    CHECK("client uv_read_start", uv_read_start(req->handle, client_alloc, client_read));
    send_ping();
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--count") == 0) count = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0) warmup = atol(argv[i + 1]);
        else {
            fprintf(stderr, "usage: uv_pingpong [--count N] [--warmup N]\n");
            return 2;
        }
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: uv_pingpong [--count N] [--warmup N]\n");
        return 2;
    }
    if (warmup < 1) warmup = 1;
    if (count < 1) count = 1;
    total = warmup + count;
    sample_init();

    // The server's loop is set up here and then run on its own thread (and only there).
    CHECK("uv_loop_init", uv_loop_init(&server_loop));
    CHECK("uv_tcp_init", uv_tcp_init(&server_loop, &listener));
    struct sockaddr_in addr;
    CHECK("uv_ip4_addr", uv_ip4_addr("127.0.0.1", 0, &addr));
    CHECK("uv_tcp_bind", uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0));
    CHECK("uv_listen", uv_listen((uv_stream_t *)&listener, 128, on_connection));
    int len = sizeof addr;
    CHECK("uv_tcp_getsockname", uv_tcp_getsockname(&listener, (struct sockaddr *)&addr, &len));
    pthread_t server;
    if (pthread_create(&server, NULL, server_main, NULL) != 0) {
        fprintf(stderr, "uv_pingpong: pthread_create failed\n");
        return 1;
    }

    CHECK("uv_loop_init", uv_loop_init(&client_loop));
    CHECK("uv_tcp_init", uv_tcp_init(&client_loop, &client));
    CHECK("uv_tcp_connect", uv_tcp_connect(&connect_req, &client, (const struct sockaddr *)&addr, on_connect));
    CHECK("client uv_run", uv_run(&client_loop, UV_RUN_DEFAULT));
    pthread_join(server, NULL);
    if (pongs < total) {
        fprintf(stderr, "uv_pingpong: the ping-pong ended after %ld roundtrips\n", pongs);
        return 1;
    }
    uv_loop_close(&client_loop);
    uv_loop_close(&server_loop);
    wpool_free(&client_pool);
    wpool_free(&server_pool);

    double seconds = (double)(end_sample.wall_ns - start_sample.wall_ns) / 1e9;
    double rate = (double)count / seconds;
    double cpu = (double)(end_sample.cpu_us - start_sample.cpu_us) / (double)count;
    printf("ping-pongs [libuv/epoll]: %.2f roundtrips/s, %.3f s window of %ld roundtrips, CPU %.3f µs/roundtrip",
           rate, seconds, count, cpu);
    if (start_sample.have_allocs) {
        printf(", %.4f allocations/roundtrip", (double)(end_sample.allocs - start_sample.allocs) / (double)count);
    } else {
        printf(", allocations n/a");
    }
    printf(", libuv %s\n", uv_version_string());
    printf("RESULT bench=ping-pongs impl=libuv/epoll value=%.3f unit=roundtrips/s op=roundtrip ops=%ld seconds=%.6f cpu_us_per_op=%.4f",
           rate, count, seconds, cpu);
    print_allocation_fields(&start_sample, &end_sample, count);
    printf(" libuv=%s\n", uv_version_string());
    return 0;
}
