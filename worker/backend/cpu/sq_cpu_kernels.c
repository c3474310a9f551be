/*  sq_cpu_kernels: number formats, the scalar reference, the portable
 *  kernels and the run-time choice of SIMD level.
 *
 *  The reference (sq_cpu_matmul_ref and the *_ref helpers) is the
 *  definition every fast path is tested against: plain loops, one thread,
 *  one accumulator. The portable level is the fallback for CPUs without
 *  AVX2; it keeps eight partial sums so that the compiler can vectorise it
 *  with whatever the baseline ISA offers. The matmul driver shared by all
 *  levels lives in sq_cpu_matmul.c.
 */
#define _GNU_SOURCE
#include "sq_cpu_internal.h"
#include "sq_error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- fp16 ---------------------------------------------------------------- */

float
sq_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t) (h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {                    /* inf / nan: keep the payload */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {                /* normal */
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {               /* signed zero */
        bits = sign;
    } else {                              /* subnormal: mant * 2^-24, exact */
        float v = (float) mant * 0x1p-24f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t
sq_fp32_to_fp16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t) ((bits >> 16) & 0x8000);
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u)                       /* nan: keep it quiet */
        return sign | 0x7e00 | (uint16_t) ((abs >> 13) & 0x3ff);
    if (abs >= 0x477ff000u)                      /* rounds to >= 65520: inf */
        return sign | 0x7c00;
    if (abs < 0x38800000u) {                     /* below 2^-14: subnormal */
        /* Adding 0.5 makes the FPU round mant * 2^-24 to nearest even. */
        float a;
        memcpy(&a, &abs, sizeof a);
        float r = a + 0.5f;
        uint32_t rbits;
        memcpy(&rbits, &r, sizeof rbits);
        return sign | (uint16_t) (rbits - 0x3f000000u);
    }
    uint32_t mant_odd = (abs >> 13) & 1;
    abs += 0xc8000fffu + mant_odd;               /* rebias exponent, round even */
    return sign | (uint16_t) (abs >> 13);
}

/* ---- rows ---------------------------------------------------------------- */

size_t
sq_cpu_row_bytes(int dtype, int64_t n)
{
    if (n < 0)
        return 0;
    switch (dtype) {
    case SQ_DTYPE_F32:
        return (size_t) n * sizeof(float);
    case SQ_DTYPE_F16:
        return (size_t) n * sizeof(uint16_t);
    case SQ_DTYPE_Q8_0:
        return n % SQ_QK8_0 ? 0 : (size_t) (n / SQ_QK8_0) * sizeof(sq_block_q8_0_t);
    default:
        return 0;
    }
}

void
sq_cpu_quantize_row_q8_0_ref(const float *x, sq_block_q8_0_t *y, int64_t n)
{
    for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
        const float *xb = x + b * SQ_QK8_0;
        float amax = 0.0f;
        for (int i = 0; i < SQ_QK8_0; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = sq_fp32_to_fp16(d);
        /* Round half to even, as the SIMD paths' vcvtps2dq does. */
        for (int i = 0; i < SQ_QK8_0; i++)
            y[b].qs[i] = (int8_t) nearbyintf(xb[i] * id);
    }
}

void
sq_cpu_f16_to_f32_ref(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = sq_fp16_to_fp32(x[i]);
}

void
sq_cpu_f32_to_f16_ref(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = sq_fp32_to_fp16(x[i]);
}

void
sq_cpu_quantize_row_q8_0(const float *x, sq_block_q8_0_t *y, int64_t n)
{
    sq_cpu_kernels_for(sq_cpu_simd_level())->quantize_q8_0(x, y, n);
}

void
sq_cpu_dequantize_row(int dtype, const void *x, float *y, int64_t n)
{
    if (dtype == SQ_DTYPE_F32) {
        memcpy(y, x, (size_t) n * sizeof(float));
    } else if (dtype == SQ_DTYPE_F16) {
        sq_cpu_f16_to_f32_ref(x, y, n);
    } else if (dtype == SQ_DTYPE_Q8_0) {
        sq_cpu_q8_0_to_f32_ref(x, y, n);
    }
}

void
sq_cpu_q8_0_to_f32_ref(const sq_block_q8_0_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = sq_cpu_q8_value((const char *) x, i);
}

/* ---- reference ----------------------------------------------------------- */

static int
s_check_args(int dtype, int64_t n_out, int64_t n_in, int64_t n_tok, int64_t ldy)
{
    if (dtype != SQ_DTYPE_F32 && dtype != SQ_DTYPE_F16 && dtype != SQ_DTYPE_Q8_0 &&
        dtype != SQ_DTYPE_Q8_0X16)
        return SQ_FAIL(SQ_EINVAL, "matmul: unsupported weight type %d", dtype);
    if (n_out < 0 || n_in < 0 || n_tok < 0 || ldy < n_out)
        return SQ_FAIL(SQ_EINVAL, "matmul: bad shape n_out %lld n_in %lld n_tok %lld ldy %lld",
                       (long long) n_out, (long long) n_in, (long long) n_tok, (long long) ldy);
    if ((dtype == SQ_DTYPE_Q8_0 || dtype == SQ_DTYPE_Q8_0X16) && n_in % SQ_QK8_0 != 0)
        return SQ_FAIL(SQ_EINVAL, "matmul: Q8_0 row of %lld values is not whole 32-blocks",
                       (long long) n_in);
    return 0;
}

int
sq_cpu_matmul_check(int dtype, int64_t n_out, int64_t n_in, int64_t n_tok, int64_t ldy)
{
    return s_check_args(dtype, n_out, n_in, n_tok, ldy);
}

/* One reference dot product of weight row w against activation row x (F32,
 * or Q8_0 blocks for Q8_0 weights: llama.cpp's integer scheme). */
static float
s_dot_ref(int dtype, const void *w, const void *x, int64_t n)
{
    float sum = 0.0f;
    if (dtype == SQ_DTYPE_Q8_0) {
        const sq_block_q8_0_t *wb = w, *xb = x;
        for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
            int32_t isum = 0;
            for (int i = 0; i < SQ_QK8_0; i++)
                isum += (int32_t) wb[b].qs[i] * xb[b].qs[i];
            sum += (float) isum * (sq_fp16_to_fp32(wb[b].d) * sq_fp16_to_fp32(xb[b].d));
        }
    } else {
        const float *xf = x;
        for (int64_t i = 0; i < n; i++) {
            float wv = dtype == SQ_DTYPE_F32 ? ((const float *) w)[i]
                                             : sq_fp16_to_fp32(((const uint16_t *) w)[i]);
            sum += wv * xf[i];
        }
    }
    return sum;
}

int
sq_cpu_matmul_ref(int dtype, const void *w, int64_t n_out, int64_t n_in, const float *x,
                  int64_t n_tok, float *y, int64_t ldy)
{
    int rc = s_check_args(dtype, n_out, n_in, n_tok, ldy);
    if (rc)
        return rc;
    if (dtype == SQ_DTYPE_Q8_0X16)   /* its reference is the portable level's kernel */
        return SQ_FAIL(SQ_EINVAL, "matmul_ref: takes GGUF layouts, not packed Q8_0");
    size_t row_bytes = sq_cpu_row_bytes(dtype, n_in);
    sq_block_q8_0_t *xq = NULL;
    if (dtype == SQ_DTYPE_Q8_0 && n_in > 0) {
        xq = malloc(sizeof *xq * (size_t) (n_in / SQ_QK8_0));
        if (!xq)
            return SQ_FAIL(SQ_ENOMEM, "matmul_ref: no memory for %lld activations", (long long) n_in);
    }
    for (int64_t t = 0; t < n_tok; t++) {
        const void *xt = x + t * n_in;
        if (xq) {
            sq_cpu_quantize_row_q8_0_ref(x + t * n_in, xq, n_in);
            xt = xq;
        }
        for (int64_t o = 0; o < n_out; o++)
            y[t * ldy + o] = s_dot_ref(dtype, (const char *) w + (size_t) o * row_bytes, xt, n_in);
    }
    free(xq);
    return 0;
}

/* ---- portable level ------------------------------------------------------ */

#define S_LANES 8

static float s_fp16_table[1 << 16];
static pthread_once_t s_fp16_once = PTHREAD_ONCE_INIT;

static void
s_fp16_table_init(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++)
        s_fp16_table[i] = sq_fp16_to_fp32((uint16_t) i);
}

/* One row: out[j] = w . x_j for F32 or F16 w; eight lanes the compiler can
 * vectorise. */
static void
s_dot_float_row(int dtype, const void *w, const void *x, size_t x_stride, int n_x, int64_t n,
                float *out)
{
    const float *wf = w;
    const uint16_t *wh = w;
    for (int j = 0; j < n_x; j++) {
        const float *xj = (const float *) ((const char *) x + (size_t) j * x_stride);
        float acc[S_LANES] = {0};
        float wv[S_LANES];
        int64_t i = 0;
        for (; i + S_LANES <= n; i += S_LANES) {
            for (int l = 0; l < S_LANES; l++)
                wv[l] = dtype == SQ_DTYPE_F32 ? wf[i + l] : s_fp16_table[wh[i + l]];
            for (int l = 0; l < S_LANES; l++)
                acc[l] += wv[l] * xj[i + l];
        }
        for (; i < n; i++)
            acc[0] += (dtype == SQ_DTYPE_F32 ? wf[i] : s_fp16_table[wh[i]]) * xj[i];
        float sum = 0.0f;
        for (int l = 0; l < S_LANES; l++)
            sum += acc[l];
        out[j] = sum;
    }
}

/* One row: out[j] = w . x_j for Q8_0 w and x, integer dot per block. */
static void
s_dot_q8_0_row(int dtype, const void *w, const void *x, size_t x_stride, int n_x, int64_t n,
               float *out)
{
    const sq_block_q8_0_t *wb = w;
    for (int j = 0; j < n_x; j++) {
        const sq_block_q8_0_t *xb = (const void *) ((const char *) x + (size_t) j * x_stride);
        float sum = 0.0f;
        for (int64_t b = 0; b < n / SQ_QK8_0; b++) {
            int32_t isum = 0;
            for (int i = 0; i < SQ_QK8_0; i++)
                isum += (int32_t) wb[b].qs[i] * xb[b].qs[i];
            sum += (float) isum * (s_fp16_table[wb[b].d] * s_fp16_table[xb[b].d]);
        }
        out[j] = sum;
    }
}

typedef void (*s_row_fn)(int dtype, const void *w, const void *x, size_t x_stride, int n_x,
                         int64_t n, float *out);

static void
s_dot_rows(s_row_fn row, int dtype, const void *w, size_t w_stride, int n_w, const void *x,
           size_t x_stride, int n_x, int64_t n, float *out)
{
    pthread_once(&s_fp16_once, s_fp16_table_init);
    for (int r = 0; r < n_w; r++)
        row(dtype, (const char *) w + (size_t) r * w_stride, x, x_stride, n_x, n,
            out + r * SQ_CPU_NX);
}

static void
s_dot_f32_portable(const void *w, size_t ws, int n_w, const void *x, size_t xs, int n_x, int64_t n,
                   float *out)
{
    s_dot_rows(s_dot_float_row, SQ_DTYPE_F32, w, ws, n_w, x, xs, n_x, n, out);
}

static void
s_dot_f16_portable(const void *w, size_t ws, int n_w, const void *x, size_t xs, int n_x, int64_t n,
                   float *out)
{
    s_dot_rows(s_dot_float_row, SQ_DTYPE_F16, w, ws, n_w, x, xs, n_x, n, out);
}

static void
s_dot_q8_0_portable(const void *w, size_t ws, int n_w, const void *x, size_t xs, int n_x,
                    int64_t n, float *out)
{
    s_dot_rows(s_dot_q8_0_row, SQ_DTYPE_Q8_0, w, ws, n_w, x, xs, n_x, n, out);
}

/* Values a portable attention kernel widens from F16 at a time (a
 * multiple of S_LANES). */
enum { S_SPAN = 64 };

/* values d0 .. d0 + m - 1 of row j of block b as floats: in place (F32),
 * or widened into w (F16, Q8_0) */
static const float *
s_kv_span(const sq_cpu_kv_block_t *b, int j, int d0, int m, float *w)
{
    const size_t at = (size_t) j * (size_t) b->hd + (size_t) d0;
    if (b->dtype == SQ_DTYPE_Q8_0) {
        const char *row = (const char *) b->rows + (size_t) j * sq_cpu_kv_row(SQ_CPU_KV_Q8, b->hd);
        for (int i = 0; i < m; i++)
            w[i] = sq_cpu_q8_value(row, d0 + i);
        return w;
    }
    if (b->dtype != SQ_DTYPE_F16)
        return (const float *) b->rows + at;
    sq_cpu_f16_to_f32_ref((const uint16_t *) b->rows + at, w, m);
    return w;
}

/* x . r over a span of m values: products at i < m rounded down to the
 * lanes into lane i % S_LANES of acc, the rest onto sum (returned) */
static inline float
s_dot_span(const float *x, const float *r, int m, float acc[S_LANES], float sum)
{
    float a[S_LANES];
    memcpy(a, acc, sizeof a);   /* in registers over the span */
    int i = 0;
    for (; i + S_LANES <= m; i += S_LANES)
        for (int l = 0; l < S_LANES; l++)
            a[l] += x[i + l] * r[i + l];
    for (; i < m; i++)
        sum += x[i] * r[i];
    memcpy(acc, a, sizeof a);
    return sum;
}

/* Query heads a portable score pass takes together. */
enum { S_HEADS = 8 };

/* Each score a dot product in eight lanes the compiler can vectorise,
 * added in a fixed order (a row's spans are multiples of the lanes, so
 * only its last span has a tail); each span widened once for up to
 * S_HEADS heads. */
static void
s_attn_scores_portable(const float *q, int n_q, const sq_cpu_kv_block_t *k, float *scores,
                       size_t ld)
{
    float w[S_SPAN];
    for (int j = 0; j < k->n; j++)
        for (int h0 = 0; h0 < n_q; h0 += S_HEADS) {
            const int nh = n_q - h0 < S_HEADS ? n_q - h0 : S_HEADS;
            float acc[S_HEADS][S_LANES], sum[S_HEADS];
            for (int h = 0; h < nh; h++) {
                memset(acc[h], 0, sizeof acc[h]);
                sum[h] = 0.0f;
            }
            for (int d0 = 0; d0 < k->hd; d0 += S_SPAN) {
                const int m = k->hd - d0 < S_SPAN ? k->hd - d0 : S_SPAN;
                const float *r = s_kv_span(k, j, d0, m, w);
                for (int h = 0; h < nh; h++)
                    sum[h] = s_dot_span(q + (size_t) (h0 + h) * k->hd + d0, r, m, acc[h], sum[h]);
            }
            for (int h = 0; h < nh; h++) {
                for (int l = 0; l < S_LANES; l++)
                    sum[h] += acc[h][l];
                scores[(size_t) (h0 + h) * ld + j] = sum[h];
            }
        }
}

/* row by row, each span widened once for every head */
static void
s_attn_values_portable(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v,
                       float *out)
{
    float w[S_SPAN];
    for (int j = 0; j < v->n; j++)
        for (int d0 = 0; d0 < v->hd; d0 += S_SPAN) {
            const int m = v->hd - d0 < S_SPAN ? v->hd - d0 : S_SPAN;
            const float *r = s_kv_span(v, j, d0, m, w);
            for (int h = 0; h < n_q; h++) {
                const float pj = p[(size_t) h * ld + j];
                float *o = out + (size_t) h * v->hd + d0;
                for (int d = 0; d < m; d++)
                    o[d] += pj * r[d];
            }
        }
}

static void
s_softmax_portable(float *x, int64_t n, float scale)
{
    float max = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        max = x[j] > max ? x[j] : max;
    float sums[SQ_CPU_SUM_LANES] = {0};
    sq_cpu_softmax_exp_tail(x, 0, n, max, scale, sums);
    const float inv = 1.0f / sq_cpu_sum16(sums);
    for (int64_t j = 0; j < n; j++)
        x[j] *= inv;
}

static void
s_swiglu_portable(float *gate, const float *up, int64_t n)
{
    sq_cpu_swiglu_tail(gate, up, 0, n);
}

const sq_cpu_kernels_t sq_cpu_kernels_portable = {
    .name = "portable",
    .dot_f32 = s_dot_f32_portable,
    .dot_f16 = s_dot_f16_portable,
    .dot_q8_0 = s_dot_q8_0_portable,
    .quantize_q8_0 = sq_cpu_quantize_row_q8_0_ref,
    .f16_to_f32 = sq_cpu_f16_to_f32_ref,
    .q8_0_to_f32 = sq_cpu_q8_0_to_f32_ref,
    .f32_to_f16 = sq_cpu_f32_to_f16_ref,
    .attn_scores = s_attn_scores_portable,
    .attn_values = s_attn_values_portable,
    .softmax = s_softmax_portable,
    .swiglu = s_swiglu_portable,
};

/* ---- run-time choice ----------------------------------------------------- */

typedef struct {
    const char *name;
    const sq_cpu_kernels_t *kernels;
    int (*supported)(void);
} s_level_t;

static int
s_always(void)
{
    return 1;
}

#if defined(__x86_64__) || defined(__i386__)
/* CPUID says what the CPU has; XGETBV says which register state the OS
 * saves on a context switch. A feature counts only with both: AVX needs
 * the XMM and YMM state (XCR0 bits 1-2), AVX-512 the opmask and ZMM state
 * as well (bits 5-7). Read by hand, not with __builtin_cpu_supports, so
 * that every compiler knows every feature name. */
static unsigned
s_detect(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27)))   /* OSXSAVE */
        return 0;
    unsigned xcr0, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_hi) : "c"(0));
    const bool avx_os = (xcr0 & 0x06) == 0x06, avx512_os = (xcr0 & 0xe6) == 0xe6;
    if (!avx_os || !(c & (1u << 28)))                           /* AVX */
        return 0;
    f |= (c & (1u << 12) ? SQ_CPU_FMA : 0) | (c & (1u << 29) ? SQ_CPU_F16C : 0);
    if (__get_cpuid_max(0, NULL) < 7)
        return f;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned max_sub = a;
    f |= b & (1u << 5) ? SQ_CPU_AVX2 : 0;
    if (avx512_os)
        f |= (b & (1u << 16) ? SQ_CPU_AVX512F : 0) | (b & (1u << 30) ? SQ_CPU_AVX512BW : 0) |
             (b & (1u << 31) ? SQ_CPU_AVX512VL : 0) | (c & (1u << 11) ? SQ_CPU_AVX512VNNI : 0);
    if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        f |= a & (1u << 4) ? SQ_CPU_AVXVNNI : 0;
    }
    return f;
}
#else
static unsigned
s_detect(void)
{
    return 0;
}
#endif

static unsigned s_features;
static pthread_once_t s_features_once = PTHREAD_ONCE_INIT;

static void
s_detect_once(void)
{
    s_features = s_detect();
}

unsigned
sq_cpu_features(void)
{
    pthread_once(&s_features_once, s_detect_once);
    return s_features;
}

#if defined(__x86_64__) || defined(__i386__)
static bool
s_has(unsigned want)
{
    return (sq_cpu_features() & want) == want;
}

static int
s_has_avx2(void)
{
    return s_has(SQ_CPU_AVX2 | SQ_CPU_FMA | SQ_CPU_F16C);
}

static int
s_has_avx2vnni(void)
{
    return s_has(SQ_CPU_AVX2 | SQ_CPU_FMA | SQ_CPU_F16C | SQ_CPU_AVXVNNI);
}

static int
s_has_avx512(void)
{
    return s_has(SQ_CPU_AVX2 | SQ_CPU_FMA | SQ_CPU_F16C | SQ_CPU_AVX512F | SQ_CPU_AVX512BW |
                 SQ_CPU_AVX512VL);
}

static int
s_has_avx512vnni(void)
{
    return s_has_avx512() && s_has(SQ_CPU_AVX512VNNI);
}
#endif

/* Lowest level first. */
static const s_level_t s_levels[] = {
    {"portable", &sq_cpu_kernels_portable, s_always},
#if defined(__x86_64__) || defined(__i386__)
    {"avx2", &sq_cpu_kernels_avx2, s_has_avx2},
    {"avx2vnni", &sq_cpu_kernels_avx2vnni, s_has_avx2vnni},
    {"avx512", &sq_cpu_kernels_avx512, s_has_avx512},
    {"avx512vnni", &sq_cpu_kernels_avx512vnni, s_has_avx512vnni},
#endif
};
#define S_N_LEVELS ((int) (sizeof s_levels / sizeof s_levels[0]))

static const sq_cpu_kernels_t *s_chosen;
static pthread_once_t s_choose_once = PTHREAD_ONCE_INIT;

/* The highest supported level, capped by SQ_CPU_SIMD when that names one. */
static void
s_choose(void)
{
    const char *cap = getenv("SQ_CPU_SIMD");
    s_chosen = &sq_cpu_kernels_portable;
    for (int i = 0; i < S_N_LEVELS; i++) {
        if (s_levels[i].supported())
            s_chosen = s_levels[i].kernels;
        if (cap && strcmp(cap, s_levels[i].name) == 0)
            break;
    }
}

const char *
sq_cpu_simd_level(void)
{
    pthread_once(&s_choose_once, s_choose);
    return s_chosen->name;
}

bool
sq_cpu_packs_q8_0(void)
{
    pthread_once(&s_choose_once, s_choose);
    const char *pack = getenv("SQ_CPU_PACK");
    return s_chosen->gemm_q8_0x16 && !(pack && strcmp(pack, "0") == 0);
}

const sq_cpu_kernels_t *
sq_cpu_kernels_for(const char *level)
{
    for (int i = 0; i < S_N_LEVELS; i++)
        if (strcmp(level, s_levels[i].name) == 0)
            return s_levels[i].supported() ? s_levels[i].kernels : NULL;
    return NULL;
}

void
sq_cpu_f16_to_f32_row(const uint16_t *x, float *y, int64_t n)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->f16_to_f32(x, y, n);
}

void
sq_cpu_q8_0_to_f32_row(const sq_block_q8_0_t *x, float *y, int64_t n)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->q8_0_to_f32(x, y, n);
}

void
sq_cpu_f32_to_f16_row(const float *x, uint16_t *y, int64_t n)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->f32_to_f16(x, y, n);
}

void
sq_cpu_softmax_row(float *x, int64_t n, float scale)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->softmax(x, n, scale);
}

void
sq_cpu_swiglu_row(float *gate, const float *up, int64_t n)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->swiglu(gate, up, n);
}

void
sq_cpu_attn_scores(const float *q, int n_q, const sq_cpu_kv_block_t *k, float *scores, size_t ld)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->attn_scores(q, n_q, k, scores, ld);
}

void
sq_cpu_attn_values(const float *p, size_t ld, int n_q, const sq_cpu_kv_block_t *v, float *out)
{
    pthread_once(&s_choose_once, s_choose);
    s_chosen->attn_values(p, ld, n_q, v, out);
}

int
sq_cpu_matmul(sq_threadpool_t *pool, int dtype, const void *w, int64_t n_out, int64_t n_in,
              const float *x, int64_t n_tok, float *y, int64_t ldy)
{
    pthread_once(&s_choose_once, s_choose);
    return sq_cpu_matmul_with(s_chosen, pool, dtype, w, n_out, n_in, x, n_tok, y, ldy);
}

int
sq_cpu_matmul_n(sq_threadpool_t *pool, int dtype, const sq_cpu_mat_t *mats, int n_mats,
                int64_t n_in, const float *x, int64_t n_tok)
{
    pthread_once(&s_choose_once, s_choose);
    return sq_cpu_matmul_n_with(s_chosen, pool, dtype, mats, n_mats, n_in, x, n_tok);
}
