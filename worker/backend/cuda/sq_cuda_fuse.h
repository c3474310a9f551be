/*  sq_cuda_fuse: which recorded ops run as one kernel (host code, no CUDA
 *  calls: CPU-only CI tests it).
 *
 *  A decode step of a small batch is bound by kernel launches, not by
 *  memory: a Llama layer records about fifteen ops. Before a recorded list
 *  runs (or is captured as a graph) it is cut into steps; a step is one
 *  op, or a run of ops that one fused kernel does with the same result:
 *    NORM        [ADD x += y,] RMSNORM of x, and the Q8_0 quantisation of
 *                its output when the next product reads it quantised
 *                (residual add, norm and quantise in one pass)
 *    GEMV        1 to 3 products of one input (q, k, v) in one launch, of
 *                the GEMV kernels or the int8 mma kernel
 *    GEMV_SWIGLU the gate and up products and SwiGLU in one launch
 *    ROPE_ATTN   RoPE of q and of k, and the cache store, in one launch
 *                before the attention kernel (which quantises its output
 *                when the next product reads it quantised)
 *  A pattern only fuses when the pointers, sizes and staged positions
 *  match exactly and no output overlaps an input the fused kernel still
 *  reads; anything else runs op by op. The plan is a function of the op
 *  list alone, so a graph captured for a list matches its replays.
 */
#ifndef SQ_CUDA_FUSE_H
#define SQ_CUDA_FUSE_H

#include <stdbool.h>
#include <stdint.h>

#include "sq_cuda_graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a product runs: batches up to SQ_CUDA_GEMV_MAX tokens through the
 * GEMV kernels where they apply (each weight read once: memory-bound);
 * bigger Q8_0 ones on int8 tensor cores (mma, unless turned off), other
 * big ones through cuBLAS on tensor cores (F16; Q8_0 dequantised to F16
 * first), F32 through cuBLAS always. The backend decides when it records
 * a product and keeps the path in the op (SQ_CUDA_MM_PATH). */
typedef enum {
    SQ_CUDA_PATH_BLAS = 0,
    SQ_CUDA_PATH_GEMV_Q8,       /* x quantised to Q8_0, dp4a */
    SQ_CUDA_PATH_GEMV_F16,      /* n_in % 32 == 0, x 16-byte aligned */
    SQ_CUDA_PATH_MMA_Q8         /* x quantised to Q8_0, mma.sync int8 */
} sq_cuda_path_t;

enum { SQ_CUDA_GEMV_MAX = 16, SQ_CUDA_GEMV_MATS = 3 };

/* a MATMUL op's i[]: dtype, n_out, n_in, n_tok, path */
enum { SQ_CUDA_MM_PATH = 4 };

sq_cuda_path_t sq_cuda_matmul_path(int dtype, int64_t n_in, int n_tok, const void *x, bool mma);

/* the path reads x quantised to Q8_0 (the GEMV or the mma kernel) */
bool sq_cuda_path_q8(sq_cuda_path_t path);

typedef enum {
    SQ_CUDA_STEP_OP = 0,
    SQ_CUDA_STEP_NORM,
    SQ_CUDA_STEP_GEMV,
    SQ_CUDA_STEP_GEMV_SWIGLU,
    SQ_CUDA_STEP_ROPE_ATTN
} sq_cuda_step_kind_t;

typedef struct {
    sq_cuda_step_kind_t kind;
    int first, n_ops;           /* it runs ops[first .. first + n_ops) */
    bool add;                   /* NORM: ops[first] is the ADD */
    bool quantize;              /* NORM, ROPE_ATTN: quantise the output for the
                                 * Q8_0 GEMV that reads it next */
} sq_cuda_step_t;

/* Cut ops[0..n) into steps (*steps grows, *cap its capacity); fuse false:
 * one step per op (an RMSNORM is a NORM step without add or quantize).
 * The number of steps, or SQ_ENOMEM. */
int sq_cuda_fuse(const sq_cuda_op_t *ops, int n, bool fuse, sq_cuda_step_t **steps, int *cap);

#ifdef __cplusplus
}
#endif
#endif
