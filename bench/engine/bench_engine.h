/*  bench_engine: parts of shardq-bench-engine (one file per table). */
#ifndef BENCH_ENGINE_H
#define BENCH_ENGINE_H

#include "sq_cpu_kernels.h"

/* Monotonic seconds. */
double bench_now_s(void);
/* Read bandwidth in GB/s with the pool's threads, from a buffer far larger
 * than the caches. 0 when the buffer cannot be allocated. */
double bench_read_bandwidth_gbs(sq_threadpool_t *pool);
/* The matmul table: every dtype and SIMD level, each pool (n_threads[i]
 * threads, whose measured read bandwidth is bw_gbs[i]). */
void bench_kernels_table(sq_threadpool_t *const *pools, const int *n_threads, int n_pools,
                         const double *bw_gbs);

#endif
