/*  Tests of sq_cpu_kernels: fp16 conversion, Q8_0 quantization, every SIMD
 *  level this CPU has against the scalar reference, the exp of the softmax
 *  and SwiGLU, and the thread pool. */
#define _GNU_SOURCE
#include "sq_cpu_internal.h"
#include "sq_error.h"
#include "sq_test.h"

#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *s_levels[] = {"portable", "avx2", "avx2vnni", "avx512", "avx512vnni"};
#define S_N_LEVELS 5

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint32_t
s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t) (s_rng >> 32);
}

/* Uniform in [-1, 1). */
static float
s_randf(void)
{
    return (float) s_rand() / 2147483648.0f - 1.0f;
}

static uint32_t
s_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float
s_from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static void
test_fp16_known_values(void)
{
    SQ_CHECK(sq_fp16_to_fp32(0x3c00) == 1.0f);
    SQ_CHECK(sq_fp16_to_fp32(0xc000) == -2.0f);
    SQ_CHECK(sq_fp16_to_fp32(0x7bff) == 65504.0f);
    SQ_CHECK(sq_fp16_to_fp32(0x0001) == 0x1p-24f);          /* smallest subnormal */
    SQ_CHECK(sq_fp16_to_fp32(0x03ff) == 1023 * 0x1p-24f);    /* largest subnormal */
    SQ_CHECK(sq_fp16_to_fp32(0x0400) == 0x1p-14f);           /* smallest normal */
    SQ_CHECK(isinf(sq_fp16_to_fp32(0x7c00)) && sq_fp16_to_fp32(0x7c00) > 0);
    SQ_CHECK(isinf(sq_fp16_to_fp32(0xfc00)) && sq_fp16_to_fp32(0xfc00) < 0);
    SQ_CHECK(isnan(sq_fp16_to_fp32(0x7e00)));
    SQ_CHECK(s_bits(sq_fp16_to_fp32(0x8000)) == 0x80000000u);

    SQ_CHECK(sq_fp32_to_fp16(1.0f) == 0x3c00);
    SQ_CHECK(sq_fp32_to_fp16(-0.0f) == 0x8000);
    SQ_CHECK(sq_fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);      /* tie: to even */
    SQ_CHECK(sq_fp32_to_fp16(1.0f + 3 * 0x1p-11f) == 0x3c02);  /* tie: to even */
    SQ_CHECK(sq_fp32_to_fp16(65519.0f) == 0x7bff);
    SQ_CHECK(sq_fp32_to_fp16(65520.0f) == 0x7c00);             /* overflow to inf */
    SQ_CHECK(sq_fp32_to_fp16(1e30f) == 0x7c00);
    SQ_CHECK(sq_fp32_to_fp16(-INFINITY) == 0xfc00);
    SQ_CHECK(sq_fp32_to_fp16(0x1p-25f) == 0x0000);             /* tie: to even (0) */
    SQ_CHECK(sq_fp32_to_fp16(3 * 0x1p-25f) == 0x0002);         /* tie: to even (2) */
    SQ_CHECK(sq_fp32_to_fp16(1023.5f * 0x1p-24f) == 0x0400);   /* rounds up into normal */
    SQ_CHECK(sq_fp32_to_fp16(1e-30f) == 0x0000);
    uint16_t h = sq_fp32_to_fp16(NAN);
    SQ_CHECK((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
}

/* Every half value survives half -> float -> half; NaNs stay NaN. */
static void
test_fp16_round_trip_all(void)
{
    int bad = 0;
    for (uint32_t i = 0; i < (1u << 16); i++) {
        uint16_t h = (uint16_t) i;
        float f = sq_fp16_to_fp32(h);
        uint16_t back = sq_fp32_to_fp16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != h)
            bad++;
    }
    SQ_CHECK(bad == 0);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t
s_hw_fp32_to_fp16(float f)
{
    return (uint16_t) _cvtss_sh(f, 0);
}

/* Random float bit patterns (all exponents) convert as the F16C unit does. */
static void
test_fp16_matches_hardware(void)
{
    if (!(sq_cpu_features() & SQ_CPU_F16C))
        return;
    int bad = 0;
    for (int i = 0; i < 2000000; i++) {
        float f = s_from_bits(s_rand());
        if (isnan(f))
            continue;
        if (sq_fp32_to_fp16(f) != s_hw_fp32_to_fp16(f))
            bad++;
    }
    SQ_CHECK(bad == 0);
}
#endif

/* Each level's quantizer is bit-identical to the reference. */
static void
test_quantize_levels(void)
{
    enum { N = 32 * 40 };
    static float x[N];
    static sq_block_q8_0_t ref[N / 32], got[N / 32];
    for (int i = 0; i < N; i++)
        x[i] = s_randf() * (float) (1 + i / 32);
    memset(x + 64, 0, 32 * sizeof(float));   /* an all-zero block */
    x[100] = 3.5f * 127;                       /* exact ties after scaling */
    sq_cpu_quantize_row_q8_0_ref(x, ref, N);
    SQ_CHECK(ref[2].d == 0);
    for (int i = 0; i < 32; i++)
        SQ_CHECK(ref[2].qs[i] == 0);
    for (int l = 0; l < S_N_LEVELS; l++) {
        const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
        if (!k)
            continue;
        memset(got, 0x55, sizeof got);
        k->quantize_q8_0(x, got, N);
        SQ_CHECK(memcmp(ref, got, sizeof ref) == 0);
    }
    sq_cpu_quantize_row_q8_0(x, got, N);
    SQ_CHECK(memcmp(ref, got, sizeof ref) == 0);
    /* Dequantized values are within half a step of the input. */
    static float back[N];
    sq_cpu_dequantize_row(SQ_DTYPE_Q8_0, ref, back, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (fabsf(back[i] - x[i]) > 0.51f * sq_fp16_to_fp32(ref[i / 32].d) + 1e-3f * fabsf(x[i]))
            bad++;
    SQ_CHECK(bad == 0);
}

/* Each level's F16 row conversions give the reference's bits: every half
 * value widened, and float bit patterns of every exponent (ties, overflow,
 * subnormals, infinities) narrowed, at lengths with and without a
 * partial vector at the end; NaN stays NaN both ways. */
static void
test_f16_rows_levels(void)
{
    enum { N_H = 1 << 16, N_F = 4099 };
    static uint16_t h[N_H], h_ref[N_F], h_got[N_F + 1];
    static float f[N_H], f_ref[N_H], f_got[N_H + 1];
    for (uint32_t i = 0; i < N_H; i++)
        h[i] = (uint16_t) i;
    for (int i = 0; i < N_F; i++)
        f[i] = s_from_bits(s_rand());
    f[0] = 1.0f + 0x1p-11f;      /* a tie, to even */
    f[1] = 65520.0f;             /* overflow to inf */
    f[2] = 3 * 0x1p-25f;         /* subnormal tie */
    f[3] = -INFINITY;
    f[4] = NAN;
    sq_cpu_f16_to_f32_ref(h, f_ref, N_H);
    sq_cpu_f32_to_f16_ref(f, h_ref, N_F);
    int bad = 0, runs = 0;
    for (int l = 0; l < S_N_LEVELS; l++) {
        const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
        if (!k)
            continue;
        for (int n_f = N_F - 3; n_f <= N_F; n_f++) {
            f_got[N_H] = 7.0f;
            h_got[n_f] = 0x5555;
            k->f16_to_f32(h, f_got, N_H);
            k->f32_to_f16(f, h_got, n_f);
            for (int i = 0; i < N_H; i++)
                bad += isnan(f_ref[i]) ? !isnan(f_got[i]) : s_bits(f_got[i]) != s_bits(f_ref[i]);
            for (int i = 0; i < n_f; i++) {
                const int nan = (h_ref[i] & 0x7c00) == 0x7c00 && (h_ref[i] & 0x3ff);
                bad += nan ? !((h_got[i] & 0x7c00) == 0x7c00 && (h_got[i] & 0x3ff))
                           : h_got[i] != h_ref[i];
            }
            bad += f_got[N_H] != 7.0f || h_got[n_f] != 0x5555;   /* nothing past the end */
            runs++;
        }
    }
    SQ_CHECK(runs >= 4 && bad == 0);
    /* Q8_0 rows: every level gives the reference's values (random blocks
     * with every int8 and scales of every exponent, -128 and -0 among
     * them), writing nothing past the end */
    enum { N_B = 256 };
    static sq_block_q8_0_t q8[N_B];
    for (int b = 0; b < N_B; b++) {
        q8[b].d = (uint16_t) (s_rand() & 0x7bff);   /* finite, either sign */
        for (int i = 0; i < SQ_QK8_0; i++)
            q8[b].qs[i] = (int8_t) (b * SQ_QK8_0 + i);
    }
    q8[1].d = 0x8000;
    sq_cpu_q8_0_to_f32_ref(q8, f_ref, N_B * SQ_QK8_0);
    int bad8 = 0;
    for (int l = 0; l < S_N_LEVELS; l++) {
        const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
        if (!k)
            continue;
        f_got[N_B * SQ_QK8_0] = 7.0f;
        k->q8_0_to_f32(q8, f_got, N_B * SQ_QK8_0);
        bad8 += memcmp(f_got, f_ref, N_B * SQ_QK8_0 * sizeof *f_got) != 0;
        bad8 += f_got[N_B * SQ_QK8_0] != 7.0f;
    }
    sq_cpu_dequantize_row(SQ_DTYPE_Q8_0, q8, f_got, N_B * SQ_QK8_0);
    bad8 += memcmp(f_got, f_ref, N_B * SQ_QK8_0 * sizeof *f_got) != 0;
    sq_cpu_q8_0_to_f32_row(q8, f_got, N_B * SQ_QK8_0);
    bad8 += memcmp(f_got, f_ref, N_B * SQ_QK8_0 * sizeof *f_got) != 0;
    SQ_CHECK(bad8 == 0 && f_ref[3 * SQ_QK8_0 - 1] != 0.0f);
    /* the public entry points (the chosen level) */
    sq_cpu_f32_to_f16_row(f, h_got, N_F);
    sq_cpu_f16_to_f32_row(h_got, f_got, N_F);
    SQ_CHECK(h_got[0] == 0x3c00 && h_got[1] == 0x7c00 && h_got[2] == 0x0002 && h_got[3] == 0xfc00);
    SQ_CHECK(f_got[0] == 1.0f && isinf(f_got[1]) && isnan(f_got[4]));
    SQ_CHECK(memcmp(h_got + 5, h_ref + 5, (N_F - 5) * sizeof *h_got) == 0);
}

/* sq_cpu_exp against exp in double: the largest error in ulps of the
 * true value over n points of [lo, hi]. */
static double
s_exp_worst_ulps(float lo, float hi, int n)
{
    double worst = 0;
    for (int i = 0; i <= n; i++) {
        const float x = lo + (hi - lo) * (float) i / (float) n;
        const double ref = exp((double) x);
        const double ulp = ldexp(1.0, ilogb(ref) - 23);
        const double err = fabs((double) sq_cpu_exp(x) - ref) / ulp;
        worst = err > worst ? err : worst;
    }
    return worst;
}

/* The exp of the softmax and SwiGLU: within 2 ulp over the whole range it
 * does not clamp, exactly 1 at 0, clamped (not 0, not infinite) beyond,
 * NaN kept. */
static void
test_exp_accuracy(void)
{
    const double worst = s_exp_worst_ulps(-87.0f, 88.0f, 400000);
    const double near0 = s_exp_worst_ulps(-1.0f, 1.0f, 100000);
    printf("   exp: worst %.2f ulp over [-87, 88], %.2f over [-1, 1]\n", worst, near0);
    SQ_CHECK(worst <= 2.0 && near0 <= 2.0);
    SQ_CHECK(sq_cpu_exp(0.0f) == 1.0f && sq_cpu_exp(-0.0f) == 1.0f);
    SQ_CHECK(sq_cpu_exp(-1000.0f) == sq_cpu_exp(SQ_CPU_EXP_LO) && sq_cpu_exp(-1000.0f) > 0);
    SQ_CHECK(isfinite(sq_cpu_exp(1000.0f)) && sq_cpu_exp(1000.0f) == sq_cpu_exp(SQ_CPU_EXP_HI));
    SQ_CHECK(isfinite(sq_cpu_exp(-INFINITY)) && isfinite(sq_cpu_exp(INFINITY)));
    SQ_CHECK(isnan(sq_cpu_exp(NAN)));
}

/* Each level's softmax and SwiGLU give the portable level's bits, at
 * lengths around the vector widths and the 16 partial sums; both agree
 * with double-precision references; nothing past n is written. */
static void
test_softmax_swiglu_levels(void)
{
    enum { MAX_N = 1100 };
    static const int ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 37, 100, 1025, MAX_N};
    static float x[MAX_N], g[MAX_N], up[MAX_N], want_p[MAX_N + 1], want_g[MAX_N + 1];
    static float got_p[MAX_N + 1], got_g[MAX_N + 1];
    const sq_cpu_kernels_t *portable = sq_cpu_kernels_for("portable");
    int runs = 0, differ = 0, far = 0, spill = 0;
    for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
        const int n = ns[c];
        for (int i = 0; i < n; i++) {
            x[i] = 40.0f * s_randf();           /* scores, scaled by 1/8 below */
            g[i] = 12.0f * s_randf();
            up[i] = s_randf();
        }
        g[0] = n > 3 ? -95.0f : g[0];           /* exp(-gate) clamped */
        g[n / 2] = n > 3 ? 95.0f : g[n / 2];
        memcpy(want_p, x, (size_t) n * sizeof *x);
        memcpy(want_g, g, (size_t) n * sizeof *g);
        portable->softmax(want_p, n, 0.125f);
        portable->swiglu(want_g, up, n);
        /* against double */
        double max = -INFINITY, sum = 0;
        for (int i = 0; i < n; i++)
            max = x[i] > max ? x[i] : max;
        for (int i = 0; i < n; i++)
            sum += exp((x[i] - max) * 0.125);
        for (int i = 0; i < n; i++) {
            const double p = exp((x[i] - max) * 0.125) / sum;
            const double gi = g[i], sg = gi / (1 + exp(-gi)) * up[i];
            far += fabs(want_p[i] - p) > 1e-6 * p + 1e-37;
            far += fabs(want_g[i] - sg) > 1e-6 * fabs(sg) + 1e-30;
        }
        for (int l = 0; l < S_N_LEVELS; l++) {
            const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
            if (!k)
                continue;
            memcpy(got_p, x, (size_t) n * sizeof *x);
            memcpy(got_g, g, (size_t) n * sizeof *g);
            got_p[n] = got_g[n] = 7.0f;
            k->softmax(got_p, n, 0.125f);
            k->swiglu(got_g, up, n);
            for (int i = 0; i < n; i++)
                differ += s_bits(got_p[i]) != s_bits(want_p[i]) ||
                          s_bits(got_g[i]) != s_bits(want_g[i]);
            spill += got_p[n] != 7.0f || got_g[n] != 7.0f;
            runs++;
        }
    }
    SQ_CHECK(runs >= 2 * (int) (sizeof ns / sizeof *ns));
    SQ_CHECK(differ == 0);
    SQ_CHECK(far == 0);
    SQ_CHECK(spill == 0);
    /* the public entry points; NaN spreads through a softmax */
    float row[3] = {1.0f, 2.0f, 3.0f}, gate[2] = {0.0f, NAN}, u[2] = {1.0f, 1.0f};
    sq_cpu_softmax_row(row, 3, 1.0f);
    SQ_CHECK(fabsf(row[0] + row[1] + row[2] - 1.0f) < 1e-6f && row[0] < row[1] && row[1] < row[2]);
    sq_cpu_swiglu_row(gate, u, 2);
    SQ_CHECK(gate[0] == 0.0f && isnan(gate[1]));
    float bad[17];
    for (int i = 0; i < 17; i++)
        bad[i] = (float) i;
    bad[5] = NAN;
    sq_cpu_softmax_row(bad, 17, 1.0f);
    SQ_CHECK(isnan(bad[0]) && isnan(bad[16]));
}

/* rows j0.. of an F32 (kv32) or F16 (kv16) cache of hd-value rows as a
 * block of n rows, naming next for prefetch */
static sq_cpu_kv_block_t
s_kv_block(const float *kv32, const uint16_t *kv16, int j0, int n, int hd, const void *next)
{
    const size_t at = (size_t) j0 * (size_t) hd;
    return (sq_cpu_kv_block_t){.rows = kv16 ? (const void *) (kv16 + at) : (const void *) (kv32 + at),
                               .next = next,
                               .dtype = kv16 ? SQ_DTYPE_F16 : SQ_DTYPE_F32,
                               .n = n,
                               .hd = hd};
}

/* Q8_0 cache rows (n of hd values, hd % 32 == 0) through level kt: the
 * bits of their values dequantized into F32 rows, for
 * all nq heads at once, one head alone, keys from row 5 on, and the rows
 * in two calls naming the next; and not the unquantized rows' scores sc.
 * The count of differences. */
static int
s_attn_q8_0(const sq_cpu_kernels_t *kt, const float *q, const float *p, const float *k,
            const float *v, int n, int nq, int hd, const float *sc)
{
    enum { NQ_MAX = 10, HD_MAX = 136, N_MAX = 37 };
    static sq_block_q8_0_t k8[N_MAX * HD_MAX / SQ_QK8_0], v8[N_MAX * HD_MAX / SQ_QK8_0];
    static float kw[N_MAX * HD_MAX], vw[N_MAX * HD_MAX], scw[NQ_MAX * N_MAX],
        sc8[NQ_MAX * N_MAX], outw[NQ_MAX * HD_MAX], out8[NQ_MAX * HD_MAX], out1[HD_MAX];
    const size_t row = sq_cpu_row_bytes(SQ_DTYPE_Q8_0, hd);
    sq_cpu_quantize_row_q8_0_ref(k, k8, (int64_t) n * hd);
    sq_cpu_quantize_row_q8_0_ref(v, v8, (int64_t) n * hd);
    sq_cpu_dequantize_row(SQ_DTYPE_Q8_0, k8, kw, (int64_t) n * hd);
    sq_cpu_dequantize_row(SQ_DTYPE_Q8_0, v8, vw, (int64_t) n * hd);
    const sq_cpu_kv_block_t kwb = s_kv_block(kw, NULL, 0, n, hd, NULL),
                            vwb = s_kv_block(vw, NULL, 0, n, hd, NULL),
                            kqb = {.rows = k8, .next = v8, .dtype = SQ_DTYPE_Q8_0, .n = n,
                                   .hd = hd},
                            vqb = {.rows = v8, .next = k8, .dtype = SQ_DTYPE_Q8_0, .n = n,
                                   .hd = hd};
    for (int i = 0; i < nq * hd; i++)
        outw[i] = out8[i] = 0.5f;
    kt->attn_scores(q, nq, &kwb, scw, n);
    kt->attn_values(p, n, nq, &vwb, outw);
    kt->attn_scores(q, nq, &kqb, sc8, n);
    kt->attn_values(p, n, nq, &vqb, out8);
    int bad = memcmp(sc8, scw, (size_t) (nq * n) * sizeof *sc8) != 0;
    bad += memcmp(out8, outw, (size_t) (nq * hd) * sizeof *out8) != 0;
    bad += memcmp(sc8, sc, (size_t) (nq * n) * sizeof *sc8) == 0;   /* the Q8_0 path read them */
    /* the last head alone, over keys 5.. */
    const sq_cpu_kv_block_t k5 = {.rows = (const char *) k8 + 5 * row, .dtype = SQ_DTYPE_Q8_0,
                                  .n = n - 5, .hd = hd};
    float s1[N_MAX];
    kt->attn_scores(q + (nq - 1) * hd, 1, &k5, s1, n);
    bad += memcmp(s1, sc8 + (nq - 1) * n + 5, (size_t) (n - 5) * sizeof *s1) != 0;
    /* rows 0..12 naming 13.. as next, then 13.. */
    const sq_cpu_kv_block_t v13 = {.rows = v8, .next = (const char *) v8 + 13 * row,
                                   .dtype = SQ_DTYPE_Q8_0, .n = 13, .hd = hd},
                            vrest = {.rows = (const char *) v8 + 13 * row,
                                     .dtype = SQ_DTYPE_Q8_0, .n = n - 13, .hd = hd};
    for (int d = 0; d < hd; d++)
        out1[d] = 0.5f;
    kt->attn_values(p, n, 1, &v13, out1);
    kt->attn_values(p + 13, n, 1, &vrest, out1);
    bad += memcmp(out1, out8, (size_t) hd * sizeof *out1) != 0;
    return bad;
}

/* Each level's attention products against a double-precision reference
 * (head sizes with and without a partial vector, grouped heads, blocks of
 * keys that are and are not a multiple of the keys scored together), and
 * the same bits whatever the heads and rows of a call: each head alone,
 * and the rows in two calls, give what one call gives. An F16 cache gives
 * the bits of its values widened to F32, a Q8_0 cache (head sizes that
 * are multiples of 32) those of its values dequantized, and naming a next
 * block to prefetch changes nothing. */
static void
test_attn_levels(void)
{
    enum { N = 37, NQ = 10, HD_MAX = 136 };   /* NQ over the portable kernel's 8 heads a pass */
    static float q[NQ * HD_MAX], k[N * HD_MAX], v[N * HD_MAX], p[NQ * N];
    static float kw[N * HD_MAX], vw[N * HD_MAX];   /* k and v through F16, widened */
    static uint16_t k16[N * HD_MAX], v16[N * HD_MAX];
    static float sc[NQ * N], sc1[N], out[NQ * HD_MAX], out1[HD_MAX], out2[NQ * HD_MAX];
    static float scw[NQ * N], outw[NQ * HD_MAX], sch[NQ * N], outh[NQ * HD_MAX];
    const int hds[] = {64, 40, 128, 136, 7, 32};
    int bad = 0, bad16 = 0, bad8 = 0, runs = 0, runs8 = 0;
    for (size_t c = 0; c < sizeof hds / sizeof hds[0]; c++) {
        const int hd = hds[c];
        for (int i = 0; i < NQ * hd; i++)
            q[i] = s_randf();
        for (int i = 0; i < N * hd; i++)
            k[i] = s_randf(), v[i] = s_randf();
        for (int i = 0; i < NQ * N; i++)
            p[i] = (s_randf() + 1.0f) / N;
        sq_cpu_f32_to_f16_ref(k, k16, (int64_t) N * hd);
        sq_cpu_f32_to_f16_ref(v, v16, (int64_t) N * hd);
        sq_cpu_f16_to_f32_ref(k16, kw, (int64_t) N * hd);
        sq_cpu_f16_to_f32_ref(v16, vw, (int64_t) N * hd);
        const sq_cpu_kv_block_t kb = s_kv_block(k, NULL, 0, N, hd, NULL),
                                vb = s_kv_block(v, NULL, 0, N, hd, NULL);
        for (int l = 0; l < S_N_LEVELS; l++) {
            const sq_cpu_kernels_t *kt = sq_cpu_kernels_for(s_levels[l]);
            if (!kt)
                continue;
            runs++;
            for (int i = 0; i < NQ * hd; i++)
                out[i] = out2[i] = outw[i] = outh[i] = 0.5f;
            kt->attn_scores(q, NQ, &kb, sc, N);
            kt->attn_values(p, N, NQ, &vb, out);
            for (int h = 0; h < NQ; h++) {
                for (int j = 0; j < N; j++) {
                    double want = 0, mag = 0;
                    for (int d = 0; d < hd; d++) {
                        want += (double) q[h * hd + d] * k[j * hd + d];
                        mag += fabs((double) q[h * hd + d] * k[j * hd + d]);
                    }
                    bad += !(fabs(sc[h * N + j] - want) <= 1e-5 * mag + 1e-6);
                }
                for (int d = 0; d < hd; d++) {
                    double want = 0.5, mag = 0.5;
                    for (int j = 0; j < N; j++) {
                        want += (double) p[h * N + j] * v[j * hd + d];
                        mag += fabs((double) p[h * N + j] * v[j * hd + d]);
                    }
                    bad += !(fabs(out[h * hd + d] - want) <= 1e-5 * mag);
                }
                /* head h alone, and its keys from an odd row on */
                sq_cpu_kv_block_t k5 = s_kv_block(k, NULL, 5, N - 5, hd, NULL);
                kt->attn_scores(q + h * hd, 1, &k5, sc1, N);
                bad += memcmp(sc1, sc + h * N + 5, (N - 5) * sizeof *sc1) != 0;
                for (int d = 0; d < hd; d++)
                    out1[d] = 0.5f;
                kt->attn_values(p + h * N, N, 1, &vb, out1);
                bad += memcmp(out1, out + h * hd, hd * sizeof *out1) != 0;
            }
            /* the rows in two calls: 13 (naming the rest as next), then the rest */
            sq_cpu_kv_block_t v13 = s_kv_block(v, NULL, 0, 13, hd, v + 13 * hd),
                              vrest = s_kv_block(v, NULL, 13, N - 13, hd, NULL);
            kt->attn_values(p, N, NQ, &v13, out2);
            kt->attn_values(p + 13, N, NQ, &vrest, out2);
            bad += memcmp(out2, out, NQ * hd * sizeof *out) != 0;
            /* F16: the widened values' bits, with and without a next block */
            const sq_cpu_kv_block_t kwb = s_kv_block(kw, NULL, 0, N, hd, NULL),
                                    vwb = s_kv_block(vw, NULL, 0, N, hd, NULL),
                                    khb = s_kv_block(NULL, k16, 0, N, hd, v16),
                                    vhb = s_kv_block(NULL, v16, 0, N, hd, k16);
            kt->attn_scores(q, NQ, &kwb, scw, N);
            kt->attn_values(p, N, NQ, &vwb, outw);
            kt->attn_scores(q, NQ, &khb, sch, N);
            kt->attn_values(p, N, NQ, &vhb, outh);
            bad16 += memcmp(sch, scw, NQ * N * sizeof *sch) != 0;
            bad16 += memcmp(outh, outw, NQ * hd * sizeof *outh) != 0;
            /* and the F16 values are not the F32 ones: the F16 path read them */
            bad16 += memcmp(sch, sc, NQ * N * sizeof *sch) == 0;
            if (hd % SQ_QK8_0 == 0) {
                runs8++;
                bad8 += s_attn_q8_0(kt, q, p, k, v, N, NQ, hd, sc);
            }
        }
    }
    SQ_CHECK(runs >= 5 && bad == 0 && bad16 == 0);
    SQ_CHECK(runs8 >= 10 && bad8 == 0);
}

static void
test_row_bytes_and_dequantize(void)
{
    SQ_CHECK(sq_cpu_row_bytes(SQ_DTYPE_F32, 10) == 40);
    SQ_CHECK(sq_cpu_row_bytes(SQ_DTYPE_F16, 10) == 20);
    SQ_CHECK(sq_cpu_row_bytes(SQ_DTYPE_Q8_0, 64) == 68);
    SQ_CHECK(sq_cpu_row_bytes(SQ_DTYPE_Q8_0, 33) == 0);
    SQ_CHECK(sq_cpu_row_bytes(7, 32) == 0);
    SQ_CHECK(sizeof(sq_block_q8_0_t) == 34);
    uint16_t h[3] = {0x3c00, 0xc000, 0x3800};
    float f[3];
    sq_cpu_dequantize_row(SQ_DTYPE_F16, h, f, 3);
    SQ_CHECK(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f);
}

/* Random weights of dtype, n_out x n_in, and their float values (OUT wf). */
static void *
s_random_weights(int dtype, int64_t n_out, int64_t n_in, float *wf)
{
    size_t row = sq_cpu_row_bytes(dtype, n_in);
    char *w = malloc(row * (size_t) n_out + 1);
    float *tmp = malloc(sizeof(float) * (size_t) n_in);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++)
            tmp[i] = s_randf();
        void *wr = w + (size_t) o * row;
        if (dtype == SQ_DTYPE_F32)
            memcpy(wr, tmp, row);
        else if (dtype == SQ_DTYPE_F16)
            for (int64_t i = 0; i < n_in; i++)
                ((uint16_t *) wr)[i] = sq_fp32_to_fp16(tmp[i]);
        else
            sq_cpu_quantize_row_q8_0_ref(tmp, wr, n_in);
        sq_cpu_dequantize_row(dtype, wr, wf + o * n_in, n_in);
    }
    free(tmp);
    return w;
}

/* One dtype's product of w through every level and pool size 1..3:
 * against the reference ref, and each token's row the same bits as that
 * token's product alone. same_bits (NULL: not checked): every level and
 * pool gives exactly these bits (-12345 in ldy's padding). */
static int
s_check_levels(int dtype, const void *w, const float *wf, int64_t n_out, int64_t n_in,
               const float *x, int64_t n_tok, const float *ref, int64_t ldy,
               sq_threadpool_t **pools, float *same_bits)
{
    int bad = 0;
    float *got = malloc(sizeof(float) * (size_t) (n_tok * ldy));
    float *alone = malloc(sizeof(float) * (size_t) n_out);
    for (int l = 0; l < S_N_LEVELS; l++) {
        const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
        for (int p = 0; k && p < 3; p++) {
            for (int64_t i = 0; i < n_tok * ldy; i++)
                got[i] = -12345.0f;
            bad += sq_cpu_matmul_with(k, pools[p], dtype, w, n_out, n_in, x, n_tok, got, ldy) != 0;
            if (same_bits && memcmp(same_bits, got, sizeof(float) * (size_t) (n_tok * ldy))) {
                if (bad < 5)
                    fprintf(stderr, "%s dtype %d %lldx%lld, %d threads: not the expected bits\n",
                            s_levels[l], dtype, (long long) n_out, (long long) n_in, p + 1);
                bad++;
            }
            for (int64_t t = 0; t < n_tok; t++) {
                for (int64_t o = 0; o < ldy; o++) {
                    float r = ref[t * ldy + o], g = got[t * ldy + o];
                    if (o >= n_out) {          /* padding is left alone */
                        bad += g != -12345.0f;
                        continue;
                    }
                    float mag = 0.0f;
                    for (int64_t i = 0; i < n_in; i++)
                        mag += fabsf(wf[o * n_in + i] * x[t * n_in + i]);
                    if (!(fabsf(g - r) <= 1e-5f * mag + 1e-6f)) {
                        if (bad < 5)
                            fprintf(stderr, "%s dtype %d %lldx%lld tok %lld/%lld row %lld: %g vs %g\n",
                                    s_levels[l], dtype, (long long) n_out, (long long) n_in,
                                    (long long) t, (long long) n_tok, (long long) o, g, r);
                        bad++;
                    }
                }
            }
            /* batch invariance: each token alone gives the same bits */
            for (int64_t t = 0; t < n_tok; t++) {
                bad += sq_cpu_matmul_with(k, pools[p], dtype, w, n_out, n_in, x + t * n_in, 1,
                                          alone, n_out) != 0;
                if (memcmp(alone, got + t * ldy, (size_t) n_out * sizeof *alone) != 0) {
                    if (bad < 5)
                        fprintf(stderr, "%s dtype %d %lldx%lld tok %lld/%lld: alone != batched\n",
                                s_levels[l], dtype, (long long) n_out, (long long) n_in,
                                (long long) t, (long long) n_tok);
                    bad++;
                }
            }
        }
    }
    free(got);
    free(alone);
    return bad;
}

/* One shape: every level against the reference (s_check_levels); Q8_0
 * weights packed too, whose every level gives the reference's bits. */
static int
s_check_shape(int dtype, int64_t n_out, int64_t n_in, int64_t n_tok, sq_threadpool_t **pools)
{
    int64_t ldy = n_out + (n_tok % 3);
    float *wf = malloc(sizeof(float) * (size_t) (n_out * n_in));
    void *w = s_random_weights(dtype, n_out, n_in, wf);
    float *x = malloc(sizeof(float) * (size_t) (n_tok * n_in));
    float *ref = malloc(sizeof(float) * (size_t) (n_tok * ldy));
    for (int64_t i = 0; i < n_tok * n_in; i++)
        x[i] = s_randf() * 2.0f;
    int bad = sq_cpu_matmul_ref(dtype, w, n_out, n_in, x, n_tok, ref, ldy) != 0;
    bad += s_check_levels(dtype, w, wf, n_out, n_in, x, n_tok, ref, ldy, pools, NULL);
    if (dtype == SQ_DTYPE_Q8_0) {
        void *packed = malloc(sq_cpu_q8_0x16_bytes(n_out, n_in));
        float *bits = malloc(sizeof(float) * (size_t) (n_tok * ldy));
        for (int64_t i = 0; i < n_tok * ldy; i++)   /* the padding: left alone */
            bits[i] = i % ldy < n_out ? ref[i] : -12345.0f;
        sq_cpu_pack_q8_0x16(pools[n_tok % 3], w, n_out, n_in, packed);
        bad += s_check_levels(SQ_DTYPE_Q8_0X16, packed, wf, n_out, n_in, x, n_tok, ref, ldy, pools,
                              bits);
        free(packed);
        free(bits);
    }
    free(wf);
    free(w);
    free(x);
    free(ref);
    return bad;
}

static void
test_matmul_levels_against_reference(void)
{
    sq_threadpool_t *pools[3] = {NULL, sq_threadpool_new(2), sq_threadpool_new(3)};
    SQ_REQUIRE(pools[1] && pools[2]);
    static const int dtypes[3] = {SQ_DTYPE_F32, SQ_DTYPE_F16, SQ_DTYPE_Q8_0};
    int bad = 0, n_shapes = 0;
    for (int d = 0; d < 3; d++) {
        for (int64_t n_tok = 1; n_tok <= 17; n_tok++) {
            int64_t n_out = 1 + s_rand() % 70;             /* odd ones included */
            int64_t n_in = 32 * (1 + s_rand() % 9);
            if (dtypes[d] != SQ_DTYPE_Q8_0 && n_tok % 2)
                n_in += 1 + s_rand() % 31;                /* ragged tails */
            bad += s_check_shape(dtypes[d], n_out, n_in, n_tok, pools);
            n_shapes++;
        }
        bad += s_check_shape(dtypes[d], 67, 4096, 3, pools);   /* a long row */
        bad += s_check_shape(dtypes[d], 5, 64, 300, pools);    /* many token tiles */
        bad += s_check_shape(dtypes[d], 48, 96, 9, pools);     /* whole groups of 16 */
        bad += s_check_shape(dtypes[d], 40, 2048, 120, pools); /* groups over 2 token tiles */
    }
    SQ_CHECK(n_shapes == 51);
    SQ_CHECK(bad == 0);
    sq_threadpool_destroy(&pools[1]);
    sq_threadpool_destroy(&pools[2]);
}

/* Several weights in one pass give each weight's own product, bit for
 * bit, through every level and pool size: four weights of one dtype (one
 * empty, one of a single row, tails of groups and row blocks), 1, 5 and 17
 * tokens, packed Q8_0 too; and the weight count is checked. */
static void
test_matmul_n_same_bits(void)
{
    enum { I = 96, T_MAX = 17, N = 4 };
    static const int64_t n_outs[N] = {37, 0, 1, 64};
    static const int dtypes[4] = {SQ_DTYPE_F32, SQ_DTYPE_F16, SQ_DTYPE_Q8_0, SQ_DTYPE_Q8_0X16};
    static const int64_t toks[3] = {1, 5, T_MAX};
    sq_threadpool_t *pools[3] = {NULL, sq_threadpool_new(2), sq_threadpool_new(3)};
    SQ_REQUIRE(pools[1] && pools[2]);
    float x[T_MAX * I], wf[64 * I];
    for (int i = 0; i < T_MAX * I; i++)
        x[i] = s_randf();
    int bad = 0, runs = 0;
    for (int d = 0; d < 4; d++) {
        const int gguf = dtypes[d] == SQ_DTYPE_Q8_0X16 ? SQ_DTYPE_Q8_0 : dtypes[d];
        void *w[N];
        float *one[N], *all[N];
        sq_cpu_mat_t mats[N];
        for (int i = 0; i < N; i++) {
            w[i] = s_random_weights(gguf, n_outs[i], I, wf);
            if (dtypes[d] == SQ_DTYPE_Q8_0X16) {
                void *packed = malloc(sq_cpu_q8_0x16_bytes(n_outs[i], I) + 1);
                sq_cpu_pack_q8_0x16(NULL, w[i], n_outs[i], I, packed);
                free(w[i]);
                w[i] = packed;
            }
            one[i] = malloc(sizeof(float) * (size_t) (T_MAX * n_outs[i] + 1));
            all[i] = malloc(sizeof(float) * (size_t) (T_MAX * n_outs[i] + 1));
            mats[i] = (sq_cpu_mat_t){.w = w[i], .n_out = n_outs[i], .y = all[i],
                                     .ldy = n_outs[i]};
        }
        for (int l = 0; l < S_N_LEVELS; l++) {
            const sq_cpu_kernels_t *k = sq_cpu_kernels_for(s_levels[l]);
            for (int p = 0; k && p < 3; p++)
                for (int t = 0; t < 3; t++) {
                    const int64_t nt = toks[t];
                    runs++;
                    bad += sq_cpu_matmul_n_with(k, pools[p], dtypes[d], mats, N, I, x, nt) != 0;
                    for (int i = 0; i < N; i++) {
                        bad += sq_cpu_matmul_with(k, pools[p], dtypes[d], w[i], n_outs[i], I, x,
                                                  nt, one[i], n_outs[i]) != 0;
                        if (memcmp(one[i], all[i], sizeof(float) * (size_t) (nt * n_outs[i]))) {
                            if (bad < 5)
                                fprintf(stderr, "%s dtype %d weight %d, %d threads, %lld tokens: "
                                        "not its own product's bits\n", s_levels[l], dtypes[d],
                                        i, p + 1, (long long) nt);
                            bad++;
                        }
                    }
                }
        }
        for (int i = 0; i < N; i++) {
            free(w[i]);
            free(one[i]);
            free(all[i]);
        }
    }
    SQ_CHECK(runs >= 4 * 3 * 3 * 2 && bad == 0);
    /* the products are not all zero: the comparison above compared something */
    float y[2 * 64];
    void *w1 = s_random_weights(SQ_DTYPE_F32, 64, I, wf);
    sq_cpu_mat_t m1[2] = {{.w = w1, .n_out = 64, .y = y, .ldy = 64},
                          {.w = w1, .n_out = 64, .y = y + 64, .ldy = 64}};
    SQ_CHECK(sq_cpu_matmul_n(pools[1], SQ_DTYPE_F32, m1, 2, I, x, 1) == 0);
    SQ_CHECK(y[0] != 0.0f && memcmp(y, y + 64, 64 * sizeof *y) == 0);
    sq_error_clear();
    SQ_CHECK(sq_cpu_matmul_n(NULL, SQ_DTYPE_F32, m1, 0, I, x, 1) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "0 weights") != NULL);
    sq_cpu_mat_t m5[SQ_CPU_MATMUL_MAX + 1];
    for (int i = 0; i <= SQ_CPU_MATMUL_MAX; i++)
        m5[i] = m1[0];
    SQ_CHECK(sq_cpu_matmul_n(NULL, SQ_DTYPE_F32, m5, SQ_CPU_MATMUL_MAX + 1, I, x, 1) == SQ_EINVAL);
    m1[1].ldy = 63;   /* one bad member: refused as sq_cpu_matmul refuses it */
    SQ_CHECK(sq_cpu_matmul_n(NULL, SQ_DTYPE_F32, m1, 2, I, x, 1) == SQ_EINVAL);
    free(w1);
    sq_threadpool_destroy(&pools[1]);
    sq_threadpool_destroy(&pools[2]);
}

/* Packing keeps every value: each packed row reads back as the GGUF row
 * does, extremes (-128, 127, fp16 scales near 0 and large) included, in
 * groups and in the tail; the layout is as sq_cpu_kernels.h documents. */
static void
test_pack_round_trip(void)
{
    enum { O = 37, I = 96 };   /* two groups and a tail of 5 */
    float wf[O * I], a[I], b[I];
    sq_block_q8_0_t *w = s_random_weights(SQ_DTYPE_Q8_0, O, I, wf);
    w[0].qs[0] = -128;
    w[0].qs[31] = 127;
    w[3 * (I / 32) + 1].d = 0x0001;             /* a subnormal scale */
    w[17 * (I / 32) + 2].d = 0x7bff;            /* the largest */
    w[36 * (I / 32)].qs[5] = -128;              /* in the tail */
    SQ_CHECK(sq_cpu_q8_0x16_group_bytes(I) == 1664);   /* 3 x (512 + 32) = 1632, padded */
    SQ_CHECK(sq_cpu_q8_0x16_group_bytes(32) == 576);   /* 544 padded */
    SQ_CHECK(sq_cpu_q8_0x16_group_bytes(33) == 0);
    SQ_CHECK(sq_cpu_q8_0x16_bytes(O, I) == 2 * 1664 + 5 * 102);
    uint8_t *packed = malloc(sq_cpu_q8_0x16_bytes(O, I));
    SQ_REQUIRE(packed);
    sq_cpu_pack_q8_0x16(NULL, w, O, I, packed);
    /* row 1's values 4..7 of block 0: the second dword of the second
     * 64-byte vector, biased */
    SQ_CHECK(packed[64 + 1 * 4 + 0] == (uint8_t) (w[1 * (I / 32)].qs[4] + 128));
    SQ_CHECK(packed[0] == 0);                   /* -128 + 128 */
    int bad = 0;
    for (int o = 0; o < O; o++) {
        sq_cpu_dequantize_row(SQ_DTYPE_Q8_0, w + (size_t) o * (I / 32), a, I);
        sq_cpu_q8_0x16_row(packed, O, I, o, b);
        bad += memcmp(a, b, sizeof a) != 0;
    }
    SQ_CHECK(bad == 0);
    free(packed);
    free(w);
}

/* The public entry point agrees with the reference too. */
static void
test_matmul_public(void)
{
    enum { O = 19, I = 96, T = 5 };
    float wf[O * I], x[T * I], ref[T * O], got[T * O];
    void *w = s_random_weights(SQ_DTYPE_Q8_0, O, I, wf);
    for (int i = 0; i < T * I; i++)
        x[i] = s_randf();
    sq_threadpool_t *pool = sq_threadpool_new(2);
    SQ_REQUIRE(pool);
    SQ_CHECK(sq_cpu_matmul_ref(SQ_DTYPE_Q8_0, w, O, I, x, T, ref, O) == 0);
    SQ_CHECK(sq_cpu_matmul(pool, SQ_DTYPE_Q8_0, w, O, I, x, T, got, O) == 0);
    for (int i = 0; i < T * O; i++)
        SQ_CHECK(fabsf(got[i] - ref[i]) <= 1e-3f);
    /* Q8_0 is close to the float product of the dequantized weights. */
    SQ_CHECK(sq_cpu_matmul_ref(SQ_DTYPE_F32, wf, O, I, x, T, got, O) == 0);
    for (int i = 0; i < T * O; i++)
        SQ_CHECK(fabsf(got[i] - ref[i]) <= 0.05f);
    sq_threadpool_destroy(&pool);
    free(w);
}

static void
test_matmul_bad_arguments(void)
{
    float w[64] = {0}, x[64] = {0}, y[4];
    sq_error_clear();
    SQ_CHECK(sq_cpu_matmul(NULL, SQ_DTYPE_Q8_0, w, 1, 33, x, 1, y, 1) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "Q8_0") != NULL);
    SQ_CHECK(sq_cpu_matmul(NULL, 2, w, 1, 32, x, 1, y, 1) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "type 2") != NULL);
    SQ_CHECK(sq_cpu_matmul(NULL, SQ_DTYPE_F32, w, 4, 8, x, 1, y, 3) == SQ_EINVAL);
    SQ_CHECK(sq_cpu_matmul_ref(SQ_DTYPE_F32, w, -1, 8, x, 1, y, 3) == SQ_EINVAL);
    SQ_CHECK(sq_cpu_matmul(NULL, SQ_DTYPE_F32, w, 0, 8, x, 1, y, 0) == 0);
    SQ_CHECK(sq_cpu_matmul(NULL, SQ_DTYPE_Q8_0X16, w, 16, 40, x, 1, y, 16) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "32-blocks") != NULL);
    SQ_CHECK(sq_cpu_matmul_ref(SQ_DTYPE_Q8_0X16, w, 1, 32, x, 1, y, 1) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "packed") != NULL);
}

static void
test_simd_level(void)
{
    const char *level = sq_cpu_simd_level();
    int known = 0;
    for (int l = 0; l < S_N_LEVELS; l++)
        known += strcmp(level, s_levels[l]) == 0;
    SQ_CHECK(known == 1);
    SQ_CHECK(sq_cpu_kernels_for(level) != NULL);
    SQ_CHECK(sq_cpu_kernels_for("portable") != NULL);
    SQ_CHECK(sq_cpu_kernels_for("sse9") == NULL);
    /* The cap in SQ_CPU_SIMD (set by the CTest entry that runs us capped). */
    const char *cap = getenv("SQ_CPU_SIMD");
    if (cap && strcmp(cap, "portable") == 0)
        SQ_CHECK(strcmp(level, "portable") == 0);
    fprintf(stderr, "simd level: %s\n", level);
}

typedef struct {
    atomic_int counts[8];
    atomic_int bad_nth;
    int expect_nth;
} s_pool_probe_t;

static void
s_probe(void *arg, int ith, int nth)
{
    s_pool_probe_t *p = arg;
    if (nth != p->expect_nth || ith < 0 || ith >= nth)
        atomic_fetch_add(&p->bad_nth, 1);
    else
        atomic_fetch_add(&p->counts[ith], 1);
}

/* Each ith runs exactly once per job, for many jobs in a row. */
static void
test_threadpool_runs_each_once(void)
{
    SQ_CHECK(sq_threadpool_new(0) == NULL);
    SQ_CHECK(sq_threadpool_size(NULL) == 1);
    for (int n = 1; n <= 4; n++) {
        sq_threadpool_t *pool = sq_threadpool_new(n);
        SQ_REQUIRE(pool);
        SQ_CHECK(sq_threadpool_size(pool) == n);
        s_pool_probe_t probe = {.expect_nth = n};
        enum { RUNS = 20000 };
        int bad = 0;
        for (int r = 0; r < RUNS; r++) {
            sq_threadpool_run(pool, s_probe, &probe);
            for (int i = 0; i < n; i++)     /* the job is complete on return */
                bad += atomic_load(&probe.counts[i]) != r + 1;
        }
        SQ_CHECK(bad == 0);
        SQ_CHECK(atomic_load(&probe.bad_nth) == 0);
        sq_threadpool_destroy(&pool);
        SQ_CHECK(pool == NULL);
        sq_threadpool_destroy(&pool);
    }
    s_pool_probe_t probe = {.expect_nth = 1};
    sq_threadpool_run(NULL, s_probe, &probe);
    SQ_CHECK(atomic_load(&probe.counts[0]) == 1);
}

int
main(void)
{
    SQ_RUN(test_fp16_known_values);
    SQ_RUN(test_fp16_round_trip_all);
#if defined(__x86_64__)
    SQ_RUN(test_fp16_matches_hardware);
#endif
    SQ_RUN(test_row_bytes_and_dequantize);
    SQ_RUN(test_quantize_levels);
    SQ_RUN(test_f16_rows_levels);
    SQ_RUN(test_exp_accuracy);
    SQ_RUN(test_softmax_swiglu_levels);
    SQ_RUN(test_attn_levels);
    SQ_RUN(test_matmul_levels_against_reference);
    SQ_RUN(test_matmul_n_same_bits);
    SQ_RUN(test_pack_round_trip);
    SQ_RUN(test_matmul_public);
    SQ_RUN(test_matmul_bad_arguments);
    SQ_RUN(test_simd_level);
    SQ_RUN(test_threadpool_runs_each_once);
    return sq_test_summary("cpu_kernels");
}
