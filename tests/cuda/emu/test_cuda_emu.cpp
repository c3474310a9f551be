/*  test_cuda_emu: every kernel of worker/backend/cuda/sq_cuda_device.cuh,
 *  compiled as host C++ and run by the CPU emulator (sq_cuda_emu.h), is
 *  compared with a plain reference written here (double precision, or
 *  bit for bit where the kernel promises the CPU backend's arithmetic).
 *
 *  Inputs are random (fixed seeds). Outputs start as NaN, so an element a
 *  kernel does not write fails; every buffer has guards on both sides:
 *  NaN around inputs (a read outside one poisons the result), a finite
 *  value around outputs (a write outside one shows). Kernels run through
 *  the real launchers of sq_cuda_kernels.cu where the test's buffers fit
 *  them (see "launches" below). The emulator's own primitives are tested
 *  first.
 */
#include "sq_cuda_emu.h"

#include "sq_cuda_device.cuh"
#include "sq_cuda_kernels.h"
#include "sq_sampler_ref.h"

extern "C" {
#include "sq_test.h"
}

#include <stdlib.h>

#include <string>
#include <utility>

/* ---- launches ----
 *
 * Most kernels run through their real launchers (sq_cuda_kernels.cu,
 * built with the emulator: sq_cuda_emu_kernels.cpp). The Q8_0 GEMV, the
 * embedding and the Q8_0 to F16 conversion take the weights' split
 * layout there (sq_cuda_layout.h); here they are launched directly, with
 * the launchers' geometry (sq_cu_blocks, sq_cu_gemv_blocks). */

/* the set's GEMV for NT tokens: Q8_0 rows (x quantised, xd its scales)
 * or F16 rows */
template <int NT>
static int s_launch_gemv(bool q8, const sq_cu_gemv_set_t &set, int64_t n_in, const void *x,
                         const float *xd)
{
    const dim3 grid(sq_cu_gemv_blocks(&set)), block(SQ_CU_GEMV_WARPS * 32);
    if (q8)
        return sq_emu_launch(k_gemv<NT, s_rows_q8_t>, grid, block, set, n_in,
                             s_rows_q8_t{(const int8_t *)x, xd});
    return sq_emu_launch(k_gemv<NT, s_rows_f16_t>, grid, block, set, n_in,
                         s_rows_f16_t{(const float *)x});
}

/* the instance for a run-time n_tok, as the launchers' switch picks it */
template <int... I>
static int s_gemv_switch(std::integer_sequence<int, I...>, int n_tok, bool q8,
                         const sq_cu_gemv_set_t &set, int64_t n_in, const void *x,
                         const float *xd)
{
    int rc = -1;
    ((void)(n_tok == I + 1 && (rc = s_launch_gemv<I + 1>(q8, set, n_in, x, xd))), ...);
    return rc;
}

/* the set's products on the int8 tensor-core kernel (Q8_0, x quantised) */
static int s_launch_mma(const sq_cu_gemv_set_t &set, int64_t n_in, const int8_t *xq,
                        const float *xd, int n_tok)
{
    const int tiles = sq_cu_mma_tiles(n_tok);
    const dim3 grid(sq_cu_mma_blocks(&set), sq_cu_blocks((size_t)n_tok, 8 * (unsigned)tiles));
    const dim3 block(SQ_CU_MMA_WARPS * 32);
    if (tiles == 4)
        return sq_emu_launch(k_mma_q8<4>, grid, block, set, n_in, xq, xd, n_tok);
    return sq_emu_launch(k_mma_q8<8>, grid, block, set, n_in, xq, xd, n_tok);
}

/* ---- buffers and references ---- */

enum { S_GUARD = 64 };   /* guard elements on each side of a buffer */

/* n elements, all `fill` at first, between guards of `guard`: NaN around
 * an input (a read outside it poisons the result), a finite value no
 * kernel writes around an output (a write outside it shows, even of NaN) */
template <typename T>
struct s_buf {
    std::vector<T> v;
    T guard;
    s_buf(size_t n, T fill, T guard_) : v(n + 2 * S_GUARD, fill), guard(guard_)
    {
        std::fill(v.begin(), v.begin() + S_GUARD, guard);
        std::fill(v.end() - S_GUARD, v.end(), guard);
    }
    s_buf(size_t n, T fill) : s_buf(n, fill, fill) {}
    T *p() { return v.data() + S_GUARD; }
    T &operator[](size_t i) { return v[S_GUARD + i]; }
    size_t n() const { return v.size() - 2 * S_GUARD; }
    bool guards_ok() const
    {
        for (size_t i = 0; i < S_GUARD; i++)
            if (memcmp(&v[i], &guard, sizeof guard) ||
                memcmp(&v[v.size() - 1 - i], &guard, sizeof guard))
                return false;
        return true;
    }
};

/* the guards of outputs */
static const float S_OUT_F32 = -1.5e30f;
static const uint16_t S_OUT_F16 = 0x5a5a;
static const int8_t S_OUT_I8 = 0x55;

static uint32_t s_rng = 1;
static void s_seed(uint32_t seed) { s_rng = seed * 2654435761u + 1; }
/* uniform in [-1, 1): xorshift32, the same on every platform */
static float s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 17;
    s_rng ^= s_rng << 5;
    return (float)(s_rng >> 8) / 8388608.0f - 1.0f;
}

static void s_fill(s_buf<float> &b, float scale)
{
    for (size_t i = 0; i < b.n(); i++)
        b[i] = scale * s_rand();
}

/* F16 bits of f, rounded to nearest even by the compiler, not CUDA */
static uint16_t s_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t bits;
    memcpy(&bits, &h, 2);
    return bits;
}
static float s_f16_value(uint16_t bits)
{
    _Float16 h;
    memcpy(&h, &bits, 2);
    return (float)h;
}

/* Random n_out x n_in weights of dtype in the device layout
 * (sq_cuda_layout.h): F32 / F16 (n_out, n_in) in w; Q8_0 split into the
 * quants (n_out, n_in) in w and the F16 scales (n_out, n_in / 32) in d.
 * val: what they mean, (n_out, n_in). Guards 0xff: F16 NaNs. */
struct s_weights {
    s_buf<unsigned char> w{0, 0xff};
    s_buf<uint16_t> d{0, 0xffff};
    std::vector<double> val;
};

static s_weights s_make_weights(int dtype, int64_t n_out, int64_t n_in)
{
    s_weights m;
    const size_t n = (size_t)(n_out * n_in);
    m.w = s_buf<unsigned char>(n * (dtype == SQ_CU_F32 ? 4 : dtype == SQ_CU_F16 ? 2 : 1), 0xff);
    m.d = s_buf<uint16_t>(dtype == SQ_CU_Q8_0 ? n / SQ_CU_QK : 0, 0xffff);
    m.val.resize(n);
    for (size_t i = 0; i < n; i++) {
        if (dtype == SQ_CU_F32) {
            const float f = s_rand();
            memcpy(m.w.p() + 4 * i, &f, 4);
            m.val[i] = f;
        } else if (dtype == SQ_CU_F16) {
            const uint16_t h = s_f16(s_rand());
            memcpy(m.w.p() + 2 * i, &h, 2);
            m.val[i] = s_f16_value(h);
        } else {
            if (i % SQ_CU_QK == 0)
                m.d[i / SQ_CU_QK] = s_f16(0.002f + 0.01f * fabsf(s_rand()));
            const int8_t q = (int8_t)lrintf(127.0f * s_rand());
            m.w[i] = (unsigned char)q;
            m.val[i] = (double)s_f16_value(m.d[i / SQ_CU_QK]) * q;
        }
    }
    return m;
}

/* 32 values xb as one Q8_0 block the way the CPU reference does it
 * (sq_cpu_quantize_row_q8_0_ref): d = amax / 127, q = x * (1 / d) rounded
 * half to even; returns d rounded to F16 (its bits) */
static uint16_t s_quantize_block(const float *xb, int8_t *q)
{
    float amax = 0.0f;
    for (int i = 0; i < SQ_CU_QK; i++)
        amax = fmaxf(amax, fabsf(xb[i]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < SQ_CU_QK; i++)
        q[i] = (int8_t)nearbyintf(xb[i] * id);
    return s_f16(d);
}

/* x (n values, whole blocks of 32) as Q8_0 blocks, the scales used as
 * their F16 values */
static void s_quantize_ref(const float *x, size_t n, int8_t *xq, float *xd)
{
    for (size_t b = 0; b < n / SQ_CU_QK; b++)
        xd[b] = s_f16_value(s_quantize_block(x + b * SQ_CU_QK, xq + b * SQ_CU_QK));
}

static const char *s_dtype_name(int dtype)
{
    return dtype == SQ_CU_F32 ? "F32" : dtype == SQ_CU_F16 ? "F16" : "Q8_0";
}

/* ‖out − ref‖ / ‖ref‖ < tol (NaN anywhere fails), and out's guards intact */
static void s_expect_close(const std::string &what, s_buf<float> &out, const double *ref,
                           size_t n, double tol)
{
    double d2 = 0.0, r2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        d2 += (out[i] - ref[i]) * (out[i] - ref[i]);
        r2 += ref[i] * ref[i];
    }
    const double err = sqrt(d2 / r2);
    const bool ok = err < tol && out.guards_ok();
    fprintf(stderr, "%s%s: relative L2 error %.2g (tolerance %g), guards %s\n",
            ok ? "" : "FAIL ", what.c_str(), err, tol,
            out.guards_ok() ? "intact" : "OVERWRITTEN");
    SQ_CHECK(ok);
}

/* xq, xd are exactly what the CPU reference makes of out (n values) */
static void s_expect_quantized(const std::string &what, const float *out, size_t n,
                               s_buf<int8_t> &xq, s_buf<float> &xd)
{
    std::vector<int8_t> xq_ref(n);
    std::vector<float> xd_ref(n / SQ_CU_QK);
    s_quantize_ref(out, n, xq_ref.data(), xd_ref.data());
    const bool ok = !memcmp(xq.p(), xq_ref.data(), n) && xq.guards_ok() &&
                    !memcmp(xd.p(), xd_ref.data(), xd_ref.size() * sizeof(float)) &&
                    xd.guards_ok();
    if (!ok)
        fprintf(stderr, "FAIL %s: Q8_0 of the output differs from the CPU reference's\n",
                what.c_str());
    SQ_CHECK(ok);
}

static const double S_TOL_F32 = 1e-5;

/* ---- the emulator itself ---- */

static __global__ void k_emu_shuffles(int *out)
{
    const int lane = threadIdx.x % 32, at = 8 * threadIdx.x;
    out[at + 0] = __shfl_xor_sync(0xffffffffu, lane, 5);
    out[at + 1] = __shfl_down_sync(0xffffffffu, lane, 3);
    out[at + 2] = __shfl_up_sync(0xffffffffu, lane, 3, 16);
    out[at + 3] = __shfl_sync(0xffffffffu, lane, 7, 8);
    out[at + 4] = (int)__shfl_xor_sync(0xffffffffu, (float)lane, 16, 16);
    __syncwarp();
    out[at + 5] = (int)(blockIdx.x * blockDim.x + threadIdx.x);
}

static __global__ void k_emu_exited_lane(float *out)
{
    if (threadIdx.x % 32 >= 16)
        return;
    out[threadIdx.x] = s_warp_sum(1.0f);
}

/* warp 1 is split between __syncthreads and __syncwarp: neither completes */
static __global__ void k_emu_deadlock(int *out)
{
    if (threadIdx.x < 48)
        __syncthreads();
    else
        __syncwarp();
    out[threadIdx.x] = 1;
}

/* writes block b's turn; the order must not be the blocks' index order.
 * Threads 20.. exit before the barrier: exited threads count as arrived. */
static __global__ void k_emu_order(int *turn, int *counter)
{
    __shared__ int mine;
    if (threadIdx.x >= 20)
        return;
    if (threadIdx.x == 0)
        mine = atomicAdd(counter, 1);
    __syncthreads();
    if (threadIdx.x == 1)
        turn[blockIdx.y * gridDim.x + blockIdx.x] = mine;
}

/* half the warp leaves before an mma.sync */
static __global__ void k_emu_mma_exited(int *out)
{
    if (threadIdx.x % 32 >= 16)
        return;
    int c[4] = {0, 0, 0, 0};
    const int a[4] = {1, 1, 1, 1}, b[2] = {1, 1};
    s_mma_s8(c, a, b);
    out[threadIdx.x] = c[0];
}

static __global__ void k_emu_pdl(int *out)
{
    s_pdl_begin();
    out[threadIdx.x] = 1;
}

/* a shared counter that is never set, only reset at the end: right on a
 * zeroed start, garbage on a GPU; out[block] = what the block found */
static __global__ void k_emu_shared_unset(int *out)
{
    __shared__ int count;
    __shared__ float f;
    __syncthreads();
    if (threadIdx.x == 0)
        out[blockIdx.x] = count + (f == f ? 0 : 1000);   /* f NaN: + 1000 */
    __syncthreads();
    if (threadIdx.x == 0) {
        count = 0;
        f = 0.0f;
    }
}

static void test_emulator(void)
{
    /* the emulator's own kernels need not start with s_pdl_begin */
    sq_emu::S.require_pdl = false;
    std::vector<int> out(64 * 8, -1);
    SQ_REQUIRE(sq_emu_launch(k_emu_shuffles, dim3(1), dim3(64), out.data()) == 0);
    for (int t = 0; t < 64; t++) {
        const int lane = t % 32, *o = &out[8 * t];
        SQ_CHECK(o[0] == (lane ^ 5));
        SQ_CHECK(o[1] == (lane + 3 < 32 ? lane + 3 : lane));
        SQ_CHECK(o[2] == (lane % 16 >= 3 ? lane - 3 : lane));
        SQ_CHECK(o[3] == (lane & ~7) + 7);
        /* lane ^ 16: a later 16-lane segment gives the own value, an earlier one its */
        SQ_CHECK(o[4] == (lane < 16 ? lane : lane - 16));
        SQ_CHECK(o[5] == t);
    }
    std::vector<float> f(64);
    fprintf(stderr, "(expected: a shuffle with an exited lane, a deadlock, bad configurations, "
                    "an mma with exited lanes, a kernel without s_pdl_begin)\n");
    SQ_CHECK(sq_emu_launch(k_emu_exited_lane, dim3(2), dim3(64), f.data()) != 0);
    SQ_CHECK(sq_emu_launch(k_emu_deadlock, dim3(1), dim3(64), out.data()) != 0);
    SQ_CHECK(sq_emu_launch(k_emu_shuffles, dim3(1), dim3(1025), out.data()) != 0);
    SQ_CHECK(sq_emu_launch(k_emu_shuffles, dim3(0), dim3(32), out.data()) != 0);
    SQ_CHECK(sq_emu_launch(k_emu_mma_exited, dim3(1), dim3(32), out.data()) != 0);
    /* the backend's rule: a kernel that never calls s_pdl_begin fails */
    sq_emu::S.require_pdl = true;
    SQ_CHECK(sq_emu_launch(k_emu_shuffles, dim3(1), dim3(64), out.data()) != 0);
    SQ_CHECK(sq_emu_launch(k_emu_pdl, dim3(1), dim3(64), out.data()) == 0 && out[63] == 1);
    sq_emu::S.require_pdl = false;
    /* after failures the emulator runs again */
    SQ_CHECK(sq_emu_launch(k_emu_shuffles, dim3(1), dim3(64), out.data()) == 0 && out[8] == 4);
    /* every block starts with shared memory of 0xff bytes, whatever the
     * block before it left: an unset int reads -1, an unset float NaN */
    SQ_CHECK(sq_emu_launch(k_emu_shared_unset, dim3(3), dim3(32), out.data()) == 0);
    SQ_CHECK(out[0] == 999 && out[1] == 999 && out[2] == 999);

    std::vector<int> turn(6 * 5, -1);
    int counter = 0, in_order = 1;
    SQ_REQUIRE(sq_emu_launch(k_emu_order, dim3(6, 5), dim3(40), turn.data(), &counter) == 0);
    std::vector<int> seen(turn.size(), 0);
    for (size_t b = 0; b < turn.size(); b++) {
        SQ_CHECK(turn[b] >= 0 && turn[b] < (int)turn.size() && !seen[turn[b]]++);
        in_order &= turn[b] == (int)b;
    }
    SQ_CHECK(counter == 30 && !in_order);

    SQ_CHECK(__dp4a(0x01ff807f, 0x02037f81, 10) == 1 * 2 - 1 * 3 - 128 * 127 + 127 * -127 + 10);
    SQ_CHECK(__dp4a(0x01ff807fu, 0x02037f81u, 10u) == 2u + 255 * 3 + 128 * 127 + 127 * 129 + 10);
    SQ_CHECK(__byte_perm(0x03020100u, 0x07060504u, 0x7531u) == 0x07050301u);
    SQ_CHECK(__float2int_rn(2.5f) == 2 && __float2int_rn(-3.5f) == -4 &&
             __float2int_rn(NAN) == 0 && __float2int_rn(3e9f) == 2147483647);
    SQ_CHECK(__half2float(__float2half(0.1f)) == s_f16_value(s_f16(0.1f)));
    const float2 f2 = __half22float2(__floats2half2_rn(1.5f, -2.25f));
    SQ_CHECK(f2.x == 1.5f && f2.y == -2.25f);
    sq_emu::S.require_pdl = true;
}

/* ---- embedding, residual add + RMSNorm (+ Q8_0) ---- */

static void test_embed(void)
{
    const int32_t ids[] = {3, 0, 10, 3, 7};
    const int n = 5, n_vocab = 11;
    for (int dtype : {SQ_CU_F32, SQ_CU_F16, SQ_CU_Q8_0}) {
        for (int64_t n_in : {64, 320}) {
            s_seed((uint32_t)(dtype * 100 + n_in));
            s_weights w = s_make_weights(dtype, n_vocab, n_in);
            s_buf<int32_t> id(n, -1);
            memcpy(id.p(), ids, sizeof ids);
            s_buf<float> out((size_t)(n * n_in), NAN, S_OUT_F32);
            SQ_CHECK(sq_emu_launch(k_embed, dim3(n), dim3(256), dtype,
                                   (const unsigned char *)w.w.p(),
                                   dtype == SQ_CU_Q8_0 ? (const __half *)w.d.p() : nullptr, n_in,
                                   (const int32_t *)id.p(), out.p()) == 0);
            std::vector<double> ref((size_t)(n * n_in));
            for (int t = 0; t < n; t++)
                for (int64_t i = 0; i < n_in; i++)
                    ref[(size_t)(t * n_in + i)] = w.val[(size_t)(ids[t] * n_in + i)];
            s_expect_close("embed " + std::string(s_dtype_name(dtype)) + " n_in " +
                               std::to_string(n_in),
                           out, ref.data(), ref.size(), S_TOL_F32);
        }
    }
}

/* x (n, dim) += y when add; out = x / rms(x) * w; with quant, out as Q8_0 */
static void s_norm_case(int dim, bool add, bool quant)
{
    const int n = 3;
    const float eps = 1e-5f;
    const size_t nx = (size_t)n * dim;
    s_seed((uint32_t)dim + 2 * add + quant);
    s_buf<float> x(nx, NAN, S_OUT_F32), y(nx, NAN), w(dim, NAN), out(nx, NAN, S_OUT_F32);
    s_fill(x, 2.0f);
    s_fill(y, 1.0f);
    s_fill(w, 1.0f);
    s_buf<int8_t> xq(quant ? nx : 0, (int8_t)0x7f, S_OUT_I8);
    s_buf<float> xd(quant ? nx / SQ_CU_QK : 0, NAN, S_OUT_F32);
    std::vector<float> xs(nx);   /* x after the add, in float as the kernel adds */
    for (size_t i = 0; i < nx; i++)
        xs[i] = add ? x[i] + y[i] : x[i];
    SQ_CHECK(sq_cu_add_rmsnorm(nullptr, x.p(), add ? y.p() : nullptr, w.p(), eps, n, dim, out.p(),
                               quant ? xq.p() : nullptr, quant ? xd.p() : nullptr) == cudaSuccess);
    SQ_CHECK(memcmp(x.p(), xs.data(), nx * sizeof(float)) == 0 && x.guards_ok());
    std::vector<double> ref(nx);
    for (int t = 0; t < n; t++) {
        double ss = 0.0;
        for (int i = 0; i < dim; i++)
            ss += (double)xs[(size_t)t * dim + i] * xs[(size_t)t * dim + i];
        const double scale = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            ref[(size_t)t * dim + i] = xs[(size_t)t * dim + i] * scale * w[i];
    }
    const std::string what = std::string(add ? "add_" : "") + "rmsnorm dim " +
                             std::to_string(dim) + (quant ? " with Q8_0" : "");
    s_expect_close(what, out, ref.data(), nx, S_TOL_F32);
    if (quant)
        s_expect_quantized(what, out.p(), nx, xq, xd);
}

static void test_add_rmsnorm(void)
{
    s_norm_case(256, true, true);
    s_norm_case(200, false, false);   /* a partial warp */
    s_norm_case(1000, true, false);
    s_norm_case(288, false, true);    /* warp 0 takes a second pass alone */
    s_norm_case(2048, true, true);
}

/* ---- Q8_0 activations, GEMV sets, Q8_0 to F16, argmax ---- */

static void test_quantize_q8(void)
{
    const int n_tok = 3;
    const int64_t n_in = 160;
    const size_t n = (size_t)(n_tok * n_in), nb = n / SQ_CU_QK;
    s_seed(8);
    s_buf<float> x(n, NAN);
    s_fill(x, 3.0f);
    /* block 1 all zeros (d = 0); block 2 with amax 127 (d = 1), so ties
     * at .5 must round to even */
    for (int i = 0; i < SQ_CU_QK; i++) {
        x[SQ_CU_QK + i] = 0.0f;
        x[2 * SQ_CU_QK + i] = (float)(i - 16) + 0.5f;
    }
    x[2 * SQ_CU_QK] = 127.0f;
    s_buf<int8_t> xq(n, (int8_t)0x7f, S_OUT_I8);
    s_buf<float> xd(nb, NAN, S_OUT_F32);
    std::vector<int8_t> xq_ref(n);
    std::vector<float> xd_ref(nb);
    s_quantize_ref(x.p(), n, xq_ref.data(), xd_ref.data());
    SQ_CHECK(sq_cu_quantize_q8(nullptr, x.p(), n_tok, n_in, xq.p(), xd.p()) == cudaSuccess);
    SQ_CHECK(memcmp(xq.p(), xq_ref.data(), n) == 0 && xq.guards_ok());
    SQ_CHECK(memcmp(xd.p(), xd_ref.data(), nb * sizeof(float)) == 0 && xd.guards_ok());
    SQ_CHECK(xq[2 * SQ_CU_QK + 1] == -14 && xq[2 * SQ_CU_QK + 2] == -14);   /* -14.5, -13.5 */
}

/* One GEMV launch of a set: n_mats products of the same x, or SwiGLU.
 * Q8_0: x is quantised by the reference quantiser first (the backend
 * uses k_quantize_q8 or a fused quantisation, tested on their own); the
 * reference then sums exactly the integer products the kernel sums, so
 * only the order differs. */
static void s_gemv_case(int dtype, int n_tok, int64_t n_in, int n_mats, bool swiglu)
{
    const bool q8 = dtype == SQ_CU_Q8_0;
    const int64_t n_outs[] = {swiglu ? 21 : 37, swiglu ? 21 : 13, 9};
    s_seed((uint32_t)(n_in * 3 + n_tok * 5 + n_mats + 7 * swiglu + dtype));
    const size_t nx = (size_t)(n_tok * n_in);
    s_buf<float> x(nx, NAN);
    s_fill(x, 1.0f);
    s_buf<int8_t> xq(q8 ? nx : 0, (int8_t)0x7f);
    s_buf<float> xd(q8 ? nx / SQ_CU_QK : 0, NAN);
    std::vector<double> xv(x.p(), x.p() + nx);   /* x as the kernel sees it */
    if (q8) {
        s_quantize_ref(x.p(), nx, xq.p(), xd.p());
        for (size_t i = 0; i < nx; i++)
            xv[i] = (double)xd[i / SQ_CU_QK] * xq[i];
    }
    std::vector<s_weights> w;
    std::vector<s_buf<float>> y;
    sq_cu_gemv_set_t set = {};
    set.n_mats = n_mats;
    set.swiglu = swiglu;
    for (int m = 0; m < n_mats; m++) {
        w.push_back(s_make_weights(dtype, n_outs[m], n_in));
        y.emplace_back((size_t)(n_tok * n_outs[m]), NAN, S_OUT_F32);
    }
    for (int m = 0; m < n_mats; m++) {
        set.w[m] = w[m].w.p();
        set.wd[m] = q8 ? w[m].d.p() : nullptr;
        set.y[m] = y[m].p();
        set.n_out[m] = n_outs[m];
    }
    const bool mma = n_tok > SQ_CUDA_GEMV_MAX;
    if (mma)
        SQ_CHECK(s_launch_mma(set, n_in, xq.p(), xd.p(), n_tok) == 0);
    else
        SQ_CHECK(s_gemv_switch(std::make_integer_sequence<int, SQ_CUDA_GEMV_MAX>(), n_tok, q8,
                               set, n_in, q8 ? (const void *)xq.p() : (const void *)x.p(),
                               xd.p()) == 0);
    std::vector<std::vector<double>> ref(n_mats);
    for (int m = 0; m < n_mats; m++) {
        ref[m].resize((size_t)(n_tok * n_outs[m]));
        for (int t = 0; t < n_tok; t++)
            for (int64_t o = 0; o < n_outs[m]; o++) {
                double acc = 0.0;
                for (int64_t i = 0; i < n_in; i++)
                    acc += w[m].val[(size_t)(o * n_in + i)] * xv[(size_t)(t * n_in + i)];
                ref[m][(size_t)(t * n_outs[m] + o)] = acc;
            }
    }
    if (swiglu)   /* y[0] = silu(gate) * up, y[1] = up */
        for (size_t i = 0; i < ref[0].size(); i++)
            ref[0][i] = ref[0][i] / (1.0 + exp(-ref[0][i])) * ref[1][i];
    for (int m = 0; m < n_mats; m++) {
        char what[128];
        snprintf(what, sizeof what, "%s %s n_tok %d n_in %lld %s%d of %d (n_out %lld)",
                 mma ? "mma" : "gemv", s_dtype_name(dtype), n_tok, (long long)n_in,
                 swiglu ? "SwiGLU " : "", m,
                 n_mats, (long long)n_outs[m]);
        s_expect_close(what, y[m], ref[m].data(), ref[m].size(), S_TOL_F32);
    }
}

static void test_gemv(void)
{
    /* every instance with both dtypes, in turn with one matrix, a set of
     * three (q, k, v: warps cross from one matrix to the next inside a
     * block) and SwiGLU; n_out not a multiple of the 8 rows of a block;
     * n_in not of 128, and over 32 blocks of 32, so that a lane takes two */
    const int64_t n_ins[] = {96, 160, 1056};
    for (int n_tok = 1; n_tok <= SQ_CUDA_GEMV_MAX; n_tok++)
        for (int dtype : {SQ_CU_F16, SQ_CU_Q8_0}) {
            const int mode = (n_tok + (dtype == SQ_CU_Q8_0)) % 3;
            s_gemv_case(dtype, n_tok, n_ins[(n_tok / 3) % 3], mode == 1 ? 3 : mode == 2 ? 2 : 1,
                        mode == 2);
        }
    s_gemv_case(SQ_CU_F16, 1, 32, 1, false);
    /* Q8_0 rows of 133 blocks: a lane loads 4 of its blocks a round
     * (s_dot_q8), so lanes 0..4 take a second round of one */
    s_gemv_case(SQ_CU_Q8_0, 1, 4256, 1, false);
    s_gemv_case(SQ_CU_Q8_0, 3, 4256, 3, false);
}

static void test_mma(void)
{
    /* Q8_0 above SQ_CUDA_GEMV_MAX tokens on the int8 tensor-core kernel:
     * both tile widths (32 and 64 tokens), token counts that leave a tile
     * partly empty and that need two tiles; n_out not a multiple of 16
     * (the set's matrices change inside a block); one matrix, a set of
     * three, SwiGLU */
    const int n_toks[] = {17, 24, 32, 33, 64, 100};
    const int64_t n_ins[] = {96, 160, 1056};
    for (int i = 0; i < 6; i++)
        for (int mode = 0; mode < 3; mode++)
            s_gemv_case(SQ_CU_Q8_0, n_toks[i], n_ins[(i + mode) % 3],
                        mode == 1 ? 3 : mode == 2 ? 2 : 1, mode == 2);
}

static void test_q8_to_f16(void)
{
    const int64_t n_out = 37, n_in = 160;
    s_seed(816);
    s_weights w = s_make_weights(SQ_CU_Q8_0, n_out, n_in);
    w.d[3] = s_f16(600.0f);   /* 600 * 127 overflows F16: inf, as the CPU rounds it */
    const size_t n = (size_t)n_out * (size_t)n_in;
    s_buf<uint16_t> out(n, 0xffff, S_OUT_F16);
    SQ_CHECK(sq_emu_launch(k_q8_to_f16, dim3(sq_cu_blocks(n / 8, 256)), dim3(256),
                           (const int8_t *)w.w.p(), (const __half *)w.d.p(), n,
                           (uint4 *)out.p()) == 0);
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++) {
        const uint16_t want = s_f16(s_f16_value(w.d[i / SQ_CU_QK]) * (float)(int8_t)w.w[i]);
        if (out[i] != want && n_bad++ < 5)
            fprintf(stderr, "q8_to_f16 [%zu]: 0x%04x, expected 0x%04x\n", i, out[i], want);
    }
    SQ_CHECK(n_bad == 0 && out.guards_ok());
}

/* sq_sampler_argmax's rules: NaN never wins, the first of equal maxima
 * wins, -1 (SQ_SAMPLER_NOT_FINITE) when all are NaN or the largest is
 * infinite */
static int32_t s_argmax_ref(const float *x, int n)
{
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best]))
            best = i;
    return best < 0 || !std::isfinite(x[best]) ? -1 : best;
}

/* Rows 0..7: the maximum in a column of warp `row` (each warp's result
 * must reach the merge); 8: the maximum twice, the later copy in a lower
 * warp; 9: NaN first and at the top; 10: all NaN; 11: -inf after a NaN;
 * 12: all equal; 13: +inf among numbers (10 and 11 and 13: -1) */
static void s_argmax_case(int n_cols)
{
    const int n_rows = 14;
    s_seed((uint32_t)n_cols);
    s_buf<float> x((size_t)n_rows * n_cols, NAN);
    s_fill(x, 10.0f);
    float *r = x.p();
    for (int w = 0; w < 8; w++)
        r[(size_t)w * n_cols + (32 * w + 5 + 256 * (w % 3)) % n_cols] = 20.0f;
    r[8 * n_cols + n_cols - 1] = r[8 * n_cols + n_cols / 3] = 20.0f;
    r[9 * n_cols] = r[9 * n_cols + n_cols / 2] = NAN;
    for (int c = 0; c < n_cols; c++) {
        r[10 * n_cols + c] = NAN;
        r[11 * n_cols + c] = c ? -INFINITY : NAN;
        r[12 * n_cols + c] = 1.0f;
    }
    r[13 * n_cols + n_cols / 2] = INFINITY;
    s_buf<int32_t> out(n_rows, -7, 0x55555555);
    SQ_CHECK(sq_cu_argmax(nullptr, x.p(), n_rows, n_cols, out.p()) == cudaSuccess);
    for (int row = 0; row < n_rows; row++) {
        const int32_t want = s_argmax_ref(r + (size_t)row * n_cols, n_cols);
        if (out[row] != want)
            fprintf(stderr, "FAIL argmax of row %d of %d columns: %d, expected %d\n", row, n_cols,
                    out[row], want);
        SQ_CHECK(out[row] == want);
    }
    SQ_CHECK(out[10] == -1 && out[11] == -1 && out[13] == -1);
    SQ_CHECK(out.guards_ok());
}

static void test_argmax(void)
{
    s_argmax_case(1000);
    s_argmax_case(300);
    s_argmax_case(7);   /* fewer columns than a warp */
}

/* ---- F16, elementwise, RoPE ---- */

/* ---- sampling ---- */

/* the sample op's rules written plainly: the vocabulary sorted by (logit
 * descending as NaN = -inf, id ascending), 40-bit integer weights, the
 * top_k prefix, the top_p prefix, then the first whose running weight
 * exceeds u * total */
static int32_t s_sample_ref(const float *row, int n, float t, int top_k, float top_p, double u)
{
    std::vector<int> ids(n);
    for (int i = 0; i < n; i++)
        ids[i] = i;
    auto lv = [&](int i) { return isnan(row[i]) ? -INFINITY : row[i]; };
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return lv(a) > lv(b); });
    const int32_t best = s_argmax_ref(row, n);
    if (t <= 0.0f || best < 0)
        return best;
    const float max = row[best];
    std::vector<unsigned long long> w(n);
    for (int i = 0; i < n; i++)
        w[i] = isnan(row[ids[i]]) ? 0
             : (unsigned long long)(expf((row[ids[i]] - max) / t) * 1099511627776.0f);
    const int end = top_k > 0 && top_k < n ? top_k : n;
    unsigned long long total = 0;
    for (int i = 0; i < end; i++)
        total += w[i];
    if (top_p < 1.0f) {
        unsigned long long need = (unsigned long long)ceil((double)top_p * (double)total), cum = 0;
        need = need < 1 ? 1 : need > total ? total : need;
        for (int i = 0; i < end && cum < need; i++)
            cum += w[i];
        total = cum;
    }
    unsigned long long r = (unsigned long long)(u * (double)total), cum = 0;
    r = r >= total ? total - 1 : r;
    for (int i = 0; i < n; i++)
        if ((cum += w[i]) > r)
            return ids[i];
    return ids[n - 1];
}

/* rows of random logits (normal-ish, or few values: many ties, with NaN,
 * -inf and -0), each with its own temperature, top_k, top_p and u: the
 * kernel's tokens are the reference's; and the double-precision rules of
 * the CPU sampler (sq_sampler_ref.h) choose the same tokens */
static void s_sample_case(int n_cols)
{
    const int n_rows = 24;
    s_seed((uint32_t)n_cols * 3u);
    s_buf<float> x((size_t)n_rows * n_cols, NAN);
    s_buf<int32_t> words((size_t)n_rows * SQ_CU_SAMPLE_WORDS, 0);
    std::vector<double> u(n_rows);
    float *r = x.p();
    for (int row = 0; row < n_rows; row++) {
        float *l = r + (size_t)row * n_cols;
        for (int c = 0; c < n_cols; c++) {
            const float v = s_rand();
            l[c] = row % 3 == 2 ? (float)(int)(v * 4.0f) / 2.0f : 6.0f * v;
        }
        if (row % 4 == 1) {
            l[n_cols / 2] = NAN;
            l[n_cols / 3] = -INFINITY;
            l[n_cols / 5] = -0.0f;
            l[n_cols / 7] = 0.0f;
        }
        /* rows no token can be drawn from: all NaN (sampled, T 0.7), +inf
         * among numbers greedy (T 0) and sampled (T 1.5) */
        if (row == 21)
            for (int c = 0; c < n_cols; c++)
                l[c] = NAN;
        if (row == 22 || row == 23)
            l[n_cols / 2] = INFINITY;
        const float temps[] = {1.0f, 0.7f, 0.0f, 1.5f};
        const int ks[] = {0, 0, 40, 5, 0, 1};
        const float ps[] = {1.0f, 0.9f, 1.0f, 0.5f, 0.99f};
        const float t = temps[row % 4], p = ps[row % 5];
        const int k = ks[row % 6];
        u[row] = (double)(s_rand() * 0.5f + 0.5f);
        const unsigned long long u53 = (unsigned long long)(u[row] * 9007199254740992.0);
        u[row] = (double)u53 / 9007199254740992.0;
        int32_t *w = words.p() + (size_t)row * SQ_CU_SAMPLE_WORDS;
        w[0] = __float_as_int(t);
        w[1] = k;
        w[2] = __float_as_int(p);
        w[3] = (int32_t)(uint32_t)u53;
        w[4] = (int32_t)(uint32_t)(u53 >> 32);
    }
    s_buf<int32_t> out(n_rows, -7, 0x55555555);
    SQ_CHECK(sq_cu_sample(nullptr, x.p(), n_rows, n_cols, words.p(), out.p()) == cudaSuccess);
    std::vector<sq_ref_cand_t> cands(n_cols);
    int differ_cpu = 0;
    for (int row = 0; row < n_rows; row++) {
        const float *l = r + (size_t)row * n_cols;
        const int32_t *w = words.p() + (size_t)row * SQ_CU_SAMPLE_WORDS;
        const float t = __int_as_float(w[0]), p = __int_as_float(w[2]);
        const int32_t want = s_sample_ref(l, n_cols, t, w[1], p, u[row]);
        if (out[row] != want)
            fprintf(stderr, "FAIL sample row %d of %d columns (T %g, top_k %d, top_p %g): %d, "
                    "expected %d\n", row, n_cols, (double)t, w[1], (double)p, out[row], want);
        SQ_CHECK(out[row] == want);
        if (t > 0.0f)
            differ_cpu += want != sq_ref_sample(l, n_cols, t, w[1], p, u[row], cands.data());
    }
    SQ_CHECK(out[21] == -1 && out[22] == -1 && out[23] == -1);
    SQ_CHECK(out.guards_ok());
    fprintf(stderr, "sample %d columns: %d rows as the reference; the CPU sampler's rules in "
            "double precision chose another token in %d\n", n_cols, n_rows, differ_cpu);
    SQ_CHECK(differ_cpu == 0);
}

static void test_sample(void)
{
    for (int n_cols : {7, 300, 1000, 4099})
        s_sample_case(n_cols);
}

static void test_to_f16(void)
{
    const size_t n = 1000;
    s_seed(16);
    s_buf<float> x(n, NAN);
    s_fill(x, 4.0f);
    /* the edges of F16: overflow, the largest finite, ties, subnormals */
    const float edge[] = {70000.0f, -65520.0f, 65504.0f, 65519.0f, 1.0f + 1.0f / 2048,
                          1.0f + 3.0f / 2048, 6.0e-8f, -3.0e-8f, 1.0e-5f, -0.0f, INFINITY};
    memcpy(x.p(), edge, sizeof edge);
    s_buf<uint16_t> out(n, 0xffff, S_OUT_F16);
    SQ_CHECK(sq_cu_to_f16(nullptr, x.p(), out.p(), n) == cudaSuccess);
    size_t n_bad = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] != s_f16(x[i]) && n_bad++ < 5)
            fprintf(stderr, "to_f16 of %.9g: 0x%04x, expected 0x%04x\n", x[i], out[i],
                    s_f16(x[i]));
    SQ_CHECK(n_bad == 0 && out.guards_ok());
}

static void test_swiglu_add(void)
{
    for (size_t n : {256, 1000}) {
        s_seed((uint32_t)n);
        s_buf<float> gate(n, NAN, S_OUT_F32), up(n, NAN), x(n, NAN, S_OUT_F32), y(n, NAN);
        s_fill(gate, 6.0f);
        s_fill(up, 2.0f);
        s_fill(x, 1.0f);
        s_fill(y, 1.0f);
        std::vector<double> ref_swiglu(n), ref_add(n);
        for (size_t i = 0; i < n; i++) {
            ref_swiglu[i] = gate[i] / (1.0 + exp(-(double)gate[i])) * up[i];
            ref_add[i] = (double)x[i] + y[i];
        }
        SQ_CHECK(sq_cu_swiglu(nullptr, gate.p(), up.p(), n) == cudaSuccess);
        SQ_CHECK(sq_cu_add(nullptr, x.p(), y.p(), n) == cudaSuccess);
        s_expect_close("swiglu n " + std::to_string(n), gate, ref_swiglu.data(), n, S_TOL_F32);
        s_expect_close("add n " + std::to_string(n), x, ref_add.data(), n, S_TOL_F32);
    }
}

/* A launcher returns its launch's status: an error an earlier call left
 * for cudaGetLastError (cuBLAS and NCCL can leave one) is neither blamed
 * on the launch nor taken from its owner. */
static void test_launch_status(void)
{
    const size_t n = 300;
    s_seed(5);
    s_buf<float> x(n, NAN, S_OUT_F32), y(n, NAN);
    s_fill(x, 1.0f);
    s_fill(y, 1.0f);
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)x[i] + y[i];
    SQ_CHECK(cudaSetDevice(7) == cudaErrorInvalidDevice);   /* the leftover */
    SQ_CHECK(sq_cu_add(nullptr, x.p(), y.p(), n) == cudaSuccess);
    s_expect_close("add after a leftover error", x, ref.data(), n, S_TOL_F32);
    SQ_CHECK(cudaGetLastError() == cudaErrorInvalidDevice);
    SQ_CHECK(cudaGetLastError() == cudaSuccess);
}

/* PDL only where the kernels have the wait (PTX 9.0 and later), however
 * the device is: an sm_80 build the driver compiled for an H200 has none.
 * A build with no code for the device says so. */
static void test_pdl_gate(void)
{
    int ptx = -1;
    SQ_CHECK(sq_cu_kernels_ptx(&ptx) == cudaSuccess && ptx == 90);
    SQ_CHECK(sq_cu_set_pdl(true));
    SQ_CHECK(!sq_cu_set_pdl(false));
    setenv("SQ_EMU_PTX_VERSION", "80", 1);
    SQ_CHECK(sq_cu_kernels_ptx(&ptx) == cudaSuccess && ptx == 80);
    SQ_CHECK(!sq_cu_set_pdl(true));
    setenv("SQ_EMU_PTX_VERSION", "0", 1);
    SQ_CHECK(sq_cu_kernels_ptx(&ptx) == cudaErrorNoKernelImageForDevice && ptx == 0);
    SQ_CHECK(!sq_cu_set_pdl(true));
    (void)cudaGetLastError();
    unsetenv("SQ_EMU_PTX_VERSION");
    SQ_CHECK(sq_cu_set_pdl(true));
    sq_cu_set_pdl(false);
}

static void test_index_rows(void)
{
    /* rows of 300 floats (more than a block's 256 threads): gather three
     * of five in another order, then add them back to other rows */
    const int64_t len = 300;
    const int32_t idx[3] = {4, 0, 2}, to[3] = {1, 3, 0};
    s_seed(11);
    s_buf<float> src(5 * len, NAN), rows(3 * len, NAN, S_OUT_F32), dst(5 * len, NAN, S_OUT_F32);
    s_fill(src, 1.0f);
    s_fill(dst, 1.0f);
    std::vector<double> ref_rows(3 * len), ref_dst(dst.p(), dst.p() + 5 * len);
    for (int k = 0; k < 3; k++)
        for (int64_t i = 0; i < len; i++) {
            ref_rows[k * len + i] = src[idx[k] * len + i];
            ref_dst[to[k] * len + i] += src[idx[k] * len + i];
        }
    SQ_CHECK(sq_cu_index_rows(nullptr, rows.p(), src.p(), len, idx, 3, false) == cudaSuccess);
    SQ_CHECK(sq_cu_index_rows(nullptr, dst.p(), rows.p(), len, to, 3, true) == cudaSuccess);
    s_expect_close("index_rows gather", rows, ref_rows.data(), ref_rows.size(), S_TOL_F32);
    s_expect_close("index_rows scatter-add", dst, ref_dst.data(), ref_dst.size(), S_TOL_F32);
}

/* x (n_tok, n_heads * head_dim) rotated as sq_backend.h says: theta in
 * float as the CPU backend computes it, the rotation in double */
static void s_rope_ref(double *x, int n_tok, int n_heads, int head_dim, int n_rot,
                       const int32_t *pos, float base)
{
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++)
            for (int p = 0; p < n_rot / 2; p++) {
                const float theta = (float)pos[t] * powf(base, -2.0f * (float)p / (float)n_rot);
                double *r = &x[((size_t)t * n_heads + h) * head_dim + 2 * p];
                const double a = r[0], b = r[1];
                r[0] = a * cos((double)theta) - b * sin((double)theta);
                r[1] = a * sin((double)theta) + b * cos((double)theta);
            }
}

static void s_rope_case(int n_tok, int n_heads, int head_dim, int n_rot, float base)
{
    s_seed((uint32_t)(head_dim * 31 + n_rot));
    const size_t n = (size_t)n_tok * n_heads * head_dim;
    s_buf<float> x(n, NAN, S_OUT_F32);
    s_fill(x, 1.0f);
    s_buf<int32_t> pos(n_tok, -1);
    for (int t = 0; t < n_tok; t++)
        pos[t] = (t * 37 + 5) % 97;
    std::vector<double> ref(n);
    for (size_t i = 0; i < n; i++)
        ref[i] = x[i];
    s_rope_ref(ref.data(), n_tok, n_heads, head_dim, n_rot, pos.p(), base);
    SQ_CHECK(sq_cu_rope(nullptr, x.p(), n_tok, n_heads, head_dim, n_rot, pos.p(), base) ==
             cudaSuccess);
    char what[96];
    snprintf(what, sizeof what, "rope n_tok %d n_heads %d head_dim %d n_rot %d", n_tok, n_heads,
             head_dim, n_rot);
    s_expect_close(what, x, ref.data(), n, S_TOL_F32);
}

static void test_rope(void)
{
    s_rope_case(3, 4, 16, 12, 10000.0f);    /* dims 12..15 stay as they are */
    s_rope_case(5, 7, 64, 64, 10000.0f);
    s_rope_case(2, 3, 48, 32, 500000.0f);
}

/* ---- KV store + attention ---- */

/* A batch's inputs to the attention kernels: q (n_tok, n_heads * hd), k
 * and v (n_tok, n_kv * hd) filled (q and k with values up to qk_scale,
 * between guards qk_guard: a kernel may write them in place), and the
 * tokens' slots and positions */
struct s_batch_io {
    s_buf<float> q, k, v;
    s_buf<int32_t> slot, pos;
    s_batch_io(int n_tok, int n_heads, int n_kv, int hd, const int32_t *slots,
               const int32_t *poss, float qk_scale, float qk_guard)
        : q((size_t)n_tok * n_heads * hd, NAN, qk_guard),
          k((size_t)n_tok * n_kv * hd, NAN, qk_guard), v((size_t)n_tok * n_kv * hd, NAN),
          slot(n_tok, -1), pos(n_tok, -1)
    {
        s_fill(q, qk_scale);
        s_fill(k, qk_scale);
        s_fill(v, 1.0f);
        memcpy(slot.p(), slots, (size_t)n_tok * sizeof *slots);
        memcpy(pos.p(), poss, (size_t)n_tok * sizeof *poss);
    }
};

/* A KV cache of F32 (S float) or F16 (S uint16_t: the bits, rounded by
 * the compiler, not CUDA): the value stored for x, what a stored value
 * reads as, an empty entry (NaN), the kernels' cache type and a name */
template <typename S>
struct s_kv;
template <>
struct s_kv<float> {
    typedef float dev;
    static const bool q8 = false;
    static float put(float x) { return x; }
    static float get(float s) { return s; }
    static float nan() { return NAN; }
    static const char *name() { return "f32"; }
};
template <>
struct s_kv<uint16_t> {
    typedef __half dev;
    static const bool q8 = false;
    static uint16_t put(float x) { return s_f16(x); }
    static float get(uint16_t s) { return s_f16_value(s); }
    static uint16_t nan() { return 0x7e00; }
    static const char *name() { return "f16"; }
};
/* Q8_0: int8 values, then (s_cache) one F16 scale per 32 of them */
template <>
struct s_kv<int8_t> {
    typedef int8_t dev;
    static const bool q8 = true;
    static int8_t nan() { return 0x55; }   /* an unwritten block's scale is NaN */
    static const char *name() { return "q8_0"; }
};

/* A K or V cache of S for n values as the kernels see it: the values,
 * and for Q8_0 the scales (value i's at scales[i / 32]); rows are put as
 * the CPU backend stores them (F16 rounded to nearest even; Q8_0 by the
 * CPU's quantizer, sq_cpu_quantize_row_q8_0_ref: scale amax / 127, values
 * x / scale rounded to even, the scale rounded to F16) */
template <typename S>
struct s_cache {
    s_buf<S> v;
    s_buf<uint16_t> sc;
    explicit s_cache(size_t n) : v(n, s_kv<S>::nan()), sc(s_kv<S>::q8 ? n / SQ_CU_QK : 0, 0x7e00) {}
    void put_row(size_t at, const float *x, int hd)
    {
        if constexpr (s_kv<S>::q8) {
            for (int b = 0; b < hd / SQ_CU_QK; b++)
                sc[at / SQ_CU_QK + b] = s_quantize_block(x + SQ_CU_QK * b, &v[at + SQ_CU_QK * b]);
        } else {
            for (int d = 0; d < hd; d++)
                v[at + d] = s_kv<S>::put(x[d]);
        }
    }
    double get(size_t i)
    {
        if constexpr (s_kv<S>::q8)
            return (double)v[i] * s_f16_value(sc[i / SQ_CU_QK]);
        else
            return s_kv<S>::get(v[i]);
    }
    typename s_kv<S>::dev *vp() { return (typename s_kv<S>::dev *)v.p(); }
    __half *scales() { return s_kv<S>::q8 ? (__half *)sc.p() : nullptr; }
    bool same(const s_cache &o) const
    {
        return v.v.size() == o.v.v.size() &&
               memcmp(v.v.data(), o.v.v.data(), v.v.size() * sizeof(S)) == 0 &&
               sc.v.size() == o.sc.v.size() &&
               memcmp(sc.v.data(), o.sc.v.data(), sc.v.size() * sizeof(uint16_t)) == 0;
    }
};

/* A page table for n_slots sequences of n_ctx positions whose pages are
 * scattered over a pool with 3 pages to spare (left NaN): a kernel that
 * ignores the table, or reads a page by the wrong slot, reads NaN or
 * another sequence's rows. */
struct s_paging {
    int n_slots, n_ctx, max_pages, n_pages, n_kv, hd;
    std::vector<int32_t> table;
    s_paging(int slots, int ctx, int kv, int head_dim)
        : n_slots(slots), n_ctx(ctx), max_pages(sq_kv_pages_for(ctx)),
          n_pages(slots * sq_kv_pages_for(ctx) + 3), n_kv(kv), hd(head_dim),
          table((size_t)slots * sq_kv_pages_for(ctx))
    {
        std::vector<int32_t> ids(n_pages);
        for (int i = 0; i < n_pages; i++)
            ids[i] = i;
        for (int i = n_pages - 1; i > 0; i--) {   /* Fisher-Yates on the test's generator */
            s_rand();
            std::swap(ids[i], ids[s_rng % (uint32_t)(i + 1)]);
        }
        for (size_t i = 0; i < table.size(); i++)
            table[i] = ids[i];
    }
    size_t values() const { return (size_t)n_pages * n_kv * SQ_KV_PAGE * hd; }
    /* the table as a kernel reads it (guarded) */
    s_buf<int32_t> buf() const
    {
        s_buf<int32_t> b(table.size(), -1);
        std::copy(table.begin(), table.end(), b.p());
        return b;
    }
    /* position pos of slot's KV head h: (page, h, pos % SQ_KV_PAGE, hd),
     * the layout sq_backend.h gives */
    size_t at(int slot, int h, int pos) const
    {
        const int32_t page = table[(size_t)slot * max_pages + pos / SQ_KV_PAGE];
        return (((size_t)page * n_kv + h) * SQ_KV_PAGE + pos % SQ_KV_PAGE) * hd;
    }
};

/* the caches after token t of slots / poss stores its k and v rows
 * (n_tok, n_kv * hd) through pg */
template <typename S>
static void s_kv_store_ref(s_cache<S> &kc, s_cache<S> &vc, const float *k, const float *v,
                           const int32_t *slots, const int32_t *poss, int n_tok,
                           const s_paging &pg)
{
    const int n_kv = pg.n_kv, hd = pg.hd;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_kv; h++) {
            const size_t at = pg.at(slots[t], h, poss[t]);
            const size_t from = ((size_t)t * n_kv + h) * hd;
            kc.put_row(at, k + from, hd);
            vc.put_row(at, v + from, hd);
        }
}

/* RoPE of q and k in place, then k and v into the caches of S, in one
 * launch: against the reference rotation, and the caches against what
 * the kernel left in k (so a store of a k not yet rotated shows) */
template <typename S>
static void s_rope_store_case(int hd, int n_rot)
{
    const int n_tok = 5, n_heads = 6, n_kv = 2, n_slots = 2, n_ctx = 40;
    const int32_t slots[] = {1, 0, 1, 1, 0}, poss[] = {0, 39, 1, 2, 17};
    const float base = 10000.0f;
    s_seed((uint32_t)(hd + n_rot));
    const size_t nq = (size_t)n_tok * n_heads * hd, nk = (size_t)n_tok * n_kv * hd;
    const s_paging pg(n_slots, n_ctx, n_kv, hd);
    const size_t cache_n = pg.values();
    s_buf<int32_t> pages = pg.buf();
    /* q and k are rotated in place: output guards */
    s_batch_io io(n_tok, n_heads, n_kv, hd, slots, poss, 1.0f, S_OUT_F32);
    s_buf<float> &q = io.q, &k = io.k, &v = io.v;
    s_buf<int32_t> &slot = io.slot, &pos = io.pos;
    s_cache<S> kc(cache_n), vc(cache_n);
    std::vector<double> q_ref(q.p(), q.p() + nq), k_ref(k.p(), k.p() + nk);
    s_rope_ref(q_ref.data(), n_tok, n_heads, hd, n_rot, poss, base);
    s_rope_ref(k_ref.data(), n_tok, n_kv, hd, n_rot, poss, base);
    s_rope_store_t args = {q.p(),      k.p(),      v.p(),     kc.vp(), vc.vp(), kc.scales(),
                           vc.scales(), slot.p(),   pos.p(),   pages.p(), n_heads, n_kv,
                           hd,          n_rot,      n_ctx,     base};
    SQ_CHECK(sq_emu_launch(k_rope_store<typename s_kv<S>::dev>, dim3(n_tok), dim3(256), args) ==
             0);
    const std::string what = std::string("rope_store ") + s_kv<S>::name() + " hd " +
                             std::to_string(hd) + " n_rot " + std::to_string(n_rot);
    s_expect_close(what + ": q", q, q_ref.data(), nq, S_TOL_F32);
    s_expect_close(what + ": k", k, k_ref.data(), nk, S_TOL_F32);
    s_cache<S> kc_ref(cache_n), vc_ref(cache_n);
    s_kv_store_ref(kc_ref, vc_ref, k.p(), v.p(), slots, poss, n_tok, pg);
    SQ_CHECK(kc.same(kc_ref) && vc.same(vc_ref));
}

static void test_rope_store(void)
{
    s_rope_store_case<float>(64, 64);
    s_rope_store_case<float>(48, 32);   /* dims 32..47 of each head stay as they are */
    s_rope_store_case<uint16_t>(64, 64);
    s_rope_store_case<uint16_t>(48, 32);
    s_rope_store_case<int8_t>(64, 64);    /* Q8_0: two blocks a head */
    s_rope_store_case<int8_t>(128, 96);
}

struct s_att_case {
    int hd, n_heads, n_kv, group, q_head0, kv_head0;
    bool quant;   /* the output quantised too (hd % 32 == 0) */
};

/* Batch of tokens (slot, pos): a prefill of slot 2 from 0; two steps of
 * slot 0, the later first, at 31 and 32 (a warp's 32 keys, then one
 * more); one at 300 in slot 1, past the 8 warps x 32 keys of a round.
 * Earlier positions of each slot hold history, later ones NaN. Caches
 * of S. */
template <typename S>
static void s_attention_case(const s_att_case &c)
{
    const int n_slots = 3, n_ctx = 304, hd = c.hd;
    const int32_t slots[] = {2, 0, 2, 2, 1, 0, 2};
    const int32_t poss[] = {0, 32, 1, 2, 300, 31, 3};
    const int n_tok = 7;
    s_seed((uint32_t)(hd * 13 + c.q_head0));
    const s_paging pg(n_slots, n_ctx, c.n_kv, hd);
    const size_t cache_n = pg.values();
    s_buf<int32_t> pages = pg.buf();
    s_cache<S> kc(cache_n), vc(cache_n);
    const int history[] = {31, 300, 0};   /* positions of history per slot */
    std::vector<float> row(2 * (size_t)hd);
    for (int s = 0; s < n_slots; s++)
        for (int h = 0; h < c.n_kv; h++)
            for (int j = 0; j < history[s]; j++) {
                for (float &x : row)
                    x = s_rand();
                kc.put_row(pg.at(s, h, j), row.data(), hd);
                vc.put_row(pg.at(s, h, j), row.data() + hd, hd);
            }
    s_batch_io io(n_tok, c.n_heads, c.n_kv, hd, slots, poss, 2.0f, NAN);
    s_buf<float> &q = io.q, &k = io.k, &v = io.v;
    s_buf<int32_t> &slot = io.slot, &pos = io.pos;

    /* the reference: store, then softmax(q K^T / sqrt(hd)) V causally over
     * what the caches hold */
    s_cache<S> kc_ref = kc, vc_ref = vc;
    s_kv_store_ref(kc_ref, vc_ref, k.p(), v.p(), slots, poss, n_tok, pg);
    std::vector<double> ref((size_t)n_tok * c.n_heads * hd, 0.0), sc(n_ctx);
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < c.n_heads; h++) {
            const int kvh = (c.q_head0 + h) / c.group - c.kv_head0;
            const float *qr = &q[((size_t)t * c.n_heads + h) * hd];
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= poss[t]; j++) {
                sc[j] = 0.0;
                for (int d = 0; d < hd; d++)
                    sc[j] += (double)qr[d] * kc_ref.get(pg.at(slots[t], kvh, j) + d);
                sc[j] /= sqrt((double)hd);
                mx = std::max(mx, sc[j]);
            }
            for (int j = 0; j <= poss[t]; j++)
                sum += sc[j] = exp(sc[j] - mx);
            double *o = &ref[((size_t)t * c.n_heads + h) * hd];
            for (int j = 0; j <= poss[t]; j++)
                for (int d = 0; d < hd; d++)
                    o[d] += sc[j] / sum * vc_ref.get(pg.at(slots[t], kvh, j) + d);
        }

    /* as sq_cu_attention: the store, then one block per (token, head) */
    typedef typename s_kv<S>::dev T;
    SQ_CHECK(sq_emu_launch(k_kv_store<T>, dim3(n_tok), dim3(256), (void *)kc.vp(),
                           (void *)vc.vp(), kc.scales(), vc.scales(), (const float *)k.p(),
                           (const float *)v.p(), (const int32_t *)slot.p(),
                           (const int32_t *)pos.p(), (const int32_t *)pages.p(), c.n_kv, n_ctx,
                           hd) == 0);
    SQ_CHECK(kc.same(kc_ref) && vc.same(vc_ref));
    const size_t n_out = (size_t)n_tok * c.n_heads * hd;
    /* the keys of a (head, token) in one block, or split over 3 blocks, or
     * over 16 (more blocks than the 10 strips of 32 keys: some have none) */
    for (int n_split : {1, 3, (int)SQ_CU_ATT_MAX_SPLIT}) {
        s_buf<float> o(n_out, NAN, S_OUT_F32);
        s_buf<int8_t> xq(c.quant ? n_out : 0, (int8_t)0x7f, S_OUT_I8);
        s_buf<float> xd(c.quant ? n_out / SQ_CU_QK : 0, NAN, S_OUT_F32);
        s_buf<float> part(sq_cu_att_part_floats(n_tok, c.n_heads, hd, n_split), NAN, S_OUT_F32);
        s_att_t args = {kc.vp(), vc.vp(), kc.scales(), vc.scales(), q.p(), o.p(), slot.p(),
                        pos.p(), pages.p(), c.n_heads,
                        c.n_kv, n_ctx, hd, c.q_head0, c.kv_head0, c.group,
                        c.quant ? xq.p() : nullptr, c.quant ? xd.p() : nullptr, n_split,
                        part.p()};
        SQ_CHECK(sq_emu_launch(k_attention<T>, dim3(n_tok, c.n_heads, n_split),
                               dim3(S_ATT_WARPS * 32), args) == 0);
        if (n_split > 1)
            SQ_CHECK(sq_emu_launch(k_att_combine, dim3(n_tok, c.n_heads),
                                   dim3(S_ATT_WARPS * 32), args) == 0);
        SQ_CHECK(part.guards_ok());
        char what[160];
        snprintf(what, sizeof what,
                 "attention %s hd %d heads %d kv %d group %d q_head0 %d kv_head0 %d split %d%s",
                 s_kv<S>::name(), hd, c.n_heads, c.n_kv, c.group, c.q_head0, c.kv_head0, n_split,
                 c.quant ? " with Q8_0" : "");
        s_expect_close(what, o, ref.data(), ref.size(), S_TOL_F32);
        if (c.quant)
            s_expect_quantized(what, o.p(), n_out, xq, xd);
    }
}

template <typename S>
static void s_attention_cases(void)
{
    if (s_kv<S>::q8) {   /* Q8_0: head sizes of whole 32-value blocks */
        s_attention_case<S>({64, 6, 2, 4, 6, 1, true});
        s_attention_case<S>({SQ_CU_MAX_HEAD_DIM, 4, 1, 4, 0, 0, true});
        s_attention_case<S>({32, 4, 4, 1, 0, 0, false});
        return;
    }
    /* rank 1 of 2 of 12 query / 3 KV heads: its first query heads share
     * a KV head with rank 0 (q_head0 6 is not a multiple of the group) */
    s_attention_case<S>({64, 6, 2, 4, 6, 1, true});
    /* rank 1 of 2 of 16 / 4 heads; head_dim under 64, not a multiple of 32 */
    s_attention_case<S>({48, 8, 2, 4, 8, 2, false});
    s_attention_case<S>({SQ_CU_MAX_HEAD_DIM, 4, 1, 4, 0, 0, true});
    /* head_dim not a multiple of 4 (the scalar q . k, F32 or F16); no
     * grouping */
    s_attention_case<S>({42, 2, 2, 1, 2, 2, false});
}

static void test_attention(void)
{
    s_attention_cases<float>();
    s_attention_cases<uint16_t>();   /* the F16 cache (the model's default) */
    s_attention_cases<int8_t>();     /* Q8_0 */
}

int main(void)
{
    /* the blocks' and threads' order; any seed must pass */
    if (getenv("SQ_EMU_SEED"))
        sq_emu::S.seed = (unsigned)strtoul(getenv("SQ_EMU_SEED"), NULL, 10);
    SQ_RUN(test_emulator);
    SQ_RUN(test_embed);
    SQ_RUN(test_add_rmsnorm);
    SQ_RUN(test_quantize_q8);
    SQ_RUN(test_gemv);
    SQ_RUN(test_mma);
    SQ_RUN(test_q8_to_f16);
    SQ_RUN(test_argmax);
    SQ_RUN(test_sample);
    SQ_RUN(test_to_f16);
    SQ_RUN(test_swiglu_add);
    SQ_RUN(test_launch_status);
    SQ_RUN(test_pdl_gate);
    SQ_RUN(test_index_rows);
    SQ_RUN(test_rope);
    SQ_RUN(test_rope_store);
    SQ_RUN(test_attention);
    return sq_test_summary("cuda_emu");
}
