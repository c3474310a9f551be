/*  bench_kernels: the machine's memory read bandwidth, sq_cpu_matmul
 *  throughput per dtype and SIMD level, and attention over a long context
 *  per cache type and SIMD level, for shardq-bench-engine.
 *
 *  Bandwidth is the best of a few passes reading a buffer far larger than
 *  any cache. Matmul weights rotate through enough copies that every call
 *  reads them from memory, as a decode step does with a real model.
 */
#define _GNU_SOURCE
#include "bench_engine.h"
#include "sq_cpu_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Bytes that no cache holds. */
#define S_BIG_BYTES ((size_t) 512 << 20)

double
bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

double
bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

typedef struct {
    const uint64_t *buf;
    size_t n_words;
    uint64_t sums[64];
} s_read_job_t;

/* Four independent sums so the loop is bound by loads, not by adds. */
static void
s_read_part(void *arg, int ith, int nth)
{
    s_read_job_t *job = arg;
    size_t w0 = job->n_words * (size_t) ith / (size_t) nth & ~(size_t) 3;
    size_t w1 = job->n_words * (size_t) (ith + 1) / (size_t) nth & ~(size_t) 3;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = w0; i < w1; i += 4) {
        a += job->buf[i];
        b += job->buf[i + 1];
        c += job->buf[i + 2];
        d += job->buf[i + 3];
    }
    job->sums[ith] = a + b + c + d;
}

double
bench_read_bandwidth_gbs(sq_threadpool_t *pool)
{
    uint64_t *buf = malloc(S_BIG_BYTES);
    if (!buf)
        return 0.0;
    memset(buf, 1, S_BIG_BYTES);
    s_read_job_t job = {.buf = buf, .n_words = S_BIG_BYTES / sizeof *buf};
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
        double t0 = bench_now_s();
        sq_threadpool_run(pool, s_read_part, &job);
        double dt = bench_now_s() - t0;
        if (dt < best)
            best = dt;
    }
    free(buf);
    return (double) S_BIG_BYTES / best / 1e9;
}

static const char *s_dtype_name(int dtype)
{
    return dtype == SQ_DTYPE_F32   ? "F32"
           : dtype == SQ_DTYPE_F16 ? "F16"
           : dtype == SQ_DTYPE_Q8_0 ? "Q8_0"
                                    : "Q8_0 packed";
}

/* Copies of a (n_out, n_in) weight matrix of dtype filling S_BIG_BYTES. */
typedef struct {
    char *mem;
    size_t bytes_each;
    int n_copies;
} s_weights_t;

static int
s_weights_init(s_weights_t *ws, int dtype, int64_t n_out, int64_t n_in)
{
    if (dtype == SQ_DTYPE_Q8_0X16) {   /* the Q8_0 matrix, packed */
        s_weights_t q8;
        if (s_weights_init(&q8, SQ_DTYPE_Q8_0, n_out, n_in) != 0)
            return -1;
        ws->bytes_each = sq_cpu_q8_0x16_bytes(n_out, n_in);
        ws->n_copies = (int) (S_BIG_BYTES / ws->bytes_each) + 1;
        ws->mem = malloc(ws->bytes_each * (size_t) ws->n_copies);
        for (int c = 0; ws->mem && c < ws->n_copies; c++)
            sq_cpu_pack_q8_0x16(NULL, q8.mem, n_out, n_in, ws->mem + (size_t) c * ws->bytes_each);
        free(q8.mem);
        return ws->mem ? 0 : -1;
    }
    ws->bytes_each = sq_cpu_row_bytes(dtype, n_in) * (size_t) n_out;
    ws->n_copies = (int) (S_BIG_BYTES / ws->bytes_each) + 1;
    ws->mem = malloc(ws->bytes_each * (size_t) ws->n_copies);
    if (!ws->mem)
        return -1;
    float *row = malloc(sizeof(float) * (size_t) n_in);
    for (int64_t i = 0; i < n_in; i++)
        row[i] = (float) ((i * 7919) % 201 - 100) / 100.0f;
    size_t row_bytes = sq_cpu_row_bytes(dtype, n_in);
    char *first = ws->mem;
    for (int64_t o = 0; o < n_out; o++) {
        char *dst = first + (size_t) o * row_bytes;
        if (dtype == SQ_DTYPE_F32)
            memcpy(dst, row, row_bytes);
        else if (dtype == SQ_DTYPE_F16)
            for (int64_t i = 0; i < n_in; i++)
                ((uint16_t *) dst)[i] = sq_fp32_to_fp16(row[i]);
        else
            sq_cpu_quantize_row_q8_0_ref(row, (sq_block_q8_0_t *) dst, n_in);
    }
    for (int c = 1; c < ws->n_copies; c++)
        memcpy(ws->mem + (size_t) c * ws->bytes_each, first, ws->bytes_each);
    free(row);
    return 0;
}

/* Seconds per call, best of a few rounds of enough calls to take ~0.1 s. */
static double
s_time_matmul(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype, const s_weights_t *ws,
              int64_t n_out, int64_t n_in, const float *x, int64_t n_tok, float *y)
{
    double best = 1e30;
    int calls = 1, c = 0;
    for (int i = 0; i < ws->n_copies; i++)   /* every copy read once: none is cold */
        sq_cpu_matmul_with(k, pool, dtype, ws->mem + (size_t) i * ws->bytes_each, n_out, n_in, x,
                           n_tok, y, n_out);
    for (int round = 0; round < 4; round++) {
        double t0 = bench_now_s();
        for (int i = 0; i < calls; i++, c = (c + 1) % ws->n_copies)
            sq_cpu_matmul_with(k, pool, dtype, ws->mem + (size_t) c * ws->bytes_each, n_out, n_in,
                               x, n_tok, y, n_out);
        double per_call = (bench_now_s() - t0) / calls;
        if (per_call < best)
            best = per_call;
        if (round == 0 && per_call < 0.05)
            calls = (int) (0.05 / per_call) + 1;
    }
    return best;
}

void
bench_kernels_table(sq_threadpool_t *const *pools, const int *n_threads, int n_pools,
                    const double *bw_gbs)
{
    static const char *levels[] = {"portable", "avx2", "avx2vnni", "avx512", "avx512vnni"};
    static const int dtypes[] = {SQ_DTYPE_F32, SQ_DTYPE_F16, SQ_DTYPE_Q8_0, SQ_DTYPE_Q8_0X16};
    const int64_t n_out = 5632, n_in = 2048;     /* tinyllama-1.1b ffn_gate */
    const int64_t toks[] = {1, 16};
    float *x = malloc(sizeof(float) * (size_t) (n_in * 16));
    float *y = malloc(sizeof(float) * (size_t) (n_out * 16));
    for (int64_t i = 0; i < n_in * 16; i++)
        x[i] = (float) (i % 13) / 13.0f - 0.5f;
    printf("\n## matmul %lld x %lld (tinyllama ffn_gate), weights from memory\n\n",
           (long long) n_out, (long long) n_in);
    printf("| dtype | level | threads | n_tok | us/call | GFLOP/s | weight GB/s | %% of read bw |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t d = 0; d < sizeof dtypes / sizeof dtypes[0]; d++) {
        s_weights_t ws;
        if (s_weights_init(&ws, dtypes[d], n_out, n_in) != 0)
            continue;
        for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
            const sq_cpu_kernels_t *k = sq_cpu_kernels_for(levels[l]);
            if (k && dtypes[d] == SQ_DTYPE_Q8_0X16 && !k->gemm_q8_0x16)
                continue;   /* packed only where a level has its kernel */
            for (int p = 0; k && p < n_pools; p++) {
                for (size_t t = 0; t < sizeof toks / sizeof toks[0]; t++) {
                    double s = s_time_matmul(k, pools[p], dtypes[d], &ws, n_out, n_in, x, toks[t], y);
                    double gflops = 2.0 * (double) (n_out * n_in * toks[t]) / s / 1e9;
                    double gbs = (double) ws.bytes_each / s / 1e9;
                    printf("| %s | %s | %d | %lld | %.0f | %.1f | %.1f | %.0f %% |\n",
                           s_dtype_name(dtypes[d]), levels[l], n_threads[p], (long long) toks[t],
                           s * 1e6, gflops, gbs, 100.0 * gbs / bw_gbs[p]);
                    fflush(stdout);
                }
            }
        }
        free(ws.mem);
    }
    free(x);
    free(y);
}

/* One (token, KV head) of a decode step at position n - 1, as the CPU
 * backend runs it: blocks of 32 cache rows of dtype (F16 and Q8_0 widened
 * as the kernels load them), each naming the next for prefetch, scores of the n_q query
 * heads, then their weighted values (fixed weights: the softmax between
 * is the same for every level). F32 at the portable level is what the
 * backend ran before it had F16 caches and SIMD attention: the column all
 * rows are compared with. */
static void
s_attn_head(const sq_cpu_kernels_t *k, int dtype, const char *kc, const char *vc, int n, int hd,
            const float *q, int n_q, float *scores, float *out)
{
    const size_t row = sq_cpu_row_bytes(dtype, hd);
    for (int pass = 0; pass < 2; pass++)   /* the scores, then the values */
        for (int j0 = 0; j0 < n; j0 += 32) {
            const char *c = pass ? vc : kc;
            sq_cpu_kv_block_t b = {
                .rows = c + (size_t) j0 * row,
                .next = j0 + 32 < n ? c + (size_t) (j0 + 32) * row : pass ? NULL : vc,
                .dtype = dtype,
                .n = n - j0 < 32 ? n - j0 : 32,
                .hd = hd,
            };
            if (pass == 0)
                k->attn_scores(q, n_q, &b, scores + j0, (size_t) n);
            else
                k->attn_values(scores + j0, (size_t) n, n_q, &b, out);
        }
}

void
bench_attention_table(double bw_gbs)
{
    static const char *levels[] = {"portable", "avx2", "avx512"};
    enum { N = 1024, HD = 64, NQ_MAX = 4 };
    const int n_qs[] = {1, 4};
    float *q = malloc(sizeof(float) * NQ_MAX * HD), *out = malloc(sizeof(float) * NQ_MAX * HD);
    float *scores = malloc(sizeof(float) * NQ_MAX * N);
    char *mem = malloc(S_BIG_BYTES);
    if (!q || !out || !scores || !mem) {
        free(q), free(out), free(scores), free(mem);
        return;
    }
    for (int i = 0; i < NQ_MAX * HD; i++)
        q[i] = (float) (i % 17) / 17.0f - 0.5f;
    for (int i = 0; i < NQ_MAX * N; i++)
        scores[i] = 1.0f / N;
    /* F16 and F32 values of modest size; as Q8_0 blocks, scales of 2^-3
     * to 2^-1 and any int8 */
    for (size_t i = 0; i < S_BIG_BYTES / 2; i++)
        ((uint16_t *) mem)[i] = (uint16_t) (0x3000 + i % 0x800);
    printf("\n## attention of one decode token over %d positions (head_dim %d), caches from "
           "memory, 1 thread\n\n", N, HD);
    printf("| cache | level | query heads per KV head | us per KV head | cache GB/s | %% of read bw "
           "| vs F32 portable |\n|---|---|---|---|---|---|---|\n");
    double base[2] = {0.0, 0.0};   /* per n_qs: F32, portable (the plain loops) */
    static const int dtypes[] = {SQ_DTYPE_F32, SQ_DTYPE_F16, SQ_DTYPE_Q8_0};
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
        const int dtype = dtypes[t];
        const size_t head_bytes = (size_t) N * sq_cpu_row_bytes(dtype, HD) * 2;   /* K and V */
        const int n_heads = (int) (S_BIG_BYTES / head_bytes);
        for (size_t qi = 0; qi < sizeof n_qs / sizeof n_qs[0]; qi++) {
            for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                const sq_cpu_kernels_t *k = sq_cpu_kernels_for(levels[l]);
                if (!k)
                    continue;
                double best = 1e30;
                for (int round = 0; round < 3; round++) {
                    double t0 = bench_now_s();
                    for (int h = 0; h < n_heads; h++) {
                        const char *kc = mem + (size_t) h * head_bytes;
                        s_attn_head(k, dtype, kc, kc + head_bytes / 2, N, HD, q, n_qs[qi],
                                    scores, out);
                    }
                    double per = (bench_now_s() - t0) / n_heads;
                    best = per < best ? per : best;
                }
                if (dtype == SQ_DTYPE_F32 && l == 0)
                    base[qi] = best;
                double gbs = (double) head_bytes / best / 1e9;
                printf("| %s | %s | %d | %.1f | %.1f | %.0f %% | %.2f× |\n",
                       dtype == SQ_DTYPE_F32 ? "F32" : dtype == SQ_DTYPE_F16 ? "F16" : "Q8_0",
                       levels[l], n_qs[qi], best * 1e6, gbs, 100.0 * gbs / bw_gbs,
                       base[qi] / best);
                fflush(stdout);
            }
        }
    }
    free(q), free(out), free(scores), free(mem);
}
