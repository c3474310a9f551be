/*  sq_backend_cuda: the backend table (sq_backend.h) on one CUDA device.
 *
 *  Every op is queued on one non-blocking stream; only download (and the
 *  rare upload / weight_init, whose host buffer the caller may free on
 *  return) waits for it, so a forward step runs without host round trips
 *  until its logits are read. The small host arrays ops take (token ids,
 *  positions, slots) are staged through pinned buffers; the model passes
 *  the same positions to two RoPE calls and the attention of each layer,
 *  so an array equal to the last one staged is not sent again.
 */
#include "sq_backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cuda_kernels.h"
#include "sq_error.h"

/* A host int32 array mirrored on the device. */
typedef struct {
    int32_t *host;              /* pinned: what was last sent */
    int32_t *dev;
    int n, cap;
    bool valid;
    cudaEvent_t sent;           /* the copy out of host has finished */
} s_arg_t;

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    s_arg_t ids, pos, slot;
    void *x16;                  /* F16 copy of activations for cuBLAS */
    size_t x16_bytes;
} s_cuda_t;

static const sq_backend_ops_t s_cuda_ops;

static s_cuda_t *s_ctx(sq_backend_t *be)
{
    return be->ctx;
}

static int s_fail(cudaError_t err, const char *what)
{
    return SQ_FAIL(SQ_EDEVICE, "cuda: %s: %s", what, cudaGetErrorString(err));
}

#define S_CUDA(call, what)                                                \
    do {                                                                  \
        cudaError_t err_ = (call);                                        \
        if (err_ != cudaSuccess)                                          \
            return s_fail(err_, what);                                    \
    } while (0)

static int s_blas_fail(cublasStatus_t st, const char *what)
{
    return SQ_FAIL(SQ_EDEVICE, "cublas: %s: %s", what, cublasGetStatusString(st));
}

int sq_cuda_usable(char *why, size_t why_size)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err == cudaSuccess && n > 0)
        return 1;
    if (why && why_size)
        snprintf(why, why_size, "no usable CUDA device: %s",
                 err != cudaSuccess ? cudaGetErrorString(err) : "no devices");
    return 0;
}

/* ---- staged host arrays ---- */

static void s_arg_free(s_arg_t *a)
{
    cudaFreeHost(a->host);
    cudaFree(a->dev);
    a->host = a->dev = NULL;
    a->cap = 0;
    a->valid = false;
}

/* *dev = a device copy of host (n values), queued on the stream */
static int s_stage(s_cuda_t *c, s_arg_t *a, const int32_t *host, int n, const int32_t **dev)
{
    size_t bytes = (size_t)n * sizeof(int32_t);
    *dev = a->dev;
    if (a->valid && a->n == n && memcmp(a->host, host, bytes) == 0)
        return 0;
    if (n > a->cap) {
        /* queued kernels may still read the old device copy */
        S_CUDA(cudaStreamSynchronize(c->stream), "staging arguments");
        s_arg_free(a);
        int cap = n < 256 ? 256 : n;
        S_CUDA(cudaMallocHost((void **)&a->host, (size_t)cap * sizeof(int32_t)),
               "pinned argument buffer");
        S_CUDA(cudaMalloc((void **)&a->dev, (size_t)cap * sizeof(int32_t)),
               "device argument buffer");
        a->cap = cap;
    } else {
        /* the previous copy must have left the pinned buffer; device-side
         * readers are ordered before the new copy by the stream */
        S_CUDA(cudaEventSynchronize(a->sent), "staging arguments");
    }
    memcpy(a->host, host, bytes);
    a->n = n;
    a->valid = false;
    S_CUDA(cudaMemcpyAsync(a->dev, a->host, bytes, cudaMemcpyHostToDevice, c->stream),
           "copying arguments");
    S_CUDA(cudaEventRecord(a->sent, c->stream), "staging arguments");
    a->valid = true;
    *dev = a->dev;
    return 0;
}

/* ---- memory ---- */

static void s_destroy(sq_backend_t *be)
{
    s_cuda_t *c = s_ctx(be);
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    s_arg_t *args[] = {&c->ids, &c->pos, &c->slot};
    for (int i = 0; i < 3; i++) {
        s_arg_free(args[i]);
        if (args[i]->sent)
            cudaEventDestroy(args[i]->sent);
    }
    cudaFree(c->x16);
    if (c->blas)
        cublasDestroy(c->blas);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c);
}

static void *s_alloc(sq_backend_t *be, size_t bytes)
{
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 256);
    if (err != cudaSuccess) {
        SQ_FAIL(SQ_ENOMEM, "cuda: %zu bytes of device memory: %s", bytes, cudaGetErrorString(err));
        return NULL;
    }
    return p;
}

static void s_free(sq_backend_t *be, void *p)
{
    cudaFree(p);
}

static int s_upload(sq_backend_t *be, void *dst, const void *host_src, size_t bytes)
{
    s_cuda_t *c = s_ctx(be);
    S_CUDA(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream), "upload");
    /* the caller may reuse host_src as soon as we return */
    S_CUDA(cudaStreamSynchronize(c->stream), "upload");
    return 0;
}

static int s_download(sq_backend_t *be, void *host_dst, const void *src, size_t bytes)
{
    s_cuda_t *c = s_ctx(be);
    S_CUDA(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "download");
    S_CUDA(cudaStreamSynchronize(c->stream), "download");
    return 0;
}

static int s_copy(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    S_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s_ctx(be)->stream), "copy");
    return 0;
}

/* Weights always go to the device (borrow only says the host copy would
 * outlive them): the model hands each rank only its shard. */
static int s_weight_init(sq_backend_t *be, sq_weight_t *w, int dtype, int64_t n_out,
                         int64_t n_in, const void *host, bool borrow)
{
    size_t row = sq_cu_row_bytes(dtype, n_in);
    if (row == 0 || n_out <= 0)
        return SQ_FAIL(SQ_EINVAL, "weight of %lld x %lld, dtype %d", (long long)n_out,
                       (long long)n_in, dtype);
    *w = (sq_weight_t){.dtype = dtype, .n_out = n_out, .n_in = n_in};
    if (!(w->owned = s_alloc(be, row * (size_t)n_out)))
        return SQ_FAIL(SQ_ENOMEM, "cuda: weight of %lld x %lld (%zu bytes)", (long long)n_out,
                       (long long)n_in, row * (size_t)n_out);
    w->data = w->owned;
    int rc = s_upload(be, w->owned, host, row * (size_t)n_out);
    if (rc) {
        cudaFree(w->owned);
        memset(w, 0, sizeof *w);
    }
    return rc;
}

static void s_weight_release(sq_backend_t *be, sq_weight_t *w)
{
    cudaFree(w->owned);
    memset(w, 0, sizeof *w);
}

/* ---- ops ---- */

static int s_embed(sq_backend_t *be, const sq_weight_t *emb, const int32_t *ids, int n,
                   float *out)
{
    s_cuda_t *c = s_ctx(be);
    for (int t = 0; t < n; t++)
        if (ids[t] < 0 || ids[t] >= emb->n_out)
            return SQ_FAIL(SQ_EINVAL, "token id %d out of range [0, %lld)", ids[t],
                           (long long)emb->n_out);
    const int32_t *ids_d;
    int rc = s_stage(c, &c->ids, ids, n, &ids_d);
    if (rc || n == 0)
        return rc;
    S_CUDA(sq_cu_embed(c->stream, emb->dtype, emb->data, emb->n_in, ids_d, n, out), "embed");
    return 0;
}

static int s_rmsnorm(sq_backend_t *be, const float *x, const sq_weight_t *w, float eps, int n,
                     float *out)
{
    if (w->dtype != SQ_CU_F32)
        return SQ_FAIL(SQ_EINVAL, "rmsnorm weight of dtype %d (F32 expected)", w->dtype);
    if (n == 0)
        return 0;
    S_CUDA(sq_cu_rmsnorm(s_ctx(be)->stream, x, w->data, eps, n, (int)w->n_in, out), "rmsnorm");
    return 0;
}

/* y (n_tok, n_out) = x W^T through cuBLAS (column-major): y^T = W x^T,
 * W stored (n_out, n_in) row-major = (n_in, n_out) column-major. F16
 * weights take an F16 copy of x and accumulate in F32. */
static int s_matmul_blas(s_cuda_t *c, const sq_weight_t *w, const float *x, int n_tok, float *y)
{
    const float one = 1.0f, zero = 0.0f;
    const int m = (int)w->n_out, k = (int)w->n_in;
    cublasStatus_t st;
    if (w->dtype == SQ_CU_F32) {
        st = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_tok, k, &one, w->data, k, x, k,
                         &zero, y, m);
        return st == CUBLAS_STATUS_SUCCESS ? 0 : s_blas_fail(st, "sgemm");
    }
    size_t need = (size_t)n_tok * (size_t)k * 2;
    if (need > c->x16_bytes) {
        cudaFree(c->x16);   /* waits for queued work that may read it */
        c->x16 = NULL;
        c->x16_bytes = 0;
        S_CUDA(cudaMalloc(&c->x16, need), "F16 activation buffer");
        c->x16_bytes = need;
    }
    S_CUDA(sq_cu_to_f16(c->stream, x, c->x16, (size_t)n_tok * (size_t)k), "to f16");
    st = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, n_tok, k, &one, w->data, CUDA_R_16F,
                      k, c->x16, CUDA_R_16F, k, &zero, y, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : s_blas_fail(st, "gemm f16");
}

static int s_matmul(sq_backend_t *be, const sq_weight_t *w, const float *x, int n_tok, float *y)
{
    s_cuda_t *c = s_ctx(be);
    if (n_tok <= 0)
        return 0;
    if (w->n_out > 0x7fffffff || w->n_in > 0x7fffffff)
        return SQ_FAIL(SQ_EUNSUPPORTED, "matmul of %lld x %lld", (long long)w->n_out,
                       (long long)w->n_in);
    switch (w->dtype) {
    case SQ_CU_F32:
        return s_matmul_blas(c, w, x, n_tok, y);
    case SQ_CU_F16:
        if (n_tok > SQ_CU_GEMV_MAX || w->n_in % 4 != 0)
            return s_matmul_blas(c, w, x, n_tok, y);
        S_CUDA(sq_cu_gemv(c->stream, w->dtype, w->data, w->n_out, w->n_in, x, n_tok, y), "gemv f16");
        return 0;
    case SQ_CU_Q8_0:
        if (n_tok <= SQ_CU_GEMV_MAX)
            S_CUDA(sq_cu_gemv(c->stream, w->dtype, w->data, w->n_out, w->n_in, x, n_tok, y),
                   "gemv q8_0");
        else
            S_CUDA(sq_cu_q8_gemm(c->stream, w->data, w->n_out, w->n_in, x, n_tok, y), "gemm q8_0");
        return 0;
    default:
        return SQ_FAIL(SQ_EINVAL, "matmul: dtype %d", w->dtype);
    }
}

static int s_rope(sq_backend_t *be, float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                  const int32_t *pos, float freq_base)
{
    s_cuda_t *c = s_ctx(be);
    if (n_rot > head_dim || n_rot % 2)
        return SQ_FAIL(SQ_EINVAL, "rope over %d of %d dims", n_rot, head_dim);
    const int32_t *pos_d;
    int rc = s_stage(c, &c->pos, pos, n_tok, &pos_d);
    if (rc || n_tok == 0)
        return rc;
    S_CUDA(sq_cu_rope(c->stream, x, n_tok, n_heads, head_dim, n_rot, pos_d, freq_base), "rope");
    return 0;
}

static int s_attention(sq_backend_t *be, const sq_attn_args_t *a)
{
    s_cuda_t *c = s_ctx(be);
    if (a->head_dim > SQ_CU_MAX_HEAD_DIM)
        return SQ_FAIL(SQ_EUNSUPPORTED, "cuda attention: head_dim %d over %d", a->head_dim,
                       SQ_CU_MAX_HEAD_DIM);
    const int32_t *slot_d, *pos_d;
    int rc;
    if ((rc = s_stage(c, &c->slot, a->slot, a->n_tok, &slot_d)) ||
        (rc = s_stage(c, &c->pos, a->pos, a->n_tok, &pos_d)))
        return rc;
    S_CUDA(sq_cu_attention(c->stream, a, slot_d, pos_d), "attention");
    return 0;
}

static int s_swiglu(sq_backend_t *be, float *gate, const float *up, size_t n)
{
    if (n)
        S_CUDA(sq_cu_swiglu(s_ctx(be)->stream, gate, up, n), "swiglu");
    return 0;
}

static int s_add(sq_backend_t *be, float *x, const float *y, size_t n)
{
    if (n)
        S_CUDA(sq_cu_add(s_ctx(be)->stream, x, y, n), "add");
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
};

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
    S_CUDA(cudaSetDevice(device), "set device");
    S_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    s_arg_t *args[] = {&c->ids, &c->pos, &c->slot};
    for (int i = 0; i < 3; i++)
        S_CUDA(cudaEventCreateWithFlags(&args[i]->sent, cudaEventDisableTiming), "event");
    cublasStatus_t st = cublasCreate(&c->blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        return s_blas_fail(st, "create");
    }
    st = cublasSetStream(c->blas, c->stream);
    return st == CUBLAS_STATUS_SUCCESS ? 0 : s_blas_fail(st, "set stream");
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
