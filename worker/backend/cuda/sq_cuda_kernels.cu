/*  sq_cuda_kernels: the launchers of the CUDA backend's kernels (the
 *  kernels themselves are in sq_cuda_device.cuh): grid and block sizes,
 *  the choice among a kernel's variants, the launch status.
 */
#include "sq_cuda_kernels.h"

#include "sq_cuda_device.cuh"

static unsigned s_blocks(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

size_t sq_cu_row_bytes(int dtype, int64_t n)
{
    if (n <= 0)
        return 0;
    switch (dtype) {
    case SQ_CU_F32: return (size_t)n * 4;
    case SQ_CU_F16: return (size_t)n * 2;
    case SQ_CU_Q8_0: return n % SQ_CU_QK ? 0 : (size_t)(n / SQ_CU_QK) * SQ_CU_Q8_BYTES;
    default: return 0;
    }
}


cudaError_t sq_cu_embed(cudaStream_t s, int dtype, const void *emb, int64_t n_in,
                        const int32_t *ids_d, int n, float *out)
{
    k_embed<<<n, 256, 0, s>>>(dtype, (const unsigned char *)emb, sq_cu_row_bytes(dtype, n_in),
                              n_in, ids_d, out);
    return cudaGetLastError();
}

cudaError_t sq_cu_rmsnorm(cudaStream_t s, const float *x, const float *w, float eps, int n,
                          int dim, float *out)
{
    k_rmsnorm<<<n, 256, 0, s>>>(x, w, eps, dim, out);
    return cudaGetLastError();
}

template <int NT>
static void s_gemv(cudaStream_t s, int dtype, const void *w, int64_t n_out, int64_t n_in,
                   const float *x, float *y)
{
    const int warps = 8;
    k_gemv<NT><<<s_blocks((size_t)n_out, warps), warps * 32, 0, s>>>(
        dtype, (const unsigned char *)w, sq_cu_row_bytes(dtype, n_in), n_out, n_in, x, y);
}

cudaError_t sq_cu_gemv(cudaStream_t s, int dtype, const void *w, int64_t n_out, int64_t n_in,
                       const float *x, int n_tok, float *y)
{
    switch (n_tok) {
    case 1: s_gemv<1>(s, dtype, w, n_out, n_in, x, y); break;
    case 2: s_gemv<2>(s, dtype, w, n_out, n_in, x, y); break;
    case 3: s_gemv<3>(s, dtype, w, n_out, n_in, x, y); break;
    case 4: s_gemv<4>(s, dtype, w, n_out, n_in, x, y); break;
    case 5: s_gemv<5>(s, dtype, w, n_out, n_in, x, y); break;
    case 6: s_gemv<6>(s, dtype, w, n_out, n_in, x, y); break;
    case 7: s_gemv<7>(s, dtype, w, n_out, n_in, x, y); break;
    case 8: s_gemv<8>(s, dtype, w, n_out, n_in, x, y); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t sq_cu_q8_gemm(cudaStream_t s, const void *w, int64_t n_out, int64_t n_in,
                          const float *x, int n_tok, float *y)
{
    dim3 grid(s_blocks((size_t)n_out, S_TILE), s_blocks((size_t)n_tok, S_TILE));
    k_q8_gemm<<<grid, 256, 0, s>>>((const unsigned char *)w, sq_cu_row_bytes(SQ_CU_Q8_0, n_in),
                                   n_out, n_in, x, n_tok, y);
    return cudaGetLastError();
}

cudaError_t sq_cu_to_f16(cudaStream_t s, const float *x, void *out, size_t n)
{
    k_to_f16<<<s_blocks(n, 256), 256, 0, s>>>(x, (__half *)out, n);
    return cudaGetLastError();
}

cudaError_t sq_cu_swiglu(cudaStream_t s, float *gate, const float *up, size_t n)
{
    k_swiglu<<<s_blocks(n, 256), 256, 0, s>>>(gate, up, n);
    return cudaGetLastError();
}

cudaError_t sq_cu_add(cudaStream_t s, float *x, const float *y, size_t n)
{
    k_add<<<s_blocks(n, 256), 256, 0, s>>>(x, y, n);
    return cudaGetLastError();
}

cudaError_t sq_cu_rope(cudaStream_t s, float *x, int n_tok, int n_heads, int head_dim,
                       int n_rot, const int32_t *pos_d, float freq_base)
{
    size_t n = (size_t)n_tok * n_heads * (n_rot / 2);
    if (n == 0)
        return cudaSuccess;
    k_rope<<<s_blocks(n, 256), 256, 0, s>>>(x, n_tok, n_heads, head_dim, n_rot, pos_d,
                                            freq_base);
    return cudaGetLastError();
}

cudaError_t sq_cu_attention(cudaStream_t s, const sq_attn_args_t *a, const int32_t *slot_d,
                            const int32_t *pos_d)
{
    if (a->n_tok == 0)
        return cudaSuccess;
    k_kv_store<<<a->n_tok, 256, 0, s>>>(a->k_cache, a->v_cache, a->k, a->v, slot_d, pos_d,
                                        a->n_kv, a->n_ctx, a->head_dim);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        return err;
    s_att_t args = {a->k_cache, a->v_cache, a->q, a->out, slot_d, pos_d, a->n_heads, a->n_kv,
                    a->n_ctx, a->head_dim, a->q_head0, a->kv_head0, a->group};
    k_attention<<<dim3(a->n_heads, a->n_tok), S_ATT_WARPS * 32, 0, s>>>(args);
    return cudaGetLastError();
}