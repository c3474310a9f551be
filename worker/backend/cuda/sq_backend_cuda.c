/*  sq_backend_cuda: the backend table (sq_backend.h) on one CUDA device.
 *
 *  Every op is queued on one non-blocking stream; only download (and the
 *  rare upload / weight_init, whose host buffer the caller may free on
 *  return) waits for it, so a forward step runs without host round trips
 *  until its logits are read. The small host arrays ops take (token ids,
 *  positions, slots) are staged through pinned buffers; the model passes
 *  the same positions to two RoPE calls and the attention of each layer,
 *  so an array equal to one of the last four staged shares its slot (and the
 *  fusion plan can see the positions are the same).
 */
#include "sq_backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cuda_check.h"
#include "sq_log.h"
#include "sq_cuda_fuse.h"
#include "sq_cuda_graph.h"
#include "sq_cuda_kernels.h"
#include "sq_cuda_prof.h"
#include "sq_error.h"
#include "sq_parse.h"
#include "sq_prof.h"

typedef struct {
    void *p;
    size_t bytes;
} s_scratch_t;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;              /* cuBLAS workspace: no allocation while capturing */
    sq_cuda_rec_t rec;          /* ops since the last flush */
    /* Host arrays of the recorded ops, pinned / device, double-buffered:
     * lists alternate between the two, so recording the next list only
     * waits for the one before the last (under NCCL the host records a
     * layer half while the GPU runs the previous one). */
    int32_t *arena_h[2], *arena_d[2];
    cudaEvent_t arena_read[2];  /* the list that used arena i is done */
    bool arena_busy[2];
    int cur;                    /* the arena being recorded into */
    sq_cuda_graph_cache_t graphs;
    bool use_graphs;
    /* Scratch buffers of the matrix products, sized when an op is recorded
     * (never while a graph is being captured) to the largest need yet */
    s_scratch_t x16;            /* activations as F16, for cuBLAS */
    s_scratch_t w16;            /* a Q8_0 weight as F16, for cuBLAS (big batches) */
    s_scratch_t xq;             /* activations as Q8_0 for the Q8_0 GEMV and mma */
    s_scratch_t tokens;         /* argmax and sample results on their way to the host */
    s_scratch_t draws;          /* the sample op's rows, SQ_CU_SAMPLE_WORDS each */
    int32_t *draws_h;           /* their pinned host copy (draws_h_n words): the
                                 * copy is queued, and the next call's filling
                                 * waits for the download that ends this one */
    size_t draws_h_n;
    s_scratch_t att_part;       /* split attention's partial results */
    int n_sms;                  /* the device's multiprocessors (attention splits) */
    int att_split;              /* SHARDQ_CUDA_ATT_SPLIT: blocks per (head, token), 0 auto */
    /* While a list runs: the activations xq holds (NULL: none), so the
     * products sharing an input (q, k, v; gate, up) quantise it once */
    const float *xq_src;
    int xq_tok;
    int64_t xq_n_in;
    bool fuse;                  /* SHARDQ_CUDA_FUSE=0: every op its own kernel */
    bool mma;                   /* SHARDQ_CUDA_MMA=0: big Q8_0 batches through cuBLAS */
    sq_cuda_step_t *steps;      /* the fusion plan of the list being run */
    int steps_cap;
    /* an attention's slots as page-table rows: each token's row, the
     * distinct slots in order, and a map slot -> row (-1 between calls) */
    int32_t *att_rows, *att_slots, *slot_row;
    int att_cap, slot_row_n;
    /* SHARDQ_PROFILE=1 (sq_cuda_prof.h): graphs off; each step runs
     * between two of prof_ev, after a k_hold of prof_hold_us a step that
     * lets the host queue the whole list first (doubled whenever the GPU
     * caught up with the host anyway: prof_mark, recorded after the hold,
     * had passed when the list was queued; prof_caught_up of prof_runs) */
    sq_prof_t *prof;
    cudaEvent_t *prof_ev, prof_mark;
    int prof_ev_n;
    double prof_hold_us;
    long prof_runs, prof_caught_up;
} s_cuda_t;

enum { S_ARENA0 = 1 << 16, S_BLAS_WS = 32 << 20 };
/* the profile's hold: microseconds a step to start with, and at most */
#define S_HOLD_US 20.0
#define S_HOLD_MAX_US 50e3

static const sq_backend_ops_t s_cuda_ops;

static s_cuda_t *s_ctx(sq_backend_t *be)
{
    return be->ctx;
}

static int s_fail(cudaError_t err, const char *what)
{
    return sq_cuda_fail(err, "cuda", what);
}

#define S_CUDA(call, what) SQ_CUDA_CHECK(call, "cuda", what)

static int s_blas_fail(cublasStatus_t st, const char *what)
{
    return SQ_FAIL(SQ_EDEVICE, "cublas: %s: %s", what, cublasGetStatusString(st));
}

/* 0 when this build has kernels device (the current one) can run, else
 * -1 with why saying so: a build for other architectures would fail at
 * every launch */
static int s_kernels_why(int device, char *why, size_t why_size)
{
    int ptx = 0;
    cudaError_t err = sq_cu_kernels_ptx(&ptx);
    if (err == cudaSuccess)
        return 0;
    int major = 0, minor = 0;
    (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    (void)cudaGetLastError();
    snprintf(why, why_size, "CUDA device %d (compute capability %d.%d): this build has no "
             "kernels for it (%s); it was built for CUDA architectures %s: rebuild with "
             "-DCMAKE_CUDA_ARCHITECTURES=%d%d", device, major, minor, cudaGetErrorString(err),
             SQ_CUDA_ARCHS, major, minor);
    return -1;
}

int sq_cuda_usable(char *why, size_t why_size)
{
    int n = 0;
    char cause[320];
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n < 1) {
        snprintf(cause, sizeof cause, "%s",
                 err != cudaSuccess ? cudaGetErrorString(err) : "no devices");
    } else {
        const int device = sq_cuda_pick_device(sq_cuda_local_rank(), n);
        err = cudaSetDevice(device);
        if (err == cudaSuccess && s_kernels_why(device, cause, sizeof cause) == 0)
            return 1;
        if (err != cudaSuccess)
            snprintf(cause, sizeof cause, "CUDA device %d: %s", device, cudaGetErrorString(err));
    }
    if (why && why_size)
        snprintf(why, why_size, "no usable CUDA device: %s", cause);
    return 0;
}

/* ---- running recorded ops ---- */

static void *s_mut(const void *p)
{
    return (void *)p;   /* recorded pointers are stored const */
}

/* bytes of x (n_tok, n_in) as Q8_0 in the xq scratch: quants, then scales */
static size_t s_xq_bytes(int n_tok, int64_t n_in)
{
    return (size_t)n_tok * (size_t)n_in + (size_t)n_tok * (size_t)(n_in / SQ_CU_QK) * 4;
}

/* where x (n_tok, n_in) as Q8_0 goes in the xq scratch */
static void s_xq_at(s_cuda_t *c, int n_tok, int64_t n_in, int8_t **xq, float **xd)
{
    *xq = c->xq.p;
    *xd = (float *)((char *)c->xq.p + (size_t)n_tok * (size_t)n_in);
}

static void s_xq_remember(s_cuda_t *c, const float *x, int n_tok, int64_t n_in)
{
    c->xq_src = x;
    c->xq_tok = n_tok;
    c->xq_n_in = n_in;
}

/* y (n_tok, n_out) was written: a quantised copy of what it overlaps is stale */
static void s_xq_written(s_cuda_t *c, const float *y, size_t bytes)
{
    const char *a = (const char *)y, *b = (const char *)c->xq_src;
    if (b && a < b + (size_t)c->xq_tok * (size_t)c->xq_n_in * 4 && b < a + bytes)
        c->xq_src = NULL;
}

/* x as Q8_0 in the xq scratch, unless it is there already */
static int s_quantized(s_cuda_t *c, const float *x, int n_tok, int64_t n_in, int8_t **xq,
                       float **xd)
{
    s_xq_at(c, n_tok, n_in, xq, xd);
    if (c->xq_src == x && c->xq_tok == n_tok && c->xq_n_in == n_in)
        return 0;
    S_CUDA(sq_cu_quantize_q8(c->stream, x, n_tok, n_in, *xq, *xd), "quantise activations");
    s_xq_remember(c, x, n_tok, n_in);
    return 0;
}

/* y (n_tok, n_out) = x W^T through cuBLAS (column-major): y^T = W x^T,
 * W stored (n_out, n_in) row-major = (n_in, n_out) column-major. F16 and
 * Q8_0 weights multiply as F16 (Q8_0 dequantised into w16) with an F16
 * copy of x, accumulating in F32. */
static int s_exec_blas(s_cuda_t *c, int dtype, const void *w, int m, int k, const float *x,
                       int n_tok, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st;
    if (dtype == SQ_CU_F32) {
        st = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_tok, k, &one, w, k, x, k, &zero,
                         y, m);
        return st == CUBLAS_STATUS_SUCCESS ? 0 : s_blas_fail(st, "sgemm");
    }
    if (dtype == SQ_CU_Q8_0) {
        S_CUDA(sq_cu_q8_to_f16(c->stream, w, m, k, c->w16.p), "dequantise q8_0");
        w = c->w16.p;
    }
    S_CUDA(sq_cu_to_f16(c->stream, x, c->x16.p, (size_t)n_tok * (size_t)k), "to f16");
    st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_tok, k, &one, w, CUDA_R_16F, k,
                      c->x16.p, CUDA_R_16F, k, &zero, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : s_blas_fail(st, "gemm f16");
}

/* Products ops[0..n) (MATMUL: p W, x, y; i dtype, n_out, n_in, n_tok,
 * path) sharing x, in one GEMV or mma launch; swiglu: ops[2] is the
 * SWIGLU of the two. Or one product through cuBLAS. */
static int s_exec_matmuls(s_cuda_t *c, const sq_cuda_op_t *ops, int n, bool swiglu)
{
    const int dtype = (int)ops[0].i[0], n_tok = (int)ops[0].i[3];
    const int64_t n_in = ops[0].i[2];
    const float *x = ops[0].p[1];
    const sq_cuda_path_t path = (sq_cuda_path_t)ops[0].i[SQ_CUDA_MM_PATH];
    int rc = 0;
    if (path == SQ_CUDA_PATH_BLAS) {
        rc = s_exec_blas(c, dtype, ops[0].p[0], (int)ops[0].i[1], (int)n_in, x, n_tok,
                         s_mut(ops[0].p[2]));
    } else {
        sq_cu_gemv_set_t set = {.n_mats = n, .swiglu = swiglu};
        for (int m = 0; m < n; m++) {
            set.w[m] = ops[m].p[0];
            set.y[m] = s_mut(ops[m].p[2]);
            set.n_out[m] = ops[m].i[1];
        }
        int8_t *xq;
        float *xd;
        if (path == SQ_CUDA_PATH_GEMV_F16)
            S_CUDA(sq_cu_gemv_f16(c->stream, set, n_in, x, n_tok), "gemv f16");
        else if ((rc = s_quantized(c, x, n_tok, n_in, &xq, &xd)) == 0 &&
                 path == SQ_CUDA_PATH_GEMV_Q8)
            S_CUDA(sq_cu_gemv_q8(c->stream, set, n_in, xq, xd, n_tok), "gemv q8_0");
        else if (rc == 0)
            S_CUDA(sq_cu_mma_q8(c->stream, set, n_in, xq, xd, n_tok), "mma q8_0");
    }
    for (int m = 0; m < n; m++)
        s_xq_written(c, ops[m].p[2], (size_t)n_tok * (size_t)ops[m].i[1] * 4);
    return rc;
}

static sq_attn_args_t s_attn_args(const sq_cuda_op_t *op)
{
    return (sq_attn_args_t){
        .k_cache = s_mut(op->p[0]), .v_cache = s_mut(op->p[1]), .q = op->p[2], .k = op->p[3],
        .v = op->p[4], .out = s_mut(op->p[5]), .n_slots = (int)op->i[0], .n_ctx = (int)op->i[1],
        .n_heads = (int)op->i[2], .n_kv = (int)op->i[3], .head_dim = (int)op->i[4],
        .q_head0 = (int)op->i[5], .kv_head0 = (int)op->i[6], .group = (int)op->i[7],
        .n_tok = (int)op->i[8], .kv_dtype = (int)op->i[9], .n_pages = (int)op->i[10]};
}

/* blocks per (head, token) of an attention, for the record and the run */
static int s_att_split(const s_cuda_t *c, const sq_attn_args_t *a)
{
    return c->att_split ? c->att_split : sq_cu_att_splits(a->n_tok, a->n_heads, a->n_ctx, c->n_sms);
}

/* [ADD,] RMSNORM (p x, w, out; i n, dim; f eps), quantising the output
 * for the next product when the plan says so */
static int s_exec_norm(s_cuda_t *c, const sq_cuda_step_t *st, const sq_cuda_op_t *ops)
{
    const sq_cuda_op_t *norm = &ops[st->add ? 1 : 0];
    const float *y = st->add ? ops[0].p[1] : NULL;
    const int n = (int)norm->i[0];
    const int64_t dim = norm->i[1];
    int8_t *xq = NULL;
    float *xd = NULL;
    if (st->quantize)
        s_xq_at(c, n, dim, &xq, &xd);
    S_CUDA(sq_cu_add_rmsnorm(c->stream, s_mut(norm->p[0]), y, norm->p[1], norm->f[0], n, (int)dim,
                             s_mut(norm->p[2]), xq, xd),
           "rmsnorm");
    c->xq_src = NULL;
    if (st->quantize)
        s_xq_remember(c, norm->p[2], n, dim);
    return 0;
}

/* one op alone (not RMSNORM: always a NORM step) */
static int s_exec_op(s_cuda_t *c, const sq_cuda_op_t *op)
{
    const int32_t *arena = c->arena_d[c->cur];
    const int32_t *a0 = arena + op->arg[0], *a1 = arena + op->arg[1];
    cudaError_t err = cudaSuccess;
    if (op->kind == SQ_CUDA_OP_MATMUL)
        return s_exec_matmuls(c, op, 1, false);
    c->xq_src = NULL;   /* every other op may write the quantised input */
    switch (op->kind) {
    case SQ_CUDA_OP_EMBED:
        err = sq_cu_embed(c->stream, (int)op->i[0], op->p[0], op->i[3], op->i[1], a0,
                          (int)op->i[2], s_mut(op->p[1]));
        break;
    case SQ_CUDA_OP_ROPE:
        err = sq_cu_rope(c->stream, s_mut(op->p[0]), (int)op->i[0], (int)op->i[1], (int)op->i[2],
                         (int)op->i[3], a0, op->f[0]);
        break;
    case SQ_CUDA_OP_ATTN: {
        sq_attn_args_t a = s_attn_args(op);
        err = sq_cu_attention(c->stream, &a, a0, a1, arena + op->arg[2], true, NULL, NULL,
                              s_att_split(c, &a), c->att_part.p);
        break;
    }
    case SQ_CUDA_OP_SWIGLU:
        err = sq_cu_swiglu(c->stream, s_mut(op->p[0]), op->p[1], (size_t)op->i[0]);
        break;
    case SQ_CUDA_OP_ADD:
        err = sq_cu_add(c->stream, s_mut(op->p[0]), op->p[1], (size_t)op->i[0]);
        break;
    case SQ_CUDA_OP_COPY:
        err = cudaMemcpyAsync(s_mut(op->p[0]), op->p[1], (size_t)op->i[0],
                              cudaMemcpyDeviceToDevice, c->stream);
        break;
    case SQ_CUDA_OP_INDEX_ROWS:
        err = sq_cu_index_rows(c->stream, s_mut(op->p[0]), op->p[1], op->i[0], a0, (int)op->i[1],
                               op->i[2] != 0);
        break;
    default:
        return SQ_FAIL(SQ_ESTATE, "cuda: recorded op of kind %d", op->kind);
    }
    static const char *const names[] = {"", "embed", "rmsnorm", "matmul", "rope", "attention",
                                        "swiglu", "add", "copy", "index_rows"};
    return err == cudaSuccess ? 0 : s_fail(err, names[op->kind]);
}

/* ROPE q, ROPE k, ATTN: rotation and cache store in one launch, then
 * the attention */
static int s_exec_rope_attn(s_cuda_t *c, const sq_cuda_step_t *st, const sq_cuda_op_t *ops)
{
    const int32_t *arena = c->arena_d[c->cur];
    const sq_cuda_op_t *at = &ops[2];
    const int32_t *slot = arena + at->arg[0], *pos = arena + at->arg[1], *pages = arena + at->arg[2];
    sq_attn_args_t a = s_attn_args(at);
    const int64_t n_out = (int64_t)a.n_heads * a.head_dim;
    int8_t *xq = NULL;
    float *xd = NULL;
    if (st->quantize)
        s_xq_at(c, a.n_tok, n_out, &xq, &xd);
    c->xq_src = NULL;
    S_CUDA(sq_cu_rope_store(c->stream, &a, (int)ops[0].i[3], ops[0].f[0], slot, pos, pages),
           "rope");
    S_CUDA(sq_cu_attention(c->stream, &a, slot, pos, pages, false, xq, xd, s_att_split(c, &a),
                           c->att_part.p),
           "attention");
    if (st->quantize)
        s_xq_remember(c, a.out, a.n_tok, n_out);
    return 0;
}

static int s_exec_step(s_cuda_t *c, const sq_cuda_step_t *st)
{
    const sq_cuda_op_t *ops = &c->rec.ops[st->first];
    switch (st->kind) {
    case SQ_CUDA_STEP_NORM: return s_exec_norm(c, st, ops);
    case SQ_CUDA_STEP_GEMV: return s_exec_matmuls(c, ops, st->n_ops, false);
    case SQ_CUDA_STEP_GEMV_SWIGLU: return s_exec_matmuls(c, ops, 2, true);
    case SQ_CUDA_STEP_ROPE_ATTN: return s_exec_rope_attn(c, st, ops);
    case SQ_CUDA_STEP_OP: break;
    }
    return s_exec_op(c, ops);
}

/* ---- profile (SHARDQ_PROFILE=1) ---- */

/* timing events for n steps, then the hold that keeps the GPU busy while
 * the host queues them */
static int s_prof_begin(s_cuda_t *c, int n)
{
    if (2 * n > c->prof_ev_n) {
        cudaEvent_t *ev = realloc(c->prof_ev, 2 * (size_t)n * sizeof *ev);
        if (!ev)
            return SQ_FAIL(SQ_ENOMEM, "cuda profile: events for %d steps", n);
        c->prof_ev = ev;
        for (; c->prof_ev_n < 2 * n; c->prof_ev_n++)
            S_CUDA(cudaEventCreateWithFlags(&ev[c->prof_ev_n], cudaEventDefault), "profile event");
    }
    const double us = c->prof_hold_us * n < S_HOLD_MAX_US ? c->prof_hold_us * n : S_HOLD_MAX_US;
    S_CUDA(sq_cu_hold(c->stream, (unsigned long long)(us * 1e3)), "profile hold");
    S_CUDA(cudaEventRecord(c->prof_mark, c->stream), "profile event");
    return 0;
}

/* step k's start (end false) or end event */
static int s_prof_mark(s_cuda_t *c, int k, bool end)
{
    S_CUDA(cudaEventRecord(c->prof_ev[2 * k + end], c->stream), "profile event");
    return 0;
}

/* Wait for the n steps queued since s_prof_begin and add their times:
 * under label (one step), or each step of the list's plan under its own. */
static int s_prof_end(s_cuda_t *c, int n, const char *label, double bytes)
{
    /* the hold still running now means the host queued everything first */
    const cudaError_t q = cudaEventQuery(c->prof_mark);
    if (q == cudaErrorNotReady && cudaPeekAtLastError() == cudaErrorNotReady)
        (void)cudaGetLastError();
    else if (q != cudaSuccess && q != cudaErrorNotReady)
        return s_fail(q, "profile event");
    if (q == cudaSuccess && c->prof_hold_us * 2.0 <= S_HOLD_MAX_US)
        c->prof_hold_us *= 2.0;
    c->prof_runs++;
    c->prof_caught_up += q == cudaSuccess;
    S_CUDA(cudaEventSynchronize(c->prof_ev[2 * n - 1]), "profile");
    for (int k = 0; k < n; k++) {
        float ms = 0.0f;
        S_CUDA(cudaEventElapsedTime(&ms, c->prof_ev[2 * k], c->prof_ev[2 * k + 1]), "profile");
        char what[64];
        if (!label)
            bytes = sq_cuda_prof_describe(&c->steps[k], &c->rec.ops[c->steps[k].first],
                                          c->arena_h[c->cur], c->rec.max_tok, what, sizeof what);
        int rc = sq_prof_add(c->prof, label ? label : what, ms, bytes);
        if (rc)
            return rc;
    }
    return 0;
}

static char *s_profile(sq_backend_t *be)
{
    s_cuda_t *c = s_ctx(be);
    if (!c->prof)
        return NULL;
    char header[256];
    snprintf(header, sizeof header, "CUDA profile (device %d): %ld runs (recorded lists, token "
             "choices) step by step, no graphs, PDL %s, each step timed alone on the device; in "
             "%ld the GPU caught up with the host", c->device, c->prof_runs,
             sq_cu_pdl() ? "on" : "off", c->prof_caught_up);
    return sq_prof_text(c->prof, header);
}

/* the arena copy, then every recorded op (fused into steps), on the stream */
static int s_run_ops(s_cuda_t *c)
{
    c->xq_src = NULL;   /* a list (and so a graph) quantises its own inputs */
    if (c->rec.arena_n)
        S_CUDA(cudaMemcpyAsync(c->arena_d[c->cur], c->arena_h[c->cur],
                               c->rec.arena_n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, c->stream),
               "argument copy");
    const int n = sq_cuda_fuse(c->rec.ops, c->rec.n_ops, c->fuse, &c->steps, &c->steps_cap);
    if (n < 0)
        return n;
    int rc = c->prof ? s_prof_begin(c, n) : 0;
    for (int k = 0; rc == 0 && k < n; k++) {
        if (c->prof)
            rc = s_prof_mark(c, k, false);
        if (rc == 0)
            rc = s_exec_step(c, &c->steps[k]);
        if (rc == 0 && c->prof)
            rc = s_prof_mark(c, k, true);
    }
    return rc == 0 && c->prof ? s_prof_end(c, n, NULL, 0.0) : rc;
}

static void s_graph_drop(void *exec)
{
    cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

/* One capture of the recorded ops into *exec; cudaSuccess, or why not
 * (with the ops' own failure, if any, in *rc). */
static cudaError_t s_capture_once(s_cuda_t *c, cudaGraphExec_t *exec, int *rc)
{
    cudaError_t err = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (err != cudaSuccess)
        return err;
    *rc = s_run_ops(c);
    cudaGraph_t g = NULL;
    err = cudaStreamEndCapture(c->stream, &g);
    if (*rc == 0 && err == cudaSuccess)
        err = cudaGraphInstantiate(exec, g, 0);
    if (g)
        cudaGraphDestroy(g);
    if (*rc == 0 && err == cudaSuccess)
        return cudaSuccess;
    (void)cudaGetLastError();   /* a failed capture leaves no sticky error */
    return *rc ? cudaErrorStreamCaptureInvalidated : err;
}

/* why a capture failed: the CUDA error, the recorded ops, their own
 * failure (if any) and the lists refused so far */
static void s_capture_warn(const s_cuda_t *c, const char *what, cudaError_t err, int rc)
{
    SQ_WARN(what, "cuda_error=\"%s\" recorded_ops=%d run_error=\"%s\" lists_refused=%ld",
            cudaGetErrorString(err), c->rec.n_ops, rc ? sq_error_detail() : "none",
            c->graphs.refusals);
}

/* Capture the recorded ops into a graph and keep it under key; *exec NULL
 * when the device would not, and the list then runs op by op. Only a real
 * device can refuse a capture, so each way out says why:
 * - with programmatic dependent launch on, PDL goes off for good and the
 *   capture is tried again (graphs save far more than PDL does);
 * - otherwise this list runs op by op from now on, and others still
 *   become graphs, until SQ_CUDA_GRAPH_REFUSED lists were refused: then
 *   graphs go off for this backend. */
static int s_capture(s_cuda_t *c, uint64_t key, cudaGraphExec_t *exec)
{
    int rc = 0;
    cudaError_t err = s_capture_once(c, exec, &rc);
    if (err != cudaSuccess && sq_cu_pdl()) {
        sq_cu_set_pdl(false);
        s_capture_warn(c, "CUDA graph capture failed with programmatic dependent launch on: PDL "
                       "off from now on, capturing again", err, rc);
        err = s_capture_once(c, exec, &rc);
    }
    if (err == cudaSuccess) {
        sq_cuda_graph_store(&c->graphs, key, (void *)*exec);
        return 0;
    }
    *exec = NULL;
    if (sq_cuda_graph_refuse(&c->graphs, key)) {
        s_capture_warn(c, "CUDA graph capture failed, this list runs op by op from now on", err,
                       rc);
        return 0;
    }
    s_capture_warn(c, "CUDA graph capture failed for too many lists, running ops one by one from "
                   "now on", err, rc);
    c->use_graphs = false;
    sq_cuda_graph_clear(&c->graphs);
    return 0;
}

/* Run what is recorded: op by op, or as a (new or stored) graph. */
static int s_flush(s_cuda_t *c)
{
    sq_cuda_rec_t *r = &c->rec;
    int rc = 0;
    if (r->n_ops == 0) {
        sq_cuda_rec_reset(r);
        return 0;
    }
    void *exec = NULL;
    /* a graph names the arena it was captured with */
    const uint64_t key = c->use_graphs ? sq_cuda_rec_key(r) + (uint64_t)c->cur * 0x9e3779b97f4a7c15ULL
                                       : 0;
    sq_cuda_run_t how = c->use_graphs ? sq_cuda_graph_decide(&c->graphs, key, r->n_ops, r->max_tok, &exec)
                                      : SQ_CUDA_RUN_EAGER;
    if (how == SQ_CUDA_RUN_CAPTURE && (rc = s_capture(c, key, (cudaGraphExec_t *)&exec)) == 0 &&
        !exec)
        how = SQ_CUDA_RUN_EAGER;
    if (rc == 0 && how == SQ_CUDA_RUN_EAGER)
        rc = s_run_ops(c);
    else if (rc == 0) {
        cudaError_t err = cudaGraphLaunch((cudaGraphExec_t)exec, c->stream);
        rc = err == cudaSuccess ? 0 : s_fail(err, "graph launch");
    }
    /* arena cur may not be refilled before this list has run */
    cudaError_t err = cudaEventRecord(c->arena_read[c->cur], c->stream);
    c->arena_busy[c->cur] = true;
    c->cur ^= 1;
    r->arena = c->arena_h[c->cur];
    sq_cuda_rec_reset(r);
    return rc ? rc : err == cudaSuccess ? 0 : s_fail(err, "event");
}

/* ---- recording ---- */

static int s_arena_grow(s_cuda_t *c, size_t n)
{
    /* graphs name the old buffers; queued work may still read them */
    S_CUDA(cudaStreamSynchronize(c->stream), "growing the argument arena");
    sq_cuda_graph_clear(&c->graphs);
    c->rec.arena = NULL;
    c->rec.arena_cap = 0;
    for (int i = 0; i < 2; i++) {
        cudaFreeHost(c->arena_h[i]);
        cudaFree(c->arena_d[i]);
        c->arena_h[i] = c->arena_d[i] = NULL;
        c->arena_busy[i] = false;
    }
    for (int i = 0; i < 2; i++) {
        S_CUDA(cudaMallocHost((void **)&c->arena_h[i], n * sizeof(int32_t)), "pinned argument arena");
        S_CUDA(cudaMalloc((void **)&c->arena_d[i], n * sizeof(int32_t)), "device argument arena");
    }
    c->rec.arena = c->arena_h[c->cur];
    c->rec.arena_cap = n;
    return 0;
}

/* room for n more arena values: run what is recorded if the arena is
 * full, wait for the list that last used this arena, grow both arenas if
 * n alone does not fit */
static int s_reserve(s_cuda_t *c, size_t n)
{
    int rc;
    if (n > c->rec.arena_cap - c->rec.arena_n && (rc = s_flush(c)))
        return rc;
    if (c->arena_busy[c->cur]) {
        S_CUDA(cudaEventSynchronize(c->arena_read[c->cur]), "argument arena");
        c->arena_busy[c->cur] = false;
    }
    if (n > c->rec.arena_cap)
        return s_arena_grow(c, n > 2 * c->rec.arena_cap ? n : 2 * c->rec.arena_cap);
    return 0;
}

static int s_args(s_cuda_t *c, const int32_t *v, int n, int64_t *off)
{
    return sq_cuda_rec_args(&c->rec, v, n, off);   /* fits: s_reserve came first */
}

static int s_record(s_cuda_t *c, const sq_cuda_op_t *op, int n_tok)
{
    return sq_cuda_rec_push(&c->rec, op, n_tok);
}

int sq_backend_cuda_flush(sq_backend_t *be)
{
    return s_flush(s_ctx(be));
}

/* ---- memory ---- */

static void s_destroy(sq_backend_t *be)
{
    s_cuda_t *c = s_ctx(be);
    if (c->stream) {
        s_flush(c);
        cudaStreamSynchronize(c->stream);
    }
    sq_cuda_graph_clear(&c->graphs);
    sq_cuda_rec_free(&c->rec);
    free(c->steps);
    for (int i = 0; i < 2; i++) {
        cudaFreeHost(c->arena_h[i]);
        cudaFree(c->arena_d[i]);
        if (c->arena_read[i])
            cudaEventDestroy(c->arena_read[i]);
    }
    cudaFree(c->x16.p);
    cudaFree(c->w16.p);
    cudaFree(c->xq.p);
    cudaFree(c->tokens.p);
    cudaFree(c->draws.p);
    cudaFreeHost(c->draws_h);
    cudaFree(c->att_part.p);
    free(c->att_rows);
    free(c->att_slots);
    free(c->slot_row);
    for (int i = 0; i < c->prof_ev_n; i++)
        cudaEventDestroy(c->prof_ev[i]);
    free(c->prof_ev);
    if (c->prof_mark)
        cudaEventDestroy(c->prof_mark);
    sq_prof_destroy(&c->prof);
    cudaFree(c->blas_ws);
    if (c->blas)
        cublasDestroy(c->blas);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

/* device memory; NULL with SQ_ENOMEM naming what was asked for and what
 * the device has left (what for the message) */
static void *s_alloc_for(s_cuda_t *c, size_t bytes, const char *what)
{
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 256);
    if (err == cudaSuccess)
        return p;
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
        free_b = total_b = 0;
    SQ_FAIL(SQ_ENOMEM, "cuda: %s: %zu bytes of device memory: %s (device %d: %.1f of %.1f MiB "
            "free)", what, bytes, cudaGetErrorString(err), c->device, (double)free_b / 1048576.0,
            (double)total_b / 1048576.0);
    return NULL;
}

static void *s_alloc(sq_backend_t *be, size_t bytes)
{
    return s_alloc_for(s_ctx(be), bytes, "buffer");
}

static void s_free(sq_backend_t *be, void *p)
{
    s_flush(s_ctx(be));   /* recorded ops may still name p */
    cudaFree(p);
}

/* a copy between host and device after the recorded ops, waited for:
 * the caller reads the host side, or may reuse it, as soon as we return */
static int s_transfer(sq_backend_t *be, void *dst, const void *src, size_t bytes,
                      enum cudaMemcpyKind kind, const char *what)
{
    s_cuda_t *c = s_ctx(be);
    int rc = s_flush(c);
    if (rc)
        return rc;
    S_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, c->stream), what);
    S_CUDA(cudaStreamSynchronize(c->stream), what);
    return 0;
}

static int s_upload(sq_backend_t *be, void *dst, const void *host_src, size_t bytes)
{
    return s_transfer(be, dst, host_src, bytes, cudaMemcpyHostToDevice, "upload");
}

static int s_download(sq_backend_t *be, void *host_dst, const void *src, size_t bytes)
{
    return s_transfer(be, host_dst, src, bytes, cudaMemcpyDeviceToHost, "download");
}

static int s_copy(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_COPY, .p = {dst, src}, .i = {(int64_t)bytes}};
    return s_record(s_ctx(be), &op, 0);
}

/* Weights always go to the device (borrow only says the host copy would
 * outlive them): the model hands each rank only its shard. Q8_0 goes in
 * the split layout (sq_cuda_layout.h), rearranged on the host first. */
static int s_weight_init(sq_backend_t *be, sq_weight_t *w, int dtype, int64_t n_out,
                         int64_t n_in, const void *host, bool borrow)
{
    const size_t bytes = sq_cu_weight_bytes(dtype, n_out, n_in);
    if (bytes == 0)
        return SQ_FAIL(SQ_EINVAL, "weight of %lld x %lld, dtype %d", (long long)n_out,
                       (long long)n_in, dtype);
    *w = (sq_weight_t){.dtype = dtype, .n_out = n_out, .n_in = n_in};
    void *split = NULL;
    if (dtype == SQ_CU_Q8_0) {
        if (!(split = malloc(bytes)))
            return SQ_FAIL(SQ_ENOMEM, "cuda: rearranging a Q8_0 weight (%zu bytes)", bytes);
        sq_cu_q8_split(host, n_out, n_in, split);
        host = split;
    }
    int rc = 0;
    char what[64];
    snprintf(what, sizeof what, "weight of %lld x %lld", (long long)n_out, (long long)n_in);
    if (!(w->owned = s_alloc_for(s_ctx(be), bytes, what)))
        rc = SQ_ENOMEM;
    else if ((rc = s_upload(be, w->owned, host, bytes)) != 0)
        cudaFree(w->owned);
    free(split);
    if (rc)
        memset(w, 0, sizeof *w);
    else
        w->data = w->owned;
    return rc;
}

static void s_weight_release(sq_backend_t *be, sq_weight_t *w)
{
    s_free(be, w->owned);
    memset(w, 0, sizeof *w);
}

/* ---- ops: checked and recorded here, run at the next flush ---- */

static int s_embed(sq_backend_t *be, const sq_weight_t *emb, const int32_t *ids, int n,
                   float *out)
{
    s_cuda_t *c = s_ctx(be);
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= emb->n_out)
            return SQ_FAIL(SQ_EINVAL, "token id %d out of range [0, %lld)", ids[t],
                           (long long)emb->n_out);
    if (n == 0)
        return 0;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_EMBED, .p = {emb->data, out},
                       .i = {emb->dtype, emb->n_in, n, emb->n_out}, .arg = {0, 0}};
    int rc;
    if ((rc = s_reserve(c, (size_t)n)) || (rc = s_args(c, ids, n, &op.arg[0])))
        return rc;
    return s_record(c, &op, n);
}

static int s_rmsnorm(sq_backend_t *be, const float *x, const sq_weight_t *w, float eps, int n,
                     float *out)
{
    if (w->dtype != SQ_CU_F32)
        return SQ_FAIL(SQ_EINVAL, "rmsnorm weight of dtype %d (F32 expected)", w->dtype);
    if (n == 0)
        return 0;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_RMSNORM, .p = {x, w->data, out}, .i = {n, w->n_in}, .f = {eps}};
    return s_record(s_ctx(be), &op, n);
}

/* Make scratch s at least need bytes. Done when an op is recorded, while
 * nothing is being captured: the ops recorded so far run first (they may
 * use the old buffer) and every graph naming it is dropped. */
static int s_room(s_cuda_t *c, s_scratch_t *s, size_t need, const char *what)
{
    if (need <= s->bytes)
        return 0;
    int rc = s_flush(c);
    if (rc)
        return rc;
    sq_cuda_graph_clear(&c->graphs);
    cudaFree(s->p);                    /* waits for work that may read it */
    s->p = NULL;
    s->bytes = 0;
    S_CUDA(cudaMalloc(&s->p, need), what);
    s->bytes = need;
    return 0;
}

static int s_matmul(sq_backend_t *be, const sq_weight_t *w, const float *x, int n_tok, float *y)
{
    s_cuda_t *c = s_ctx(be);
    if (n_tok <= 0)
        return 0;
    if (w->n_out > 0x7fffffff || w->n_in > 0x7fffffff)
        return SQ_FAIL(SQ_EUNSUPPORTED, "matmul of %lld x %lld", (long long)w->n_out,
                       (long long)w->n_in);
    if (w->dtype != SQ_CU_F32 && w->dtype != SQ_CU_F16 && w->dtype != SQ_CU_Q8_0)
        return SQ_FAIL(SQ_EINVAL, "matmul: dtype %d", w->dtype);
    const size_t n_x = (size_t)n_tok * (size_t)w->n_in;
    const sq_cuda_path_t path = sq_cuda_matmul_path(w->dtype, w->n_in, n_tok, x, c->mma);
    int rc = 0;
    if (sq_cuda_path_q8(path))
        rc = s_room(c, &c->xq, s_xq_bytes(n_tok, w->n_in), "Q8_0 activation buffer");
    else if (path == SQ_CUDA_PATH_BLAS && w->dtype != SQ_CU_F32)
        rc = s_room(c, &c->x16, n_x * 2, "F16 activation buffer");
    if (rc == 0 && path == SQ_CUDA_PATH_BLAS && w->dtype == SQ_CU_Q8_0)
        rc = s_room(c, &c->w16, (size_t)w->n_out * (size_t)w->n_in * 2, "F16 weight buffer");
    if (rc)
        return rc;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_MATMUL, .p = {w->data, x, y},
                       .i = {w->dtype, w->n_out, w->n_in, n_tok, path}};
    return s_record(c, &op, n_tok);
}

static int s_rope(sq_backend_t *be, float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                  const int32_t *pos, float freq_base)
{
    s_cuda_t *c = s_ctx(be);
    if (n_rot > head_dim || n_rot % 2)
        return SQ_FAIL(SQ_EINVAL, "rope over %d of %d dims", n_rot, head_dim);
    if (n_tok == 0)
        return 0;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_ROPE, .p = {x}, .i = {n_tok, n_heads, head_dim, n_rot},
                       .f = {freq_base}};
    int rc;
    if ((rc = s_reserve(c, (size_t)n_tok)) || (rc = s_args(c, pos, n_tok, &op.arg[0])))
        return rc;
    return s_record(c, &op, n_tok);
}

/* The distinct slots of a's tokens, in order of first use (*k of them,
 * c->att_slots), and each token's index among them (c->att_rows): the
 * kernels read pages[row * max_pages + ...] of the rows staged for them
 * (sq_cuda_rec_table), so a token's row stands in for its slot. */
static int s_att_rows(s_cuda_t *c, const sq_attn_args_t *a, int *k)
{
    if (a->n_tok > c->att_cap) {
        int32_t *r = realloc(c->att_rows, (size_t)a->n_tok * sizeof *r);
        int32_t *u = r ? realloc(c->att_slots, (size_t)a->n_tok * sizeof *u) : NULL;
        c->att_rows = r ? r : c->att_rows;
        c->att_slots = u ? u : c->att_slots;
        if (!r || !u)
            return SQ_FAIL(SQ_ENOMEM, "cuda: attention rows of %d tokens", a->n_tok);
        c->att_cap = a->n_tok;
    }
    if (a->n_slots > c->slot_row_n) {
        int32_t *m = realloc(c->slot_row, (size_t)a->n_slots * sizeof *m);
        if (!m)
            return SQ_FAIL(SQ_ENOMEM, "cuda: row map of %d slots", a->n_slots);
        for (int i = c->slot_row_n; i < a->n_slots; i++)
            m[i] = -1;
        c->slot_row = m;
        c->slot_row_n = a->n_slots;
    }
    int n = 0;
    for (int t = 0; t < a->n_tok; t++) {
        const int s = a->slot[t];
        if (c->slot_row[s] < 0) {
            c->slot_row[s] = n;
            c->att_slots[n++] = s;
        }
        c->att_rows[t] = c->slot_row[s];
    }
    for (int i = 0; i < n; i++)
        c->slot_row[c->att_slots[i]] = -1;
    *k = n;
    return 0;
}

static int s_attention(sq_backend_t *be, const sq_attn_args_t *a)
{
    s_cuda_t *c = s_ctx(be);
    if (a->head_dim > SQ_CU_MAX_HEAD_DIM)
        return SQ_FAIL(SQ_EUNSUPPORTED, "cuda attention: head_dim %d over %d", a->head_dim,
                       SQ_CU_MAX_HEAD_DIM);
    if (!sq_cu_kv_type_ok(a->kv_dtype, a->head_dim))
        return SQ_FAIL(SQ_EUNSUPPORTED, "cuda attention: KV cache of dtype %d, head_dim %d",
                       a->kv_dtype, a->head_dim);
    if (a->n_tok == 0)
        return 0;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_ATTN, .p = {a->k_cache, a->v_cache, a->q, a->k, a->v, a->out},
                       .i = {a->n_slots, a->n_ctx, a->n_heads, a->n_kv, a->head_dim, a->q_head0,
                             a->kv_head0, a->group, a->n_tok, a->kv_dtype, a->n_pages}};
    const size_t part = sq_cu_att_part_floats(a->n_tok, a->n_heads, a->head_dim,
                                              s_att_split(c, a));
    const int width = sq_kv_pages_for(a->n_ctx);
    int k = 0;
    int rc = part ? s_room(c, &c->att_part, part * sizeof(float), "attention partials") : 0;
    if (rc || (rc = s_att_rows(c, a, &k)) ||
        (rc = s_reserve(c, 2 * (size_t)a->n_tok + (size_t)k * (size_t)width)) ||
        (rc = s_args(c, c->att_rows, a->n_tok, &op.arg[0])) ||
        (rc = s_args(c, a->pos, a->n_tok, &op.arg[1])) ||
        (rc = sq_cuda_rec_table(&c->rec, a->pages, width, c->att_slots, k, a->pages_epoch,
                                &op.arg[2])))
        return rc;
    return s_record(c, &op, a->n_tok);
}

static int s_swiglu(sq_backend_t *be, float *gate, const float *up, size_t n)
{
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_SWIGLU, .p = {gate, up}, .i = {(int64_t)n}};
    return n ? s_record(s_ctx(be), &op, 0) : 0;
}

static int s_add(sq_backend_t *be, float *x, const float *y, size_t n)
{
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_ADD, .p = {x, y}, .i = {(int64_t)n}};
    return n ? s_record(s_ctx(be), &op, 0) : 0;
}

static int s_index_rows(sq_backend_t *be, float *dst, const float *src, int64_t row_len,
                        const int32_t *idx, int n, bool add)
{
    s_cuda_t *c = s_ctx(be);
    if (n <= 0 || row_len <= 0)
        return 0;
    sq_cuda_op_t op = {.kind = SQ_CUDA_OP_INDEX_ROWS, .p = {dst, src}, .i = {row_len, n, add}};
    int rc;
    if ((rc = s_reserve(c, (size_t)n)) || (rc = s_args(c, idx, n, &op.arg[0])))
        return rc;
    return s_record(c, &op, 0);
}

/* the end of a profiled argmax or sampling kernel */
static int s_prof_tokens(s_cuda_t *c, bool sample, int n_rows, int n_cols)
{
    char what[64];
    const double bytes = sq_cuda_prof_describe_tokens(sample, n_rows, n_cols, what, sizeof what);
    int rc = s_prof_mark(c, 0, true);
    return rc ? rc : s_prof_end(c, 1, what, bytes);
}

/* the argmax (rows NULL) or sampling kernel after the recorded ops, then
 * n_rows integers back */

static int s_tokens(sq_backend_t *be, const float *x, int n_rows, int n_cols,
                    const sq_sample_row_t *rows, int32_t *host_out)
{
    s_cuda_t *c = s_ctx(be);
    const size_t n_words = (size_t)n_rows * SQ_CU_SAMPLE_WORDS;
    int rc = s_flush(c);
    if (rc == 0 && n_rows > 0)
        rc = s_room(c, &c->tokens, (size_t)n_rows * sizeof(int32_t), "token buffer");
    if (rc == 0 && n_rows > 0 && rows)
        rc = s_room(c, &c->draws, n_words * sizeof(int32_t), "sampling buffer");
    if (rc || n_rows <= 0)
        return rc;
    if (!rows) {
        if (c->prof && (rc = s_prof_begin(c, 1)) == 0)
            rc = s_prof_mark(c, 0, false);
        S_CUDA(sq_cu_argmax(c->stream, x, n_rows, n_cols, c->tokens.p), "argmax");
        if (c->prof && rc == 0)
            rc = s_prof_tokens(c, false, n_rows, n_cols);
        return rc ? rc : s_download(be, host_out, c->tokens.p, (size_t)n_rows * sizeof(int32_t));
    }
    if (n_words > c->draws_h_n) {
        cudaFreeHost(c->draws_h);
        c->draws_h = NULL;
        c->draws_h_n = 0;
        S_CUDA(cudaMallocHost((void **)&c->draws_h, n_words * sizeof(int32_t)),
               "pinned sampling rows");
        c->draws_h_n = n_words;
    }
    int32_t *w = c->draws_h;
    for (int r = 0; r < n_rows; r++) {
        const uint64_t u53 = (uint64_t)(rows[r].u * 9007199254740992.0);   /* 2^53 */
        int32_t *rw = w + (size_t)r * SQ_CU_SAMPLE_WORDS;
        memcpy(&rw[0], &rows[r].temperature, sizeof(float));
        rw[1] = rows[r].top_k;
        memcpy(&rw[2], &rows[r].top_p, sizeof(float));
        rw[3] = (int32_t)(uint32_t)u53;
        rw[4] = (int32_t)(uint32_t)(u53 >> 32);
    }
    S_CUDA(cudaMemcpyAsync(c->draws.p, w, n_words * sizeof *w, cudaMemcpyHostToDevice,
                           c->stream),
           "sampling rows");
    if (c->prof && (rc = s_prof_begin(c, 1)) == 0)
        rc = s_prof_mark(c, 0, false);
    S_CUDA(sq_cu_sample(c->stream, x, n_rows, n_cols, c->draws.p, c->tokens.p), "sample");
    if (c->prof && rc == 0)
        rc = s_prof_tokens(c, true, n_rows, n_cols);
    return rc ? rc : s_download(be, host_out, c->tokens.p, (size_t)n_rows * sizeof(int32_t));
}

static int s_argmax(sq_backend_t *be, const float *x, int n_rows, int n_cols, int32_t *host_out)
{
    return s_tokens(be, x, n_rows, n_cols, NULL, host_out);
}

static int s_sample(sq_backend_t *be, const float *x, int n_rows, int n_cols,
                    const sq_sample_row_t *rows, int32_t *host_out)
{
    return s_tokens(be, x, n_rows, n_cols, rows, host_out);
}

static int s_mem_free(sq_backend_t *be, size_t *bytes, uint64_t *pool)
{
    size_t total = 0;
    S_CUDA(cudaMemGetInfo(bytes, &total), "device memory");
    *pool = sq_cuda_device_key(s_ctx(be)->device);
    return 0;
}

static const sq_backend_ops_t s_cuda_ops = {
    .name = "cuda",
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .upload = s_upload,
    .download = s_download,
    .copy = s_copy,
    .weight_init = s_weight_init,
    .weight_release = s_weight_release,
    .embed = s_embed,
    .rmsnorm = s_rmsnorm,
    .matmul = s_matmul,
    .rope = s_rope,
    .attention = s_attention,
    .swiglu = s_swiglu,
    .add = s_add,
    .index_rows = s_index_rows,
    .argmax = s_argmax,
    .sample = s_sample,
    .mem_free = s_mem_free,
    .profile = s_profile,
};

/* an on-by-default switch of the environment: off only when set to 0 */
static bool s_switch_on(const char *name)
{
    const char *v = getenv(name);
    return !(v && strcmp(v, "0") == 0);
}

static int s_init(s_cuda_t *c, int device)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n < 1)
        return SQ_FAIL(SQ_EDEVICE, "no usable CUDA device: %s",
                       err != cudaSuccess ? cudaGetErrorString(err) : "no devices");
    if (device < 0)
        device = sq_cuda_pick_device(sq_cuda_local_rank(), n);
    if (device >= n)
        return SQ_FAIL(SQ_EDEVICE, "CUDA device %d: only %d visible", device, n);
    c->device = device;
    c->use_graphs = s_switch_on("SHARDQ_CUDA_GRAPHS");
    c->fuse = s_switch_on("SHARDQ_CUDA_FUSE");
    c->mma = s_switch_on("SHARDQ_CUDA_MMA");
    if (sq_prof_wanted()) {
        if (!(c->prof = sq_prof_new()))
            return sq_error_code();
        c->use_graphs = false;
        c->prof_hold_us = S_HOLD_US;
    }
    const char *split = getenv("SHARDQ_CUDA_ATT_SPLIT");
    long long n_split = 0;
    if (split && *split && sq_parse_int(split, 0, SQ_CU_ATT_MAX_SPLIT, &n_split) != 0)
        return SQ_FAIL(SQ_EINVAL, "SHARDQ_CUDA_ATT_SPLIT=%s: not an integer in 0 (automatic) "
                       "to %d", split, (int)SQ_CU_ATT_MAX_SPLIT);
    c->att_split = (int)n_split;
    c->graphs.drop = s_graph_drop;
    S_CUDA(cudaSetDevice(device), "set device");
    S_CUDA(cudaDeviceGetAttribute(&c->n_sms, cudaDevAttrMultiProcessorCount, device),
           "multiprocessor count");
    char why[320];
    if (s_kernels_why(device, why, sizeof why) != 0)
        return SQ_FAIL(SQ_EDEVICE, "%s", why);
    sq_cu_set_pdl(s_switch_on("SHARDQ_CUDA_PDL"));
    S_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    for (int i = 0; i < 2; i++)
        S_CUDA(cudaEventCreateWithFlags(&c->arena_read[i], cudaEventDisableTiming), "event");
    if (c->prof)
        S_CUDA(cudaEventCreateWithFlags(&c->prof_mark, cudaEventDisableTiming), "profile event");
    int rc = s_arena_grow(c, S_ARENA0);
    if (rc)
        return rc;
    S_CUDA(cudaMalloc(&c->blas_ws, S_BLAS_WS), "cuBLAS workspace");
    cublasStatus_t st = cublasCreate(&c->blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        return s_blas_fail(st, "create");
    }
    if ((st = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
        (st = cublasSetWorkspace(c->blas, c->blas_ws, S_BLAS_WS)) != CUBLAS_STATUS_SUCCESS)
        return s_blas_fail(st, "set stream and workspace");
    return 0;
}
sq_backend_t *sq_backend_cuda_new(int device)
{
    sq_backend_t *be = calloc(1, sizeof *be);
    s_cuda_t *c = calloc(1, sizeof *c);
    if (!be || !c) {
        SQ_FAIL(SQ_ENOMEM, "cuda backend");
        free(be);
        free(c);
        return NULL;
    }
    be->ops = &s_cuda_ops;
    be->ctx = c;
    if (s_init(c, device) != 0) {
        /* keep the init failure's detail: teardown must not overwrite it */
        s_destroy(be);
        free(be);
        return NULL;
    }
    return be;
}

bool sq_backend_is_cuda(const sq_backend_t *be)
{
    return be && be->ops == &s_cuda_ops;
}

int sq_backend_cuda_device(const sq_backend_t *be)
{
    return ((const s_cuda_t *)be->ctx)->device;
}

void *sq_backend_cuda_stream(const sq_backend_t *be)
{
    return ((const s_cuda_t *)be->ctx)->stream;
}

void sq_backend_cuda_graph_stats(const sq_backend_t *be, sq_cuda_graph_stats_t *st)
{
    const s_cuda_t *c = be->ctx;
    *st = (sq_cuda_graph_stats_t){.captures = c->graphs.captures,
                                  .replays = c->graphs.replays,
                                  .eagers = c->graphs.eagers,
                                  .refusals = c->graphs.refusals,
                                  .graphs = c->use_graphs,
                                  .pdl = sq_cu_pdl()};
}
