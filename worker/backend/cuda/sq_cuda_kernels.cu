/*  sq_cuda_kernels: the launchers of the CUDA backend's kernels (the
 *  kernels themselves are in sq_cuda_device.cuh): grid and block sizes,
 *  the choice among a kernel's variants, the launch status.
 */
#include "sq_cuda_kernels.h"

#include "sq_cuda_device.cuh"

#include <utility>

/* whether launches allow programmatic dependent launch (sq_cu_set_pdl) */
static bool s_pdl;

cudaError_t sq_cu_kernels_ptx(int *ptx_version)
{
    cudaFuncAttributes fa;
    /* every kernel of the file is built for the same architectures */
    cudaError_t err = cudaFuncGetAttributes(&fa, reinterpret_cast<const void *>(k_add));
    *ptx_version = err == cudaSuccess ? fa.ptxVersion : 0;
    return err;
}

bool sq_cu_set_pdl(bool want)
{
    int ptx = 0;
    s_pdl = want && sq_cu_kernels_ptx(&ptx) == cudaSuccess && ptx >= 90;
    return s_pdl;
}

bool sq_cu_pdl(void)
{
    return s_pdl;
}

/* A launch of kernel k on stream s, and its status: under nvcc
 * cudaLaunchKernelEx, with programmatic stream serialisation when PDL is
 * on (the kernel may start while the previous one in s finishes; see
 * s_pdl_begin); built by the host compiler (tests/cuda/emu) the CPU
 * emulator's launch, which runs the kernel or, while s is being captured,
 * records it. The status is the launch's own, not cudaGetLastError's: an
 * error another call left behind (cuBLAS's, say) is not this launch's. */
#ifdef __CUDACC__
template <typename... P, typename... A>
static cudaError_t s_launch(void (*k)(P...), dim3 grid, dim3 block, cudaStream_t s, A &&...args)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.stream = s;
    cfg.attrs = &attr;
    cfg.numAttrs = s_pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, std::forward<A>(args)...);
}
#define SQ_CU_LAUNCH(k, grid, block, s, ...) s_launch(k, grid, block, s, __VA_ARGS__)
#elif defined(SQ_CUDA_EMU)
#define SQ_CU_LAUNCH(k, grid, block, s, ...) \
    sq_emu_stream_launch(s, s_pdl, k, grid, block, __VA_ARGS__)
#else
#error "sq_cuda_kernels.cu: nvcc, or the emulator of tests/cuda/emu"
#endif

unsigned sq_cu_blocks(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

/* the split Q8_0 weight's scales (sq_cuda_layout.h) */
static const __half *s_q8_scales(const void *w, int64_t n_out, int64_t n_in)
{
    return (const __half *)((const unsigned char *)w + sq_cu_q8_scales_offset(n_out, n_in));
}

cudaError_t sq_cu_embed(cudaStream_t s, int dtype, const void *emb, int64_t n_out, int64_t n_in,
                        const int32_t *ids_d, int n, float *out)
{
    const __half *scales = dtype == SQ_CU_Q8_0 ? s_q8_scales(emb, n_out, n_in) : NULL;
    return SQ_CU_LAUNCH(k_embed, n, 256, s, dtype, (const unsigned char *)emb, scales, n_in,
                        ids_d, out);
}

cudaError_t sq_cu_add_rmsnorm(cudaStream_t s, float *x, const float *y, const float *w, float eps,
                              int n, int dim, float *out, int8_t *xq, float *xd)
{
    return SQ_CU_LAUNCH(k_add_rmsnorm, n, 256, s, x, y, w, eps, dim, out, xq, xd);
}

cudaError_t sq_cu_quantize_q8(cudaStream_t s, const float *x, int n_tok, int64_t n_in,
                              int8_t *xq, float *xd)
{
    const int warps = 8;
    const int64_t n_blocks = (int64_t)n_tok * (n_in / SQ_CU_QK);
    return SQ_CU_LAUNCH(k_quantize_q8, sq_cu_blocks((size_t)n_blocks, warps), warps * 32, s, x,
                        n_blocks, xq, xd);
}

/* warps for a set when each takes `rows` rows of one matrix (k_gemv, k_mma_q8) */
static size_t s_set_warps(const sq_cu_gemv_set_t *set, int64_t rows)
{
    size_t warps = 0;
    for (int m = 0; m < (set->swiglu ? 1 : set->n_mats); m++)
        warps += (size_t)((set->n_out[m] + rows - 1) / rows);
    return warps;
}

unsigned sq_cu_gemv_blocks(const sq_cu_gemv_set_t *set)
{
    return sq_cu_blocks(s_set_warps(set, 1), SQ_CU_GEMV_WARPS);
}

unsigned sq_cu_mma_blocks(const sq_cu_gemv_set_t *set)
{
    return sq_cu_blocks(s_set_warps(set, SQ_CU_MMA_ROWS), SQ_CU_MMA_WARPS);
}

int sq_cu_mma_tiles(int n_tok)
{
    return n_tok <= 32 ? 4 : 8;
}

/* each weight's scales, at the end of its split layout */
static void s_set_scales(sq_cu_gemv_set_t *set, int64_t n_in)
{
    for (int m = 0; m < set->n_mats; m++)
        set->wd[m] = s_q8_scales(set->w[m], set->n_out[m], n_in);
}

/* the template instance for a run-time token count, and its launch's status */
#define S_GEMV_CASES(call)                                                                     \
    switch (n_tok) {                                                                           \
    case 1: return call(1);                                                                    \
    case 2: return call(2);                                                                    \
    case 3: return call(3);                                                                    \
    case 4: return call(4);                                                                    \
    case 5: return call(5);                                                                    \
    case 6: return call(6);                                                                    \
    case 7: return call(7);                                                                    \
    case 8: return call(8);                                                                    \
    case 9: return call(9);                                                                    \
    case 10: return call(10);                                                                  \
    case 11: return call(11);                                                                  \
    case 12: return call(12);                                                                  \
    case 13: return call(13);                                                                  \
    case 14: return call(14);                                                                  \
    case 15: return call(15);                                                                  \
    case 16: return call(16);                                                                  \
    default: return cudaErrorInvalidValue;                                                     \
    }

/* the GEMV of a set with the row products of Rows, for n_tok tokens */
template <typename Rows>
static cudaError_t s_gemv(cudaStream_t s, const sq_cu_gemv_set_t &set, int64_t n_in,
                          const Rows &rows, int n_tok)
{
    const unsigned blocks = sq_cu_gemv_blocks(&set);
#define S_CALL(NT)                                                                             \
    SQ_CU_LAUNCH((k_gemv<NT, Rows>), blocks, SQ_CU_GEMV_WARPS * 32, s, set, n_in, rows)
    S_GEMV_CASES(S_CALL)
#undef S_CALL
}

cudaError_t sq_cu_gemv_q8(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const int8_t *xq,
                          const float *xd, int n_tok)
{
    s_set_scales(&set, n_in);
    return s_gemv(s, set, n_in, s_rows_q8_t{xq, xd}, n_tok);
}

cudaError_t sq_cu_gemv_f16(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const float *x,
                           int n_tok)
{
    return s_gemv(s, set, n_in, s_rows_f16_t{x}, n_tok);
}

cudaError_t sq_cu_mma_q8(cudaStream_t s, sq_cu_gemv_set_t set, int64_t n_in, const int8_t *xq,
                         const float *xd, int n_tok)
{
    s_set_scales(&set, n_in);
    const int tiles = sq_cu_mma_tiles(n_tok);
    const dim3 grid(sq_cu_mma_blocks(&set), sq_cu_blocks((size_t)n_tok, 8 * (unsigned)tiles));
    if (tiles == 4)
        return SQ_CU_LAUNCH(k_mma_q8<4>, grid, SQ_CU_MMA_WARPS * 32, s, set, n_in, xq, xd, n_tok);
    return SQ_CU_LAUNCH(k_mma_q8<8>, grid, SQ_CU_MMA_WARPS * 32, s, set, n_in, xq, xd, n_tok);
}

cudaError_t sq_cu_q8_to_f16(cudaStream_t s, const void *w, int64_t n_out, int64_t n_in, void *out)
{
    const size_t n = (size_t)n_out * (size_t)n_in;
    return SQ_CU_LAUNCH(k_q8_to_f16, sq_cu_blocks(n / 8, 256), 256, s, (const int8_t *)w,
                 s_q8_scales(w, n_out, n_in), n, (uint4 *)out);
}

cudaError_t sq_cu_argmax(cudaStream_t s, const float *x, int n_rows, int n_cols, int32_t *out_d)
{
    return SQ_CU_LAUNCH(k_argmax, n_rows, 256, s, x, n_cols, out_d);
}

cudaError_t sq_cu_sample(cudaStream_t s, const float *x, int n_rows, int n_cols,
                         const int32_t *rows_d, int32_t *out_d)
{
    return SQ_CU_LAUNCH(k_sample, n_rows, 256, s, x, n_cols, rows_d, out_d);
}

cudaError_t sq_cu_to_f16(cudaStream_t s, const float *x, void *out, size_t n)
{
    return SQ_CU_LAUNCH(k_to_f16, sq_cu_blocks(n, 256), 256, s, x, (__half *)out, n);
}

cudaError_t sq_cu_swiglu(cudaStream_t s, float *gate, const float *up, size_t n)
{
    return SQ_CU_LAUNCH(k_swiglu, sq_cu_blocks(n, 256), 256, s, gate, up, n);
}

cudaError_t sq_cu_add(cudaStream_t s, float *x, const float *y, size_t n)
{
    return SQ_CU_LAUNCH(k_add, sq_cu_blocks(n, 256), 256, s, x, y, n);
}

cudaError_t sq_cu_hold(cudaStream_t s, unsigned long long ns)
{
    return SQ_CU_LAUNCH(k_hold, 1, 1, s, ns);
}

cudaError_t sq_cu_index_rows(cudaStream_t s, float *dst, const float *src, int64_t row_len,
                             const int32_t *idx_d, int n, bool add)
{
    return SQ_CU_LAUNCH(k_index_rows, n, 256, s, dst, src, row_len, idx_d, add);
}

cudaError_t sq_cu_rope(cudaStream_t s, float *x, int n_tok, int n_heads, int head_dim,
                       int n_rot, const int32_t *pos_d, float freq_base)
{
    size_t n = (size_t)n_tok * n_heads * (n_rot / 2);
    if (n == 0)
        return cudaSuccess;
    return SQ_CU_LAUNCH(k_rope, sq_cu_blocks(n, 256), 256, s, x, n_tok, n_heads, head_dim, n_rot,
                        pos_d, freq_base);
}

/* a Q8_0 cache's scales, after its n_pages * n_kv * SQ_KV_PAGE * head_dim
 * values (s_kv_val); NULL for another type */
static __half *s_kv_scales(const sq_attn_args_t *a, void *cache)
{
    if (a->kv_dtype != SQ_CU_Q8_0)
        return NULL;
    return (__half *)((int8_t *)cache +
                      (size_t)a->n_pages * a->n_kv * SQ_KV_PAGE * (size_t)a->head_dim);
}

/* the launch of KERNEL<T> for the cache type of a (sq_cu_kv_type_ok), an
 * expression: its status */
#define S_KV_LAUNCH(KERNEL, a, grid, block, s, ...)                                                \
    ((a)->kv_dtype == SQ_CU_F16    ? SQ_CU_LAUNCH(KERNEL<__half>, grid, block, s, __VA_ARGS__)     \
     : (a)->kv_dtype == SQ_CU_Q8_0 ? SQ_CU_LAUNCH(KERNEL<int8_t>, grid, block, s, __VA_ARGS__)     \
                                   : SQ_CU_LAUNCH(KERNEL<float>, grid, block, s, __VA_ARGS__))

bool sq_cu_kv_type_ok(int kv_dtype, int head_dim)
{
    return kv_dtype == SQ_CU_F32 || kv_dtype == SQ_CU_F16 ||
           (kv_dtype == SQ_CU_Q8_0 && head_dim % SQ_CU_QK == 0);
}

cudaError_t sq_cu_rope_store(cudaStream_t s, const sq_attn_args_t *a, int n_rot, float freq_base,
                             const int32_t *slot_d, const int32_t *pos_d, const int32_t *pages_d)
{
    if (a->n_tok == 0)
        return cudaSuccess;
    s_rope_store_t args = {(float *)a->q, (float *)a->k, a->v, a->k_cache, a->v_cache,
                           s_kv_scales(a, a->k_cache), s_kv_scales(a, a->v_cache), slot_d,
                           pos_d, pages_d, a->n_heads, a->n_kv, a->head_dim, n_rot, a->n_ctx, freq_base};
    return S_KV_LAUNCH(k_rope_store, a, a->n_tok, 256, s, args);
}

int sq_cu_att_splits(int n_tok, int n_heads, int n_ctx, int n_sms)
{
    const long blocks = (long)n_tok * n_heads;
    if (n_sms <= 0 || blocks <= 0 || blocks >= 2L * n_sms)
        return 1;
    long n = (2L * n_sms + blocks - 1) / blocks;
    n = n > n_ctx / 512 ? n_ctx / 512 : n;
    n = n > (long)SQ_CU_ATT_MAX_SPLIT ? (long)SQ_CU_ATT_MAX_SPLIT : n;
    return n < 1 ? 1 : (int)n;
}

size_t sq_cu_att_part_floats(int n_tok, int n_heads, int head_dim, int n_split)
{
    return n_split > 1 ? (size_t)n_tok * n_heads * n_split * ((size_t)head_dim + 2) : 0;
}

cudaError_t sq_cu_attention(cudaStream_t s, const sq_attn_args_t *a, const int32_t *slot_d,
                            const int32_t *pos_d, const int32_t *pages_d, bool store, int8_t *xq, float *xd, int n_split,
                            float *part)
{
    if (a->n_tok == 0)
        return cudaSuccess;
    __half *ks = s_kv_scales(a, a->k_cache), *vs = s_kv_scales(a, a->v_cache);
    if (store) {
        cudaError_t err = S_KV_LAUNCH(k_kv_store, a, a->n_tok, 256, s, a->k_cache, a->v_cache, ks,
                                      vs, a->k, a->v, slot_d, pos_d, pages_d, a->n_kv, a->n_ctx,
                                      a->head_dim);
        if (err != cudaSuccess)
            return err;
    }
    if (n_split < 1 || n_split > SQ_CU_ATT_MAX_SPLIT || (n_split > 1 && !part))
        return cudaErrorInvalidValue;
    s_att_t args = {a->k_cache, a->v_cache, ks, vs, a->q, a->out, slot_d, pos_d, pages_d,
                    a->n_heads, a->n_kv, a->n_ctx, a->head_dim, a->q_head0, a->kv_head0, a->group,
                    xq, xd, n_split, part};
    cudaError_t err =
        S_KV_LAUNCH(k_attention, a, dim3(a->n_tok, a->n_heads, n_split), S_ATT_WARPS * 32, s, args);
    if (err != cudaSuccess || n_split == 1)
        return err;
    return SQ_CU_LAUNCH(k_att_combine, dim3(a->n_tok, a->n_heads), S_ATT_WARPS * 32, s, args);
}
