// async_notify.c: the floor for libxev's async1/2/4/8 benchmarks, in plain C (epoll).
//
// Same shape as evbench's asyncN (and libxev's src/bench/async1.zig): the main thread and
// each of N worker threads bounce a notification back and forth through two eventfds, the
// main thread waiting on one per worker, the worker on its own. Each side waits in
// epoll_wait on a level-triggered EPOLLIN registration made once, reads (and so resets)
// its eventfd, and writes the other's: epoll_wait + read + write per notification, what
// any eventfd-based loop (EvLoop's `Async`, libxev's, libuv's uv_async) does at least.
// Each worker first notifies the main thread, then answers every notification with one,
// `count` times; the main thread answers each of a worker's notifications likewise.
//
// No library, no allocation after setup: what an event loop library cannot beat on this
// benchmark. Figures as evbench's (BenchSupport): value = count / seconds from the start to
// the last worker joined, i.e. the main thread's notifications per second *per worker*
// (libxev's definition); CPU per notification (getrusage, the whole process) over a window
// after a warm-up, while the first worker's count runs from `warmup` to `count - warmup`,
// counting every notification delivered on both sides. run.sh pins it to one CPU like its
// counterparts.
//
//   async_notify [--threads N] [--count C] [--warmup W]    (defaults 1, 100000, 2000)
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "sample.h"

enum { MAX_THREADS = 64 };

static void die(const char *what) {
    fprintf(stderr, "async_notify: %s: %s\n", what, strerror(errno));
    exit(1);
}

struct worker {
    int to_main;     // the eventfd the main thread waits on
    int to_worker;   // the eventfd this worker waits on
    long count;
    long sent;
    pthread_t thread;
};

static void notify(int fd) {
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0) {
        if (errno != EINTR) die("write");
    }
}

// Reads (resets) the counter: 1 if a notification was pending, 0 on EAGAIN (spurious).
static int consume(int fd) {
    uint64_t value;
    for (;;) {
        if (read(fd, &value, sizeof value) == (ssize_t)sizeof value) return 1;
        if (errno == EAGAIN) return 0;
        if (errno != EINTR) die("read");
    }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->to_worker };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, w->to_worker, &ev) != 0) die("epoll_ctl");
    notify(w->to_main);   // kick off the exchange
    while (w->sent < w->count) {
        struct epoll_event out[1];
        int n = epoll_wait(ep, out, 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        if (n == 1 && consume(w->to_worker)) {
            notify(w->to_main);
            w->sent++;
        }
    }
    close(ep);
    return NULL;
}

static long option(int argc, char **argv, const char *name, long fallback) {
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) return atol(argv[i + 1]);
    }
    return fallback;
}

int main(int argc, char **argv) {
    sample_init();
    int threads = (int)option(argc, argv, "--threads", 1);
    long count = option(argc, argv, "--count", 100000);
    long warmup = option(argc, argv, "--warmup", 2000);
    if (threads < 1 || threads > MAX_THREADS || count < 4) {
        fprintf(stderr, "async_notify: --threads 1...%d, --count at least 4\n", MAX_THREADS);
        return 2;
    }
    if (warmup > count / 4) warmup = count / 4;

    static struct worker workers[MAX_THREADS];
    static long seen[MAX_THREADS];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < threads; i++) {
        workers[i].to_main = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        workers[i].to_worker = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (workers[i].to_main < 0 || workers[i].to_worker < 0) die("eventfd");
        workers[i].count = count;
        workers[i].sent = 0;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, workers[i].to_main, &ev) != 0) die("epoll_ctl");
    }

    struct sample start_all = sample_now(), start = { 0 }, end = { 0 };
    long total = 0, seen_at_start = 0, seen_at_end = 0;
    int reached_start = 0, reached_end = 0;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) die("pthread_create");
    }
    int open = threads;
    while (open > 0) {
        struct epoll_event out[MAX_THREADS];
        int n = epoll_wait(ep, out, MAX_THREADS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            int i = (int)out[k].data.u32;
            if (!consume(workers[i].to_main)) continue;
            notify(workers[i].to_worker);
            seen[i]++;
            total++;
            if (i == 0 && seen[0] == warmup) {
                start = sample_now();
                seen_at_start = total;
                reached_start = 1;
            } else if (i == 0 && seen[0] == count - warmup) {
                end = sample_now();
                seen_at_end = total;
                reached_end = 1;
            }
            if (seen[i] >= count) {
                // This worker is done: stop waiting on it (the loop's `.disarm`).
                if (epoll_ctl(ep, EPOLL_CTL_DEL, workers[i].to_main, NULL) != 0) die("epoll_ctl");
                open--;
            }
        }
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        if (workers[i].sent < count) {
            fprintf(stderr, "async_notify: worker %d sent %ld of %ld\n", i, workers[i].sent, count);
            return 1;
        }
    }
    struct sample end_all = sample_now();
    if (!reached_start || !reached_end) {
        fprintf(stderr, "async_notify: did not reach the measuring window\n");
        return 1;
    }

    double elapsed = (double)(end_all.wall_ns - start_all.wall_ns) / 1e9;
    double window = (double)(end.wall_ns - start.wall_ns) / 1e9;
    // Every notification in the window, both sides: each worker answers every one it gets.
    long ops = 2 * (seen_at_end - seen_at_start);
    double cpu = (double)(end.cpu_us - start.cpu_us) / (double)ops;
    double rate = (double)count / elapsed;
    printf("async%d [c/epoll]: %.2f notifications/s, %.3f s window of %ld notifications, CPU %.3f µs/notification\n",
           threads, rate, window, ops, cpu);
    printf("RESULT bench=async%d impl=c/epoll value=%.3f unit=notifications/s op=notification ops=%ld seconds=%.6f cpu_us_per_op=%.4f",
           threads, rate, ops, window, cpu);
    print_allocation_fields(&start, &end, ops);
    printf(" threads=%d seconds_total=%.3f\n", threads, elapsed);
    return 0;
}
