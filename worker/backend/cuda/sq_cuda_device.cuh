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

static __device__ float s_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* value i of a row of dtype */
static __device__ float s_value(int dtype, const unsigned char *row, int64_t i)
{
    if (dtype == SQ_CU_F32)
        return ((const float *)row)[i];
    if (dtype == SQ_CU_F16)
        return __half2float(((const __half *)row)[i]);
    const unsigned char *b = row + (i / SQ_CU_QK) * SQ_CU_Q8_BYTES;
    return __half2float(*(const __half *)b) * (float)((const int8_t *)(b + 2))[i % SQ_CU_QK];
}

/* ---- embedding ---- */

static __global__ void k_embed(int dtype, const unsigned char *emb, size_t row_bytes,
                               int64_t n_in, const int32_t *ids, float *out)
{
    const unsigned char *row = emb + row_bytes * (size_t)ids[blockIdx.x];
    float *o = out + (size_t)blockIdx.x * n_in;
    for (int64_t i = threadIdx.x; i < n_in; i += blockDim.x)
        o[i] = s_value(dtype, row, i);
}

/* ---- RMSNorm: one block of 256 per row ---- */

static __global__ void k_rmsnorm(const float *x, const float *w, float eps, int dim, float *out)
{
    __shared__ float part[8];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = s_warp_sum(ss);
    if (threadIdx.x % 32 == 0)
        part[threadIdx.x / 32] = ss;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < (int)blockDim.x / 32; i++)
        total += part[i];
    const float scale = rsqrtf(total / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        orow[i] = xr[i] * scale * w[i];
}

/* ---- GEMV: small batches, one warp per weight row ---- */

/* four consecutive weights starting at 4 * c, dequantised in registers */
static __device__ void s_load4(int dtype, const unsigned char *row, int64_t c, float *w4,
                               float *scale)
{
    if (dtype == SQ_CU_Q8_0) {
        const unsigned char *b = row + (c / 8) * SQ_CU_Q8_BYTES;
        /* qs start 2 bytes into a 34-byte block: 2-byte loads are aligned */
        const uint16_t *q = (const uint16_t *)(b + 2 + (c % 8) * 4);
        uint16_t lo = q[0], hi = q[1];
        w4[0] = (float)(int8_t)(lo & 0xff);
        w4[1] = (float)(int8_t)(lo >> 8);
        w4[2] = (float)(int8_t)(hi & 0xff);
        w4[3] = (float)(int8_t)(hi >> 8);
        *scale = __half2float(*(const __half *)b);
    } else {
        const __half2 *h = (const __half2 *)(row + c * 8);
        float2 a = __half22float2(h[0]), b2 = __half22float2(h[1]);
        w4[0] = a.x;
        w4[1] = a.y;
        w4[2] = b2.x;
        w4[3] = b2.y;
        *scale = 1.0f;
    }
}

template <int NT>
static __global__ void k_gemv(int dtype, const unsigned char *w, size_t row_bytes, int64_t n_out,
                              int64_t n_in, const float *x, float *y)
{
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= n_out)
        return;
    const unsigned char *row = w + row_bytes * (size_t)r;
    float acc[NT];
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;
    for (int64_t c = lane; c < n_in / 4; c += 32) {
        float w4[4], d;
        s_load4(dtype, row, c, w4, &d);
        for (int t = 0; t < NT; t++) {
            const float *xt = x + (size_t)t * n_in + 4 * c;
            acc[t] += d * (w4[0] * xt[0] + w4[1] * xt[1] + w4[2] * xt[2] + w4[3] * xt[3]);
        }
    }
    for (int t = 0; t < NT; t++) {
        float v = s_warp_sum(acc[t]);
        if (lane == 0)
            y[(size_t)t * n_out + r] = v;
    }
}

/* ---- Q8_0 GEMM: 64 weight rows x 64 tokens per block of 16 x 16 ---- */

enum { S_TILE = 64 };

static __global__ void k_q8_gemm(const unsigned char *w, size_t row_bytes, int64_t n_out,
                                 int64_t n_in, const float *x, int n_tok, float *y)
{
    __shared__ float ws[SQ_CU_QK][S_TILE];   /* (k, weight row) */
    __shared__ float xs[SQ_CU_QK][S_TILE];   /* (k, token) */
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int64_t o0 = (int64_t)blockIdx.x * S_TILE;
    const int t0 = blockIdx.y * S_TILE;
    /* loader: row / token tid / 4, values 8 * (tid % 4) .. + 8 of the block */
    const int lr = threadIdx.x / 4, lp = (threadIdx.x % 4) * 8;
    float acc[4][4] = {{0.0f}};
    for (int64_t kb = 0; kb < n_in / SQ_CU_QK; kb++) {
        const int64_t o = o0 + lr;
        if (o < n_out) {
            const unsigned char *b = w + row_bytes * (size_t)o + kb * SQ_CU_Q8_BYTES;
            const float d = __half2float(*(const __half *)b);
            const int8_t *q = (const int8_t *)(b + 2);
            for (int e = 0; e < 8; e++)
                ws[lp + e][lr] = d * (float)q[lp + e];
        } else {
            for (int e = 0; e < 8; e++)
                ws[lp + e][lr] = 0.0f;
        }
        const int t = t0 + lr;
        const float *xt = x + (size_t)t * n_in + kb * SQ_CU_QK + lp;
        for (int e = 0; e < 8; e++)
            xs[lp + e][lr] = t < n_tok ? xt[e] : 0.0f;
        __syncthreads();
        for (int k = 0; k < SQ_CU_QK; k++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) {
                a[i] = ws[k][tx + 16 * i];
                b[i] = xs[k][ty + 16 * i];
            }
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    for (int j = 0; j < 4; j++) {
        const int t = t0 + ty + 16 * j;
        for (int i = 0; i < 4; i++) {
            const int64_t o = o0 + tx + 16 * i;
            if (t < n_tok && o < n_out)
                y[(size_t)t * n_out + o] = acc[i][j];
        }
    }
}

/* ---- elementwise ---- */

static __global__ void k_to_f16(const float *x, __half *out, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = __float2half(x[i]);
}

static __global__ void k_swiglu(float *gate, const float *up, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static __global__ void k_add(float *x, const float *y, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

/* ---- RoPE: one thread per (token, head, pair) ---- */

static __global__ void k_rope(float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                              const int32_t *pos, float freq_base)
{
    const int half_rot = n_rot / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)n_tok * n_heads * half_rot)
        return;
    const int p = (int)(i % half_rot);
    const size_t th = i / half_rot;           /* token * n_heads + head */
    const int t = (int)(th / n_heads);
    const float theta = (float)pos[t] * powf(freq_base, -2.0f * (float)p / (float)n_rot);
    float c, s;
    sincosf(theta, &s, &c);
    float *q = x + th * head_dim + 2 * p;
    const float a = q[0], b = q[1];
    q[0] = a * c - b * s;
    q[1] = a * s + b * c;
}

/* ---- attention ---- */

/* k/v rows of token blockIdx.x into (slot, kv head, pos) of the caches */
static __global__ void k_kv_store(float *kc, float *vc, const float *k, const float *v,
                                  const int32_t *slot, const int32_t *pos, int n_kv, int n_ctx,
                                  int hd)
{
    const int t = blockIdx.x;
    for (int i = threadIdx.x; i < n_kv * hd; i += blockDim.x) {
        const int h = i / hd, d = i % hd;
        size_t at = (((size_t)slot[t] * n_kv + h) * n_ctx + (size_t)pos[t]) * hd + d;
        kc[at] = k[(size_t)t * n_kv * hd + i];
        vc[at] = v[(size_t)t * n_kv * hd + i];
    }
}

enum { S_ATT_WARPS = 4, S_ATT_PER_LANE = SQ_CU_MAX_HEAD_DIM / 32 };

typedef struct {
    const float *kc, *vc, *q;
    float *out;
    const int32_t *slot, *pos;
    int n_heads, n_kv, n_ctx, hd, q_head0, kv_head0, group;
} s_att_t;

/* Query head blockIdx.x of token blockIdx.y. Each warp walks a quarter
 * of the positions with an online softmax (running max m, sum l, output
 * acc in registers: lane owns dims lane, lane + 32, ...); the warps'
 * partial results are merged at the end. No score buffer, so any context
 * length fits. */
static __global__ void k_attention(s_att_t a)
{
    __shared__ float wm[S_ATT_WARPS], wl[S_ATT_WARPS];
    __shared__ float wacc[S_ATT_WARPS][SQ_CU_MAX_HEAD_DIM];
    const int h = blockIdx.x, t = blockIdx.y;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kvh = (a.q_head0 + h) / a.group - a.kv_head0;
    const int hd = a.hd;
    const size_t head = ((size_t)a.slot[t] * a.n_kv + kvh) * a.n_ctx * hd;
    const float *kc = a.kc + head, *vc = a.vc + head;
    const float *q = a.q + ((size_t)t * a.n_heads + h) * hd;
    const float scale = rsqrtf((float)hd);
    float qr[S_ATT_PER_LANE], acc[S_ATT_PER_LANE];
    for (int i = 0; i < S_ATT_PER_LANE; i++) {
        const int d = lane + 32 * i;
        qr[i] = d < hd ? q[d] * scale : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int n = a.pos[t] + 1;
    for (int j = warp; j < n; j += S_ATT_WARPS) {
        const float *kr = kc + (size_t)j * hd, *vr = vc + (size_t)j * hd;
        float part = 0.0f;
        for (int i = 0; i < S_ATT_PER_LANE; i++) {
            const int d = lane + 32 * i;
            if (d < hd)
                part += qr[i] * kr[d];
        }
        const float sc = s_warp_sum(part);
        const float m_new = fmaxf(m, sc);
        const float corr = expf(m - m_new), p = expf(sc - m_new);
        l = l * corr + p;
        for (int i = 0; i < S_ATT_PER_LANE; i++) {
            const int d = lane + 32 * i;
            acc[i] = acc[i] * corr + (d < hd ? p * vr[d] : 0.0f);
        }
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
    float mm = -INFINITY;
    for (int w = 0; w < S_ATT_WARPS; w++)
        mm = fmaxf(mm, wm[w]);
    float ll = 0.0f;
    for (int w = 0; w < S_ATT_WARPS; w++)
        ll += wm[w] == -INFINITY ? 0.0f : wl[w] * expf(wm[w] - mm);
    float *o = a.out + ((size_t)t * a.n_heads + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < S_ATT_WARPS; w++)
            v += wm[w] == -INFINITY ? 0.0f : wacc[w][d] * expf(wm[w] - mm);
        o[d] = v / ll;
    }
}

#endif
