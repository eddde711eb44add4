// malloc_count.c: counts heap allocation calls of a whole process, for the benchmarks.
//
// Built by run.sh as a shared object and loaded with LD_PRELOAD into each benchmark
// process (EvLoop's, SwiftNIO's and the C peers alike). It defines malloc, calloc, realloc
// and the aligned allocators, counts each call with one relaxed atomic increment, and
// forwards to glibc's own implementations (__libc_malloc & co., which glibc exports for
// exactly this kind of wrapper; the old __malloc_hook is gone since glibc 2.34).
// free() is not wrapped: glibc's free releases what __libc_* returned.
//
// A benchmark reads the count through `evbench_malloc_count`, found with dlsym; the
// difference between two reads is the number of allocations in between, on every thread.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static uint64_t allocation_calls;

static inline void count_one(void) {
    __atomic_fetch_add(&allocation_calls, 1, __ATOMIC_RELAXED);
}

__attribute__((visibility("default"))) uint64_t evbench_malloc_count(void) {
    return __atomic_load_n(&allocation_calls, __ATOMIC_RELAXED);
}

void *malloc(size_t size) {
    count_one();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_one();
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size) {
    count_one();
    return __libc_realloc(ptr, size);
}

void *memalign(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    count_one();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *p = __libc_memalign(alignment, size);
    if (p == NULL && size != 0) return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t size) {
    count_one();
    return __libc_valloc(size);
}

void *pvalloc(size_t size) {
    count_one();
    return __libc_pvalloc(size);
}
