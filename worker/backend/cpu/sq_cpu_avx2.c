/*  sq_cpu_avx2: kernels for AVX2 + FMA + F16C (compiled with those flags
 *  only; chosen at run time, never called on a CPU without them).
 *
 *  Dot kernels keep the weight row's current vectors in registers and
 *  multiply them into up to SQ_CPU_NX activation rows (see
 *  sq_cpu_internal.h). Q8_0 follows llama.cpp: |w| as unsigned bytes times
 *  x with w's sign, maddubs to int16 pairs, madd to int32, then one float
 *  FMA per block with the product of the two scales.
 */
#include "sq_cpu_internal.h"

#include <immintrin.h>

#define S_INLINE static inline __attribute__((always_inline))

S_INLINE float
s_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

S_INLINE __m256
s_load8(const void *w, int f16, int64_t i)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) w + i)));
    return _mm256_loadu_ps((const float *) w + i);
}

S_INLINE float
s_load1(const void *w, int f16, int64_t i)
{
    return f16 ? _cvtsh_ss(((const uint16_t *) w)[i]) : ((const float *) w)[i];
}

/* NX and f16 are compile-time constants at every call site. */
S_INLINE void
s_dot_float(const void *w, int f16, const char *x, size_t xs, int NX, int64_t n, float *out)
{
    __m256 acc[SQ_CPU_NX][2];
    for (int j = 0; j < NX; j++)
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 w0 = s_load8(w, f16, i), w1 = s_load8(w, f16, i + 8);
        for (int j = 0; j < NX; j++) {
            const float *xj = (const float *) (x + (size_t) j * xs);
            acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj + i), acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + i + 8), acc[j][1]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 w0 = s_load8(w, f16, i);
        for (int j = 0; j < NX; j++) {
            const float *xj = (const float *) (x + (size_t) j * xs);
            acc[j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj + i), acc[j][0]);
        }
    }
    for (int j = 0; j < NX; j++) {
        const float *xj = (const float *) (x + (size_t) j * xs);
        float sum = s_hsum(_mm256_add_ps(acc[j][0], acc[j][1]));
        for (int64_t k = i; k < n; k++)
            sum += s_load1(w, f16, k) * xj[k];
        out[j] = sum;
    }
}

/* Sum of 32 products of |w| (unsigned) and x*sign(w) (signed), as 8 int32
 * lanes converted to float. */
S_INLINE __m256
s_q8_block(__m256i aw, __m256i sw, __m256i qx)
{
    __m256i sx = _mm256_sign_epi8(qx, sw);
    __m256i p16 = _mm256_maddubs_epi16(aw, sx);
    __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p32);
}

S_INLINE void
s_dot_q8(const void *w, const char *x, size_t xs, int NX, int64_t n, float *out)
{
    const sq_block_q8_0_t *wb = w;
    __m256 acc[SQ_CPU_NX];
    for (int j = 0; j < NX; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
        __m256i qw = _mm256_loadu_si256((const __m256i *) wb[b].qs);
        __m256i aw = _mm256_sign_epi8(qw, qw);
        float dw = _cvtsh_ss(wb[b].d);
        for (int j = 0; j < NX; j++) {
            const sq_block_q8_0_t *xb = (const sq_block_q8_0_t *) (x + (size_t) j * xs) + b;
            __m256i qx = _mm256_loadu_si256((const __m256i *) xb->qs);
            __m256 d = _mm256_set1_ps(dw * _cvtsh_ss(xb->d));
            acc[j] = _mm256_fmadd_ps(d, s_q8_block(aw, qw, qx), acc[j]);
        }
    }
    for (int j = 0; j < NX; j++)
        out[j] = s_hsum(acc[j]);
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
#define S_CALL(NX) s_dot_q8(w, x, xs, NX, n, out)
    S_DISPATCH_NX(S_CALL)
#undef S_CALL
}

/* Same arithmetic as sq_cpu_quantize_row_q8_0_ref: amax/127 scale, x * (1/d)
 * rounded half to even (vcvtps2dq under the default MXCSR). */
void
sq_cpu_quantize_q8_0_avx2(const float *x, sq_block_q8_0_t *y, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
        const float *xb = x + b * SQ_QK8_0;
        __m256 v[4];
        __m256 amax = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        float d = _mm_cvtss_f32(m) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = sq_fp32_to_fp16(d);
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], vid));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], vid));
        i0 = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        _mm256_storeu_si256((__m256i *) y[b].qs, _mm256_permutevar8x32_epi32(i0, perm));
    }
}

const sq_cpu_kernels_t sq_cpu_kernels_avx2 = {
    .name = "avx2",
    .dot_f32 = s_dot_f32,
    .dot_f16 = s_dot_f16,
    .dot_q8_0 = s_dot_q8_0,
    .quantize_q8_0 = sq_cpu_quantize_q8_0_avx2,
};
