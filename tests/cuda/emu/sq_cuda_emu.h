/*  sq_cuda_emu: enough of CUDA to compile sq_cuda_device.cuh with the host
 *  C++ compiler (g++, not nvcc) and run its kernels on the CPU, so that
 *  CI without a GPU runs the real kernel code against a CPU reference.
 *
 *  Blocks run one after another, in a seeded shuffled order. Each CUDA
 *  thread of a block is a fibre with its own stack; fibres are
 *  never preempted, they give way only at __syncthreads, __syncwarp and
 *  the warp shuffles, where the scheduler holds them until their group
 *  has arrived (exited threads count as arrived). Which thread runs first
 *  between two barriers and which waiting warp goes on first are random
 *  too (same seed), so a missing barrier shows as a wrong result, not as
 *  luck. What a GPU leaves undefined fails the launch with a message: a
 *  shuffle in a warp with an exited lane, a barrier that can never
 *  complete (deadlock), a bad launch configuration.
 *  __shared__ is `static`: one array per kernel, which is per block since
 *  blocks run in turn. All of them live in one section, which is filled
 *  with 0xff bytes before every block (NaN as a float, -1 as an integer,
 *  a pointer nowhere), so a kernel that reads shared memory before it
 *  writes it fails here as it would, by chance, on a GPU.
 *
 *  Switching fibres: on x86-64 a hand-written switch (the callee-saved
 *  registers, MXCSR and the x87 control word, then the stack pointer);
 *  elsewhere, and under AddressSanitizer (which must see stack switches),
 *  ucontext, whose swapcontext also saves the signal mask with system
 *  calls and is about twenty times slower.
 *
 *  Ownership: one global state (S below), neither thread-safe nor
 *  re-entrant; the fibre stacks are mapped once, for the largest block
 *  seen, and kept to the end of the process.
 */
#ifndef SQ_CUDA_EMU_H
#define SQ_CUDA_EMU_H

/* the toolkit's headers first: they define the execution-space keywords
 * as empty for a host compiler, we then pin down our own meanings */
#include <cuda_runtime_api.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static __attribute__((section("sq_emu_shared")))

/* the bounds of the __shared__ section (the linker's; weak: none when no
 * kernel has shared memory) */
extern "C" char __start_sq_emu_shared[] __attribute__((weak));
extern "C" char __stop_sq_emu_shared[] __attribute__((weak));

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace sq_emu {

enum wait_t { RUN, SYNC_BLOCK, SYNC_WARP, SHFL, DONE };

#if defined(__SANITIZE_ADDRESS__)
#define SQ_EMU_UCONTEXT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ_EMU_UCONTEXT 1
#endif
#endif
#if !defined(__x86_64__) && !defined(SQ_EMU_UCONTEXT)
#define SQ_EMU_UCONTEXT 1
#endif

#ifdef SQ_EMU_UCONTEXT
typedef ucontext_t ctx_t;
#else
/* a parked fibre: its stack pointer, below what sq_emu_ctx_swap pushed */
struct ctx_t {
    void *sp;
};
#endif

struct fibre_t {
    ctx_t ctx;
    wait_t wait;
    uint64_t shfl_in, shfl_out;   /* a shuffle's value, as bytes */
    int shfl_src;                 /* lane whose shfl_in this lane reads */
    int mma[6];                   /* an mma's A and B fragments, for the warp */
    bool pdl;                     /* passed the kernel's s_pdl_begin */
};

enum { STACK_BYTES = 64 << 10, PAGE = 4096 };

struct state_t {
    ctx_t sched;
    fibre_t *f = nullptr;
    char *stacks = nullptr;       /* per fibre: a guard page, then the stack */
    int cap = 0, n = 0, cur = 0;
    void (*call)(void *) = nullptr;   /* the kernel with its arguments bound */
    void *call_ctx = nullptr;
    bool failed = false;
    char why[256];
    unsigned seed = 1;            /* of the orders below; the test may change it */
    bool require_pdl = true;      /* a thread ending without s_pdl_begin fails
                                   * (sq_cuda_device.cuh's rule; the emulator's
                                   * own tests turn it off for their kernels) */
    uint32_t rng = 1;             /* xorshift32 state, from seed at each launch */
};
inline state_t S;

/* what orders blocks, warps and threads between barriers */
inline uint32_t s_rand()
{
    S.rng ^= S.rng << 13;
    S.rng ^= S.rng >> 17;
    S.rng ^= S.rng << 5;
    return S.rng;
}

#ifdef SQ_EMU_UCONTEXT
inline void ctx_swap(ctx_t *save, ctx_t *to) { swapcontext(save, to); }

inline void s_entry();

/* c starts s_entry on the stack [base, base + bytes) and returns to
 * `done` when it ends */
inline void ctx_make(ctx_t *c, char *base, size_t bytes, ctx_t *done)
{
    c->uc_stack.ss_sp = base;
    c->uc_stack.ss_size = bytes;
    c->uc_link = done;
    makecontext(c, s_entry, 0);
}

/* getcontext returns twice: out of line, so no caller's locals are at risk */
__attribute__((noinline)) inline void ctx_init(ctx_t *c) { getcontext(c); }
#else
}  // namespace sq_emu

/* save the callee-saved registers and the floating-point control words on
 * the running stack, store its pointer in *save, load *to's and return
 * there. An external symbol (weak: every object that includes this header
 * has a copy), so the compiler assumes a call that clobbers what the ABI
 * lets a call clobber. */
extern "C" void sq_emu_ctx_swap(void **save, void *to);
__asm__(".pushsection .text\n"
        ".weak sq_emu_ctx_swap\n"
        ".type sq_emu_ctx_swap, @function\n"
        "sq_emu_ctx_swap:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size sq_emu_ctx_swap, .-sq_emu_ctx_swap\n"
        ".popsection\n");

namespace sq_emu {
inline void ctx_swap(ctx_t *save, ctx_t *to) { sq_emu_ctx_swap(&save->sp, to->sp); }

inline void s_entry();
inline ctx_t *s_done_ctx;   /* where a fibre whose s_entry returned goes */

[[noreturn]] inline void s_fibre_main()
{
    s_entry();
    ctx_t dead;
    ctx_swap(&dead, s_done_ctx);
    __builtin_unreachable();   /* a finished fibre is never resumed */
}

/* c starts s_entry on the stack [base, base + bytes) and goes to `done`
 * when it ends. The new stack holds what sq_emu_ctx_swap pops: the
 * control words, six registers, then s_fibre_main as the return address,
 * which it enters with the stack aligned as after a call. */
inline void ctx_make(ctx_t *c, char *base, size_t bytes, ctx_t *done)
{
    uint64_t *top = (uint64_t *)((uintptr_t)(base + bytes) & ~(uintptr_t)15);
    uint32_t mxcsr;
    uint16_t fcw;
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(mxcsr), "=m"(fcw));
    s_done_ctx = done;
    top[-1] = 0;                                  /* s_fibre_main's return address */
    top[-2] = (uint64_t)(uintptr_t)s_fibre_main;
    for (int r = 3; r <= 8; r++)
        top[-r] = 0;                              /* rbp rbx r12-r15 */
    top[-9] = (uint64_t)fcw << 32 | mxcsr;
    c->sp = top - 9;
}

inline void ctx_init(ctx_t *c) { c->sp = nullptr; }
#endif

inline void s_entry()
{
    S.call(S.call_ctx);
    if (S.require_pdl && !S.f[S.cur].pdl) {
        snprintf(S.why, sizeof S.why, "thread %d: ended without s_pdl_begin (under "
                 "programmatic dependent launch it may read its predecessor's output early)",
                 S.cur);
        S.failed = true;
    }
    S.f[S.cur].wait = DONE;       /* then back to the scheduler, never resumed */
}

/* park the running fibre until the scheduler releases it */
inline void s_yield(wait_t w)
{
    fibre_t *f = &S.f[S.cur];
    f->wait = w;
    ctx_swap(&f->ctx, &S.sched);
}

/* a fibre found something a GPU would not do: fail the launch, never resume */
inline void s_abort(const char *what)
{
    snprintf(S.why, sizeof S.why, "thread %d: %s", S.cur, what);
    S.failed = true;
    s_yield(DONE);
}

/* Nothing runnable: release one group whose members have all arrived.
 * Warps first (a warp can finish its shuffles while other warps wait at
 * the block barrier), a random one of them: no warp may count on running
 * before another. false: nothing can move, or a bug was found. */
inline bool s_release()
{
    const int n_warps = (S.n + 31) / 32, first = (int)(s_rand() % (unsigned)n_warps);
    for (int k = 0; k < n_warps; k++) {
        const int w0 = (first + k) % n_warps * 32;
        const int w1 = std::min(w0 + 32, S.n);
        int n_sync = 0, n_shfl = 0, n_done = 0;
        for (int i = w0; i < w1; i++) {
            n_sync += S.f[i].wait == SYNC_WARP;
            n_shfl += S.f[i].wait == SHFL;
            n_done += S.f[i].wait == DONE;
        }
        if (n_shfl && (n_done || w1 - w0 < 32)) {
            snprintf(S.why, sizeof S.why, "warp %d: shuffle with an exited lane (%d of %d "
                     "lanes exited or absent)", w0 / 32, n_done + 32 - (w1 - w0), 32);
            S.failed = true;
            return false;
        }
        if (n_shfl == 32)   /* all values in: every lane reads its source's */
            for (int i = w0; i < w1; i++)
                S.f[i].shfl_out = S.f[w0 + S.f[i].shfl_src].shfl_in;
        if ((n_sync && n_sync + n_done == w1 - w0) || n_shfl == 32) {
            for (int i = w0; i < w1; i++)
                if (S.f[i].wait != DONE)
                    S.f[i].wait = RUN;
            return true;
        }
    }
    int n_sync = 0, n_done = 0;
    for (int i = 0; i < S.n; i++) {
        n_sync += S.f[i].wait == SYNC_BLOCK;
        n_done += S.f[i].wait == DONE;
    }
    if (!n_sync || n_sync + n_done < S.n) {
        snprintf(S.why, sizeof S.why, "deadlock: %d threads at __syncthreads, %d exited, the "
                 "rest at a warp sync or shuffle their warp cannot complete", n_sync, n_done);
        S.failed = true;
        return false;
    }
    for (int i = 0; i < S.n; i++)
        if (S.f[i].wait == SYNC_BLOCK)
            S.f[i].wait = RUN;
    return true;
}

/* stacks for n fibres, each below a PROT_NONE page: an overflow faults */
inline bool s_reserve(int n)
{
    if (n <= S.cap)
        return true;
    if (S.stacks)
        munmap(S.stacks, (size_t)S.cap * (STACK_BYTES + PAGE));
    delete[] S.f;
    const size_t bytes = (size_t)n * (STACK_BYTES + PAGE);
    void *m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    S.stacks = m == MAP_FAILED ? nullptr : (char *)m;
    S.f = new fibre_t[n];
    S.cap = S.stacks ? n : 0;
    for (int i = 0; i < S.cap; i++) {
        mprotect(S.stacks + (size_t)i * (STACK_BYTES + PAGE), PAGE, PROT_NONE);
        ctx_init(&S.f[i].ctx);   /* once: each block only re-makes it */
    }
    return S.stacks != nullptr;
}

/* every thread of the current block, to completion or failure */
inline bool s_run_block()
{
    for (int i = 0; i < S.n; i++) {
        fibre_t *f = &S.f[i];
        ctx_make(&f->ctx, S.stacks + (size_t)i * (STACK_BYTES + PAGE) + PAGE, STACK_BYTES,
                 &S.sched);
        f->wait = RUN;
        f->pdl = false;
    }
    /* each pass from a random thread, up or down, so that no thread may
     * count on running before another between two barriers */
    for (int n_done = 0; n_done < S.n && !S.failed;) {
        bool ran = false;
        const uint32_t r = s_rand();
        const int first = (int)(r % (unsigned)S.n), step = r >> 31 ? 1 : S.n - 1;
        for (int k = 0; k < S.n && !S.failed; k++) {
            const int i = (first + k * step) % S.n;
            if (S.f[i].wait != RUN)
                continue;
            S.cur = i;
            threadIdx = make_uint3(i % blockDim.x, i / blockDim.x % blockDim.y,
                                   i / (blockDim.x * blockDim.y));
            ctx_swap(&S.sched, &S.f[i].ctx);
            n_done += S.f[i].wait == DONE;
            ran = true;
        }
        if (!ran && !S.failed && !s_release())
            break;
    }
    return !S.failed;
}

/* every __shared__ variable to 0xff bytes: a block starts with garbage
 * (without AddressSanitizer's checks: the section holds its redzones) */
__attribute__((no_sanitize_address)) inline void s_poison_shared()
{
    if (!__start_sq_emu_shared || !__stop_sq_emu_shared)
        return;
    for (volatile char *p = __start_sq_emu_shared; p < __stop_sq_emu_shared; p++)
        *p = (char)0xff;
}

inline int s_launch(dim3 grid, dim3 block)
{
    const unsigned long long n_threads = (unsigned long long)block.x * block.y * block.z;
    S.failed = false;
    if (!grid.x || !grid.y || !grid.z || grid.y > 65535 || grid.z > 65535 || !n_threads ||
        n_threads > 1024 || block.z > 64) {
        snprintf(S.why, sizeof S.why, "invalid configuration: grid (%u,%u,%u) block (%u,%u,%u)",
                 grid.x, grid.y, grid.z, block.x, block.y, block.z);
        fprintf(stderr, "sq_cuda_emu: %s\n", S.why);
        return -1;
    }
    if (!s_reserve((int)n_threads)) {
        fprintf(stderr, "sq_cuda_emu: no memory for %llu fibre stacks\n", n_threads);
        return -1;
    }
    S.n = (int)n_threads;
    gridDim = grid;
    blockDim = block;
    S.rng = S.seed * 2654435761u | 1;
    std::vector<unsigned long long> order((size_t)grid.x * grid.y * grid.z);
    for (size_t b = 0; b < order.size(); b++) {   /* a shuffle as it fills */
        const size_t k = s_rand() % (b + 1);
        order[b] = order[k];
        order[k] = b;
    }
    for (unsigned long long b : order) {
        blockIdx.x = (unsigned)(b % grid.x);
        blockIdx.y = (unsigned)(b / grid.x % grid.y);
        blockIdx.z = (unsigned)(b / ((unsigned long long)grid.x * grid.y));
        s_poison_shared();
        if (!s_run_block()) {
            fprintf(stderr, "sq_cuda_emu: block (%u,%u,%u) of (%u,%u,%u): %s\n", blockIdx.x,
                    blockIdx.y, blockIdx.z, grid.x, grid.y, grid.z, S.why);
            return -1;
        }
    }
    return 0;
}

inline int s_lane() { return S.cur % 32; }

/* deposit v, wait for the warp, return lane src's value */
template <typename T>
T s_shfl(unsigned mask, T v, int src)
{
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value over 8 bytes");
    if (mask != 0xffffffffu)
        s_abort("shuffle with a partial mask (only full warps are emulated)");
    fibre_t *f = &S.f[S.cur];
    memcpy(&f->shfl_in, &v, sizeof v);
    f->shfl_src = src;
    s_yield(SHFL);
    memcpy(&v, &S.f[S.cur].shfl_out, sizeof v);
    return v;
}

/* C += A B of the warp (mma.sync m16n8k32 .s8, the layout in
 * sq_cuda_device.cuh's s_mma_s8): every lane deposits its fragments and
 * waits for the warp, then assembles its part of C from all 32 lanes'
 * fragments, then waits again so no lane overwrites its deposit early */
inline void s_mma_s8(int c[4], const int a[4], const int b[2])
{
    fibre_t *f = &S.f[S.cur];
    memcpy(f->mma, a, 4 * sizeof(int));
    memcpy(f->mma + 4, b, 2 * sizeof(int));
    s_yield(SYNC_WARP);
    const int lane = S.cur % 32, w0 = S.cur - lane, g = lane / 4, t = lane % 4;
    for (int i = w0; i < w0 + 32; i++)
        if (i >= S.n || S.f[i].wait == DONE)
            s_abort("mma.sync with an exited or absent lane");
    for (int l = 0; l < 4; l++) {
        const int row = 8 * (l / 2) + g, col = 2 * t + l % 2;
        for (int k = 0; k < 32; k++) {
            /* A (row, k): lane 4 (row % 8) + k % 16 / 4, register
             * row / 8 + 2 (k / 16); B (k, col): lane 4 col + k % 16 / 4,
             * register k / 16; byte k % 4 of each */
            const int wa = S.f[w0 + 4 * (row % 8) + k % 16 / 4].mma[row / 8 + 2 * (k / 16)];
            const int wb = S.f[w0 + 4 * col + k % 16 / 4].mma[4 + k / 16];
            c[l] += (int8_t)(wa >> (8 * (k % 4))) * (int8_t)(wb >> (8 * (k % 4)));
        }
    }
    s_yield(SYNC_WARP);
}

}  // namespace sq_emu

/* Run kernel k over grid x block with args converted to its parameters as
 * a real launch would. 0, or -1 after printing why (a bad configuration, a
 * deadlock, a shuffle with an exited lane). */
template <typename... P, typename... A>
int sq_emu_launch(void (*k)(P...), dim3 grid, dim3 block, A &&...args)
{
    std::tuple<P...> params(std::forward<A>(args)...);
    auto body = [&] { std::apply(k, params); };
    sq_emu::S.call = [](void *c) { (*(decltype(body) *)c)(); };
    sq_emu::S.call_ctx = &body;
    return sq_emu::s_launch(grid, block);
}

namespace sq_emu {
/* The emulated runtime (sq_cuda_emu_rt.cpp): work queued on stream s as a
 * real launch or copy would be; it runs in stream order, or is recorded
 * into s's graph while s is being captured. A launch that fails when it
 * runs leaves cudaErrorLaunchFailure for the next sync to return. Returns
 * what a real launch returns: the sticky error of a kernel that failed
 * (this one, when it ran at once), else cudaSuccess, whatever error an
 * earlier call left for cudaGetLastError. */
cudaError_t rt_submit(cudaStream_t s, std::function<cudaError_t()> work);
/* Whether the kernel about to run faults: SQ_EMU_FAULT_AFTER=N makes the
 * N-th kernel the process runs (launched or replayed) fail as a device
 * fault does (cudaErrorIllegalAddress, sticky), and SQ_EMU_HANG_AFTER=N
 * makes it never finish (this call does not return), so tests can see
 * what the worker makes of a GPU that fails or hangs mid-job. */
bool rt_fault_now();
/* Whether stream s takes a launch with programmatic stream serialisation
 * (pdl): SQ_EMU_CAPTURE_REFUSE_PDL=1 makes it refuse one while s is being
 * captured (cudaErrorStreamCaptureUnsupported, the capture invalidated),
 * as a driver that cannot put such a launch into a graph would. */
cudaError_t rt_launch_pdl(cudaStream_t s, bool pdl);
}  // namespace sq_emu

/* SQ_CU_LAUNCH of sq_cuda_kernels.cu built by the host compiler (pdl:
 * with programmatic stream serialisation): the arguments converted to
 * k's parameters now, as a launch does, the kernel run when the stream
 * gets to it (or at each graph replay); the launch's status (rt_submit) */
template <typename... P, typename... A>
cudaError_t sq_emu_stream_launch(cudaStream_t s, bool pdl, void (*k)(P...), dim3 grid,
                                 dim3 block, A &&...args)
{
    const cudaError_t refused = sq_emu::rt_launch_pdl(s, pdl);
    if (refused != cudaSuccess)
        return refused;
    std::tuple<P...> params(std::forward<A>(args)...);
    return sq_emu::rt_submit(s, [k, grid, block, params]() mutable {
        if (sq_emu::rt_fault_now())
            return cudaErrorIllegalAddress;
        const int rc = std::apply([&](P &...p) { return sq_emu_launch(k, grid, block, p...); },
                                  params);
        return rc == 0 ? cudaSuccess : cudaErrorLaunchFailure;
    });
}

/* ---- the device functions the kernels use ---- */

inline void __syncthreads() { sq_emu::s_yield(sq_emu::SYNC_BLOCK); }
inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    if (mask != 0xffffffffu)
        sq_emu::s_abort("__syncwarp with a partial mask (only full warps are emulated)");
    sq_emu::s_yield(sq_emu::SYNC_WARP);
}

/* width < 32 splits the warp into segments; out of the segment (later
 * segments for xor) a lane gets its own value, as on the device */
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    const int lane = sq_emu::s_lane();
    return sq_emu::s_shfl(mask, v, (lane & ~(width - 1)) + (src & (width - 1)));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    const int lane = sq_emu::s_lane(), src = lane ^ lane_mask;
    return sq_emu::s_shfl(mask, v, src >= ((lane / width) + 1) * width ? lane : src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    const int lane = sq_emu::s_lane(), src = lane + (int)delta;
    return sq_emu::s_shfl(mask, v, src >= ((lane / width) + 1) * width ? lane : src);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    const int lane = sq_emu::s_lane(), src = lane - (int)delta;
    return sq_emu::s_shfl(mask, v, src < (lane & ~(width - 1)) ? lane : src);
}

inline void sq_emu_mma_s8(int c[4], const int a[4], const int b[2]) { sq_emu::s_mma_s8(c, a, b); }
/* the kernel's wait for its predecessors: kernels run one after another
 * here, so only that it was called is noted */
inline void sq_emu_pdl_begin() { sq_emu::S.f[sq_emu::S.cur].pdl = true; }

/* four 8-bit products plus c: signed bytes for int, unsigned for unsigned */
inline int __dp4a(int a, int b, int c)
{
    for (int i = 0; i < 32; i += 8)
        c += (int8_t)(a >> i) * (int8_t)(b >> i);
    return c;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c)
{
    for (int i = 0; i < 32; i += 8)
        c += (uint8_t)(a >> i) * (unsigned)(uint8_t)(b >> i);
    return c;
}
/* byte n of the result = byte s<4n+2:4n> of y:x */
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s)
{
    const uint64_t b = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int n = 0; n < 4; n++)
        r |= (unsigned)(b >> (8 * ((s >> (4 * n)) & 7)) & 0xff) << (8 * n);
    return r;
}

template <typename T>
T __ldg(const T *p) { return *p; }
/* fibres are not preemptive: a plain read-modify-write is atomic */
template <typename T>
T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}

/* round half to even; NaN gives 0 and out-of-range values saturate, as
 * cvt.rni.s32.f32 does */
inline int __float2int_rn(float x)
{
    if (x != x)
        return 0;
    if (x >= 2147483648.0f || x < -2147483648.0f)
        return x > 0 ? 2147483647 : (-2147483647 - 1);
    return (int)nearbyintf(x);
}
inline float __expf(float x) { return expf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
/* one type for both, as the device overloads would resolve */
template <typename T>
T min(T a, T b) { return a < b ? a : b; }
template <typename T>
T max(T a, T b) { return a > b ? a : b; }

#endif
