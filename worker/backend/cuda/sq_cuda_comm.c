/*  sq_cuda_comm: tensor-parallel communicators for CUDA ranks.
 *
 *  NCCL: rank 0 makes the unique id and broadcasts it over the host
 *  communicator; every rank joins with ncclCommInitRank on its backend's
 *  device; all-reduce runs on the backend's stream, so it is ordered with
 *  the kernels around it and the host never waits for it. Host path:
 *  download to a pinned buffer, all-reduce through the host communicator
 *  (MPI), upload; it serves when NCCL is missing or refused (SHARDQ_NCCL=0)
 *  and when ranks share a device, which NCCL does not allow.
 *
 *  bcast, barrier, rank and size are the host communicator's: the engine
 *  broadcasts host data (prompt ids, sampled tokens) through them.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef SQ_HAVE_NCCL
#include <nccl.h>
#endif

#include "sq_backend_cuda.h"
#include "sq_cuda_check.h"
#include "sq_error.h"

typedef struct {
    sq_cuda_comm_mode_t mode;
    sq_tp_comm_t *host;         /* borrowed */
    sq_backend_t *be;           /* borrowed: its recorded ops run first */
    cudaStream_t stream;
    int device;
#ifdef SQ_HAVE_NCCL
    ncclComm_t nccl;
    bool nccl_broken;           /* an NCCL call failed, here or on another rank */
#endif
    float *staging;             /* pinned, host path */
    size_t staging_n;
} s_cc_t;

static s_cc_t *s_cc(const sq_tp_comm_t *self)
{
    return self->ctx;
}

#define S_CUDA(call, what) SQ_CUDA_CHECK(call, "cuda all-reduce", what)

#ifdef SQ_HAVE_NCCL
static int s_nccl_fail(ncclResult_t r, const char *what)
{
    return SQ_FAIL(SQ_EDEVICE, "nccl: %s: %s", what, ncclGetErrorString(r));
}
#endif

static int s_host_allreduce(s_cc_t *c, float *buf, size_t n)
{
    if (n > c->staging_n) {
        cudaFreeHost(c->staging);
        c->staging = NULL;
        c->staging_n = 0;
        S_CUDA(cudaMallocHost((void **)&c->staging, n * sizeof(float)), "pinned buffer");
        c->staging_n = n;
    }
    S_CUDA(cudaMemcpyAsync(c->staging, buf, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream),
           "download");
    S_CUDA(cudaStreamSynchronize(c->stream), "download");
    int rc = c->host->allreduce_sum_f32(c->host, c->staging, n);
    if (rc)
        return rc;
    S_CUDA(cudaMemcpyAsync(buf, c->staging, n * sizeof(float), cudaMemcpyHostToDevice, c->stream),
           "upload");
    /* the next call refills the staging buffer */
    S_CUDA(cudaStreamSynchronize(c->stream), "upload");
    return 0;
}

static int s_allreduce(sq_tp_comm_t *self, float *buf, size_t n)
{
    s_cc_t *c = s_cc(self);
    if (n == 0 || c->mode == SQ_CUDA_COMM_LOCAL)
        return 0;
    /* the partial sums are still only recorded ops: queue them first */
    int rc = sq_backend_cuda_flush(c->be);
    if (rc)
        return rc;
#ifdef SQ_HAVE_NCCL
    if (c->mode == SQ_CUDA_COMM_NCCL) {
        ncclResult_t r = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->nccl, c->stream);
        if (r == ncclSuccess)
            return 0;
        c->nccl_broken = true;
        return s_nccl_fail(r, "all-reduce");
    }
#endif
    return s_host_allreduce(c, buf, n);
}

static int s_bcast(sq_tp_comm_t *self, void *buf, size_t bytes, int root)
{
    sq_tp_comm_t *h = s_cc(self)->host;
    return h->bcast(h, buf, bytes, root);
}

static int s_barrier(sq_tp_comm_t *self)
{
    sq_tp_comm_t *h = s_cc(self)->host;
    return h->barrier(h);
}

static int s_rank(const sq_tp_comm_t *self)
{
    const sq_tp_comm_t *h = s_cc(self)->host;
    return h->rank(h);
}

static int s_size(const sq_tp_comm_t *self)
{
    const sq_tp_comm_t *h = s_cc(self)->host;
    return h->size(h);
}

static void s_destroy(sq_tp_comm_t **self_p)
{
    s_cc_t *c = s_cc(*self_p);
    if (c) {
#ifdef SQ_HAVE_NCCL
        /* a broken group: abort, which stops its kernels where they wait
         * for a peer (syncing the stream, or destroying, could wait for
         * ever) */
        if (c->nccl && c->nccl_broken) {
            ncclCommAbort(c->nccl);
            c->nccl = NULL;
        }
#endif
        cudaStreamSynchronize(c->stream);
#ifdef SQ_HAVE_NCCL
        if (c->nccl)
            ncclCommDestroy(c->nccl);
#endif
        cudaFreeHost(c->staging);
        free(c);
    }
    free(*self_p);
    *self_p = NULL;
}

unsigned long long sq_cuda_device_key(int device)
{
    char id[128], pci[64] = "";
    if (gethostname(id, 64) != 0)
        snprintf(id, 64, "unknown-host");
    id[63] = '\0';
    /* without a bus id, the ordinal stands in (ranks on one host then
     * compare by ordinal) */
    if (cudaDeviceGetPCIBusId(pci, sizeof pci, device) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(pci, sizeof pci, "device-%d", device);
    }
    strncat(id, "/", sizeof id - strlen(id) - 1);
    strncat(id, pci, sizeof id - strlen(id) - 1);
    return sq_cuda_key(id);
}

/* Every rank's device key, gathered by broadcasting each rank's in turn. */
static int s_gather_keys(s_cc_t *c, unsigned long long *keys, int n)
{
    const unsigned long long mine = sq_cuda_device_key(c->device);
    const int me = c->host->rank(c->host);
    for (int r = 0; r < n; r++) {
        keys[r] = r == me ? mine : 0;
        int rc = c->host->bcast(c->host, &keys[r], sizeof keys[r], r);
        if (rc)
            return rc;
    }
    return 0;
}

#ifdef SQ_HAVE_NCCL
/* Join the NCCL group; every rank learns whether all of them did. */
static int s_nccl_init(s_cc_t *c)
{
    sq_tp_comm_t *h = c->host;
    struct {
        int ok;
        ncclUniqueId id;
    } msg;
    memset(&msg, 0, sizeof msg);
    int rc;
    if (h->rank(h) == 0) {
        ncclResult_t r = ncclGetUniqueId(&msg.id);
        msg.ok = r == ncclSuccess;
        if (!msg.ok)
            s_nccl_fail(r, "unique id");
    }
    if ((rc = h->bcast(h, &msg, sizeof msg, 0)))
        return rc;
    if (!msg.ok)
        return h->rank(h) == 0 ? SQ_EDEVICE : SQ_FAIL(SQ_EDEVICE, "nccl: rank 0 made no unique id");
    ncclResult_t r = ncclCommInitRank(&c->nccl, h->size(h), msg.id, h->rank(h));
    if (r != ncclSuccess) {
        c->nccl = NULL;
        s_nccl_fail(r, "init rank");
    }
    float ok = r == ncclSuccess ? 1.0f : 0.0f;
    rc = h->allreduce_sum_f32(h, &ok, 1);
    if (rc == 0 && ok < (float)h->size(h))
        rc = r != ncclSuccess ? SQ_EDEVICE
                              : SQ_FAIL(SQ_EDEVICE, "nccl: another rank failed to join the group");
    c->nccl_broken = rc != 0;   /* the group is incomplete: s_destroy aborts it */
    return rc;
}
#endif

sq_tp_comm_t *sq_tp_comm_cuda_new_mode(sq_backend_t *be, sq_tp_comm_t *host,
                                       sq_cuda_comm_mode_t mode)
{
    if (!sq_backend_is_cuda(be) || !host) {
        SQ_FAIL(SQ_EINVAL, "cuda communicator needs a cuda backend and a host communicator");
        return NULL;
    }
    sq_tp_comm_t *self = calloc(1, sizeof *self);
    s_cc_t *c = calloc(1, sizeof *c);
    if (!self || !c) {
        SQ_FAIL(SQ_ENOMEM, "cuda communicator");
        free(self);
        free(c);
        return NULL;
    }
    *c = (s_cc_t){.mode = mode, .host = host, .be = be, .stream = sq_backend_cuda_stream(be),
                  .device = sq_backend_cuda_device(be)};
    *self = (sq_tp_comm_t){s_allreduce, s_bcast, s_barrier, s_rank, s_size, s_destroy, c};
    /* a mode asked for is the mode used, one rank included: NCCL with one
     * rank is how a single GPU runs the NCCL path (init, the all-reduce on
     * the stream between graphs, teardown); sq_tp_comm_cuda_new gives one
     * rank LOCAL */
#ifdef SQ_HAVE_NCCL
    if (c->mode == SQ_CUDA_COMM_NCCL && s_nccl_init(c) != 0) {
        s_destroy(&self);
        return NULL;
    }
#else
    if (c->mode == SQ_CUDA_COMM_NCCL) {
        SQ_FAIL(SQ_EUNSUPPORTED, "this build has no NCCL");
        s_destroy(&self);
        return NULL;
    }
#endif
    return self;
}

sq_tp_comm_t *sq_tp_comm_cuda_new(sq_backend_t *be, sq_tp_comm_t *host)
{
    if (!sq_backend_is_cuda(be) || !host) {
        SQ_FAIL(SQ_EINVAL, "cuda communicator needs a cuda backend and a host communicator");
        return NULL;
    }
    const int n = host->size(host);
    if (n == 1)
        return sq_tp_comm_cuda_new_mode(be, host, SQ_CUDA_COMM_LOCAL);
    unsigned long long *keys = calloc((size_t)n, sizeof *keys);
    if (!keys) {
        SQ_FAIL(SQ_ENOMEM, "device keys of %d ranks", n);
        return NULL;
    }
    s_cc_t probe = {.host = host, .device = sq_backend_cuda_device(be)};
#ifdef SQ_HAVE_NCCL
    const bool have_nccl = true;
#else
    const bool have_nccl = false;
#endif
    sq_tp_comm_t *self = NULL;
    if (s_gather_keys(&probe, keys, n) == 0)
        self = sq_tp_comm_cuda_new_mode(
            be, host, sq_cuda_plan_comm(keys, n, have_nccl, getenv("SHARDQ_NCCL")));
    free(keys);
    return self;
}

sq_cuda_comm_mode_t sq_tp_comm_cuda_mode(const sq_tp_comm_t *comm)
{
    return s_cc(comm)->mode;
}
