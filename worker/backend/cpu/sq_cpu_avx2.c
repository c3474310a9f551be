/*  sq_cpu_avx2: kernels for AVX2 + FMA + F16C (compiled with those flags
 *  only; chosen at run time, never called on a CPU without them).
 *
 *  Dot kernels work on a block of NW weight rows x NX activation rows (see
 *  sq_cpu_internal.h) with one accumulator per pair. With 16 ymm registers
 *  a block keeps at most 8 accumulators, so 3-4 rows x 3-4 tokens run as
 *  two half blocks. Q8_0 follows llama.cpp: |w| as unsigned bytes times x
 *  with w's sign, maddubs to int16 pairs, madd to int32, then one float FMA
 *  per block with the product of the two scales.
 */
#include "sq_cpu_internal.h"

#include <immintrin.h>

#define S_INLINE static inline __attribute__((always_inline))
#define S_ROW(w, ws, r) ((const char *) (w) + (size_t) (r) * (ws))
#define S_XROW(x, xs, j) ((const char *) (x) + (size_t) (j) * (xs))

S_INLINE float
s_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

S_INLINE __m256
s_load8(const char *w, int f16, int64_t i)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) w + i)));
    return _mm256_loadu_ps((const float *) w + i);
}

S_INLINE float
s_load1(const char *w, int f16, int64_t i)
{
    return f16 ? _cvtsh_ss(((const uint16_t *) w)[i]) : ((const float *) w)[i];
}

/* NW, NX and f16 are compile-time constants at every call site;
 * NW * NX <= 8. */
S_INLINE void
s_dot_float_blk(const void *w, size_t ws, int f16, const void *x, size_t xs, int NW, int NX,
                int64_t n, float *out)
{
    __m256 acc[SQ_CPU_NW][SQ_CPU_NX];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            acc[r][j] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[SQ_CPU_NW];
        SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
            _mm_prefetch(S_ROW(w, ws, r) + i * (f16 ? 2 : 4) + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
            wv[r] = s_load8(S_ROW(w, ws, r), f16, i);
        }
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
            __m256 xv = _mm256_loadu_ps((const float *) S_XROW(x, xs, j) + i);
            SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
                acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
        }
    }
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
            const float *xj = (const float *) S_XROW(x, xs, j);
            float sum = s_hsum(acc[r][j]);
            for (int64_t k = i; k < n; k++)
                sum += s_load1(S_ROW(w, ws, r), f16, k) * xj[k];
            out[r * SQ_CPU_NX + j] = sum;
        }
    }
}

S_INLINE void
s_dot_q8_blk(const void *w, size_t ws, const void *x, size_t xs, int NW, int NX, int64_t n,
             float *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[SQ_CPU_NW][SQ_CPU_NX];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            acc[r][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
        __m256i qw[SQ_CPU_NW], aw[SQ_CPU_NW];
        float dw[SQ_CPU_NW];
        SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
            const sq_block_q8_0_t *wb = (const sq_block_q8_0_t *) S_ROW(w, ws, r) + b;
            _mm_prefetch((const char *) wb + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
            qw[r] = _mm256_loadu_si256((const __m256i *) wb->qs);
            aw[r] = _mm256_sign_epi8(qw[r], qw[r]);
            dw[r] = _cvtsh_ss(wb->d);
        }
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
            const sq_block_q8_0_t *xb = (const sq_block_q8_0_t *) S_XROW(x, xs, j) + b;
            __m256i qx = _mm256_loadu_si256((const __m256i *) xb->qs);
            float dx = _cvtsh_ss(xb->d);
            SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
                __m256i p16 = _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(qx, qw[r]));
                __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
                acc[r][j] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), p, acc[r][j]);
            }
        }
    }
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            out[r * SQ_CPU_NX + j] = s_hsum(acc[r][j]);
}

/* Blocks with more accumulators than registers run as two row halves. */
S_INLINE void
s_dot_float(const void *w, size_t ws, int f16, const void *x, size_t xs, int NW, int NX, int64_t n,
            float *out)
{
    if (NW * NX > 8) {
        s_dot_float_blk(w, ws, f16, x, xs, 2, NX, n, out);
        s_dot_float_blk(S_ROW(w, ws, 2), ws, f16, x, xs, NW - 2, NX, n, out + 2 * SQ_CPU_NX);
    } else {
        s_dot_float_blk(w, ws, f16, x, xs, NW, NX, n, out);
    }
}

S_INLINE void
s_dot_q8(const void *w, size_t ws, const void *x, size_t xs, int NW, int NX, int64_t n, float *out)
{
    if (NW * NX > 8) {
        s_dot_q8_blk(w, ws, x, xs, 2, NX, n, out);
        s_dot_q8_blk(S_ROW(w, ws, 2), ws, x, xs, NW - 2, NX, n, out + 2 * SQ_CPU_NX);
    } else {
        s_dot_q8_blk(w, ws, x, xs, NW, NX, n, out);
    }
}

#define S_F32(NW, NX) s_dot_float(w, ws, 0, x, xs, NW, NX, n, out)
#define S_F16(NW, NX) s_dot_float(w, ws, 1, x, xs, NW, NX, n, out)
#define S_Q8(NW, NX) s_dot_q8(w, ws, x, xs, NW, NX, n, out)
SQ_CPU_DEFINE_DOT(s_dot_f32, S_F32)
SQ_CPU_DEFINE_DOT(s_dot_f16, S_F16)
SQ_CPU_DEFINE_DOT(s_dot_q8_0, S_Q8)

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
        SQ_CPU_UNROLL for (int k = 0; k < 4; k++) {
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

void
sq_cpu_f16_to_f32_avx2(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (x + i))));
    for (; i < n; i++)
        y[i] = _cvtsh_ss(x[i]);
}

void
sq_cpu_f32_to_f16_avx2(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *) (y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        y[i] = sq_fp32_to_fp16(x[i]);
}

/* ---- attention ---- */

/* Values i .. i + 7, and value i, of a cache row of kind: F32 and F16 as
 * a weight row's; Q8_0 (i a multiple of 8 in a row of whole blocks) as
 * its int8 values times the block's scale, exactly. */
S_INLINE __m256
s_kv8(const char *r, int kind, int64_t i)
{
    if (kind != SQ_CPU_KV_Q8)
        return s_load8(r, kind == SQ_CPU_KV_F16, i);
    const sq_block_q8_0_t *b = (const sq_block_q8_0_t *) r + i / SQ_QK8_0;
    const __m128i q = _mm_loadl_epi64((const __m128i *) (b->qs + i % SQ_QK8_0));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)),
                         _mm256_set1_ps(_cvtsh_ss(b->d)));
}

/* 8 values at a time, as the kernels widen them (exact, so the
 * reference's bits); n % 32 == 0 */
void
sq_cpu_q8_0_to_f32_avx2(const sq_block_q8_0_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += 8)
        _mm256_storeu_ps(y + i, s_kv8((const char *) x, SQ_CPU_KV_Q8, i));
}

S_INLINE float
s_kv1(const char *r, int kind, int64_t i)
{
    return kind == SQ_CPU_KV_Q8 ? sq_cpu_q8_value(r, i) : s_load1(r, kind == SQ_CPU_KV_F16, i);
}

S_INLINE float
s_dot_tail(const float *a, const char *b, int kind, int from, int n, float sum)
{
    for (int d = from; d < n; d++)
        sum += a[d] * s_kv1(b, kind, d);
    return sum;
}

/* The sums of four vectors' lanes; each sum adds its own vector's lanes
 * in one fixed order, whatever the other three hold. */
S_INLINE __m128
s_hsum4(const __m256 a[SQ_CPU_ATT_KEYS])
{
    const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* Four keys at a time: each step loads 8 of a query head's values once
 * for the four. A last group short of keys repeats its last one, whose
 * extra sums are dropped, so a key's score takes the same steps wherever
 * it falls. kind is a compile-time constant (the block's dtype). */
S_INLINE void
s_scores(const float *q, int n_q, const sq_cpu_kv_block_t *k, int kind, float *scores, size_t ld)
{
    const int hd = k->hd, hd8 = hd & ~7;
    const size_t row = sq_cpu_kv_row(kind, hd);
    for (int j = 0; j < k->n; j += SQ_CPU_ATT_KEYS) {
        const char *kr[SQ_CPU_ATT_KEYS];
        const int nk = sq_cpu_kv_key_group(k, row, j, SQ_CPU_ATT_KEYS, kr);
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + (size_t) h * hd;
            __m256 acc[SQ_CPU_ATT_KEYS];
            SQ_CPU_UNROLL for (int i = 0; i < SQ_CPU_ATT_KEYS; i++)
                acc[i] = _mm256_setzero_ps();
            for (int d = 0; d < hd8; d += 8) {
                const __m256 qv = _mm256_loadu_ps(qh + d);
                SQ_CPU_UNROLL for (int i = 0; i < SQ_CPU_ATT_KEYS; i++)
                    acc[i] = _mm256_fmadd_ps(qv, s_kv8(kr[i], kind, d), acc[i]);
            }
            float sums[SQ_CPU_ATT_KEYS];
            _mm_storeu_ps(sums, s_hsum4(acc));
            for (int i = 0; i < nk; i++)
                scores[(size_t) h * ld + j + i] = s_dot_tail(qh, kr[i], kind, hd8, hd, sums[i]);
        }
    }
}

S_INLINE void
s_values(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v, int kind, float *out)
{
    const int hd = v->hd;
    const size_t row = sq_cpu_kv_row(kind, hd);
    for (int h = 0; h < n_q; h++) {
        float *o = out + (size_t) h * hd;
        const float *ph = p + (size_t) h * ld;
        int d = 0;
        for (; d + 32 <= hd; d += 32) {   /* 32 dims in four registers over all rows */
            const bool fetch = h == 0 && d == 0 && v->next;   /* each line once */
            __m256 acc[4];
            SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                acc[c] = _mm256_loadu_ps(o + d + 8 * c);
            for (int j = 0; j < v->n; j++) {
                const __m256 pj = _mm256_set1_ps(ph[j]);
                const char *vr = S_ROW(v->rows, row, j);
                if (fetch)
                    sq_cpu_kv_prefetch_row(v, row, j);
                SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                    acc[c] = _mm256_fmadd_ps(pj, s_kv8(vr, kind, d + 8 * c), acc[c]);
            }
            SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                _mm256_storeu_ps(o + d + 8 * c, acc[c]);
        }
        for (; d + 8 <= hd; d += 8) {
            __m256 acc = _mm256_loadu_ps(o + d);
            for (int j = 0; j < v->n; j++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(ph[j]), s_kv8(S_ROW(v->rows, row, j), kind, d),
                                      acc);
            _mm256_storeu_ps(o + d, acc);
        }
        for (; d < hd; d++)
            for (int j = 0; j < v->n; j++)
                o[d] = __builtin_fmaf(ph[j], s_kv1(S_ROW(v->rows, row, j), kind, d), o[d]);
    }
}

SQ_CPU_ATTN_ENTRIES(s_scores, s_values, sq_cpu_q8_0_to_f32_avx2)

/* sq_cpu_exp (sq_cpu_internal.h) on 8 lanes: the same operations, so the
 * same bits. max_ps(a, b) is a > b ? a : b, as the scalar clamps. */
S_INLINE __m256
s_exp8(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(SQ_CPU_EXP_LO), x);
    x = _mm256_min_ps(_mm256_set1_ps(SQ_CPU_EXP_HI), x);
    const __m256 round = _mm256_set1_ps(SQ_CPU_EXP_ROUND);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(SQ_CPU_EXP_LOG2E), round);
    const __m256 n = _mm256_sub_ps(t, round);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-SQ_CPU_EXP_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-SQ_CPU_EXP_LN2_LO), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(SQ_CPU_EXP_C7), r, _mm256_set1_ps(SQ_CPU_EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SQ_CPU_EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SQ_CPU_EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(SQ_CPU_EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i k = _mm256_sub_epi32(_mm256_castps_si256(t),
                                       _mm256_set1_epi32((int)(SQ_CPU_EXP_ROUND_BITS - 127u)));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(k, 23)));
}

void
sq_cpu_softmax_avx2(float *x, int64_t n, float scale)
{
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        mv = _mm256_max_ps(_mm256_loadu_ps(x + j), mv);
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float max = -INFINITY;
    for (int i = 0; i < 8; i++)
        max = lanes[i] > max ? lanes[i] : max;
    for (; j < n; j++)
        max = x[j] > max ? x[j] : max;
    /* partial sums of lanes 0-7 and 8-15 of each run of 16 */
    const __m256 mx = _mm256_set1_ps(max), sc = _mm256_set1_ps(scale);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (j = 0; j + SQ_CPU_SUM_LANES <= n; j += SQ_CPU_SUM_LANES) {
        const __m256 e0 = s_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), mx), sc));
        const __m256 e1 =
            s_exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mx), sc));
        _mm256_storeu_ps(x + j, e0);
        _mm256_storeu_ps(x + j + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    float sums[SQ_CPU_SUM_LANES];
    _mm256_storeu_ps(sums, s0);
    _mm256_storeu_ps(sums + 8, s1);
    sq_cpu_softmax_exp_tail(x, j, n, max, scale, sums);
    const float inv = 1.0f / sq_cpu_sum16(sums);
    const __m256 iv = _mm256_set1_ps(inv);
    for (j = 0; j + 8 <= n; j += 8)
        _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), iv));
    for (; j < n; j++)
        x[j] *= inv;
}

void
sq_cpu_swiglu_avx2(float *gate, const float *up, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 g = _mm256_loadu_ps(gate + j);
        const __m256 d = _mm256_add_ps(one, s_exp8(_mm256_xor_ps(g, sign)));
        _mm256_storeu_ps(gate + j, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + j)));
    }
    sq_cpu_swiglu_tail(gate, up, j, n);
}

/* What both AVX2 levels share; avx2vnni adds packed Q8_0 weights. */
#define S_AVX2_KERNELS                                                                            \
    .dot_f32 = s_dot_f32, .dot_f16 = s_dot_f16, .dot_q8_0 = s_dot_q8_0,                           \
    .quantize_q8_0 = sq_cpu_quantize_q8_0_avx2, .f16_to_f32 = sq_cpu_f16_to_f32_avx2,             \
    .f32_to_f16 = sq_cpu_f32_to_f16_avx2, .q8_0_to_f32 = sq_cpu_q8_0_to_f32_avx2,                 \
    .attn_scores = s_attn_scores, .attn_values = s_attn_values,                                   \
    .softmax = sq_cpu_softmax_avx2, .swiglu = sq_cpu_swiglu_avx2

const sq_cpu_kernels_t sq_cpu_kernels_avx2 = {.name = "avx2", S_AVX2_KERNELS};

const sq_cpu_kernels_t sq_cpu_kernels_avx2vnni = {
    .name = "avx2vnni", S_AVX2_KERNELS, .gemm_q8_0x16 = sq_cpu_gemm_q8_0x16_avxvnni};
