/*  sq_cuda_kernels: the device kernels of the CUDA backend and their
 *  launchers (internal to worker/backend/cuda). Every launcher queues on
 *  the given stream and returns the launch status; shapes as in
 *  sq_backend.h, (rows, cols) row-major. Device arrays end in _d.
 */
#ifndef SQ_CUDA_KERNELS_H
#define SQ_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_backend.h"
#include "sq_cuda_fuse.h"
#include "sq_cuda_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The PTX version (major * 10 + minor, e.g. 90) the current device runs
 * this build's kernels from: its own SASS's, or the PTX the driver
 * compiled for it. cudaErrorNoKernelImageForDevice when the build has
 * neither for the device (CMAKE_CUDA_ARCHITECTURES without it). */
cudaError_t sq_cu_kernels_ptx(int *ptx_version);

/* Programmatic dependent launch for every launch from now on, when want
 * is set and the current device runs kernels compiled for sm_90 or later
 * (sq_cu_kernels_ptx): each kernel may start while the one before it in
 * its stream finishes, its blocks waiting in s_pdl_begin before reading
 * anything. Kernels compiled for an older architecture have no wait, so
 * PDL stays off for them even on an sm_90 device. The backend asks for
 * it at creation unless SHARDQ_CUDA_PDL=0, and turns it off when the
 * device will not capture a graph with it. One setting for the whole
 * process; returns it. */
bool sq_cu_set_pdl(bool want);
/* the setting */
bool sq_cu_pdl(void);

/* attention keeps a head's output in registers: head_dim up to this */
enum { SQ_CU_MAX_HEAD_DIM = 256 };

/* out (n, n_in) = rows ids_d of emb (n_out x n_in of dtype, device layout
 * as in sq_cuda_layout.h), as F32 */
cudaError_t sq_cu_embed(cudaStream_t s, int dtype, const void *emb, int64_t n_out, int64_t n_in,
                        const int32_t *ids_d, int n, float *out);
/* rows 0..n of x (n, dim): x += y (y NULL: no add), out = x / rms(x) * w,
 * and with xq (dim % 32 == 0), out quantised as in sq_cu_quantize_q8 */
cudaError_t sq_cu_add_rmsnorm(cudaStream_t s, float *x, const float *y, const float *w, float eps,
                              int n, int dim, float *out, int8_t *xq, float *xd);
/* xq (n_tok, n_in) int8 and xd (n_tok, n_in / 32) = x quantised as Q8_0
 * blocks with the CPU backend's arithmetic (n_in % 32 == 0) */
cudaError_t sq_cu_quantize_q8(cudaStream_t s, const float *x, int n_tok, int64_t n_in,
                              int8_t *xq, float *xd);

/* Up to SQ_CUDA_GEMV_MATS weights of one input for one GEMV launch: each
 * y[m] (n_tok, n_out[m]) = x W[m]^T. swiglu (two weights, equal n_out):
 * y[0] = silu(x W[0]^T) * x W[1]^T and y[1] = x W[1]^T. */
typedef struct {
    const void *w[SQ_CUDA_GEMV_MATS];   /* Q8_0 quants (split layout) or F16 values */
    const void *wd[SQ_CUDA_GEMV_MATS];  /* Q8_0 scales (set by the launcher) */
    float *y[SQ_CUDA_GEMV_MATS];
    int64_t n_out[SQ_CUDA_GEMV_MATS];
    int n_mats;
    int swiglu;
} sq_cu_gemv_set_t;

/* launch geometry, for the launchers and the emulator's tests: blocks of
 * threads covering n; GEMV blocks of SQ_CU_GEMV_WARPS warps (rows) covering
 * every row of a set (SwiGLU: the rows of one matrix, a warp doing both) */
enum { SQ_CU_GEMV_WARPS = 8 };
unsigned sq_cu_blocks(size_t n, unsigned threads);
unsigned sq_cu_gemv_blocks(const sq_cu_gemv_set_t *set);

/* the set's products for n_tok <= SQ_CUDA_GEMV_MAX, one warp per weight
 * row, each weight read once: Q8_0 weights with x given quantised
 * (sq_cu_quantize_q8), or F16 weights with n_in % 32 == 0 and x 16-byte
 * aligned */
cudaError_t sq_cu_gemv_q8(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const int8_t *xq,
                          const float *xd, int n_tok);
cudaError_t sq_cu_gemv_f16(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const float *x,
                           int n_tok);
/* The set's products for Q8_0 weights and more than SQ_CUDA_GEMV_MAX
 * tokens on int8 tensor cores (mma.sync, sm_80 and later), x given
 * quantised as for sq_cu_gemv_q8 and the same block arithmetic. Blocks of
 * SQ_CU_MMA_WARPS warps, a warp taking SQ_CU_MMA_ROWS rows of a weight and
 * 8 * sq_cu_mma_tiles(n_tok) tokens: grid (sq_cu_mma_blocks,
 * sq_cu_blocks(n_tok, 8 * sq_cu_mma_tiles(n_tok))). */
enum { SQ_CU_MMA_WARPS = 4, SQ_CU_MMA_ROWS = 16 };
unsigned sq_cu_mma_blocks(const sq_cu_gemv_set_t *set);
int sq_cu_mma_tiles(int n_tok);
cudaError_t sq_cu_mma_q8(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const int8_t *xq,
                         const float *xd, int n_tok);
/* out (n_out, n_in) F16 = a Q8_0 weight (split layout) dequantised */
cudaError_t sq_cu_q8_to_f16(cudaStream_t s, const void *w, int64_t n_out, int64_t n_in, void *out);
/* out_d (n_rows) = the argmax of each row of x (n_rows, n_cols), with
 * sq_sampler_argmax's rules (-1, SQ_SAMPLER_NOT_FINITE, for a row without
 * a finite largest value) */
cudaError_t sq_cu_argmax(cudaStream_t s, const float *x, int n_rows, int n_cols, int32_t *out_d);
/* out_d (n_rows) = each row's token under sq_sampler's rules (see
 * sq_backend.h's sample op; -1 as sq_cu_argmax's): rows_d holds SQ_CU_SAMPLE_WORDS int32 a row,
 * the temperature's float bits, top_k, top_p's float bits, then the
 * uniform u as u * 2^53 (low word, high word) */
enum { SQ_CU_SAMPLE_WORDS = 5 };
cudaError_t sq_cu_sample(cudaStream_t s, const float *x, int n_rows, int n_cols,
                         const int32_t *rows_d, int32_t *out_d);
/* out (n halves) = x rounded to F16 */
cudaError_t sq_cu_to_f16(cudaStream_t s, const float *x, void *out, size_t n);
/* rotate adjacent pairs of each head by pos_d[t] (see sq_backend.h) */
cudaError_t sq_cu_rope(cudaStream_t s, float *x, int n_tok, int n_heads, int head_dim,
                       int n_rot, const int32_t *pos_d, float freq_base);
/* whether the kernels take a KV cache of kv_dtype: SQ_CU_F32, SQ_CU_F16,
 * or SQ_CU_Q8_0 for a head_dim that is a multiple of 32 (values as int8,
 * then one F16 scale per 32 of them: sq_cuda_device.cuh, s_kv_val) */
bool sq_cu_kv_type_ok(int kv_dtype, int head_dim);
/* RoPE of a->q (n_rot, freq_base) and a->k in place, then the cache store
 * of k and v: sq_cu_rope twice and the store of sq_cu_attention in one */
cudaError_t sq_cu_rope_store(cudaStream_t s, const sq_attn_args_t *a, int n_rot, float freq_base,
                             const int32_t *slot_d, const int32_t *pos_d, const int32_t *pages_d);
/* with store, the batch's k/v rows into the cache, then attention (see
 * sq_attn_args_t; a->slot, a->pos and a->pages are ignored in favour of
 * the device copies); with xq (head_dim % 32 == 0), the output also quantised as in
 * sq_cu_quantize_q8. n_split blocks share each (head, token)'s keys
 * (sq_cu_att_splits); above 1 they leave partial results in part
 * (sq_cu_att_part_floats of them) and a second kernel merges them. */
enum { SQ_CU_ATT_MAX_SPLIT = 16 };
cudaError_t sq_cu_attention(cudaStream_t s, const sq_attn_args_t *a, const int32_t *slot_d,
                            const int32_t *pos_d, const int32_t *pages_d, bool store, int8_t *xq,
                            float *xd, int n_split, float *part);
/* How many blocks share a (head, token)'s keys: 1 when the batch's heads
 * alone give two blocks an SM (n_sms), else enough for that, at least 512
 * positions of the context each, at most SQ_CU_ATT_MAX_SPLIT. A function
 * of the shapes alone, so a graph's replays keep it. */
int sq_cu_att_splits(int n_tok, int n_heads, int n_ctx, int n_sms);
size_t sq_cu_att_part_floats(int n_tok, int n_heads, int head_dim, int n_split);
/* gate (n) = silu(gate) * up */
cudaError_t sq_cu_swiglu(cudaStream_t s, float *gate, const float *up, size_t n);
/* x (n) += y */
cudaError_t sq_cu_add(cudaStream_t s, float *x, const float *y, size_t n);
/* keep s busy for ns nanoseconds of GPU time (profiling: see k_hold) */
cudaError_t sq_cu_hold(cudaStream_t s, unsigned long long ns);
/* rows of row_len floats by idx_d (n): add false, dst row k = src row
 * idx_d[k]; add true, dst row idx_d[k] += src row k (see sq_backend.h) */
cudaError_t sq_cu_index_rows(cudaStream_t s, float *dst, const float *src, int64_t row_len,
                             const int32_t *idx_d, int n, bool add);

#ifdef __cplusplus
}
#endif
#endif
