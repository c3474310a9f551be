/*  sq_cuda_emu_rt: the part of the CUDA runtime and of cuBLAS that the
 *  CUDA backend calls (sq_backend_cuda.c, sq_cuda_comm.c, the launchers of
 *  sq_cuda_kernels.cu), on the CPU, so the real backend runs on CPU CI.
 *  The functions have the toolkit's own C signatures (its headers are
 *  included for them: a mismatch does not compile).
 *
 *  One device (cudaGetDeviceCount says 1); device memory is host memory
 *  from aligned_alloc, filled with 0xff bytes (F32 NaN) so a read of what
 *  nobody wrote shows. Streams queue closures: a launch, a copy, a GEMM, a
 *  graph launch, an event's record (which stamps the host's clock, so
 *  cudaEventElapsedTime gives the emulation's time). By default each runs as soon as it is queued;
 *  SQ_EMU_LAZY=1 runs a stream's queue only when the host must wait for
 *  it (stream or event sync, cudaFree, a copy to pageable memory), the
 *  latest a GPU may run it, so a host that reuses a buffer the device has
 *  not read yet gets wrong results. While a stream is captured its
 *  closures go into the graph instead, and cudaGraphLaunch queues them
 *  all again: a replay reads host memory (the pinned argument arena) at
 *  replay time, as a GPU's memcpy node does.
 *
 *  SQ_EMU_CAPTURE_FAIL=N makes the first N captures end invalidated, and
 *  SQ_EMU_CAPTURE_REFUSE_PDL=1 every capture that takes a launch with
 *  programmatic stream serialisation (sq_emu::rt_launch_pdl), so tests
 *  can see what the backend does when a device refuses a graph.
 *
 *  What a GPU refuses fails here too, with a message on stderr: an
 *  allocation, free or sync while a stream is being captured
 *  (cudaErrorStreamCaptureUnsupported; the capture is invalidated, so
 *  cudaStreamEndCapture fails as on a GPU), a captured copy to or from
 *  pageable memory, a copy whose direction does not match where its
 *  pointers live, a GEMM on pointers that are not device memory or with
 *  leading dimensions too small.
 *
 *  Ownership: one global state, single-threaded, as the backend is.
 */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "sq_cuda_emu.h"

typedef std::function<cudaError_t()> s_work_t;

struct CUgraph_st {
    std::vector<s_work_t> nodes;
};
struct CUgraphExec_st {
    std::shared_ptr<const std::vector<s_work_t>> nodes;
};
struct CUstream_st {
    std::deque<s_work_t> queue;
    CUgraph_st *capture = nullptr;   /* being captured into this graph */
    bool invalidated = false;        /* the capture met a call a GPU refuses */
};
struct CUevent_st {
    cudaStream_t stream = nullptr;   /* of the last record */
    bool timing = true;              /* not made with cudaEventDisableTiming */
    /* the last record has run (and when, host time in ms); a record
     * queues the stamp, so an event of a stream not yet run is not ready */
    std::shared_ptr<double> stamp_ms = std::make_shared<double>(-1.0);
};
struct cublasContext {
    cudaStream_t stream = nullptr;
};

namespace {

struct s_rt_t {
    CUstream_st null_stream;
    std::vector<cudaStream_t> streams;   /* created, besides the null stream */
    std::map<const char *, size_t> device, pinned;   /* start -> bytes */
    cudaError_t last = cudaSuccess;      /* for cudaGetLastError */
    cudaError_t sticky = cudaSuccess;    /* a failed kernel: every sync returns it */
    bool lazy = false;
    int n_captures = 0;                  /* streams being captured */
    size_t capacity = 0;                 /* device memory (SQ_EMU_DEVICE_BYTES, else 80 GiB) */
    size_t used = 0;                     /* bytes cudaMalloc holds */
};

s_rt_t &s_rt()
{
    static s_rt_t rt = [] {
        s_rt_t r;
        const char *lazy = getenv("SQ_EMU_LAZY");
        r.lazy = lazy && strcmp(lazy, "0") != 0;
        const char *cap = getenv("SQ_EMU_DEVICE_BYTES");
        r.capacity = cap && *cap ? (size_t)strtoull(cap, NULL, 10) : (size_t)80 << 30;
        return r;
    }();
    return rt;
}

cudaStream_t s_stream(cudaStream_t s)
{
    return s ? s : &s_rt().null_stream;
}

cudaError_t s_error(cudaError_t err, const char *what)
{
    fprintf(stderr, "sq_cuda_emu: %s (%s)\n", what, cudaGetErrorString(err));
    s_rt().last = err;
    return err;
}

/* a call a GPU refuses while any stream is being captured (the backend
 * captures in thread-local mode, and is single-threaded) */
cudaError_t s_capture_guard(const char *call)
{
    s_rt_t &rt = s_rt();
    if (rt.n_captures == 0)
        return cudaSuccess;
    for (cudaStream_t s : rt.streams)
        if (s->capture)
            s->invalidated = true;
    char why[160];
    snprintf(why, sizeof why, "%s while a stream is being captured: a GPU refuses it and "
             "invalidates the capture", call);
    return s_error(cudaErrorStreamCaptureUnsupported, why);
}

/* [p, p + n) inside one allocation of m */
bool s_in(const std::map<const char *, size_t> &m, const void *p, size_t n)
{
    const char *c = (const char *)p;
    auto it = m.upper_bound(c);
    if (it == m.begin())
        return false;
    --it;
    return c >= it->first && c + n <= it->first + it->second;
}

bool s_is_device(const void *p, size_t n)
{
    return s_in(s_rt().device, p, n);
}

bool s_is_pinned(const void *p, size_t n)
{
    return s_in(s_rt().pinned, p, n);
}

cudaError_t s_drain(cudaStream_t s)
{
    s_rt_t &rt = s_rt();
    while (!s->queue.empty()) {
        s_work_t w = std::move(s->queue.front());
        s->queue.pop_front();
        cudaError_t err = w();
        if (err != cudaSuccess && rt.sticky == cudaSuccess)
            rt.sticky = err;
        if (err != cudaSuccess)
            rt.last = err;
    }
    return rt.sticky;
}

cudaError_t s_drain_all()
{
    s_drain(&s_rt().null_stream);
    for (cudaStream_t s : s_rt().streams)
        s_drain(s);
    return s_rt().sticky;
}

void *s_alloc(std::map<const char *, size_t> &m, size_t bytes)
{
    const size_t n = (bytes + 255) / 256 * 256;
    void *p = aligned_alloc(256, n ? n : 256);
    if (p) {
        memset(p, 0xff, n ? n : 256);
        m[(const char *)p] = bytes;
    }
    return p;
}

cudaError_t s_free(std::map<const char *, size_t> &m, void *p, const char *call)
{
    if (!p)
        return cudaSuccess;
    cudaError_t err = s_capture_guard(call);
    if (err != cudaSuccess)
        return err;
    auto it = m.find((const char *)p);
    if (it == m.end()) {
        char why[96];
        snprintf(why, sizeof why, "%s of %p, which it did not allocate", call, p);
        return s_error(cudaErrorInvalidValue, why);
    }
    s_drain_all();   /* frees wait for the device */
    m.erase(it);
    free(p);
    return cudaSuccess;
}

}  // namespace

static long long s_env_count(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? atoll(v) : 0LL;
}

bool sq_emu::rt_fault_now()
{
    static const long long fault = s_env_count("SQ_EMU_FAULT_AFTER");
    static const long long hang = s_env_count("SQ_EMU_HANG_AFTER");
    static long long n_run = 0;
    ++n_run;
    if (hang > 0 && n_run == hang) {
        fprintf(stderr, "sq_cuda_emu: kernel %lld never ends (SQ_EMU_HANG_AFTER)\n", n_run);
        for (;;)
            sleep(1);
    }
    if (fault <= 0 || n_run < fault)
        return false;
    if (n_run == fault)
        fprintf(stderr, "sq_cuda_emu: kernel %lld faults (SQ_EMU_FAULT_AFTER)\n", n_run);
    return true;
}

cudaError_t sq_emu::rt_launch_pdl(cudaStream_t s, bool pdl)
{
    static const bool refuse = s_env_count("SQ_EMU_CAPTURE_REFUSE_PDL") > 0;
    s = s_stream(s);
    if (!pdl || !refuse || !s->capture)
        return cudaSuccess;
    s->invalidated = true;
    return s_error(cudaErrorStreamCaptureUnsupported,
                   "a launch with programmatic stream serialisation while the stream is being "
                   "captured (SQ_EMU_CAPTURE_REFUSE_PDL)");
}

cudaError_t sq_emu::rt_submit(cudaStream_t s, s_work_t work)
{
    s = s_stream(s);
    if (s->capture) {
        s->capture->nodes.push_back(std::move(work));
        return s_rt().sticky;
    }
    s->queue.push_back(std::move(work));
    if (!s_rt().lazy)
        s_drain(s);
    return s_rt().sticky;
}

extern "C" {

/* ---- device, errors ---- */

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return device == 0 ? cudaSuccess : s_error(cudaErrorInvalidDevice, "cudaSetDevice");
}

cudaError_t cudaDeviceGetPCIBusId(char *pciBusId, int len, int device)
{
    if (device != 0 || len <= 0)
        return s_error(cudaErrorInvalidDevice, "cudaDeviceGetPCIBusId");
    snprintf(pciBusId, (size_t)len, "0000:00:00.0");
    return cudaSuccess;
}

/* an H200's: sm_90, 132 multiprocessors */
cudaError_t cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device)
{
    if (device != 0)
        return s_error(cudaErrorInvalidDevice, "cudaDeviceGetAttribute");
    if (attr == cudaDevAttrComputeCapabilityMajor)
        *value = 9;
    else if (attr == cudaDevAttrComputeCapabilityMinor)
        *value = 0;
    else if (attr == cudaDevAttrMultiProcessorCount)
        *value = 132;
    else
        return s_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute (attribute not emulated)");
    return cudaSuccess;
}

/* The kernels are built for the emulated device (sm_90 code, PTX 9.0);
 * SQ_EMU_PTX_VERSION=N says they were built from an older architecture's
 * PTX instead (80: an sm_80 build the driver compiled for the device),
 * and 0 that the build has no code for the device at all. */
cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func)
{
    if (!attr || !func)
        return s_error(cudaErrorInvalidValue, "cudaFuncGetAttributes");
    const char *v = getenv("SQ_EMU_PTX_VERSION");
    const int ptx = v && *v ? atoi(v) : 90;
    if (ptx <= 0)
        return s_error(cudaErrorNoKernelImageForDevice, "cudaFuncGetAttributes");
    memset(attr, 0, sizeof *attr);
    attr->ptxVersion = ptx;
    attr->binaryVersion = 90;
    attr->maxThreadsPerBlock = 1024;
    return cudaSuccess;
}

cudaError_t cudaPeekAtLastError(void)
{
    return s_rt().last;
}

cudaError_t cudaGetLastError(void)
{
    s_rt_t &rt = s_rt();
    cudaError_t err = rt.last;
    rt.last = rt.sticky;   /* a sticky error stays */
    return err;
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNoKernelImageForDevice:
        return "no kernel image is available for execution on the device";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulated kernel failed)";
    case cudaErrorIllegalState: return "operation not permitted in the current state";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    default: return "emulated CUDA error";
    }
}

/* ---- memory ---- */

/* an allocation from pool, refused while a stream is being captured */
static cudaError_t s_guarded_alloc(std::map<const char *, size_t> &pool, void **p, size_t size,
                                   const char *what)
{
    cudaError_t err = s_capture_guard(what);
    if (err != cudaSuccess)
        return err;
    *p = s_alloc(pool, size);
    return *p ? cudaSuccess : s_error(cudaErrorMemoryAllocation, what);
}

/* device memory holds at most the capacity, as a GPU's does;
 * SQ_EMU_HANG_IN=cudaMalloc makes the first call never return (a device
 * that wedges while the model loads) */
cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    const char *hang = getenv("SQ_EMU_HANG_IN");
    if (hang && strcmp(hang, "cudaMalloc") == 0) {
        fprintf(stderr, "sq_cuda_emu: cudaMalloc never returns (SQ_EMU_HANG_IN)\n");
        for (;;)
            sleep(1);
    }
    s_rt_t &rt = s_rt();
    if (size > rt.capacity - rt.used) {
        *devPtr = nullptr;
        return s_error(cudaErrorMemoryAllocation, "cudaMalloc beyond the device's memory");
    }
    cudaError_t err = s_guarded_alloc(rt.device, devPtr, size, "cudaMalloc");
    rt.used += err == cudaSuccess ? size : 0;
    return err;
}

cudaError_t cudaFree(void *devPtr)
{
    s_rt_t &rt = s_rt();
    auto it = rt.device.find((const char *)devPtr);
    const size_t size = it == rt.device.end() ? 0 : it->second;
    cudaError_t err = s_free(rt.device, devPtr, "cudaFree");
    rt.used -= err == cudaSuccess ? size : 0;
    return err;
}

cudaError_t cudaMemGetInfo(size_t *free, size_t *total)
{
    *free = s_rt().capacity - s_rt().used;
    *total = s_rt().capacity;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size)
{
    return s_guarded_alloc(s_rt().pinned, ptr, size, "cudaMallocHost");
}

cudaError_t cudaFreeHost(void *ptr)
{
    return s_free(s_rt().pinned, ptr, "cudaFreeHost");
}

/* Pinned host memory is copied when the stream gets to the copy; pageable
 * memory as the runtime does it: a source is staged at once (the caller
 * may reuse it on return), a destination written before return. */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost &&
        kind != cudaMemcpyDeviceToDevice)
        return s_error(cudaErrorInvalidValue, "cudaMemcpyAsync: a kind the emulator has not");
    if (dst_dev != s_is_device(dst, count) || src_dev != s_is_device(src, count)) {
        char why[160];
        snprintf(why, sizeof why, "cudaMemcpyAsync of %zu bytes, kind %d: the destination is "
                 "%sdevice memory, the source %sdevice memory", count, (int)kind,
                 s_is_device(dst, count) ? "" : "not ", s_is_device(src, count) ? "" : "not ");
        return s_error(cudaErrorInvalidValue, why);
    }
    const bool pageable = (!dst_dev && !s_is_pinned(dst, count)) ||
                          (!src_dev && !s_is_pinned(src, count));
    cudaStream_t s = s_stream(stream);
    if (s->capture && pageable) {
        s->invalidated = true;
        return s_error(cudaErrorStreamCaptureUnsupported,
                       "cudaMemcpyAsync with pageable host memory captured into a graph");
    }
    if (pageable && !src_dev) {
        auto staged = std::make_shared<std::vector<char>>((const char *)src,
                                                          (const char *)src + count);
        sq_emu::rt_submit(s, [dst, staged]() {
            memcpy(dst, staged->data(), staged->size());
            return cudaSuccess;
        });
        return cudaSuccess;
    }
    sq_emu::rt_submit(s, [dst, src, count]() {
        memmove(dst, src, count);
        return cudaSuccess;
    });
    return pageable ? s_drain(s) : cudaSuccess;
}

/* ---- streams and events ---- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    (void)flags;
    *pStream = new CUstream_st;
    s_rt().streams.push_back(*pStream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    cudaStream_t s = s_stream(stream);
    cudaError_t err = s_capture_guard("cudaStreamSynchronize");
    return err != cudaSuccess ? err : s_drain(s);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (!stream)
        return s_error(cudaErrorInvalidValue, "cudaStreamDestroy of the null stream");
    s_drain(stream);
    auto &v = s_rt().streams;
    v.erase(std::remove(v.begin(), v.end(), stream), v.end());
    if (stream->capture)
        s_rt().n_captures--;
    delete stream->capture;
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    *event = new CUevent_st;
    (*event)->timing = !(flags & cudaEventDisableTiming);
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    if (s_stream(stream)->capture)   /* a node in a graph: nothing to wait for later */
        return cudaSuccess;
    event->stream = s_stream(stream);
    /* a new stamp: a query sees this record, not an earlier one */
    auto stamp = event->stamp_ms = std::make_shared<double>(-1.0);
    sq_emu::rt_submit(stream, [stamp]() {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        *stamp = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
        return cudaSuccess;
    });
    return cudaSuccess;
}

/* ready once the work queued before the last record has run (never
 * recorded: ready, as on a GPU) */
cudaError_t cudaEventQuery(cudaEvent_t event)
{
    if (event->stream && *event->stamp_ms < 0.0)
        return cudaErrorNotReady;   /* not an error: cudaGetLastError keeps its own */
    return s_rt().sticky;
}

/* between two records that have run; both made with timing on */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!start->timing || !end->timing)
        return s_error(cudaErrorInvalidResourceHandle,
                       "cudaEventElapsedTime of an event made with cudaEventDisableTiming");
    if (!start->stream || !end->stream)
        return s_error(cudaErrorInvalidResourceHandle,
                       "cudaEventElapsedTime of an event never recorded");
    if (*start->stamp_ms < 0.0 || *end->stamp_ms < 0.0)
        return cudaErrorNotReady;
    *ms = (float)(*end->stamp_ms - *start->stamp_ms);
    return cudaSuccess;
}

/* waits for all the event's stream has queued, which includes all before
 * the record: a GPU may well be that far */
cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    cudaError_t err = s_capture_guard("cudaEventSynchronize");
    if (err != cudaSuccess)
        return err;
    return event->stream ? s_drain(event->stream) : s_rt().sticky;
}

/* ---- graphs ---- */

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    (void)mode;
    if (!stream || stream->capture)
        return s_error(cudaErrorIllegalState, "cudaStreamBeginCapture: the null stream, or a "
                       "stream already being captured");
    stream->capture = new CUgraph_st;
    stream->invalidated = false;
    s_rt().n_captures++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *pGraph)
{
    if (!stream || !stream->capture)
        return s_error(cudaErrorIllegalState, "cudaStreamEndCapture: not capturing");
    cudaGraph_t g = stream->capture;
    stream->capture = nullptr;
    s_rt().n_captures--;
    static const long long fail = s_env_count("SQ_EMU_CAPTURE_FAIL");
    static long long n_ended = 0;
    if (++n_ended <= fail) {
        fprintf(stderr, "sq_cuda_emu: capture %lld refused (SQ_EMU_CAPTURE_FAIL)\n", n_ended);
        stream->invalidated = true;
    }
    if (stream->invalidated) {
        delete g;
        *pGraph = nullptr;
        return s_error(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture");
    }
    *pGraph = g;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags)
{
    (void)flags;
    if (!graph)
        return s_error(cudaErrorInvalidValue, "cudaGraphInstantiate of no graph");
    *pGraphExec = new CUgraphExec_st{std::make_shared<const std::vector<s_work_t>>(graph->nodes)};
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream)
{
    if (!graphExec)
        return s_error(cudaErrorInvalidValue, "cudaGraphLaunch of no graph");
    auto nodes = graphExec->nodes;   /* the exec may be destroyed before it runs */
    sq_emu::rt_submit(stream, [nodes]() {
        for (const s_work_t &w : *nodes) {
            cudaError_t err = w();
            if (err != cudaSuccess)
                return err;
        }
        return cudaSuccess;
    });
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec)
{
    delete graphExec;
    return cudaSuccess;
}

/* ---- cuBLAS ---- */

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    *handle = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId)
{
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace,
                                  size_t workspaceSizeInBytes)
{
    (void)handle;
    if (workspaceSizeInBytes && !s_is_device(workspace, workspaceSizeInBytes)) {
        fprintf(stderr, "sq_cuda_emu: cublasSetWorkspace: not device memory\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS (emulated)";
    }
}

}  // extern "C"

namespace {

/* element (r, c) of op(M), M column-major with leading dimension ld */
float s_elem(const void *m, cudaDataType t, bool trans, int r, int c, int ld)
{
    const size_t i = trans ? (size_t)c + (size_t)r * (size_t)ld
                           : (size_t)r + (size_t)c * (size_t)ld;
    return t == CUDA_R_16F ? __half2float(((const __half *)m)[i]) : ((const float *)m)[i];
}

/* C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C, column-major, F32
 * or F16 inputs, F32 output; checked, then queued on the handle's stream */
cublasStatus_t s_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                      int k, float alpha, const void *A, cudaDataType at, int lda, const void *B,
                      cudaDataType bt, int ldb, float beta, float *C, int ldc)
{
    const bool tra = ta == CUBLAS_OP_T, trb = tb == CUBLAS_OP_T;
    const size_t ea = at == CUDA_R_16F ? 2 : 4, eb = bt == CUDA_R_16F ? 2 : 4;
    if ((ta != CUBLAS_OP_N && !tra) || (tb != CUBLAS_OP_N && !trb) || m < 0 || n < 0 || k < 0 ||
        lda < (tra ? k : m) || lda < 1 || ldb < (trb ? n : k) || ldb < 1 || ldc < m || ldc < 1) {
        fprintf(stderr, "sq_cuda_emu: gemm: bad operation or dimensions (m %d n %d k %d, lda %d "
                "ldb %d ldc %d)\n", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!m || !n)
        return CUBLAS_STATUS_SUCCESS;
    const size_t na = (size_t)lda * (size_t)((tra ? m : k) - 1) + (size_t)(tra ? k : m);
    const size_t nb = (size_t)ldb * (size_t)((trb ? k : n) - 1) + (size_t)(trb ? n : k);
    const size_t nc = (size_t)ldc * (size_t)(n - 1) + (size_t)m;
    if ((k && (!s_is_device(A, na * ea) || !s_is_device(B, nb * eb))) ||
        !s_is_device(C, nc * 4)) {
        fprintf(stderr, "sq_cuda_emu: gemm: A, B or C is not (wholly) in device memory\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    sq_emu::rt_submit(h->stream, [=]() {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0.0;
                for (int l = 0; l < k; l++)
                    acc += (double)s_elem(A, at, tra, i, l, lda) * s_elem(B, bt, trb, l, j, ldb);
                float *c = &C[(size_t)i + (size_t)j * (size_t)ldc];
                *c = (float)(alpha * acc + (beta != 0.0f ? (double)beta * *c : 0.0));
            }
        return cudaSuccess;
    });
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    /* the default host pointer mode: alpha and beta read now */
    return s_gemm(handle, transa, transb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb,
                  *beta, C, ldc);
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const void *alpha,
                            const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
                            cublasGemmAlgo_t algo)
{
    (void)algo;
    const bool ok_in = (Atype == CUDA_R_16F || Atype == CUDA_R_32F) &&
                       (Btype == CUDA_R_16F || Btype == CUDA_R_32F);
    if (!ok_in || Ctype != CUDA_R_32F ||
        (computeType != CUBLAS_COMPUTE_32F && computeType != CUBLAS_COMPUTE_32F_FAST_16F)) {
        fprintf(stderr, "sq_cuda_emu: cublasGemmEx: types %d %d -> %d, compute %d not emulated\n",
                (int)Atype, (int)Btype, (int)Ctype, (int)computeType);
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    return s_gemm(handle, transa, transb, m, n, k, *(const float *)alpha, A, Atype, lda, B, Btype,
                  ldb, *(const float *)beta, (float *)C, ldc);
}

}  // extern "C"
