/*  sq_cuda_kernels: the device kernels of the CUDA backend and their
 *  launchers (internal to worker/backend/cuda). Every launcher queues on
 *  the given stream and returns the launch status; shapes as in
 *  sq_backend.h, (rows, cols) row-major. Device arrays end in _d.
 */
#ifndef SQ_CUDA_KERNELS_H
#define SQ_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dtype codes as in GGUF (sq_cpu_kernels.h) */
enum { SQ_CU_F32 = 0, SQ_CU_F16 = 1, SQ_CU_Q8_0 = 8 };
/* Q8_0: blocks of 32 int8 values after an fp16 scale, 34 bytes */
enum { SQ_CU_QK = 32, SQ_CU_Q8_BYTES = 34 };
/* batches up to this many tokens take the GEMV kernels */
enum { SQ_CU_GEMV_MAX = 8 };
/* attention keeps a head's output in registers: head_dim up to this */
enum { SQ_CU_MAX_HEAD_DIM = 256 };

/* bytes of one row of n values of dtype; 0 for an unknown dtype or a Q8_0
 * row that is not whole blocks */
size_t sq_cu_row_bytes(int dtype, int64_t n);

/* out (n, n_in) = rows ids_d of emb (n_out x n_in of dtype), as F32 */
cudaError_t sq_cu_embed(cudaStream_t s, int dtype, const void *emb, int64_t n_in,
                        const int32_t *ids_d, int n, float *out);
/* out (n, dim) = x / rms(x) * w */
cudaError_t sq_cu_rmsnorm(cudaStream_t s, const float *x, const float *w, float eps, int n,
                          int dim, float *out);
/* y (n_tok, n_out) = x (n_tok, n_in) W^T for W of F16 (n_in % 4 == 0) or
 * Q8_0, n_tok <= SQ_CU_GEMV_MAX: one warp per weight row, read once */
cudaError_t sq_cu_gemv(cudaStream_t s, int dtype, const void *w, int64_t n_out, int64_t n_in,
                       const float *x, int n_tok, float *y);
/* the same for Q8_0 and any n_tok: 64 x 64 output tiles, the weight tile
 * dequantised into shared memory once per 64 tokens */
cudaError_t sq_cu_q8_gemm(cudaStream_t s, const void *w, int64_t n_out, int64_t n_in,
                          const float *x, int n_tok, float *y);
/* out (n halves) = x rounded to F16 */
cudaError_t sq_cu_to_f16(cudaStream_t s, const float *x, void *out, size_t n);
/* rotate adjacent pairs of each head by pos_d[t] (see sq_backend.h) */
cudaError_t sq_cu_rope(cudaStream_t s, float *x, int n_tok, int n_heads, int head_dim,
                       int n_rot, const int32_t *pos_d, float freq_base);
/* store the batch's k/v rows in the cache, then attend (see sq_attn_args_t;
 * a->slot and a->pos are ignored in favour of the device copies) */
cudaError_t sq_cu_attention(cudaStream_t s, const sq_attn_args_t *a, const int32_t *slot_d,
                            const int32_t *pos_d);
/* gate (n) = silu(gate) * up */
cudaError_t sq_cu_swiglu(cudaStream_t s, float *gate, const float *up, size_t n);
/* x (n) += y */
cudaError_t sq_cu_add(cudaStream_t s, float *x, const float *y, size_t n);

#ifdef __cplusplus
}
#endif
#endif
