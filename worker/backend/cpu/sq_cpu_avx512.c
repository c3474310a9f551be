/*  sq_cpu_avx512: kernels for AVX-512 F/BW/VL, and the VNNI variant of the
 *  Q8_0 dot (compiled with -mavx512vnni, but the "avx512" table never
 *  reaches a VNNI instruction: the choice is a compile-time constant in
 *  each always-inlined kernel).
 *
 *  Dot kernels work on a block of NW weight rows x NX activation rows (see
 *  sq_cpu_internal.h); 32 zmm registers hold a whole 4 x 4 block of
 *  accumulators. 512-bit registers hold 16 floats, or two Q8_0 blocks' 32
 *  int8 values each; row tails use masked loads instead of a scalar loop.
 */
#include "sq_cpu_internal.h"

#include <immintrin.h>

#define S_INLINE static inline __attribute__((always_inline))
#define S_ROW(w, ws, r) ((const char *) (w) + (size_t) (r) * (ws))

S_INLINE __m512
s_load16(const char *w, int f16, int64_t i, __mmask16 m)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *) w + i));
    return _mm512_maskz_loadu_ps(m, (const float *) w + i);
}

/* One step of 16 values at i (mask m). */
S_INLINE void
s_float_step(__m512 acc[SQ_CPU_NW][SQ_CPU_NX], const void *w, size_t ws, int f16, const void *x,
             size_t xs, int NW, int NX, int64_t i, __mmask16 m)
{
    __m512 wv[SQ_CPU_NW];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
        _mm_prefetch(S_ROW(w, ws, r) + i * (f16 ? 2 : 4) + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
        wv[r] = s_load16(S_ROW(w, ws, r), f16, i, m);
    }
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
        __m512 xv = _mm512_maskz_loadu_ps(m, (const float *) S_ROW(x, xs, j) + i);
        SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
            acc[r][j] = _mm512_fmadd_ps(wv[r], xv, acc[r][j]);
    }
}

/* NW, NX and f16 are compile-time constants at every call site. One
 * accumulator per pair whatever the block's shape, so a token's result
 * does not depend on how many tokens share its block (batch invariance:
 * a sequence decodes to the same bits alone or in any batch); a second
 * accumulator for small blocks would hide FMA latency, but a small block
 * is a decode step, bound by the weights' bandwidth, not by FMAs. */
S_INLINE void
s_dot_float(const void *w, size_t ws, int f16, const void *x, size_t xs, int NW, int NX, int64_t n,
            float *out)
{
    __m512 acc[SQ_CPU_NW][SQ_CPU_NX];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            acc[r][j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? 0xffff : (__mmask16) ((1u << (n - i)) - 1);
        s_float_step(acc, w, ws, f16, x, xs, NW, NX, i, m);
    }
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            out[r * SQ_CPU_NX + j] = _mm512_reduce_add_ps(acc[r][j]);
}

/* Blocks b and b + 1 (only b when !two) side by side in one register. */
S_INLINE __m512i
s_load_pair(const sq_block_q8_0_t *b, int two)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *) b[0].qs);
    __m256i hi = two ? _mm256_loadu_si256((const __m256i *) b[1].qs) : _mm256_setzero_si256();
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* The two blocks' fp16 scales, each broadcast over its half: two word
 * broadcasts and one conversion of all 16 (exact, as _cvtsh_ss). */
S_INLINE __m512
s_scale_pair(const sq_block_q8_0_t *b, int two)
{
    const __m128i lo = _mm_set1_epi16((short) b[0].d);
    const __m128i hi = two ? _mm_set1_epi16((short) b[1].d) : _mm_setzero_si128();
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

/* One step over blocks b, b + 1 (only b when !two). Products go to 16
 * int32 lanes, 8 per block, then one float FMA per pair with dw * dx.
 * Without VNNI: |w| (unsigned) times x with w's sign, maddubs + madd.
 * With VNNI: dpbusd needs one unsigned operand, so x is biased to x + 128
 * (once per token) and each row's lanes start at -128 * sum(w) (once per
 * row), which leaves one dpbusd per row and token. */
S_INLINE void
s_q8_step(__m512 acc[SQ_CPU_NW][SQ_CPU_NX], const void *w, size_t ws, const void *x, size_t xs,
          int NW, int NX, int64_t b, int two, int vnni)
{
    const __m512i zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char) 0x80);
    __m512i qw[SQ_CPU_NW], aw[SQ_CPU_NW], base[SQ_CPU_NW];
    __mmask64 wneg[SQ_CPU_NW];
    __m512 dw[SQ_CPU_NW];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
        const sq_block_q8_0_t *wb = (const sq_block_q8_0_t *) S_ROW(w, ws, r) + b;
        _mm_prefetch((const char *) wb + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
        qw[r] = s_load_pair(wb, two);
        if (vnni) {
            base[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, bias, qw[r]));
        } else {
            aw[r] = _mm512_abs_epi8(qw[r]);
            wneg[r] = _mm512_movepi8_mask(qw[r]);
        }
        dw[r] = s_scale_pair(wb, two);
    }
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
        const sq_block_q8_0_t *xb = (const sq_block_q8_0_t *) S_ROW(x, xs, j) + b;
        __m512i qx = s_load_pair(xb, two);
        __m512 dx = s_scale_pair(xb, two);
        __m512i xu = _mm512_xor_si512(qx, bias);
        SQ_CPU_UNROLL for (int r = 0; r < NW; r++) {
            __m512i p;
            if (vnni) {
                p = _mm512_dpbusd_epi32(base[r], xu, qw[r]);
            } else {
                __m512i sx = _mm512_mask_sub_epi8(qx, wneg[r], zero, qx);
                p = _mm512_madd_epi16(_mm512_maddubs_epi16(aw[r], sx), _mm512_set1_epi16(1));
            }
            acc[r][j] = _mm512_fmadd_ps(_mm512_mul_ps(dw[r], dx), _mm512_cvtepi32_ps(p), acc[r][j]);
        }
    }
}

S_INLINE void
s_dot_q8(const void *w, size_t ws, const void *x, size_t xs, int NW, int NX, int64_t n, float *out,
         int vnni)
{
    int64_t nb = n / SQ_QK8_0;
    __m512 acc[SQ_CPU_NW][SQ_CPU_NX];
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            acc[r][j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2)
        s_q8_step(acc, w, ws, x, xs, NW, NX, b, 1, vnni);
    if (b < nb)
        s_q8_step(acc, w, ws, x, xs, NW, NX, b, 0, vnni);
    SQ_CPU_UNROLL for (int r = 0; r < NW; r++)
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
            out[r * SQ_CPU_NX + j] = _mm512_reduce_add_ps(acc[r][j]);
}

/* ---- packed Q8_0 (SQ_DTYPE_Q8_0X16) ---- */

/* A group's 16 rows for NX tokens (a compile-time constant, up to 16: 16
 * accumulators and the block's 8 vectors fit the 32 registers, and at 16
 * tokens a group's values stream from memory once instead of twice, 1.3×
 * faster than 8). Per block: the 8 vectors of interleaved values are
 * loaded once for all NX tokens;
 * each token then takes 8 VPDPBUSD into two chains (lane r: row r's
 * product sum, started at the token's -128 sum so the weights' bias
 * cancels), one conversion, and a product with d_w * d_x and a sum, in the
 * reference's order (not fused: see sq_cpu_pack.c). */
S_INLINE void
s_q8x16(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x, size_t xs, int NX, float *y,
        int64_t ldy)
{
    const uint16_t *d = (const uint16_t *) (group + nb * SQ_CPU_PACK_ROWS * SQ_QK8_0);
    __m512 acc[SQ_CPU_PACK_NX];
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
        acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m512i *q = (const __m512i *) (group + b * SQ_CPU_PACK_ROWS * SQ_QK8_0);
        __m512i w[8];
        SQ_CPU_UNROLL for (int k = 0; k < 8; k++) {
            _mm_prefetch((const char *) (q + k) + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
            w[k] = _mm512_loadu_si512(q + k);
        }
        const __m512 dw =
            _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (d + b * SQ_CPU_PACK_ROWS)));
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
            const sq_cpu_xq8_t *xb = x + (size_t) j * xs + b;
            __m512i s0 = _mm512_set1_epi32(xb->neg_bias), s1 = _mm512_setzero_si512();
            SQ_CPU_UNROLL for (int k = 0; k < 8; k += 2) {
                const __m512i x0 = _mm512_set1_epi32(sq_cpu_xq8_word(xb, k));
                const __m512i x1 = _mm512_set1_epi32(sq_cpu_xq8_word(xb, k + 1));
                s0 = _mm512_dpbusd_epi32(s0, w[k], x0);
                s1 = _mm512_dpbusd_epi32(s1, w[k + 1], x1);
            }
            __m512 p = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
            const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(xb->d));
            acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(p, scale));
        }
    }
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
        _mm512_storeu_ps(y + (size_t) j * ldy, acc[j]);
}

static void
s_gemm_q8_0x16(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x, size_t xs, int n_x,
               float *y, int64_t ldy)
{
    switch (n_x) {
    case 1: s_q8x16(group, nb, x, xs, 1, y, ldy); break;
    case 2: s_q8x16(group, nb, x, xs, 2, y, ldy); break;
    case 3: s_q8x16(group, nb, x, xs, 3, y, ldy); break;
    case 4: s_q8x16(group, nb, x, xs, 4, y, ldy); break;
    case 5: s_q8x16(group, nb, x, xs, 5, y, ldy); break;
    case 6: s_q8x16(group, nb, x, xs, 6, y, ldy); break;
    case 7: s_q8x16(group, nb, x, xs, 7, y, ldy); break;
    case 8: s_q8x16(group, nb, x, xs, 8, y, ldy); break;
    case 9: s_q8x16(group, nb, x, xs, 9, y, ldy); break;
    case 10: s_q8x16(group, nb, x, xs, 10, y, ldy); break;
    case 11: s_q8x16(group, nb, x, xs, 11, y, ldy); break;
    case 12: s_q8x16(group, nb, x, xs, 12, y, ldy); break;
    case 13: s_q8x16(group, nb, x, xs, 13, y, ldy); break;
    case 14: s_q8x16(group, nb, x, xs, 14, y, ldy); break;
    case 15: s_q8x16(group, nb, x, xs, 15, y, ldy); break;
    default: s_q8x16(group, nb, x, xs, 16, y, ldy); break;
    }
}

#define S_F32(NW, NX) s_dot_float(w, ws, 0, x, xs, NW, NX, n, out)
#define S_F16(NW, NX) s_dot_float(w, ws, 1, x, xs, NW, NX, n, out)
#define S_Q8(NW, NX) s_dot_q8(w, ws, x, xs, NW, NX, n, out, 0)
#define S_Q8_VNNI(NW, NX) s_dot_q8(w, ws, x, xs, NW, NX, n, out, 1)
SQ_CPU_DEFINE_DOT(s_dot_f32, S_F32)
SQ_CPU_DEFINE_DOT(s_dot_f16, S_F16)
SQ_CPU_DEFINE_DOT(s_dot_q8_0, S_Q8)
SQ_CPU_DEFINE_DOT(s_dot_q8_0_vnni, S_Q8_VNNI)

/* ---- attention ---- */

/* Values i .. i + 15 of a cache row of kind (mask m): F32 and F16 as a
 * weight row's; Q8_0 (i a multiple of 16 in a row of whole blocks, so the
 * mask is full) as its int8 values times the block's scale, exactly. */
S_INLINE __m512
s_kv16(const char *r, int kind, int64_t i, __mmask16 m)
{
    if (kind != SQ_CPU_KV_Q8)
        return s_load16(r, kind == SQ_CPU_KV_F16, i, m);
    const sq_block_q8_0_t *b = (const sq_block_q8_0_t *) r + i / SQ_QK8_0;
    const __m128i q = _mm_loadu_si128((const __m128i *) (b->qs + i % SQ_QK8_0));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)),
                         _mm512_set1_ps(_cvtsh_ss(b->d)));
}

S_INLINE __mmask16
s_mask(int left)
{
    return left >= 16 ? (__mmask16) 0xffff : (__mmask16) ((1u << left) - 1);
}

/* Keys scored together: one per lane of s_hsum16's result. */
#define S_KEYS 16

/* Lane i of the result = the sum of a[i]'s 16 lanes. Every step adds
 * lanes of the same positions for every vector (halves, then quarters,
 * ...), so each sum takes the same additions whatever vector it comes
 * from: (l0 + l8) + (l4 + l12) and so on down to one. */
S_INLINE __m512
s_hsum16(const __m512 a[S_KEYS])
{
    __m512 z[8], w[4], x[2];
    /* z[i]: a[2i]'s lanes l + l+8 in its low 256 bits, a[2i+1]'s in its high */
    SQ_CPU_UNROLL for (int i = 0; i < 8; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xee));
    /* w[i]: 4 lanes for each of keys 4i .. 4i+3, in that order */
    SQ_CPU_UNROLL for (int i = 0; i < 4; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(z[2 * i], z[2 * i + 1], 0xdd));
    /* x[i], 128-bit chunk c: 2 lanes of key 8i + c, then 2 of key 8i + c + 4 */
    SQ_CPU_UNROLL for (int i = 0; i < 2; i++)
        x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
                             _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], 0xee));
    /* chunk c: keys c, c + 4, c + 8, c + 12; then keys in order */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(x[0], x[1], 0x88),
                                   _mm512_shuffle_ps(x[0], x[1], 0xdd));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, r);
}

/* Sixteen keys at a time, one accumulator each: each step loads 16 of a
 * query head's values once for the sixteen, and one reduction gives all
 * their scores. A last group short of keys repeats its last one, whose
 * extra sums are dropped, so a key's score takes the same steps wherever
 * it falls. kind is a compile-time constant (the block's dtype). */
S_INLINE void
s_scores(const float *q, int n_q, const sq_cpu_kv_block_t *k, int kind, float *scores, size_t ld)
{
    const int hd = k->hd;
    const size_t row = sq_cpu_kv_row(kind, hd);
    for (int j = 0; j < k->n; j += S_KEYS) {
        const char *kr[S_KEYS];
        const int nk = sq_cpu_kv_key_group(k, row, j, S_KEYS, kr);
        for (int h = 0; h < n_q; h++) {
            const float *qh = q + (size_t) h * hd;
            __m512 acc[S_KEYS];
            SQ_CPU_UNROLL for (int i = 0; i < S_KEYS; i++)
                acc[i] = _mm512_setzero_ps();
            for (int d = 0; d < hd; d += 16) {
                const __mmask16 m = s_mask(hd - d);
                const __m512 qv = _mm512_maskz_loadu_ps(m, qh + d);
                SQ_CPU_UNROLL for (int i = 0; i < S_KEYS; i++)
                    acc[i] = _mm512_fmadd_ps(qv, s_kv16(kr[i], kind, d, m), acc[i]);
            }
            _mm512_mask_storeu_ps(scores + (size_t) h * ld + j, s_mask(nk), s_hsum16(acc));
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
        for (; d + 64 <= hd; d += 64) {   /* 64 dims in four registers over all rows */
            const bool fetch = h == 0 && d == 0 && v->next;   /* each line once */
            __m512 acc[4];
            SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                acc[c] = _mm512_loadu_ps(o + d + 16 * c);
            for (int j = 0; j < v->n; j++) {
                const __m512 pj = _mm512_set1_ps(ph[j]);
                const char *vr = S_ROW(v->rows, row, j);
                if (fetch)
                    sq_cpu_kv_prefetch_row(v, row, j);
                SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                    acc[c] = _mm512_fmadd_ps(pj, s_kv16(vr, kind, d + 16 * c, 0xffff), acc[c]);
            }
            SQ_CPU_UNROLL for (int c = 0; c < 4; c++)
                _mm512_storeu_ps(o + d + 16 * c, acc[c]);
        }
        for (; d < hd; d += 16) {
            const __mmask16 m = s_mask(hd - d);
            __m512 acc = _mm512_maskz_loadu_ps(m, o + d);
            for (int j = 0; j < v->n; j++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(ph[j]),
                                      s_kv16(S_ROW(v->rows, row, j), kind, d, m), acc);
            _mm512_mask_storeu_ps(o + d, m, acc);
        }
    }
}

SQ_CPU_ATTN_ENTRIES(s_scores, s_values, sq_cpu_q8_0_to_f32_avx2)

/* What both AVX-512 levels share; avx512vnni has its own Q8_0 kernels. */
#define S_AVX512_KERNELS                                                                          \
    .dot_f32 = s_dot_f32, .dot_f16 = s_dot_f16, .quantize_q8_0 = sq_cpu_quantize_q8_0_avx2,       \
    .f16_to_f32 = sq_cpu_f16_to_f32_avx2, .f32_to_f16 = sq_cpu_f32_to_f16_avx2,                   \
    .q8_0_to_f32 = sq_cpu_q8_0_to_f32_avx2,                                                       \
    .attn_scores = s_attn_scores, .attn_values = s_attn_values,                                   \
    .softmax = sq_cpu_softmax_avx2, .swiglu = sq_cpu_swiglu_avx2

const sq_cpu_kernels_t sq_cpu_kernels_avx512 = {
    .name = "avx512", S_AVX512_KERNELS, .dot_q8_0 = s_dot_q8_0};

const sq_cpu_kernels_t sq_cpu_kernels_avx512vnni = {
    .name = "avx512vnni", S_AVX512_KERNELS, .dot_q8_0 = s_dot_q8_0_vnni,
    .gemm_q8_0x16 = s_gemm_q8_0x16};
