/*  sq_cuda_device: the CUDA backend's kernels and device helpers (internal
 *  to worker/backend/cuda). Only sq_cuda_kernels.cu includes it for the
 *  device; tests/cuda/emu compiles it as plain C++ on the host, where the
 *  CPU emulator (one fibre per thread) runs the same kernels, so every
 *  kernel here must stay valid C++ with the emulator's subset of CUDA:
 *  threadIdx / blockIdx / blockDim / gridDim, __syncthreads,
 *  __shfl_xor_sync on full warps, __shared__ arrays of fixed size, the
 *  cuda_fp16 conversions and the float maths functions.
 *
 *  Accumulation is in F32 throughout, as in the CPU reference; sums run in
 *  a different order, so results agree within rounding, not bit for bit.
 */
#ifndef SQ_CUDA_DEVICE_CUH
#define SQ_CUDA_DEVICE_CUH

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "sq_cuda_kernels.h"

/* Programmatic dependent launch (sm_90 on, sq_cu_set_pdl): a kernel may
 * be launched while the one before it in the stream still runs. Every
 * kernel starts with s_pdl_begin, before it reads anything: it waits
 * until the grids it depends on have finished and their writes are
 * visible, then lets the next kernel launch (its blocks then wait in
 * their own s_pdl_begin). A kernel launched without PDL passes through. */
static __device__ void s_pdl_begin()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#elif defined(SQ_CUDA_EMU_H)
    sq_emu_pdl_begin();
#endif
}

static __device__ float s_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ float s_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* the two F16 values packed in a 32-bit word, lower address first */
static __device__ void s_h2f(unsigned u, float *out)
{
    out[0] = __half2float(__ushort_as_half((unsigned short)(u & 0xffffu)));
    out[1] = __half2float(__ushort_as_half((unsigned short)(u >> 16)));
}

/* byte k (0..3) of a word of four int8 values, sign-extended */
static __device__ float s_i8(int word, int k)
{
    return (float)(int8_t)(word >> (8 * k));
}

/* ---- embedding ---- */

/* out row b = row ids[b] of emb as F32. Q8_0 in the split layout:
 * quants (n_out, n_in) at emb, scales (n_out, n_in / 32) at q8_scales. */
static __global__ void k_embed(int dtype, const unsigned char *emb, const __half *q8_scales,
                               int64_t n_in, const int32_t *ids, float *out)
{
    s_pdl_begin();
    const size_t r = (size_t)ids[blockIdx.x];
    float *o = out + (size_t)blockIdx.x * n_in;
    for (int64_t i = threadIdx.x; i < n_in; i += blockDim.x) {
        if (dtype == SQ_CU_F32)
            o[i] = ((const float *)emb)[r * n_in + i];
        else if (dtype == SQ_CU_F16)
            o[i] = __half2float(((const __half *)emb)[r * n_in + i]);
        else
            o[i] = __half2float(q8_scales[(r * n_in + i) / SQ_CU_QK]) *
                   (float)((const int8_t *)emb)[r * n_in + i];
    }
}

/* ---- RMSNorm, with the residual add before and the Q8_0 quantisation
 * after fused in: one block of 256 per row ---- */

/* v quantised as Q8_0 by its warp (32 consecutive values, one block b),
 * with the CPU reference's arithmetic (sq_cpu_quantize_row_q8_0_ref):
 * d = amax / 127, values rounded half to even from v * (1 / d), and d
 * rounded to F16 for the products, so an integer dot here equals the
 * CPU backend's exactly */
static __device__ void s_quantize_warp(float v, int64_t b, int lane, int8_t *xq, float *xd)
{
    const float d = s_warp_max(fabsf(v)) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    xq[b * SQ_CU_QK + lane] = (int8_t)__float2int_rn(v * id);
    if (lane == 0)
        xd[b] = __half2float(__float2half(d));
}

/* Row blockIdx.x: x += y (y NULL: no add), out = x / rms(x) * w, and with
 * xq, out as Q8_0 too (dim % 32 == 0, so a warp's 32 consecutive values
 * are one block). */
static __global__ void k_add_rmsnorm(float *x, const float *y, const float *w, float eps, int dim,
                                     float *out, int8_t *xq, float *xd)
{
    s_pdl_begin();
    __shared__ float part[8];
    const size_t row = (size_t)blockIdx.x * dim;
    float *xr = x + row;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        if (y)
            xr[i] += y[row + i];
        ss += xr[i] * xr[i];
    }
    ss = s_warp_sum(ss);
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < (int)blockDim.x / 32; i++)
        total += part[i];
    const float scale = rsqrtf(total / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i] * scale * w[i];
        out[row + i] = v;
        if (xq)
            s_quantize_warp(v, (int64_t)(row + i) / SQ_CU_QK, threadIdx.x % 32, xq, xd);
    }
}

/* ---- Q8_0 activations ---- */

/* x (n_blocks blocks of 32 values) as Q8_0: quants xq, scales xd; one
 * warp per block */
static __global__ void k_quantize_q8(const float *x, int64_t n_blocks, int8_t *xq, float *xd)
{
    s_pdl_begin();
    const int64_t b = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (b >= n_blocks)
        return;   /* whole warps: b is the same for the 32 lanes */
    s_quantize_warp(x[b * SQ_CU_QK + lane], b, lane, xq, xd);
}

/* ---- GEMV: n_tok <= SQ_CUDA_GEMV_MAX, one warp per weight row ----
 * A lane takes whole blocks of 32 values of the row (lane, lane + 32, ...),
 * so the warp streams the row with 16-byte coalesced loads and each
 * weight is read once for all NT tokens. One launch serves a set of up
 * to three matrices with the same input (sq_cu_gemv_set_t): warps take
 * the rows of the first, then of the second, ...; in SwiGLU mode a warp
 * takes row r of both and writes silu(gate) * up. */

/* a loop of constant count unrolled by nvcc (its arrays then stay in
 * registers); the emulator's host compiler needs no hint */
#ifdef __CUDACC__
#define S_UNROLL _Pragma("unroll")
#else
#define S_UNROLL
#endif

/* Q8_0 row r (split layout) times NT quantised tokens, added into this
 * lane's acc: 8 dp4a per block and token, the block's int32 sum scaled by
 * both scales (the CPU backend's arithmetic, in another summation order).
 * For up to 4 tokens a lane loads R of its blocks (lane, lane + 32, ...)
 * before it uses any, so a row of up to 32 R blocks costs one trip to
 * memory, not one a block: tinyllama's rows of 2048 values are 2 blocks
 * a lane, which a loop with a run-time count fetches one after the
 * other. With more tokens the activations' loads would take the
 * registers (190 at 16 tokens, one block an SM): there nvcc's own
 * unrolling stays. */
template <int NT>
static __device__ void s_dot_q8(const int8_t *qs, const __half *wd, int64_t r, int64_t n_in,
                                const int8_t *xq, const float *xd, int lane, float *acc)
{
    const int64_t nb = n_in / SQ_CU_QK;
    const int4 *wrow = (const int4 *)(qs + (size_t)r * n_in);
    const __half *drow = wd + (size_t)r * nb;
    constexpr int R = NT <= 2 ? 4 : NT <= 4 ? 2 : 1;
    for (int64_t b0 = lane; b0 < nb; b0 += 32 * R) {
        int4 w0[R], w1[R];
        float dw[R];
        S_UNROLL
        for (int u = 0; u < R; u++) {
            const int64_t b = b0 + 32 * u;
            if (b < nb) {
                w0[u] = wrow[2 * b];
                w1[u] = wrow[2 * b + 1];
                dw[u] = __half2float(drow[b]);
            }
        }
        S_UNROLL
        for (int u = 0; u < R; u++) {
            const int64_t b = b0 + 32 * u;
            if (b >= nb)
                break;
            for (int t = 0; t < NT; t++) {
                const int4 *xr = (const int4 *)(xq + (size_t)t * n_in) + 2 * b;
                const int4 x0 = xr[0], x1 = xr[1];
                int s = __dp4a(w0[u].x, x0.x, 0);
                s = __dp4a(w0[u].y, x0.y, s);
                s = __dp4a(w0[u].z, x0.z, s);
                s = __dp4a(w0[u].w, x0.w, s);
                s = __dp4a(w1[u].x, x1.x, s);
                s = __dp4a(w1[u].y, x1.y, s);
                s = __dp4a(w1[u].z, x1.z, s);
                s = __dp4a(w1[u].w, x1.w, s);
                acc[t] += dw[u] * xd[(size_t)t * nb + b] * (float)s;
            }
        }
    }
}

/* s[t] += the 8 F16 weights of u times values at..at + 7 of token t's
 * row of x (n_in values a row), in the order of a float4 at a time */
template <int NT>
static __device__ void s_dot_f16_8(uint4 u, const float *x, int64_t n_in, int64_t at, float *s)
{
    float wv[8];
    s_h2f(u.x, wv);
    s_h2f(u.y, wv + 2);
    s_h2f(u.z, wv + 4);
    s_h2f(u.w, wv + 6);
    for (int t = 0; t < NT; t++) {
        const float4 *xr = (const float4 *)(x + (size_t)t * n_in + at);
        const float4 v0 = xr[0], v1 = xr[1];
        s[t] += wv[0] * v0.x + wv[1] * v0.y + wv[2] * v0.z + wv[3] * v0.w;
        s[t] += wv[4] * v1.x + wv[5] * v1.y + wv[6] * v1.z + wv[7] * v1.w;
    }
}

/* F16 row r (n_in % 32 == 0) times NT F32 tokens (16-byte aligned). A
 * lane's block of 32 weights is converted 8 at a time, each token's sum
 * of the block kept apart and added to acc at the block's end. Up to 4
 * tokens the block's four 16-byte words are loaded together (one trip to
 * memory); with more, each just before its 8 weights are used: loading
 * the block first, or converting all 32 weights first (as before
 * 2026-11-30), led ptxas to hoist every token's activations as well,
 * 152 registers a thread at 16 tokens (one block an SM), where this
 * takes at most 122 (ptxas -v; two blocks an SM). Launch bounds asking
 * for two blocks made ptxas take all 128 registers they allowed, and
 * spill. */
template <int NT>
static __device__ void s_dot_f16(const __half *w, int64_t r, int64_t n_in, const float *x,
                                 int lane, float *acc)
{
    const uint4 *wrow = (const uint4 *)(w + (size_t)r * n_in);
    for (int64_t b = lane; b < n_in / 32; b += 32) {
        float s[NT];
        for (int t = 0; t < NT; t++)
            s[t] = 0.0f;
        if (NT <= 4) {
            const uint4 u0 = wrow[4 * b], u1 = wrow[4 * b + 1], u2 = wrow[4 * b + 2],
                        u3 = wrow[4 * b + 3];
            s_dot_f16_8<NT>(u0, x, n_in, 32 * b, s);
            s_dot_f16_8<NT>(u1, x, n_in, 32 * b + 8, s);
            s_dot_f16_8<NT>(u2, x, n_in, 32 * b + 16, s);
            s_dot_f16_8<NT>(u3, x, n_in, 32 * b + 24, s);
        } else {
            for (int k = 0; k < 4; k++)
                s_dot_f16_8<NT>(wrow[4 * b + k], x, n_in, 32 * b + 8 * k, s);
        }
        for (int t = 0; t < NT; t++)
            acc[t] += s[t];
    }
}

/* element m of a set's array, without a run-time index (which would put
 * the kernel's parameters in local memory) */
template <typename T>
static __device__ T s_pick(const T (&a)[SQ_CUDA_GEMV_MATS], int m)
{
    static_assert(SQ_CUDA_GEMV_MATS == 3, "s_pick and s_set_row take three matrices");
    return m == 0 ? a[0] : m == 1 ? a[1] : a[2];
}

/* the matrix *m and first row *r of warp blockIdx.x * warps + warp, each
 * warp taking R rows (the last group of a matrix may be short); false
 * past the last row (whole warps) */
template <int R>
static __device__ bool s_set_row(const sq_cu_gemv_set_t &s, int *m, int64_t *r)
{
    int64_t g = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int64_t g0 = (s.n_out[0] + R - 1) / R, g1 = (s.n_out[1] + R - 1) / R;
    *m = 0;
    if (!s.swiglu && s.n_mats > 1 && g >= g0) {
        g -= g0;
        *m = 1;
        if (s.n_mats > 2 && g >= g1) {
            g -= g1;
            *m = 2;
        }
    }
    *r = g * R;
    return *r < s_pick(s.n_out, *m);
}

/* the warp's sums of acc (and up) into row r of matrix m's output */
template <int NT>
static __device__ void s_set_store(const sq_cu_gemv_set_t &s, int m, int64_t r, int lane,
                                   const float *acc, const float *up)
{
    for (int t = 0; t < NT; t++) {
        const float v = s_warp_sum(acc[t]);
        const size_t at = (size_t)t * s_pick(s.n_out, m) + r;
        if (!s.swiglu) {
            if (lane == 0)
                s_pick(s.y, m)[at] = v;
            continue;
        }
        const float u = s_warp_sum(up[t]);
        if (lane == 0) {
            s.y[0][at] = v / (1.0f + expf(-v)) * u;   /* as k_swiglu */
            s.y[1][at] = u;
        }
    }
}

/* the two row products as policies of one GEMV kernel: Q8_0 weights with
 * quantised activations, F16 weights with F32 activations */
typedef struct {
    const int8_t *xq;
    const float *xd;
    template <int NT>
    __device__ void dot(const void *w, const void *wd, int64_t r, int64_t n_in, int lane,
                        float *acc) const
    {
        s_dot_q8<NT>((const int8_t *)w, (const __half *)wd, r, n_in, xq, xd, lane, acc);
    }
} s_rows_q8_t;

typedef struct {
    const float *x;
    template <int NT>
    __device__ void dot(const void *w, const void *wd, int64_t r, int64_t n_in, int lane,
                        float *acc) const
    {
        s_dot_f16<NT>((const __half *)w, r, n_in, x, lane, acc);
    }
} s_rows_f16_t;

template <int NT, typename Rows>
static __global__ void k_gemv(sq_cu_gemv_set_t s, int64_t n_in, Rows rows)
{
    s_pdl_begin();
    int m;
    int64_t r;
    if (!s_set_row<1>(s, &m, &r))
        return;
    const int lane = threadIdx.x % 32;
    float acc[NT], up[NT];
    for (int t = 0; t < NT; t++)
        acc[t] = up[t] = 0.0f;
    rows.template dot<NT>(s_pick(s.w, m), s_pick(s.wd, m), r, n_in, lane, acc);
    if (s.swiglu)
        rows.template dot<NT>(s.w[1], s.wd[1], r, n_in, lane, up);
    s_set_store<NT>(s, m, r, lane, acc, up);
}

/* ---- int8 tensor-core products: Q8_0, n_tok > SQ_CUDA_GEMV_MAX ----
 * The GEMV's arithmetic on tensor cores: x quantised (sq_cu_quantize_q8),
 * each 32-value block's int32 sum of products (one mma.sync m16n8k32)
 * scaled by both scales and added in F32, blocks in order. A warp takes
 * SQ_CU_MMA_ROWS rows of a weight (the A operand) and NJ tiles of 8
 * tokens (B), one weight block in registers for all of them; a set and
 * SwiGLU as in k_gemv (SwiGLU: the warp takes the rows of both weights,
 * sharing the token fragments). */

/* c += A B for a warp: A 16 x 32 int8 (row-major), B 32 x 8 int8
 * (column-major), C 16 x 8 int32, in the fragments of PTX's
 * mma.m16n8k32 .s8: lane 4 g + t holds a[l] = bytes 16 (l / 2) + 4 t ..
 * + 3 of A's row 8 (l % 2) + g; b[l] = bytes 16 l + 4 t .. + 3 of B's
 * column g; c[l] = C's row 8 (l / 2) + g, column 2 t + l % 2. */
static __device__ void s_mma_s8(int c[4], const int a[4], const int b[2])
{
#if defined(__CUDA_ARCH__)
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(SQ_CUDA_EMU_H)
    sq_emu_mma_s8(c, a, b);
#else
    (void)c, (void)a, (void)b;   /* nvcc's host pass: never called */
#endif
}

/* four int8 values at p (4-byte aligned) as one word */
static __device__ int s_ld4(const int8_t *p)
{
    return *(const int *)p;
}

/* lane (g, t)'s A fragment of block b: rows ra (= row0 + g) and rb (+ 8) */
static __device__ void s_mma_a(const int8_t *qs, int64_t n_in, int64_t ra, int64_t rb,
                               int64_t b, int t, int a[4])
{
    const int8_t *pa = qs + (size_t)ra * n_in + SQ_CU_QK * b + 4 * t;
    const int8_t *pb = qs + (size_t)rb * n_in + SQ_CU_QK * b + 4 * t;
    a[0] = s_ld4(pa);
    a[1] = s_ld4(pb);
    a[2] = s_ld4(pa + 16);
    a[3] = s_ld4(pb + 16);
}

/* acc[j] += the scaled block sums of A (rows ra, rb; scales wd) times the
 * token tile j's fragment bf, whose columns are tokens tc, tc + 1 */
static __device__ void s_mma_block(const int a[4], const int bf[2], float dwa, float dwb,
                                   float dx0, float dx1, float acc[4])
{
    int c[4] = {0, 0, 0, 0};
    s_mma_s8(c, a, bf);
    acc[0] += dwa * dx0 * (float)c[0];
    acc[1] += dwa * dx1 * (float)c[1];
    acc[2] += dwb * dx0 * (float)c[2];
    acc[3] += dwb * dx1 * (float)c[3];
}

/* four blocks an SM: ptxas then keeps it to 128 registers (all of NJ = 8
 * with SwiGLU in registers but 8 bytes on sm_90), 16 warps to hide the
 * loads' latency instead of 8 at its unbounded ~250 */
template <int NJ>
static __global__ void __launch_bounds__(SQ_CU_MMA_WARPS * 32, 4)
    k_mma_q8(sq_cu_gemv_set_t s, int64_t n_in, const int8_t *xq, const float *xd, int n_tok)
{
    s_pdl_begin();
    int m;
    int64_t r0;
    if (!s_set_row<SQ_CU_MMA_ROWS>(s, &m, &r0))
        return;
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int64_t n_out = s_pick(s.n_out, m), nb = n_in / SQ_CU_QK;
    /* rows and tokens past the end are read clamped, never stored */
    const int64_t ra = min(r0 + g, n_out - 1), rb = min(r0 + g + 8, n_out - 1);
    const int tok0 = (int)blockIdx.y * NJ * 8;
    const int8_t *w = (const int8_t *)s_pick(s.w, m), *u = (const int8_t *)s.w[1];
    const __half *wd = (const __half *)s_pick(s.wd, m), *ud = (const __half *)s.wd[1];
    float acc[NJ][4], up[NJ][4];
    for (int j = 0; j < NJ; j++)
        for (int l = 0; l < 4; l++)
            acc[j][l] = up[j][l] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int a[4], au[4];
        s_mma_a(w, n_in, ra, rb, b, t, a);
        const float dwa = __half2float(wd[ra * nb + b]), dwb = __half2float(wd[rb * nb + b]);
        float dua = 0.0f, dub = 0.0f;
        if (s.swiglu) {
            s_mma_a(u, n_in, ra, rb, b, t, au);
            dua = __half2float(ud[ra * nb + b]);
            dub = __half2float(ud[rb * nb + b]);
        }
        for (int j = 0; j < NJ; j++) {
            const int tb = min(tok0 + 8 * j + g, n_tok - 1);
            const int8_t *px = xq + (size_t)tb * n_in + SQ_CU_QK * b + 4 * t;
            const int bf[2] = {s_ld4(px), s_ld4(px + 16)};
            const int tc = min(tok0 + 8 * j + 2 * t, n_tok - 1), tc1 = min(tc + 1, n_tok - 1);
            const float dx0 = xd[(size_t)tc * nb + b], dx1 = xd[(size_t)tc1 * nb + b];
            s_mma_block(a, bf, dwa, dwb, dx0, dx1, acc[j]);
            if (s.swiglu)
                s_mma_block(au, bf, dua, dub, dx0, dx1, up[j]);
        }
    }
    for (int j = 0; j < NJ; j++)
        for (int l = 0; l < 4; l++) {
            const int64_t r = r0 + 8 * (l / 2) + g;
            const int tok = tok0 + 8 * j + 2 * t + l % 2;
            if (r >= n_out || tok >= n_tok)
                continue;
            const size_t at = (size_t)tok * n_out + r;
            const float v = acc[j][l];
            if (!s.swiglu) {
                s_pick(s.y, m)[at] = v;
                continue;
            }
            s.y[0][at] = v / (1.0f + expf(-v)) * up[j][l];   /* as k_swiglu */
            s.y[1][at] = up[j][l];
        }
}

/* ---- greedy sampling ---- */

/* (v, i) of the better of two candidates, sq_sampler_argmax's rules: NaN
 * never wins (i < 0: none yet), the larger value wins, then the lower
 * index */
static __device__ void s_better(float *v, int *i, float v2, int i2)
{
    if (i2 >= 0 && (*i < 0 || v2 > *v || (v2 == *v && i2 < *i))) {
        *v = v2;
        *i = i2;
    }
}

/* the argmax of row (n_cols) for the whole block (blocks of up to 256),
 * every thread getting it; -1 (SQ_SAMPLER_NOT_FINITE) when the row is all
 * NaN or its largest value is infinite, as on the CPU */
static __device__ int s_row_argmax(const float *row, int n_cols)
{
    __shared__ float sv[8];
    __shared__ int si[8];
    float v = 0.0f;
    int i = -1;
    for (int c = threadIdx.x; c < n_cols; c += blockDim.x)
        if (!isnan(row[c]))
            s_better(&v, &i, row[c], c);
    for (int o = 16; o > 0; o >>= 1) {
        const float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        s_better(&v, &i, v2, i2);
    }
    if (threadIdx.x % 32 == 0) {
        sv[threadIdx.x / 32] = v;
        si[threadIdx.x / 32] = i;
    }
    __syncthreads();
    for (int w = 0; w < (int)blockDim.x / 32; w++)
        s_better(&v, &i, sv[w], si[w]);
    __syncthreads();   /* sv, si free for the next call */
    return i < 0 || !isfinite(v) ? -1 : i;
}

/* out[row] = the argmax of row blockIdx.x of x (n_rows, n_cols); one block
 * of 256 per row */
static __global__ void k_argmax(const float *x, int n_cols, int32_t *out)
{
    s_pdl_begin();
    const int i = s_row_argmax(x + (size_t)blockIdx.x * n_cols, n_cols);
    if (threadIdx.x == 0)
        out[blockIdx.x] = i;
}

/* ---- sampling (sq_sampler's rules, sq_backend.h's sample op) ----
 * The rules' order is (logit descending, id ascending); a token's weight
 * is expf((logit - max) / T) as an integer of 40 fraction bits, so that
 * every sum is exact and the choice the same whatever order threads add
 * in. Three selections, each "the first token in the rules' order whose
 * inclusive running count or weight exceeds a target", cut the top_k
 * prefix, then the top_p prefix, then draw r = u * (its weight). A
 * selection is a radix select on s_sort_key, a byte a pass from the top,
 * with shared-memory histograms of counts and weights, then the j-th of
 * the tokens that share the key found (equal logits, equal weights) in
 * id order. */

/* ascending key = descending logit, -0 as +0, NaN (as -inf) last */
static __device__ uint32_t s_sort_key(float f)
{
    if (isnan(f))
        f = -INFINITY;
    f += 0.0f;
    uint32_t u = (uint32_t)__float_as_int(f);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

static __device__ unsigned long long s_weight(float l, float max, float t)
{
    if (isnan(l))
        return 0;
    return (unsigned long long)(expf((l - max) / t) * 1099511627776.0f);   /* 2^40 */
}

typedef struct {
    int id;
    unsigned long long count, weight;   /* inclusive running count and weight at id */
} s_pick_t;

/* Histograms kept in S_HIST_COPIES copies, lane i adding to copy
 * i % S_HIST_COPIES: logits crowd into a few buckets of the top byte (a
 * third of a row's tokens in one is common), and a warp's atomics on one
 * shared address run one after another, so the copies cut that queue by
 * their number. */
enum { S_HIST_COPIES = 4 };

/* the first token of row (in the rules' order) whose inclusive running
 * weight (by_weight) or count exceeds target, which must be below the
 * row's total; every thread gets it */
static __device__ s_pick_t s_select(const float *row, int n, float max, float t, bool by_weight,
                                    unsigned long long target)
{
    __shared__ unsigned long long hw[S_HIST_COPIES][256];
    __shared__ unsigned int hc[S_HIST_COPIES][256];
    __shared__ unsigned long long below_w;
    __shared__ unsigned long long below_c;
    __shared__ uint32_t prefix;
    __shared__ int found;
    __shared__ unsigned int chunk_n[256];
    uint32_t mask = 0;
    if (threadIdx.x == 0) {
        below_w = below_c = 0;
        prefix = 0;
    }
    const int copy = (int)(threadIdx.x % S_HIST_COPIES);
    for (int b = 3; b >= 0; b--) {
        for (int v = threadIdx.x; v < S_HIST_COPIES * 256; v += blockDim.x) {
            hw[v / 256][v % 256] = 0;
            hc[v / 256][v % 256] = 0;
        }
        __syncthreads();
        const uint32_t pre = prefix;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const uint32_t k = s_sort_key(row[i]);
            if ((k & mask) != pre)
                continue;
            const int v = (int)((k >> (8 * b)) & 255u);
            atomicAdd(&hc[copy][v], 1u);
            atomicAdd(&hw[copy][v], s_weight(row[i], max, t));
        }
        __syncthreads();
        for (int v = threadIdx.x; v < 256; v += blockDim.x)
            for (int c = 1; c < S_HIST_COPIES; c++) {
                hw[0][v] += hw[c][v];
                hc[0][v] += hc[c][v];
            }
        __syncthreads();
        /* the bucket: the first v (at most 255) where the running count or
         * weight passes target. Warp 0, a lane for 8 buckets: the lanes'
         * running sums by a scan, then the one lane whose 8 hold v walks
         * them (on the buckets' order, so the sums are exact) */
        if (threadIdx.x < 32) {
            const int lane = (int)threadIdx.x;
            /* read before the lane that finds v overwrites them */
            unsigned long long cw = below_w, cc = below_c;
            __syncwarp();
            unsigned long long sw = 0, sc = 0;
            for (int v = 8 * lane; v < 8 * lane + 8; v++) {
                sw += hw[0][v];
                sc += hc[0][v];
            }
            unsigned long long iw = sw, ic = sc;   /* inclusive over the lanes */
            for (int d = 1; d < 32; d <<= 1) {
                const unsigned long long w_up = __shfl_up_sync(0xffffffffu, iw, d);
                const unsigned long long c_up = __shfl_up_sync(0xffffffffu, ic, d);
                if (lane >= d) {
                    iw += w_up;
                    ic += c_up;
                }
            }
            cw += iw - sw;
            cc += ic - sc;
            const unsigned long long start = by_weight ? cw : cc;
            const unsigned long long end = by_weight ? cw + sw : cc + sc;
            if (start <= target && (end > target || lane == 31)) {
                int v = 8 * lane;
                for (; v < 255; v++) {
                    if ((by_weight ? cw + hw[0][v] : cc + hc[0][v]) > target)
                        break;
                    cw += hw[0][v];
                    cc += hc[0][v];
                }
                below_w = cw;
                below_c = cc;
                prefix = pre | (uint32_t)v << (8 * b);
            }
        }
        mask |= 0xffu << (8 * b);
        __syncthreads();
    }
    /* the tokens with key prefix, in id order: the j-th is the pick */
    const uint32_t key = prefix;
    const int chunk = (n + (int)blockDim.x - 1) / (int)blockDim.x;
    const int lo = (int)threadIdx.x * chunk, hi = min(lo + chunk, n);
    unsigned int mine = 0;
    int first = -1;
    for (int i = lo; i < hi; i++)
        if (s_sort_key(row[i]) == key) {
            first = first < 0 ? i : first;
            mine++;
        }
    chunk_n[threadIdx.x] = mine;
    if (threadIdx.x == 0)
        found = -1;
    __syncthreads();
    /* any token of the key gives the common weight (whichever thread's
     * first lands, it is one of them) */
    if (mine && found < 0)
        found = first;
    __syncthreads();
    const unsigned long long w = s_weight(row[found], max, t);
    const unsigned long long j = by_weight ? (target - below_w) / w : target - below_c;
    unsigned long long before = 0;
    for (int k = 0; k < (int)threadIdx.x; k++)
        before += chunk_n[k];
    __syncthreads();
    if (j >= before && j < before + mine) {
        unsigned long long at = before;
        for (int i = lo; i < hi; i++)
            if (s_sort_key(row[i]) == key && at++ == j)
                found = i;
    }
    __syncthreads();
    const s_pick_t p = {found, below_c + j + 1, below_w + (j + 1) * w};
    __syncthreads();   /* the shared state is free for the next selection */
    return p;
}

/* out[row] = the token for row blockIdx.x of x (n_rows, n_cols) under
 * the row's words of rows (SQ_CU_SAMPLE_WORDS each: temperature bits,
 * top_k, top_p bits, u * 2^53 low and high); temperature <= 0: argmax */
static __global__ void k_sample(const float *x, int n_cols, const int32_t *rows, int32_t *out)
{
    s_pdl_begin();
    __shared__ unsigned long long sum;
    const float *row = x + (size_t)blockIdx.x * n_cols;
    const int32_t *w = rows + (size_t)blockIdx.x * SQ_CU_SAMPLE_WORDS;
    const float t = __int_as_float(w[0]), top_p = __int_as_float(w[2]);
    const int top_k = w[1];
    const double u = (double)((unsigned long long)(uint32_t)w[4] << 32 | (uint32_t)w[3]) *
                     (1.0 / 9007199254740992.0);
    const int best = s_row_argmax(row, n_cols);   /* -1: no finite maximum */
    const float max = best >= 0 ? row[best] : 0.0f;
    int pick = best;
    if (t > 0.0f && best >= 0) {
        unsigned long long total = 0;   /* the prefix's weight: first all, then top_k's */
        if (threadIdx.x == 0)
            sum = 0;
        __syncthreads();
        unsigned long long mine = 0;
        for (int i = threadIdx.x; i < n_cols; i += blockDim.x)
            mine += s_weight(row[i], max, t);
        atomicAdd(&sum, mine);
        __syncthreads();
        total = sum;
        if (top_k > 0 && top_k < n_cols)
            total = s_select(row, n_cols, max, t, false, (unsigned long long)top_k - 1).weight;
        if (top_p < 1.0f) {
            unsigned long long need = (unsigned long long)ceil((double)top_p * (double)total);
            need = need < 1 ? 1 : need > total ? total : need;
            total = s_select(row, n_cols, max, t, true, need - 1).weight;
        }
        unsigned long long r = (unsigned long long)(u * (double)total);
        r = r >= total ? total - 1 : r;
        pick = s_select(row, n_cols, max, t, true, r).id;
    }
    if (threadIdx.x == 0)
        out[blockIdx.x] = pick;
}

/* ---- conversions ---- */

/* out = the first n values (n % 8 == 0) of a Q8_0 weight in the split
 * layout, as F16, 8 per thread: what cuBLAS multiplies for big batches */
static __global__ void k_q8_to_f16(const int8_t *qs, const __half *wd, size_t n, uint4 *out)
{
    s_pdl_begin();
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= n)
        return;
    const float d = __half2float(wd[i / SQ_CU_QK]);
    const int2 q = *(const int2 *)(qs + i);
    unsigned h[4];
    for (int k = 0; k < 4; k++) {
        const int word = k < 2 ? q.x : q.y;
        const unsigned lo = __half_as_ushort(__float2half(d * s_i8(word, 2 * (k % 2))));
        const unsigned hi = __half_as_ushort(__float2half(d * s_i8(word, 2 * (k % 2) + 1)));
        h[k] = lo | hi << 16;
    }
    out[i / 8] = make_uint4(h[0], h[1], h[2], h[3]);
}

static __global__ void k_to_f16(const float *x, __half *out, size_t n)
{
    s_pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = __float2half(x[i]);
}

/* ---- elementwise ---- */

static __global__ void k_swiglu(float *gate, const float *up, size_t n)
{
    s_pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static __global__ void k_add(float *x, const float *y, size_t n)
{
    s_pdl_begin();
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

/* Profiling only (SHARDQ_CUDA_PROFILE): one thread keeps the stream busy
 * for ns nanoseconds of the GPU's clock, so the host queues a list's steps
 * and their timing events before the GPU reaches them, and a step's time
 * is the GPU's alone, not the wait for its launch. The emulator, whose
 * times mean nothing, does not wait. */
static __global__ void k_hold(unsigned long long ns)
{
    s_pdl_begin();
#if defined(__CUDA_ARCH__)
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
#else
    (void)ns;
#endif
}

/* rows by index, one block a row k: gather dst row k = src row idx[k],
 * or scatter-add dst row idx[k] += src row k */
static __global__ void k_index_rows(float *dst, const float *src, int64_t row_len,
                                    const int32_t *idx, bool add)
{
    s_pdl_begin();
    const size_t k = blockIdx.x, r = (size_t)idx[k];
    float *d = dst + (add ? r : k) * (size_t)row_len;
    const float *from = src + (add ? k : r) * (size_t)row_len;
    for (int64_t i = threadIdx.x; i < row_len; i += blockDim.x)
        d[i] = add ? d[i] + from[i] : from[i];
}

/* ---- RoPE and the KV-cache store ---- */

/* rotate pair p (values 2p, 2p + 1 of a head) by position pos */
static __device__ void s_rope_pair(float *head, int p, int n_rot, int pos, float freq_base)
{
    const float theta = (float)pos * powf(freq_base, -2.0f * (float)p / (float)n_rot);
    float c, s;
    sincosf(theta, &s, &c);
    const float a = head[2 * p], b = head[2 * p + 1];
    head[2 * p] = a * c - b * s;
    head[2 * p + 1] = a * s + b * c;
}

/* one thread per (token, head, pair) */
static __global__ void k_rope(float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                              const int32_t *pos, float freq_base)
{
    s_pdl_begin();
    const int half_rot = n_rot / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * n_heads * half_rot)
        return;
    const size_t th = i / half_rot;           /* token * n_heads + head */
    s_rope_pair(x + th * head_dim, (int)(i % half_rot), n_rot, pos[th / n_heads], freq_base);
}

/* A KV cache of T (float, __half, or int8_t for Q8_0: sq_attn_args_t's
 * kv_dtype) holds its values in the page layout below; a Q8_0 cache then
 * has one F16 scale per 32 values after them, sc, that of value i at
 * sc[i / 32] (the CUDA backend's own layout: whole 32-value rows of int8
 * for 16-byte loads). Value i as F32 (a Q8_0 value times its scale:
 * exact), and value x into value i: F16 rounded to nearest even, Q8_0 by
 * the CPU's quantizer (s_quantize_warp, its scale rounded to F16), each
 * warp storing 32 consecutive values of one block together. */
static __device__ float s_kv_val(const float *c, const __half *, size_t i)
{
    return c[i];
}

static __device__ float s_kv_val(const __half *c, const __half *, size_t i)
{
    return __half2float(c[i]);
}

static __device__ float s_kv_val(const int8_t *c, const __half *sc, size_t i)
{
    return (float)c[i] * __half2float(sc[i / SQ_CU_QK]);
}

static __device__ void s_kv_put(float *c, __half *, size_t i, float x)
{
    c[i] = x;
}

static __device__ void s_kv_put(__half *c, __half *, size_t i, float x)
{
    c[i] = __float2half_rn(x);
}

static __device__ void s_kv_put(int8_t *c, __half *sc, size_t i, float x)
{
    const float d = s_warp_max(fabsf(x)) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    c[i] = (int8_t)__float2int_rn(x * id);
    if (i % SQ_CU_QK == 0)
        sc[i / SQ_CU_QK] = __float2half_rn(d);
}

/* the cache offset (in values) of position p of slot's KV head kvh: its
 * page's rows (n_kv, SQ_KV_PAGE, hd), then its row (sq_attn_args_t) */
static __device__ size_t s_kv_at(const int32_t *pages, int n_ctx, int slot, int n_kv, int kvh,
                                 int p, int hd)
{
    const int max_pages = (n_ctx - 1) / SQ_KV_PAGE + 1;   /* sq_kv_pages_for, a host function */
    const int32_t page = pages[(size_t)slot * (size_t)max_pages + p / SQ_KV_PAGE];
    return (((size_t)page * n_kv + kvh) * SQ_KV_PAGE + p % SQ_KV_PAGE) * (size_t)hd;
}

/* token t's k and v rows into (slot, kv head, pos) of the caches of T
 * (scales ks, vs for Q8_0, else unused), by the threads of its block (a
 * multiple of 32: with Q8_0, hd % 32 == 0, a warp takes whole blocks) */
template <typename T>
static __device__ void s_kv_store(int t, T *kc, T *vc, __half *ks, __half *vs, const float *k,
                                  const float *v, const int32_t *slot, const int32_t *pos,
                                  const int32_t *pages, int n_kv, int n_ctx, int hd)
{
    for (int i = threadIdx.x; i < n_kv * hd; i += blockDim.x) {
        const int h = i / hd, d = i % hd;
        const size_t at = s_kv_at(pages, n_ctx, slot[t], n_kv, h, pos[t], hd) + d;
        s_kv_put(kc, ks, at, k[(size_t)t * n_kv * hd + i]);
        s_kv_put(vc, vs, at, v[(size_t)t * n_kv * hd + i]);
    }
}

template <typename T>
static __global__ void k_kv_store(void *kc, void *vc, __half *ks, __half *vs, const float *k,
                                  const float *v, const int32_t *slot, const int32_t *pos,
                                  const int32_t *pages, int n_kv, int n_ctx, int hd)
{
    s_pdl_begin();
    s_kv_store(blockIdx.x, (T *)kc, (T *)vc, ks, vs, k, v, slot, pos, pages, n_kv, n_ctx, hd);
}

typedef struct {
    float *q, *k;
    const float *v;
    void *kc, *vc;              /* of T, the kernel's cache type */
    __half *ks, *vs;            /* Q8_0: the scales (s_kv_val), else NULL */
    const int32_t *slot, *pos, *pages;
    int n_heads, n_kv, hd, n_rot, n_ctx;
    float freq_base;
} s_rope_store_t;

/* Token blockIdx.x: RoPE of its q heads and k heads in place, then its k
 * and v rows into the caches of T (k_rope twice and k_kv_store in one
 * launch) */
template <typename T>
static __global__ void k_rope_store(s_rope_store_t a)
{
    s_pdl_begin();
    const int t = blockIdx.x, half = a.n_rot / 2, p = a.pos[t];
    for (int i = threadIdx.x; i < a.n_heads * half; i += blockDim.x)
        s_rope_pair(a.q + ((size_t)t * a.n_heads + i / half) * a.hd, i % half, a.n_rot, p,
                    a.freq_base);
    for (int i = threadIdx.x; i < a.n_kv * half; i += blockDim.x)
        s_rope_pair(a.k + ((size_t)t * a.n_kv + i / half) * a.hd, i % half, a.n_rot, p,
                    a.freq_base);
    __syncthreads();   /* other threads store the rotated k values */
    s_kv_store(t, (T *)a.kc, (T *)a.vc, a.ks, a.vs, a.k, a.v, a.slot, a.pos, a.pages, a.n_kv,
               a.n_ctx, a.hd);
}

/* ---- attention ---- */

enum { S_ATT_WARPS = 8, S_ATT_PER_LANE = SQ_CU_MAX_HEAD_DIM / 32 };
static_assert(SQ_KV_PAGE % 32 == 0, "a strip of 32 keys is inside one page");

typedef struct {
    const void *kc, *vc;        /* of T, the kernel's cache type */
    const __half *ks, *vs;      /* Q8_0: the scales (s_kv_val), else NULL */
    const float *q;
    float *out;
    const int32_t *slot, *pos, *pages;
    int n_heads, n_kv, n_ctx, hd, q_head0, kv_head0, group;
    int8_t *xq;                 /* non-NULL: out quantised as Q8_0 too (hd % 32 == 0) */
    float *xd;
    int n_split;                /* blocks sharing a (head, token)'s keys (gridDim.z) */
    float *part;                /* n_split > 1: each block's (m, l, acc[hd]) */
} s_att_t;

/* floats of one block's partial result: running max, sum, then hd sums */
static __device__ size_t s_att_part_size(int hd)
{
    return (size_t)hd + 2;
}

/* o (hd) = the merge of n partial softmax results (each m, l, acc: a max
 * of -inf had no key and counts for nothing), quantised with a.xq; the
 * block's threads take dims in turn */
static __device__ void s_att_write(const s_att_t &a, int h, int t, const float *m, const float *l,
                                   const float *const *acc, int n)
{
    float mm = -INFINITY;
    for (int w = 0; w < n; w++)
        mm = fmaxf(mm, m[w]);
    float ll = 0.0f;
    for (int w = 0; w < n; w++)
        ll += m[w] == -INFINITY ? 0.0f : l[w] * expf(m[w] - mm);
    const int hd = a.hd, lane = threadIdx.x % 32;
    float *o = a.out + ((size_t)t * a.n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < n; w++)
            v += m[w] == -INFINITY ? 0.0f : acc[w][d] * expf(m[w] - mm);
        o[d] = v / ll;
        /* hd <= blockDim.x: one pass, a warp per 32 values of the head */
        if (a.xq)
            s_quantize_warp(v / ll, (int64_t)(((size_t)t * a.n_heads + h) * hd + d) / SQ_CU_QK,
                            lane, a.xq, a.xd);
    }
}

/* q . k of the key row at value offset at of cache c (q pre-scaled, in
 * shared memory; sc: a Q8_0 cache's scales), 16 bytes a load when the
 * rows start 16-byte aligned */
static __device__ float s_qk(const float *qs, const float *c, const __half *, size_t at, int hd)
{
    const float *kr = c + at;
    float s = 0.0f;
    if (hd % 4 == 0) {
        const float4 *k4 = (const float4 *)kr;
        for (int d = 0; d < hd / 4; d++) {
            const float4 k = k4[d];
            s += qs[4 * d] * k.x + qs[4 * d + 1] * k.y + qs[4 * d + 2] * k.z + qs[4 * d + 3] * k.w;
        }
    } else {
        for (int d = 0; d < hd; d++)
            s += qs[d] * kr[d];
    }
    return s;
}

static __device__ float s_qk(const float *qs, const __half *c, const __half *, size_t at, int hd)
{
    const __half *kr = c + at;
    float s = 0.0f;
    if (hd % 8 == 0) {
        const uint4 *k8 = (const uint4 *)kr;
        for (int d = 0; d < hd / 8; d++) {
            const uint4 w = k8[d];
            const unsigned u[4] = {w.x, w.y, w.z, w.w};
            for (int i = 0; i < 4; i++) {
                const float lo = __half2float(__ushort_as_half((unsigned short)(u[i] & 0xffffu)));
                const float hi = __half2float(__ushort_as_half((unsigned short)(u[i] >> 16)));
                s += qs[8 * d + 2 * i] * lo + qs[8 * d + 2 * i + 1] * hi;
            }
        }
    } else {
        for (int d = 0; d < hd; d++)
            s += qs[d] * __half2float(kr[d]);
    }
    return s;
}

/* (hd % 32 == 0: each 32 values are a block, at 32-byte alignment) */
static __device__ float s_qk(const float *qs, const int8_t *c, const __half *sc, size_t at, int hd)
{
    float s = 0.0f;
    for (int b = 0; b < hd / SQ_CU_QK; b++) {
        const float d = __half2float(sc[at / SQ_CU_QK + b]);
        const int4 *k16 = (const int4 *)(c + at) + 2 * b;
        for (int h = 0; h < 2; h++) {
            const int4 w = k16[h];
            const int u[4] = {w.x, w.y, w.z, w.w};
            for (int i = 0; i < 4; i++)
                for (int k = 0; k < 4; k++)
                    s += qs[SQ_CU_QK * b + 16 * h + 4 * i + k] *
                         ((float)(int8_t)(u[i] >> (8 * k)) * d);
        }
    }
    return s;
}

/* Query head blockIdx.y of token blockIdx.x over positions 0..pos (tokens
 * on x, whose limit is 2^31 - 1: a step's tokens can pass y's 65535). Each
 * warp takes 32 keys at a time, one per lane (independent row loads, no
 * reduction per key), folds them into an online softmax (running max m,
 * sum l), then adds their values with lanes across dims (lane owns dims
 * lane, lane + 32, ...). The strips of 32 keys are dealt round-robin to
 * the n_split blocks (blockIdx.z) of the (head, token) and, within one,
 * to its warps: warp w of block z takes strip z + n_split (w + 8 k). The
 * warps' partial results are merged at the end: into the output (with
 * a.xq quantised for the Q8_0 product that reads it next), or with
 * n_split > 1 into the block's partial, which k_att_combine merges (the
 * split decoding that keeps the SMs busy when a batch has few heads and
 * the context is long). No score buffer: any context length fits. The
 * caches hold T (float, __half, or int8_t with scales: s_kv_val). */
template <typename T>
static __global__ void k_attention(s_att_t a)
{
    s_pdl_begin();
    __shared__ float qs[SQ_CU_MAX_HEAD_DIM];
    __shared__ float ps[S_ATT_WARPS][32];
    __shared__ float wm[S_ATT_WARPS], wl[S_ATT_WARPS];
    __shared__ float wacc[S_ATT_WARPS][SQ_CU_MAX_HEAD_DIM];
    const int h = blockIdx.y, t = blockIdx.x;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = (a.q_head0 + h) / a.group - a.kv_head0;
    const int hd = a.hd;
    const int slot = a.slot[t];
    const float *q = a.q + ((size_t)t * a.n_heads + h) * hd;
    const float scale = rsqrtf((float)hd);
    for (int d = threadIdx.x; d < hd; d += blockDim.x)
        qs[d] = q[d] * scale;
    __syncthreads();
    float acc[S_ATT_PER_LANE];
    for (int i = 0; i < S_ATT_PER_LANE; i++)
        acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int n = a.pos[t] + 1, z = (int)blockIdx.z, n_split = a.n_split;
    for (int base = (warp * n_split + z) * 32; base < n; base += S_ATT_WARPS * n_split * 32) {
        /* the strip's 32 keys are rows 0..31 of one page */
        const size_t at = s_kv_at(a.pages, a.n_ctx, slot, a.n_kv, kvh, base, hd);
        const T *kc = (const T *)a.kc, *vc = (const T *)a.vc;
        const int j = base + lane;
        const float sc = j < n ? s_qk(qs, kc, a.ks, at + (size_t)lane * hd, hd) : -INFINITY;
        /* key base < n is scored, so m_new is finite */
        const float m_new = fmaxf(m, s_warp_max(sc));
        const float p = j < n ? expf(sc - m_new) : 0.0f;
        const float corr = expf(m - m_new);
        l = l * corr + s_warp_sum(p);
        ps[warp][lane] = p;
        __syncwarp();
        for (int i = 0; i < S_ATT_PER_LANE; i++)
            acc[i] *= corr;
        const int n_keys = n - base < 32 ? n - base : 32;
        for (int jj = 0; jj < n_keys; jj++) {
            const float pj = ps[warp][jj];
            const size_t row = at + (size_t)jj * hd;
            for (int i = 0; i < S_ATT_PER_LANE; i++) {
                const int d = lane + 32 * i;
                if (d < hd)
                    acc[i] += pj * s_kv_val(vc, a.vs, row + d);
            }
        }
        __syncwarp();   /* ps is rewritten by the next round */
        m = m_new;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
    for (int i = 0; i < S_ATT_PER_LANE; i++)
        if (lane + 32 * i < hd)
            wacc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    const float *accs[S_ATT_WARPS];
    for (int w = 0; w < S_ATT_WARPS; w++)
        accs[w] = wacc[w];
    if (n_split == 1) {   /* warp 0 scored key 0: the merge has a finite max */
        s_att_write(a, h, t, wm, wl, accs, S_ATT_WARPS);
        return;
    }
    /* this block's partial: its warps merged (m -inf: it had no key) */
    float mm = -INFINITY;
    for (int w = 0; w < S_ATT_WARPS; w++)
        mm = fmaxf(mm, wm[w]);
    float *part = a.part + (((size_t)t * a.n_heads + h) * n_split + z) * s_att_part_size(hd);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < S_ATT_WARPS; w++)
            v += wm[w] == -INFINITY ? 0.0f : wacc[w][d] * expf(wm[w] - mm);
        part[2 + d] = v;
    }
    if (threadIdx.x == 0) {
        float ll = 0.0f;
        for (int w = 0; w < S_ATT_WARPS; w++)
            ll += wm[w] == -INFINITY ? 0.0f : wl[w] * expf(wm[w] - mm);
        part[0] = mm;
        part[1] = ll;
    }
}

/* the n_split partials of query head blockIdx.y of token blockIdx.x of
 * k_attention into its output (block 0 had key 0: the max is finite) */
static __global__ void k_att_combine(s_att_t a)
{
    s_pdl_begin();
    __shared__ float m[SQ_CU_ATT_MAX_SPLIT], l[SQ_CU_ATT_MAX_SPLIT];
    __shared__ const float *acc[SQ_CU_ATT_MAX_SPLIT];
    const int h = blockIdx.y, t = blockIdx.x, n = a.n_split;
    const float *part = a.part + ((size_t)t * a.n_heads + h) * n * s_att_part_size(a.hd);
    for (int z = threadIdx.x; z < n; z += blockDim.x) {
        m[z] = part[(size_t)z * s_att_part_size(a.hd)];
        l[z] = part[(size_t)z * s_att_part_size(a.hd) + 1];
        acc[z] = part + (size_t)z * s_att_part_size(a.hd) + 2;
    }
    __syncthreads();
    s_att_write(a, h, t, m, l, acc, n);
}

#endif
