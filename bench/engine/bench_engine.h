/*  bench_engine: parts of shardq-bench-engine (one file per table). */
#ifndef BENCH_ENGINE_H
#define BENCH_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "sq_cpu_kernels.h"

#define BENCH_MAX_BATCHES 4

typedef struct {
    int n_prompt, n_gen;                 /* tokens per prefill, decode steps */
    int agg_prompt;                      /* prompt tokens of each aggregate batch sequence */
    int batches[BENCH_MAX_BATCHES];      /* aggregate decode batch sizes */
    int n_batches;
    const char *llama_dir;               /* node-llama-cpp install; NULL: no anchor */
    const char *anchor_script;           /* llama_anchor.mjs */
    int kv_type;                         /* shardq's KV cache (sq_kv_type_t; 0: F16) */
} bench_opts_t;

typedef struct {
    double pp_tok_s, tg_tok_s;
    double tg_cpu_ms;                    /* process CPU time per decode step */
    double agg_tok_s[BENCH_MAX_BATCHES]; /* per opts.batches */
} bench_result_t;

/* Monotonic seconds. */
double bench_now_s(void);
/* CPU seconds used by this process (all threads). */
double bench_cpu_s(void);
/* Read bandwidth in GB/s with the pool's threads, from a buffer far larger
 * than the caches. 0 when the buffer cannot be allocated. */
double bench_read_bandwidth_gbs(sq_threadpool_t *pool);
/* The matmul table: every dtype and SIMD level, each pool (n_threads[i]
 * threads, whose measured read bandwidth is bw_gbs[i]). */
void bench_kernels_table(sq_threadpool_t *const *pools, const int *n_threads, int n_pools,
                         const double *bw_gbs);

/* Attention of one decode token over a long context from memory: each
 * SIMD level's products (portable: the plain loops), F32 and F16 caches,
 * on one thread whose read bandwidth is bw_gbs. */
void bench_attention_table(double bw_gbs);

typedef struct sq_tp_comm sq_tp_comm_t;
/* Weight bytes one decode step reads (all tensors but the embedding's
 * unread rows); 0 if the file cannot be read. */
int64_t bench_model_bytes_per_token(const char *path);
/* shardq on path with n_threads per rank over comm (NULL: alone). */
int bench_model_run(const char *path, int n_threads, sq_tp_comm_t *comm, const bench_opts_t *o,
                    bench_result_t *r);
/* llama.cpp on path; batch > 1 also measures that aggregate (agg_tok_s[0]). */
int bench_anchor_run(const char *path, int n_threads, int batch, const bench_opts_t *o,
                     bench_result_t *r);

#endif
