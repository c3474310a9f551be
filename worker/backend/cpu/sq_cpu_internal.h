/*  sq_cpu_internal: the table of per-SIMD-level kernels behind sq_cpu_matmul.
 *
 *  Private to worker/backend/cpu. Each level (portable, AVX2, AVX-512,
 *  AVX-512-VNNI) fills one sq_cpu_kernels_t; sq_cpu_kernels.c picks one at
 *  run time and drives it (threads, token tiles, activation quantization).
 *
 *  A "dot" kernel computes one weight row against up to SQ_CPU_NX activation
 *  rows at once, so the weight row is loaded into registers once for all of
 *  them:
 *      out[j] = sum_i w[i] * x_j[i]     (j < n_x, x_j = x + j * x_stride bytes)
 *  For F32/F16 weights the activations are F32; for Q8_0 weights they are
 *  Q8_0 blocks (quantized once per matmul by the driver).
 */
#ifndef SQ_CPU_INTERNAL_H
#define SQ_CPU_INTERNAL_H

#include "sq_cpu_kernels.h"

#include <stddef.h>
#include <stdint.h>

/* Activation rows one dot kernel call handles at most. */
#define SQ_CPU_NX 4

typedef void (*sq_cpu_dot_fn)(const void *w, const void *x, size_t x_stride, int n_x, int64_t n,
                              float *out);

typedef struct {
    const char *name;
    sq_cpu_dot_fn dot_f32;
    sq_cpu_dot_fn dot_f16;
    sq_cpu_dot_fn dot_q8_0;
    /* y (n/32 blocks) = Q8_0 of x (n floats); same result as the reference. */
    void (*quantize_q8_0)(const float *x, sq_block_q8_0_t *y, int64_t n);
} sq_cpu_kernels_t;

extern const sq_cpu_kernels_t sq_cpu_kernels_portable;
#if defined(__x86_64__) || defined(__i386__)
extern const sq_cpu_kernels_t sq_cpu_kernels_avx2;
extern const sq_cpu_kernels_t sq_cpu_kernels_avx512;
extern const sq_cpu_kernels_t sq_cpu_kernels_avx512vnni;
/* The AVX2 quantizer, shared by the AVX-512 levels. */
void sq_cpu_quantize_q8_0_avx2(const float *x, sq_block_q8_0_t *y, int64_t n);
#endif

/* The table for a level name ("portable", "avx2", ...), or NULL when this
 * CPU or build lacks it. For tests and benchmarks that compare levels. */
const sq_cpu_kernels_t *sq_cpu_kernels_for(const char *level);

/* The reference Q8_0 quantizer (the portable level's too). */
void sq_cpu_quantize_row_q8_0_ref(const float *x, sq_block_q8_0_t *y, int64_t n);

/* 0, or SQ_EINVAL with a detail naming the bad dtype or shape. */
int sq_cpu_matmul_check(int dtype, int64_t n_out, int64_t n_in, int64_t n_tok, int64_t ldy);

/* sq_cpu_matmul through a given table (the public one uses the chosen level). */
int sq_cpu_matmul_with(const sq_cpu_kernels_t *k, sq_threadpool_t *pool, int dtype, const void *w,
                       int64_t n_out, int64_t n_in, const float *x, int64_t n_tok, float *y,
                       int64_t ldy);

#endif
