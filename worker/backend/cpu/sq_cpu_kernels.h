/*  sq_cpu_kernels: the CPU backend's numeric kernels.
 *
 *  Pure functions over host memory: they own nothing and allocate nothing
 *  on the hot path. Each has a portable reference version (sq_cpu_*_ref)
 *  that the fast SIMD paths are tested against; the fast path (AVX2,
 *  AVX-512, AVX-512-VNNI or portable) is chosen once at run time from
 *  CPUID. Formats:
 *
 *  - F32: little-endian IEEE float.
 *  - F16: IEEE half, stored as uint16_t.
 *  - Q8_0: blocks of 32 values, each block 34 bytes: fp16 scale d, then 32
 *    int8 q; value = d * q (GGUF / llama.cpp layout).
 *
 *  Matrices are row-major "out x in" as in GGUF: W has n_out rows of n_in
 *  contiguous values, so y = W x is one dot product per row.
 */
#ifndef SQ_CPU_KERNELS_H
#define SQ_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* GGUF tensor type ids for the types we support. */
enum { SQ_DTYPE_F32 = 0, SQ_DTYPE_F16 = 1, SQ_DTYPE_Q8_0 = 8 };

#define SQ_QK8_0 32
typedef struct {
    uint16_t d;               /* fp16 scale */
    int8_t qs[SQ_QK8_0];
} __attribute__((packed)) sq_block_q8_0_t;   /* 34 bytes */

float sq_fp16_to_fp32(uint16_t h);
uint16_t sq_fp32_to_fp16(float f);   /* round to nearest even */

/* Bytes taken by one row of n values of dtype (n % 32 == 0 for Q8_0);
 * 0 for an unknown dtype or a Q8_0 row that is not a whole number of blocks. */
size_t sq_cpu_row_bytes(int dtype, int64_t n);

/* y (n/32 blocks) = Q8_0 of x (n floats), n % 32 == 0. Scale = amax/127. */
void sq_cpu_quantize_row_q8_0(const float *x, sq_block_q8_0_t *y, int64_t n);
/* y (n floats) = values of a row of dtype (F32, F16 or Q8_0). */
void sq_cpu_dequantize_row(int dtype, const void *x, float *y, int64_t n);

/* y (n floats) = x (n F16 values), exactly; and y (n F16 values) = x (n
 * floats) rounded to nearest even, with sq_fp32_to_fp16's bits (NaN
 * quiet, overflow to infinity). At the run-time SIMD level. */
void sq_cpu_f16_to_f32_row(const uint16_t *x, float *y, int64_t n);
void sq_cpu_f32_to_f16_row(const float *x, uint16_t *y, int64_t n);
/* y (n floats, n % 32 == 0) = the values of x (n / 32 Q8_0 blocks),
 * exactly (sq_cpu_dequantize_row's bits). At the run-time SIMD level. */
void sq_cpu_q8_0_to_f32_row(const sq_block_q8_0_t *x, float *y, int64_t n);

/* x (n > 0) = softmax(scale * x) in place, and gate (n) = silu(gate) * up
 * = gate / (1 + exp(-gate)) * up: attention's weights and the FFN's
 * SwiGLU, with an exp within 2 ulp of the true one (sq_cpu_internal.h) and the
 * same bits at every SIMD level. At the run-time level. */
void sq_cpu_softmax_row(float *x, int64_t n, float scale);
void sq_cpu_swiglu_row(float *gate, const float *up, int64_t n);

/* A block of attention's cache rows: n rows of hd values, contiguous,
 * F32, F16 or Q8_0 (each row hd / 32 blocks, hd a multiple of 32). The
 * kernels widen F16 and Q8_0 values as they load them, exactly: a Q8_0
 * value is its int8 times its block's F16 scale, a product of 8 and 11
 * significant bits that a float holds without rounding.
 * next: the rows to be read after these (the next block, wherever its
 * page is; same dtype and row size), which the SIMD kernels prefetch row
 * by row as they read these; NULL for none. */
typedef struct {
    const void *rows, *next;
    int dtype;                /* SQ_DTYPE_F32, SQ_DTYPE_F16 or SQ_DTYPE_Q8_0 */
    int n, hd;
} sq_cpu_kv_block_t;

/* Attention's two products over a block of cache rows (k or v) for the n_q
 * query heads (rows of hd floats of q) that read them:
 *   scores[h * ld + j] = q_h . k_j                       (j < n, h < n_q)
 *   out[h * hd + d] += p[h * ld + j] * v_j[d], j = 0, 1, ..., n - 1 in turn
 * A value depends only on its own head's and rows' inputs, never on n_q,
 * on where a block starts or on what it prefetches, so a token's
 * attention is the same alone or in any batch; an F16 or Q8_0 block
 * gives the bits its rows widened to F32 give. At the run-time SIMD level (FMA
 * above portable). */
void sq_cpu_attn_scores(const float *q, int n_q, const sq_cpu_kv_block_t *k, float *scores,
                        size_t ld);
void sq_cpu_attn_values(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v,
                        float *out);

/* A pool of worker threads that runs one data-parallel job at a time.
 * n_threads counts the calling thread: a pool of 1 has no extra threads. */
typedef struct sq_threadpool sq_threadpool_t;
sq_threadpool_t *sq_threadpool_new(int n_threads);
void sq_threadpool_destroy(sq_threadpool_t **self_p);
int sq_threadpool_size(const sq_threadpool_t *self);
/* Call fn(arg, ith, nth) once for each ith in [0, nth) (nth = pool size),
 * in parallel, the caller running ith = 0; returns when all have returned.
 * pool may be NULL: then fn(arg, 0, 1) runs on the caller. */
void sq_threadpool_run(sq_threadpool_t *pool, void (*fn)(void *arg, int ith, int nth), void *arg);

/* Y = X W^T for a batch of n_tok token rows:
 *   y[t * ldy + o] = sum_i w[o][i] * x[t * n_in + i]   (t < n_tok, o < n_out)
 * w: n_out rows of n_in values of dtype, rows contiguous
 *    (row stride sq_cpu_row_bytes(dtype, n_in)).
 * x: n_tok rows of n_in floats; y: n_tok rows of stride ldy >= n_out.
 * For Q8_0 weights x is quantized per 32-block to Q8_0 and the dot products
 * run in integer arithmetic (llama.cpp's scheme), so results match the
 * reference within Q8_0 rounding of x. dtype SQ_DTYPE_Q8_0X16: w is a
 * packed Q8_0 matrix (sq_cpu_pack_q8_0x16), the same scheme. Returns 0 or
 * SQ_EINVAL (bad dtype, n_in not a multiple of 32 for Q8_0). Threads split
 * the n_out rows. */
int sq_cpu_matmul(sq_threadpool_t *pool, int dtype, const void *w, int64_t n_out, int64_t n_in,
                  const float *x, int64_t n_tok, float *y, int64_t ldy);
/* Several weights over the same x in one pass of the pool (a layer's q, k
 * and v, or its gate and up): each mats[i].y = x W_i^T as sq_cpu_matmul
 * would give it, bit for bit, with one quantization of x and one wait for
 * the threads instead of n_mats. All of one dtype and n_in; 1 to
 * SQ_CPU_MATMUL_MAX of them, else SQ_EINVAL. */
#define SQ_CPU_MATMUL_MAX 4
typedef struct {
    const void *w;            /* n_out rows, as sq_cpu_matmul's w */
    int64_t n_out;
    float *y;                 /* n_tok rows of stride ldy >= n_out */
    int64_t ldy;
} sq_cpu_mat_t;
int sq_cpu_matmul_n(sq_threadpool_t *pool, int dtype, const sq_cpu_mat_t *mats, int n_mats,
                    int64_t n_in, const float *x, int64_t n_tok);
/* Same contract, scalar code, single thread: the reference. */
int sq_cpu_matmul_ref(int dtype, const void *w, int64_t n_out, int64_t n_in, const float *x,
                      int64_t n_tok, float *y, int64_t ldy);

/* Q8_0 weights repacked for the integer dot-product instructions
 * ("Q8_0x16"). Rows go in groups of 16; within a group, block b's values
 * are interleaved so that one 64-byte vector holds 4 consecutive values of
 * each of the 16 rows, stored biased by +128 as unsigned bytes (what
 * VPDPBUSD multiplies with a signed activation byte), and the 16 rows'
 * fp16 scales of block b sit together. One instruction then accumulates 4
 * products into each row's own lane, so a group's 16 results need no
 * horizontal sums, and each (row, token, block) costs one float product
 * and sum, not one per 16 products. Layout, nb = n_in / 32 blocks per row:
 *   group g (n_out / 16 of them, each sq_cpu_q8_0x16_group_bytes(n_in)
 *   bytes, a multiple of 64):
 *     qs[b][k][r][4]  (nb x 8 x 16 x 4 bytes) uint8 value + 128 of row
 *                     16g + r, positions 32b + 4k .. 32b + 4k + 3
 *     d[b][r]         (nb x 16 fp16) the scale of row 16g + r, block b
 *   then the n_out % 16 last rows in GGUF Q8_0 layout.
 * A row's result is sum += isum_b * (d_w * d_x) over b in order, as
 * sq_cpu_matmul_ref computes it on the unpacked rows: every level gives
 * the reference's bits, and a token the same bits alone or in any batch. */
enum { SQ_DTYPE_Q8_0X16 = 0x108 };  /* not a GGUF type: the CPU backend's own */
#define SQ_CPU_PACK_ROWS 16

/* Bytes of one group of 16 packed rows of n_in values (0 when n_in is not
 * whole 32-blocks), and of a whole packed matrix. */
size_t sq_cpu_q8_0x16_group_bytes(int64_t n_in);
size_t sq_cpu_q8_0x16_bytes(int64_t n_out, int64_t n_in);
/* out (sq_cpu_q8_0x16_bytes) = w (n_out GGUF Q8_0 rows of n_in values),
 * repacked, the groups shared among pool's threads (pool may be NULL: the
 * caller alone). */
void sq_cpu_pack_q8_0x16(sq_threadpool_t *pool, const void *w, int64_t n_out, int64_t n_in,
                         void *out);
/* y (n_in floats) = the values of row `row` of a packed matrix, as
 * sq_cpu_dequantize_row gives them for the unpacked row. */
void sq_cpu_q8_0x16_row(const void *packed, int64_t n_out, int64_t n_in, int64_t row, float *y);
/* Whether the run-time SIMD level multiplies Q8_0 weights faster packed
 * (AVX-512 VNNI, AVX-VNNI), unless SQ_CPU_PACK=0 is in the environment:
 * then the CPU backend packs Q8_0 weights as it loads them. */
bool sq_cpu_packs_q8_0(void);

/* The x86 features the kernels use that this CPU has and the OS enables
 * (CPUID and XGETBV, read once): a mask of SQ_CPU_*. 0 elsewhere. */
enum {
    SQ_CPU_AVX2 = 1u << 0,
    SQ_CPU_FMA = 1u << 1,
    SQ_CPU_F16C = 1u << 2,
    SQ_CPU_AVXVNNI = 1u << 3,
    SQ_CPU_AVX512F = 1u << 4,
    SQ_CPU_AVX512BW = 1u << 5,
    SQ_CPU_AVX512VL = 1u << 6,
    SQ_CPU_AVX512VNNI = 1u << 7,
};
unsigned sq_cpu_features(void);

/* The SIMD level chosen at run time: "avx512vnni", "avx512", "avx2vnni"
 * (AVX2 with AVX-VNNI), "avx2" or "portable". SQ_CPU_SIMD=<level> in the
 * environment caps it (for tests and benchmarks of each path). */
const char *sq_cpu_simd_level(void);

#ifdef __cplusplus
}
#endif
#endif
