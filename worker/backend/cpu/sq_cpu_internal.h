/*  sq_cpu_internal: the table of per-SIMD-level kernels behind sq_cpu_matmul.
 *
 *  Private to worker/backend/cpu. Each level (portable, AVX2, AVX2 with
 *  AVX-VNNI, AVX-512, AVX-512-VNNI) fills one sq_cpu_kernels_t; sq_cpu_kernels.c picks one at
 *  run time and drives it (threads, token tiles, activation quantization).
 *
 *  A "dot" kernel computes a block of up to SQ_CPU_NW weight rows against
 *  up to SQ_CPU_NX activation rows, so each weight vector loaded feeds
 *  n_x FMAs and each activation vector feeds n_w (register blocking):
 *      out[r * SQ_CPU_NX + j] = sum_i w_r[i] * x_j[i]
 *      (r < n_w, w_r = w + r * w_stride bytes; j < n_x, x_j = x + j * x_stride)
 *  For F32/F16 weights the activations are F32; for Q8_0 weights they are
 *  Q8_0 blocks (quantized once per matmul by the driver).
 */
#ifndef SQ_CPU_INTERNAL_H
#define SQ_CPU_INTERNAL_H

#include "sq_cpu_kernels.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Weight rows and activation rows one dot kernel call handles at most. */
#define SQ_CPU_NW 4
#define SQ_CPU_NX 4

typedef void (*sq_cpu_dot_fn)(const void *w, size_t w_stride, int n_w, const void *x,
                              size_t x_stride, int n_x, int64_t n, float *out);

/* How far ahead the SIMD dot kernels prefetch each weight row: a page, so
 * the next page's TLB walk and first lines are under way before the loads
 * reach it (the hardware prefetcher stops at 4 KiB boundaries of the
 * mmapped file). */
#define SQ_CPU_PREFETCH_BYTES 4096

/* In an attention kernel: prefetch the lines of row j of block b's next
 * rows (row bytes each; b->next is not NULL). */
static inline void
sq_cpu_kv_prefetch_row(const sq_cpu_kv_block_t *b, size_t row, int j)
{
    const char *p = (const char *) b->next + (size_t) j * row;
    for (size_t off = 0; off < row; off += 64)
        __builtin_prefetch(p + off, 0, 3);
}

/* Keys the AVX2 score kernel takes together (AVX-512 takes 16, one per
 * lane of its result): independent FMA chains while each waits, and one
 * load of a query head's values for all of them. */
#define SQ_CPU_ATT_KEYS 4

/* The rows (row bytes each) of keys j, j + 1, ..., j + n_keys - 1 of
 * block k for a score kernel, into kr; a group short of keys repeats its
 * last one, whose extra sums the kernel drops. Prefetches the real keys'
 * rows of the next block (once per group, for every head). Returns how
 * many are real. */
static inline int
sq_cpu_kv_key_group(const sq_cpu_kv_block_t *k, size_t row, int j, int n_keys, const char **kr)
{
    const int nk = k->n - j < n_keys ? k->n - j : n_keys;
    for (int i = 0; i < n_keys; i++)
        kr[i] = (const char *) k->rows + (size_t) (j + (i < nk ? i : nk - 1)) * row;
    for (int i = 0; k->next && i < nk; i++)
        sq_cpu_kv_prefetch_row(k, row, j + i);
    return nk;
}

/* exp(x) for attention's softmax and SwiGLU, the same bits at every
 * level: each level's SIMD version does exactly these operations in this
 * order (fmaf rounds once, as a SIMD FMA does, and nothing else is fused).
 * x is clamped to [SQ_CPU_EXP_LO, SQ_CPU_EXP_HI], so exp(x) stays a normal
 * float (below, about 1.2e-38 instead of 0 or a subnormal; NaN stays NaN);
 * n = round(x / ln 2) by adding 1.5 * 2^23; r = x - n ln 2 with ln 2 in
 * two parts; exp(r) by its Taylor polynomial of degree 7 (|r| <= 0.35:
 * truncation under 0.1 ulp); times 2^n through the exponent bits. Within
 * 2 ulp of the true exp (test_cpu_kernels measures 0.91 at worst). */
#define SQ_CPU_EXP_LO (-87.3f)
#define SQ_CPU_EXP_HI 88.0f
#define SQ_CPU_EXP_ROUND 0x1.8p+23f     /* 1.5 * 2^23 */
#define SQ_CPU_EXP_ROUND_BITS 0x4b400000u
#define SQ_CPU_EXP_LOG2E 0x1.715476p+0f
#define SQ_CPU_EXP_LN2_HI 0x1.62e43p-1f
#define SQ_CPU_EXP_LN2_LO (-0x1.05c61p-29f)
/* 1/7!, 1/6!, ..., 1/2!, 1, 1: Horner's order */
#define SQ_CPU_EXP_C7 0x1.a01a02p-13f
#define SQ_CPU_EXP_C6 0x1.6c16c2p-10f
#define SQ_CPU_EXP_C5 0x1.111112p-7f
#define SQ_CPU_EXP_C4 0x1.555556p-5f
#define SQ_CPU_EXP_C3 0x1.555556p-3f

static inline float
sq_cpu_exp(float x)
{
    x = x < SQ_CPU_EXP_LO ? SQ_CPU_EXP_LO : x;
    x = x > SQ_CPU_EXP_HI ? SQ_CPU_EXP_HI : x;
    const float t = fmaf(x, SQ_CPU_EXP_LOG2E, SQ_CPU_EXP_ROUND);
    const float n = t - SQ_CPU_EXP_ROUND;
    float r = fmaf(n, -SQ_CPU_EXP_LN2_HI, x);
    r = fmaf(n, -SQ_CPU_EXP_LN2_LO, r);
    float p = fmaf(SQ_CPU_EXP_C7, r, SQ_CPU_EXP_C6);
    p = fmaf(p, r, SQ_CPU_EXP_C5);
    p = fmaf(p, r, SQ_CPU_EXP_C4);
    p = fmaf(p, r, SQ_CPU_EXP_C3);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t bits;   /* unsigned: a NaN's bits wrap, and p is NaN then */
    memcpy(&bits, &t, sizeof bits);
    const uint32_t scale_bits = (bits - SQ_CPU_EXP_ROUND_BITS + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

/* The softmax's sum, the same at every level: element j goes to partial
 * sum j % 16 in order, and the 16 partial sums meet in this tree. */
enum { SQ_CPU_SUM_LANES = 16 };
static inline float
sq_cpu_sum16(float a[SQ_CPU_SUM_LANES])
{
    for (int w = SQ_CPU_SUM_LANES / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++)
            a[i] += a[i + w];
    return a[0];
}

/* What a level's softmax and SwiGLU do to the elements its vectors leave:
 * x[j] = exp((x[j] - max) * scale) added to sums[j % 16], for j in
 * [from, n); gate[j] = silu(gate[j]) * up[j]. */
static inline void
sq_cpu_softmax_exp_tail(float *x, int64_t from, int64_t n, float max, float scale,
                        float sums[SQ_CPU_SUM_LANES])
{
    for (int64_t j = from; j < n; j++) {
        x[j] = sq_cpu_exp((x[j] - max) * scale);
        sums[j % SQ_CPU_SUM_LANES] += x[j];
    }
}
static inline void
sq_cpu_swiglu_tail(float *gate, const float *up, int64_t from, int64_t n)
{
    for (int64_t j = from; j < n; j++)
        gate[j] = gate[j] / (1.0f + sq_cpu_exp(-gate[j])) * up[j];
}

/* A cache block's dtype as the attention kernels' compile-time constant
 * kind, and the bytes of one of its rows of hd values. */
enum { SQ_CPU_KV_F32 = 0, SQ_CPU_KV_F16 = 1, SQ_CPU_KV_Q8 = 2 };
static inline size_t
sq_cpu_kv_row(int kind, int hd)
{
    return kind == SQ_CPU_KV_Q8 ? (size_t) hd / SQ_QK8_0 * sizeof(sq_block_q8_0_t)
                                : (size_t) hd * (kind == SQ_CPU_KV_F16 ? 2 : 4);
}

/* Value i of a row of Q8_0 blocks, widened exactly (see sq_cpu_kv_block_t). */
static inline float
sq_cpu_q8_value(const char *row, int64_t i)
{
    const sq_block_q8_0_t *b = (const sq_block_q8_0_t *) row + i / SQ_QK8_0;
    return (float) b->qs[i % SQ_QK8_0] * sq_fp16_to_fp32(b->d);
}

/* Rows of a Q8_0 block (at most 32 of head_dim up to 256) that the
 * SIMD entries widen once when several query heads read them. */
#define SQ_CPU_KV_WIDE (32 * 256)

/* A Q8_0 block b that n_q > 1 query heads read, widened once into wide
 * as the F32 block *w (the same bits as widening each value in registers,
 * which the kernels would do once per head), the rows of b's next block
 * prefetched now; false, and nothing done, for any other block. */
static inline bool
sq_cpu_kv_widened(const sq_cpu_kv_block_t *b, int n_q, float *wide, sq_cpu_kv_block_t *w,
                  void (*to_f32)(const sq_block_q8_0_t *x, float *y, int64_t n))
{
    if (b->dtype != SQ_DTYPE_Q8_0 || n_q < 2 || (size_t) b->n * (size_t) b->hd > SQ_CPU_KV_WIDE)
        return false;
    const size_t row = sq_cpu_kv_row(SQ_CPU_KV_Q8, b->hd);
    for (int j = 0; b->next && j < b->n; j++)
        sq_cpu_kv_prefetch_row(b, row, j);
    to_f32(b->rows, wide, (int64_t) b->n * b->hd);
    *w = (sq_cpu_kv_block_t){.rows = wide, .dtype = SQ_DTYPE_F32, .n = b->n, .hd = b->hd};
    return true;
}

/* A SIMD file's attention entries, s_attn_scores and s_attn_values: each
 * calls its always-inline body (scores, values) with the block's kind as
 * a compile-time constant, int kind, before the output arguments; a Q8_0
 * block that several heads read goes widened by to_f32 as an F32 one. */
#define SQ_CPU_ATTN_ENTRIES(scores, values, to_f32)                                              \
    static void s_attn_scores(const float *q, int n_q, const sq_cpu_kv_block_t *k,             \
                              float *out, size_t ld)                                            \
    {                                                                                           \
        float wide[SQ_CPU_KV_WIDE];                                                             \
        sq_cpu_kv_block_t w;                                                                    \
        if (sq_cpu_kv_widened(k, n_q, wide, &w, to_f32))                                        \
            scores(q, n_q, &w, SQ_CPU_KV_F32, out, ld);                                         \
        else if (k->dtype == SQ_DTYPE_F16)                                                      \
            scores(q, n_q, k, SQ_CPU_KV_F16, out, ld);                                          \
        else if (k->dtype == SQ_DTYPE_Q8_0)                                                     \
            scores(q, n_q, k, SQ_CPU_KV_Q8, out, ld);                                           \
        else                                                                                    \
            scores(q, n_q, k, SQ_CPU_KV_F32, out, ld);                                          \
    }                                                                                           \
    static void s_attn_values(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v,  \
                              float *out)                                                       \
    {                                                                                           \
        float wide[SQ_CPU_KV_WIDE];                                                             \
        sq_cpu_kv_block_t w;                                                                    \
        if (sq_cpu_kv_widened(v, n_q, wide, &w, to_f32))                                        \
            values(p, ld, n_q, &w, SQ_CPU_KV_F32, out);                                         \
        else if (v->dtype == SQ_DTYPE_F16)                                                      \
            values(p, ld, n_q, v, SQ_CPU_KV_F16, out);                                          \
        else if (v->dtype == SQ_DTYPE_Q8_0)                                                     \
            values(p, ld, n_q, v, SQ_CPU_KV_Q8, out);                                           \
        else                                                                                    \
            values(p, ld, n_q, v, SQ_CPU_KV_F32, out);                                          \
    }

/* Fully unroll a loop over block rows, tokens (up to SQ_CPU_PACK_NX) or
 * unroll slots: without it GCC keeps the accumulator arrays on the stack
 * instead of in registers. */
#define SQ_CPU_UNROLL _Pragma("GCC unroll 16")

/* In a dot kernel: CALL(NW, NX) with compile-time constants standing for
 * the run-time n_w, n_x (1..4), so each block shape gets its own
 * fully-unrolled, register-allocated instance. */
#define SQ_CPU_DISPATCH_NX(CALL, NW, n_x)                                                         \
    switch (n_x) {                                                                                \
    case 1: CALL(NW, 1); break;                                                                   \
    case 2: CALL(NW, 2); break;                                                                   \
    case 3: CALL(NW, 3); break;                                                                   \
    default: CALL(NW, 4); break;                                                                  \
    }
#define SQ_CPU_DISPATCH(CALL, n_w, n_x)                                                           \
    switch (n_w) {                                                                                \
    case 1: SQ_CPU_DISPATCH_NX(CALL, 1, n_x) break;                                               \
    case 2: SQ_CPU_DISPATCH_NX(CALL, 2, n_x) break;                                               \
    case 3: SQ_CPU_DISPATCH_NX(CALL, 3, n_x) break;                                               \
    default: SQ_CPU_DISPATCH_NX(CALL, 4, n_x) break;                                              \
    }

/* Define a sq_cpu_dot_fn called name whose body is CALL(NW, NX) for the
 * block shape at hand; CALL sees the parameters w, ws, x, xs, n, out. */
#define SQ_CPU_DEFINE_DOT(name, CALL)                                                             \
    static void name(const void *w, size_t ws, int n_w, const void *x, size_t xs, int n_x,       \
                     int64_t n, float *out)                                                       \
    {                                                                                             \
        SQ_CPU_DISPATCH(CALL, n_w, n_x)                                                           \
    }

/* A token's block of activations for the packed Q8_0 kernels (see
 * SQ_DTYPE_Q8_0X16): the Q8_0 scale widened to float, -128 times the sum
 * of qs (which cancels what the weights' +128 bias adds to the product
 * sum), then qs. */
typedef struct {
    float d;
    int32_t neg_bias;
    int8_t qs[SQ_QK8_0];
} sq_cpu_xq8_t;

/* Token block xb's values 4k .. 4k + 3 as one word: what the packed SIMD
 * kernels broadcast to every lane. */
static inline int32_t
sq_cpu_xq8_word(const sq_cpu_xq8_t *xb, int k)
{
    int32_t v;
    memcpy(&v, xb->qs + 4 * k, sizeof v);
    return v;
}

/* Tokens one packed kernel call handles at most. */
#define SQ_CPU_PACK_NX 16

/* y[j * ldy + r] = row r of the packed group against token j's blocks
 * x + j * x_stride (r < 16, j < n_x <= SQ_CPU_PACK_NX), nb blocks a row. */
typedef void (*sq_cpu_gemm_x16_fn)(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x,
                                   size_t x_stride, int n_x, float *y, int64_t ldy);

/* The portable packed kernel (the same bits as every SIMD one), and the
 * same sum for n_rows rows in GGUF Q8_0 layout (a packed matrix's tail). */
void sq_cpu_gemm_q8_0x16_portable(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x,
                                  size_t x_stride, int n_x, float *y, int64_t ldy);
void sq_cpu_gemm_q8_0_rows_xq8(const sq_block_q8_0_t *w, int n_rows, int64_t nb,
                               const sq_cpu_xq8_t *x, size_t x_stride, int n_x, float *y,
                               int64_t ldy);
/* y (n / 32 blocks) = x (n floats) quantized with quantize (a level's
 * Q8_0 quantizer), in the packed kernels' activation form. */
void sq_cpu_quantize_xq8(void (*quantize)(const float *, sq_block_q8_0_t *, int64_t),
                         const float *x, sq_cpu_xq8_t *y, int64_t n);

typedef struct {
    const char *name;
    sq_cpu_dot_fn dot_f32;
    sq_cpu_dot_fn dot_f16;
    sq_cpu_dot_fn dot_q8_0;
    /* y (n/32 blocks) = Q8_0 of x (n floats); same result as the reference. */
    void (*quantize_q8_0)(const float *x, sq_block_q8_0_t *y, int64_t n);
    /* rows of F16 to F32 and back, as sq_cpu_f16_to_f32_row and
     * sq_cpu_f32_to_f16_row (the same bits at every level) */
    void (*f16_to_f32)(const uint16_t *x, float *y, int64_t n);
    void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n);
    /* rows of Q8_0 blocks to F32, as sq_cpu_q8_0_to_f32_row */
    void (*q8_0_to_f32)(const sq_block_q8_0_t *x, float *y, int64_t n);
    /* attention's products, as sq_cpu_attn_scores and sq_cpu_attn_values */
    void (*attn_scores)(const float *q, int n_q, const sq_cpu_kv_block_t *k, float *scores,
                        size_t ld);
    void (*attn_values)(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v,
                        float *out);
    /* x (n) = softmax(scale * x) in place, and gate (n) = silu(gate) * up,
     * as sq_cpu_softmax_row and sq_cpu_swiglu_row */
    void (*softmax)(float *x, int64_t n, float scale);
    void (*swiglu)(float *gate, const float *up, int64_t n);
    /* the packed Q8_0 kernel, NULL where the portable one serves (and the
     * backend leaves Q8_0 weights unpacked: only VNNI gains from it) */
    sq_cpu_gemm_x16_fn gemm_q8_0x16;
} sq_cpu_kernels_t;

extern const sq_cpu_kernels_t sq_cpu_kernels_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const sq_cpu_kernels_t sq_cpu_kernels_avx2;
extern const sq_cpu_kernels_t sq_cpu_kernels_avx2vnni;
extern const sq_cpu_kernels_t sq_cpu_kernels_avx512;
extern const sq_cpu_kernels_t sq_cpu_kernels_avx512vnni;
/* The AVX2 quantizer and F16 and Q8_0 conversions, shared by the AVX-512
 * levels. */
void sq_cpu_quantize_q8_0_avx2(const float *x, sq_block_q8_0_t *y, int64_t n);
void sq_cpu_f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n);
void sq_cpu_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n);
void sq_cpu_q8_0_to_f32_avx2(const sq_block_q8_0_t *x, float *y, int64_t n);
void sq_cpu_softmax_avx2(float *x, int64_t n, float scale);
void sq_cpu_swiglu_avx2(float *gate, const float *up, int64_t n);
/* The packed Q8_0 kernel of the avx2vnni level (sq_cpu_avx2vnni.c). */
void sq_cpu_gemm_q8_0x16_avxvnni(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x,
                                 size_t x_stride, int n_x, float *y, int64_t ldy);
#endif

/* The table for a level name ("portable", "avx2", ...), or NULL when this
 * CPU or build lacks it. For tests and benchmarks that compare levels. */
const sq_cpu_kernels_t *sq_cpu_kernels_for(const char *level);

/* The reference Q8_0 quantizer and F16 and Q8_0 conversions (the
 * portable level's too). */
void sq_cpu_quantize_row_q8_0_ref(const float *x, sq_block_q8_0_t *y, int64_t n);
void sq_cpu_f16_to_f32_ref(const uint16_t *x, float *y, int64_t n);
void sq_cpu_f32_to_f16_ref(const float *x, uint16_t *y, int64_t n);
void sq_cpu_q8_0_to_f32_ref(const sq_block_q8_0_t *x, float *y, int64_t n);

/* 0, or SQ_EINVAL with a detail naming the bad dtype or shape. */
int sq_cpu_matmul_check(int dtype, int64_t n_out, int64_t n_in, int64_t n_tok, int64_t ldy);

/* sq_cpu_matmul through a given table (the public one uses the chosen level). */
int sq_cpu_matmul_with(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype, const void *w,
                       int64_t n_out, int64_t n_in, const float *x, int64_t n_tok, float *y,
                       int64_t ldy);
int sq_cpu_matmul_n_with(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype,
                         const sq_cpu_mat_t *mats, int n_mats, int64_t n_in, const float *x,
                         int64_t n_tok);

#endif
