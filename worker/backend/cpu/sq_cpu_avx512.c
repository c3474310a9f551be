/*  sq_cpu_avx512: kernels for AVX-512 F/BW/VL, and the VNNI variant of the
 *  Q8_0 dot (compiled with -mavx512vnni, but the "avx512" table never
 *  reaches a VNNI instruction: the choice is a compile-time constant in
 *  each always-inlined kernel).
 *
 *  512-bit registers hold 16 floats, or two Q8_0 blocks' 32 int8 values
 *  each; row tails use masked loads instead of a scalar loop.
 */
#include "sq_cpu_internal.h"

#include <immintrin.h>

#define S_INLINE static inline __attribute__((always_inline))

S_INLINE __m512
s_load16(const void *w, int f16, int64_t i, __mmask16 m)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *) w + i));
    return _mm512_maskz_loadu_ps(m, (const float *) w + i);
}

/* NX and f16 are compile-time constants at every call site. */
S_INLINE void
s_dot_float(const void *w, int f16, const char *x, size_t xs, int NX, int64_t n, float *out)
{
    __m512 acc[SQ_CPU_NX][2];
    for (int j = 0; j < NX; j++)
        acc[j][0] = acc[j][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = s_load16(w, f16, i, 0xffff), w1 = s_load16(w, f16, i + 16, 0xffff);
        for (int j = 0; j < NX; j++) {
            const float *xj = (const float *) (x + (size_t) j * xs);
            acc[j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xj + i), acc[j][0]);
            acc[j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xj + i + 16), acc[j][1]);
        }
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16) ((1u << (n - i)) - 1);
        __m512 w0 = s_load16(w, f16, i, m);
        for (int j = 0; j < NX; j++) {
            const float *xj = (const float *) (x + (size_t) j * xs);
            acc[j][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, xj + i), acc[j][0]);
        }
    }
    for (int j = 0; j < NX; j++)
        out[j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]));
}

/* Two Q8_0 blocks' quants side by side in one register. */
S_INLINE __m512i
s_load2(const sq_block_q8_0_t *b)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *) b[0].qs);
    __m256i hi = _mm256_loadu_si256((const __m256i *) b[1].qs);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* 16 int32 lanes (8 per block) of |w| * (x * sign(w)). */
S_INLINE __m512i
s_q8_pair(__m512i aw, __mmask64 wneg, __m512i qx, int vnni)
{
    __m512i sx = _mm512_mask_sub_epi8(qx, wneg, _mm512_setzero_si512(), qx);
    if (vnni)
        return _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, sx);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(aw, sx), _mm512_set1_epi16(1));
}

S_INLINE __m512
s_scales2(float d0, float d1)
{
    __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(d0)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_set1_ps(d1)), 1));
}

S_INLINE void
s_dot_q8(const void *w, const char *x, size_t xs, int NX, int64_t n, float *out, int vnni)
{
    const sq_block_q8_0_t *wb = w;
    int64_t nb = n / SQ_QK8_0;
    __m512 acc[SQ_CPU_NX];
    for (int j = 0; j < NX; j++)
        acc[j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i qw = s_load2(wb + b);
        __m512i aw = _mm512_abs_epi8(qw);
        __mmask64 wneg = _mm512_movepi8_mask(qw);
        float dw0 = _cvtsh_ss(wb[b].d), dw1 = _cvtsh_ss(wb[b + 1].d);
        for (int j = 0; j < NX; j++) {
            const sq_block_q8_0_t *xb = (const sq_block_q8_0_t *) (x + (size_t) j * xs) + b;
            __m512 d = s_scales2(dw0 * _cvtsh_ss(xb[0].d), dw1 * _cvtsh_ss(xb[1].d));
            __m512 p = _mm512_cvtepi32_ps(s_q8_pair(aw, wneg, s_load2(xb), vnni));
            acc[j] = _mm512_fmadd_ps(d, p, acc[j]);
        }
    }
    if (b < nb) {
        /* Odd block count: the last block alone in the low half. */
        __m512i qw = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) wb[b].qs));
        qw = _mm512_inserti64x4(qw, _mm256_setzero_si256(), 1);
        __m512i aw = _mm512_abs_epi8(qw);
        __mmask64 wneg = _mm512_movepi8_mask(qw);
        float dw = _cvtsh_ss(wb[b].d);
        for (int j = 0; j < NX; j++) {
            const sq_block_q8_0_t *xb = (const sq_block_q8_0_t *) (x + (size_t) j * xs) + b;
            __m512i qx = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) xb->qs));
            qx = _mm512_inserti64x4(qx, _mm256_setzero_si256(), 1);
            __m512 d = s_scales2(dw * _cvtsh_ss(xb->d), 0.0f);
            acc[j] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s_q8_pair(aw, wneg, qx, vnni)), acc[j]);
        }
    }
    for (int j = 0; j < NX; j++)
        out[j] = _mm512_reduce_add_ps(acc[j]);
}

#define S_DISPATCH_NX(call_with_nx)                                                               \
    switch (n_x) {                                                                                \
    case 1: call_with_nx(1); break;                                                               \
    case 2: call_with_nx(2); break;                                                               \
    case 3: call_with_nx(3); break;                                                               \
    default: call_with_nx(4); break;                                                              \
    }

static void
s_dot_f32(const void *w, const void *x, size_t xs, int n_x, int64_t n, float *out)
{
#define S_CALL(NX) s_dot_float(w, 0, x, xs, NX, n, out)
    S_DISPATCH_NX(S_CALL)
#undef S_CALL
}

static void
s_dot_f16(const void *w, const void *x, size_t xs, int n_x, int64_t n, float *out)
{
#define S_CALL(NX) s_dot_float(w, 1, x, xs, NX, n, out)
    S_DISPATCH_NX(S_CALL)
#undef S_CALL
}

static void
s_dot_q8_0(const void *w, const void *x, size_t xs, int n_x, int64_t n, float *out)
{
#define S_CALL(NX) s_dot_q8(w, x, xs, NX, n, out, 0)
    S_DISPATCH_NX(S_CALL)
#undef S_CALL
}

static void
s_dot_q8_0_vnni(const void *w, const void *x, size_t xs, int n_x, int64_t n, float *out)
{
#define S_CALL(NX) s_dot_q8(w, x, xs, NX, n, out, 1)
    S_DISPATCH_NX(S_CALL)
#undef S_CALL
}

const sq_cpu_kernels_t sq_cpu_kernels_avx512 = {
    .name = "avx512",
    .dot_f32 = s_dot_f32,
    .dot_f16 = s_dot_f16,
    .dot_q8_0 = s_dot_q8_0,
    .quantize_q8_0 = sq_cpu_quantize_q8_0_avx2,
};

const sq_cpu_kernels_t sq_cpu_kernels_avx512vnni = {
    .name = "avx512vnni",
    .dot_f32 = s_dot_f32,
    .dot_f16 = s_dot_f16,
    .dot_q8_0 = s_dot_q8_0_vnni,
    .quantize_q8_0 = sq_cpu_quantize_q8_0_avx2,
};
