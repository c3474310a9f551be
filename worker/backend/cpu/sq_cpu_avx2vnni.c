/*  sq_cpu_avx2vnni: the packed Q8_0 kernel (SQ_DTYPE_Q8_0X16) for CPUs
 *  with AVX-VNNI but no AVX-512 (Intel's E-core Xeons and client chips
 *  since Alder Lake). Compiled with -mavxvnni, and nothing else here: the
 *  rest of the "avx2vnni" level is the AVX2 level's code, which must not
 *  meet a VNNI instruction the compiler might choose for it.
 *
 *  The AVX-512 kernel's scheme on 256-bit registers: one ymm holds values
 *  4k .. 4k + 3 of 8 rows, so a group runs as two halves of 8 rows, each
 *  over every block, up to 4 tokens at a time (16 ymm registers: 8 for the
 *  half's values of a block, one for its scales, 4 accumulators).
 */
#include "sq_cpu_internal.h"

#include <immintrin.h>

#define S_INLINE static inline __attribute__((always_inline))
#define S_HALF (SQ_CPU_PACK_ROWS / 2)
#define S_NX 4

/* Rows 8h .. 8h + 7 of the group for NX tokens (a compile-time constant):
 * per block, 8 VPDPBUSD a token into two chains started at its -128 sum,
 * then a product with d_w * d_x and a sum, in the reference's order. */
S_INLINE void
s_half(const uint8_t *group, int64_t nb, int h, const sq_cpu_xq8_t *x, size_t xs, int NX,
       float *y, int64_t ldy)
{
    const uint16_t *d = (const uint16_t *) (group + nb * SQ_CPU_PACK_ROWS * SQ_QK8_0);
    __m256 acc[S_NX];
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
        acc[j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = group + b * SQ_CPU_PACK_ROWS * SQ_QK8_0 + h * S_HALF * 4;
        __m256i w[8];
        SQ_CPU_UNROLL for (int k = 0; k < 8; k++) {
            if (h == 0)   /* the second half reads the lines the first brought in */
                _mm_prefetch((const char *) q + k * 64 + SQ_CPU_PREFETCH_BYTES, _MM_HINT_T0);
            w[k] = _mm256_loadu_si256((const __m256i *) (q + k * 64));
        }
        __m256 dw = _mm256_cvtph_ps(
            _mm_loadu_si128((const __m128i *) (d + b * SQ_CPU_PACK_ROWS + h * S_HALF)));
        SQ_CPU_UNROLL for (int j = 0; j < NX; j++) {
            const sq_cpu_xq8_t *xb = x + (size_t) j * xs + b;
            __m256i s0 = _mm256_set1_epi32(xb->neg_bias), s1 = _mm256_setzero_si256();
            SQ_CPU_UNROLL for (int k = 0; k < 8; k += 2) {
                const __m256i x0 = _mm256_set1_epi32(sq_cpu_xq8_word(xb, k));
                const __m256i x1 = _mm256_set1_epi32(sq_cpu_xq8_word(xb, k + 1));
                s0 = _mm256_dpbusd_avx_epi32(s0, w[k], x0);
                s1 = _mm256_dpbusd_avx_epi32(s1, w[k + 1], x1);
            }
            __m256 p = _mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1));
            const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(xb->d));
            acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(p, scale));
        }
    }
    SQ_CPU_UNROLL for (int j = 0; j < NX; j++)
        _mm256_storeu_ps(y + (size_t) j * ldy + h * S_HALF, acc[j]);
}

S_INLINE void
s_group(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x, size_t xs, int NX, float *y,
        int64_t ldy)
{
    s_half(group, nb, 0, x, xs, NX, y, ldy);
    s_half(group, nb, 1, x, xs, NX, y, ldy);
}

void
sq_cpu_gemm_q8_0x16_avxvnni(const uint8_t *group, int64_t nb, const sq_cpu_xq8_t *x, size_t xs,
                            int n_x, float *y, int64_t ldy)
{
    for (int j0 = 0; j0 < n_x; j0 += S_NX, x += S_NX * xs, y += S_NX * ldy) {
        switch (n_x - j0 < S_NX ? n_x - j0 : S_NX) {
        case 1: s_group(group, nb, x, xs, 1, y, ldy); break;
        case 2: s_group(group, nb, x, xs, 2, y, ldy); break;
        case 3: s_group(group, nb, x, xs, 3, y, ldy); break;
        default: s_group(group, nb, x, xs, 4, y, ldy); break;
        }
    }
}
