/*  sq_cuda_layout: how the CUDA backend lays weights out in device memory
 *  (host code, no CUDA headers: CPU-only CI tests it).
 *
 *  F32 and F16 weights are stored as GGUF has them, (n_out, n_in)
 *  row-major. Q8_0 is split: GGUF's 34-byte blocks (an F16 scale, then
 *  32 int8 values) would leave every block at an odd alignment, so the
 *  device holds the quants as one (n_out, n_in) int8 matrix, then, from
 *  sq_cu_q8_scales_offset, the scales as an (n_out, n_in / 32) F16
 *  matrix: a lane loads a block's 32 quants in two aligned 16-byte loads.
 */
#ifndef SQ_CUDA_LAYOUT_H
#define SQ_CUDA_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes as in GGUF (sq_cpu_kernels.h) */
enum { SQ_CU_F32 = 0, SQ_CU_F16 = 1, SQ_CU_Q8_0 = 8 };
/* Q8_0: blocks of 32 int8 values after an fp16 scale, 34 bytes in GGUF */
enum { SQ_CU_QK = 32, SQ_CU_Q8_BYTES = 34 };

/* bytes of one GGUF row of n values of dtype; 0 for an unknown dtype or
 * a Q8_0 row that is not whole blocks */
size_t sq_cu_row_bytes(int dtype, int64_t n);
/* device bytes of an (n_out, n_in) weight of dtype; 0 as sq_cu_row_bytes */
size_t sq_cu_weight_bytes(int dtype, int64_t n_out, int64_t n_in);
/* where a split Q8_0 weight's scales start (the quants' size rounded up
 * to 256 bytes, so the scales are aligned too) */
size_t sq_cu_q8_scales_offset(int64_t n_out, int64_t n_in);
/* out (sq_cu_weight_bytes) = n_out rows of GGUF Q8_0 blocks, split */
void sq_cu_q8_split(const void *blocks, int64_t n_out, int64_t n_in, void *out);

#ifdef __cplusplus
}
#endif
#endif
