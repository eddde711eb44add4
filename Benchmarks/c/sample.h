// One measurement sample for the C peers (pingpong.c, uv_pingpong.c, async_notify.c): wall clock, CPU time
// of the whole process (user + sys) and, when malloc_count.c is preloaded, the number of
// allocations so far. Shared so that every C figure is taken the same way.
#ifndef EVBENCH_SAMPLE_H
#define EVBENCH_SAMPLE_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

struct sample {
    uint64_t wall_ns;
    uint64_t cpu_us;
    uint64_t allocs;
    int have_allocs;
};

// The preloaded counter (c/malloc_count.c), or NULL when it is not preloaded.
static uint64_t (*malloc_count)(void);

static void sample_init(void) {
    malloc_count = (uint64_t (*)(void))dlsym(RTLD_DEFAULT, "evbench_malloc_count");
}

static struct sample sample_now(void) {
    struct sample s;
    s.have_allocs = malloc_count != NULL;
    s.allocs = malloc_count ? malloc_count() : 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s.wall_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    s.cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
               (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    return s;
}

// The RESULT line's allocation fields for `ops` operations between two samples (a leading
// space, no newline): "allocs_per_op=... allocs=..." when the counting shim is preloaded,
// "allocs_per_op=na" otherwise.
static void print_allocation_fields(const struct sample *start, const struct sample *end, long ops) {
    if (start->have_allocs) {
        printf(" allocs_per_op=%.6f allocs=%llu", (double)(end->allocs - start->allocs) / (double)ops,
               (unsigned long long)(end->allocs - start->allocs));
    } else {
        printf(" allocs_per_op=na");
    }
}

#endif
