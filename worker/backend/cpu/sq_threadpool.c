/*  sq_threadpool: persistent worker threads for data-parallel kernels.
 *
 *  A decode step calls sq_cpu_matmul a few hundred times per token, each
 *  call lasting tens of microseconds, so waking threads through a condition
 *  variable (tens of microseconds each) would cost as much as the work.
 *  Workers therefore spin on a job generation counter for a short while
 *  after each job and only then sleep on a futex; the caller spins the same
 *  way for the last worker to finish. The pool owns its threads; one job runs
 *  at a time and only the thread that created the pool submits jobs.
 *
 *  Handshake (all seq_cst, so each side sees the other's flag or value):
 *    caller: n_done = 0; fn/arg = ...; ++gen; if n_sleepers: wake(gen)
 *            run ith 0; spin/wait until n_done == nth - 1
 *    worker: spin/wait until gen changes; fn(ith); ++n_done;
 *            if last and caller_sleeping: wake(n_done)
 */
#define _GNU_SOURCE
#include "sq_cpu_kernels.h"
#include "sq_error.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a thread busy-waits before it sleeps: long enough to bridge the
 * gap between two matmuls of one decode step, short enough not to burn a
 * core while the engine is idle. */
#define SQ_SPIN_NS 200000
/* After this long, a spinning thread yields between checks: when the pool
 * has more threads than free cores (2 cores shared by many processes), the
 * thread it waits for may need this core to finish. */
#define SQ_SPIN_YIELD_NS 20000

typedef struct {
    sq_threadpool_t *pool;
    int ith;
    pthread_t thread;
} s_worker_t;

struct sq_threadpool {
    int n_threads;
    int n_started;               /* worker threads actually created */
    s_worker_t *workers;         /* n_threads - 1 of them */
    void (*fn)(void *arg, int ith, int nth);
    void *arg;
    atomic_uint gen;             /* futex word: bumped once per job */
    atomic_uint n_done;          /* futex word: workers done with this job */
    atomic_int n_sleepers;       /* workers sleeping on gen */
    atomic_int caller_sleeping;  /* caller sleeping on n_done */
    atomic_int stop;
};

static void
s_futex_wait(atomic_uint *addr, unsigned expected)
{
    syscall(SYS_futex, (unsigned *) addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void
s_futex_wake(atomic_uint *addr)
{
    syscall(SYS_futex, (unsigned *) addr, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static inline void
s_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Busy-wait while *addr == value, up to SQ_SPIN_NS. Returns the value seen
 * last (still == value when the spin ran out). */
static unsigned
s_spin_while(atomic_uint *addr, unsigned value)
{
    int64_t deadline = 0;
    for (unsigned i = 1;; i++) {
        unsigned now = atomic_load_explicit(addr, memory_order_acquire);
        if (now != value)
            return now;
        if ((i & 63) == 0) {
            int64_t t = s_now_ns();
            if (deadline == 0)
                deadline = t + SQ_SPIN_NS;
            else if (t > deadline)
                return now;
            else if (t > deadline - (SQ_SPIN_NS - SQ_SPIN_YIELD_NS))
                sched_yield();
        }
        s_cpu_relax();
    }
}

static void *
s_worker_main(void *arg)
{
    s_worker_t *w = arg;
    sq_threadpool_t *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = s_spin_while(&pool->gen, seen);
        while (gen == seen) {
            atomic_fetch_add(&pool->n_sleepers, 1);
            s_futex_wait(&pool->gen, seen);
            atomic_fetch_sub(&pool->n_sleepers, 1);
            gen = atomic_load(&pool->gen);
        }
        seen = gen;
        if (atomic_load(&pool->stop))
            return NULL;
        pool->fn(pool->arg, w->ith, pool->n_threads);
        unsigned done = atomic_fetch_add(&pool->n_done, 1) + 1;
        if (done == (unsigned) pool->n_threads - 1 && atomic_load(&pool->caller_sleeping))
            s_futex_wake(&pool->n_done);
    }
}

/* Bump the generation and wake any sleeping worker. */
static void
s_publish(sq_threadpool_t *self)
{
    atomic_fetch_add(&self->gen, 1);
    if (atomic_load(&self->n_sleepers) > 0)
        s_futex_wake(&self->gen);
}

sq_threadpool_t *
sq_threadpool_new(int n_threads)
{
    if (n_threads < 1 || n_threads > 1024) {
        SQ_FAIL(SQ_EINVAL, "thread pool size %d out of range 1..1024", n_threads);
        return NULL;
    }
    sq_threadpool_t *self = calloc(1, sizeof *self);
    if (!self)
        goto fail;
    self->n_threads = n_threads;
    self->workers = calloc((size_t) n_threads, sizeof *self->workers);
    if (!self->workers)
        goto fail;
    for (int i = 1; i < n_threads; i++) {
        s_worker_t *w = &self->workers[i - 1];
        w->pool = self;
        w->ith = i;
        int rc = pthread_create(&w->thread, NULL, s_worker_main, w);
        if (rc != 0) {
            SQ_FAIL(-rc, "thread pool: cannot start thread %d of %d", i, n_threads);
            sq_threadpool_destroy(&self);
            return NULL;
        }
        self->n_started++;
    }
    return self;
fail:
    if (self)
        free(self->workers);
    free(self);
    SQ_FAIL(SQ_ENOMEM, "thread pool of %d threads: out of memory", n_threads);
    return NULL;
}

void
sq_threadpool_destroy(sq_threadpool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_threadpool_t *self = *self_p;
    atomic_store(&self->stop, 1);
    s_publish(self);
    for (int i = 0; i < self->n_started; i++)
        pthread_join(self->workers[i].thread, NULL);
    free(self->workers);
    free(self);
    *self_p = NULL;
}

int
sq_threadpool_size(const sq_threadpool_t *self)
{
    return self ? self->n_threads : 1;
}

void
sq_threadpool_run(sq_threadpool_t *self, void (*fn)(void *arg, int ith, int nth), void *arg)
{
    if (!self || self->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    unsigned target = (unsigned) self->n_threads - 1;
    self->fn = fn;
    self->arg = arg;
    atomic_store(&self->n_done, 0);
    s_publish(self);
    fn(arg, 0, self->n_threads);
    unsigned done = s_spin_while(&self->n_done, 0);
    while (done != target) {
        done = s_spin_while(&self->n_done, done);
        if (done == target)
            break;
        atomic_store(&self->caller_sleeping, 1);
        done = atomic_load(&self->n_done);
        if (done != target)
            s_futex_wait(&self->n_done, done);
        atomic_store(&self->caller_sleeping, 0);
        done = atomic_load(&self->n_done);
    }
}
