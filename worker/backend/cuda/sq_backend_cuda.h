/*  sq_backend_cuda: the CUDA backend and the communicators for CUDA ranks.
 *
 *  The backend implements sq_backend_ops_t (sq_backend.h) on one device:
 *  all memory through cudaMalloc, weights copied to the device once, ops
 *  recorded and run on one stream at sync points (download waits for it),
 *  a repeating list (a decode step) as one CUDA graph, small-batch ops fused
 *  (sq_cuda_fuse.h). Matrix products: own GEMV kernels for up to 16 tokens
 *  (Q8_0 with int8 activations, F16), cuBLAS on tensor cores for bigger F16
 *  and Q8_0 batches, cuBLAS for F32.
 *
 *  Communicators for tensor parallelism over CUDA ranks take device buffers
 *  in allreduce_sum_f32 (on the backend's stream) and host buffers in bcast
 *  (control traffic: prompt ids, sampled tokens), which goes through the
 *  host communicator they wrap.
 */
#ifndef SQ_BACKEND_CUDA_H
#define SQ_BACKEND_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "sq_backend.h"
#include "sq_tp_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when a CUDA device can be used: a driver, at least one device, and
 * kernels in this build for the device this process would take
 * (sq_cuda_pick_device); 0 otherwise, with why filled ("no usable CUDA
 * device: <cause>"). */
int sq_cuda_usable(char *why, size_t why_size);

/* The backend on device (-1: chosen from the local MPI rank, see
 * sq_cuda_pick_device). NULL and SQ_EDEVICE with the CUDA error text when
 * there is no usable device. */
sq_backend_t *sq_backend_cuda_new(int device);

/* true when be was made by sq_backend_cuda_new */
bool sq_backend_is_cuda(const sq_backend_t *be);
/* the device ordinal and the cudaStream_t (as void *) the ops run on */
int sq_backend_cuda_device(const sq_backend_t *be);
void *sq_backend_cuda_stream(const sq_backend_t *be);
/* Queue every op recorded so far on the stream (ops are recorded and run
 * at sync points, as CUDA graphs once a list repeats: sq_cuda_graph.h).
 * Whoever enqueues work on the stream outside the ops calls this first.
 * SHARDQ_CUDA_GRAPHS=0 runs recorded lists op by op, never as graphs. */
int sq_backend_cuda_flush(sq_backend_t *be);
/* How recorded lists have run so far, and how they run now. */
typedef struct {
    long captures;              /* lists captured into graphs */
    long replays;               /* graphs launched again */
    long eagers;                /* lists run op by op */
    long refusals;              /* captures the device refused (sq_cuda_graph_refuse) */
    bool graphs;                /* repeated lists still become graphs */
    bool pdl;                   /* programmatic dependent launch (sq_cu_set_pdl) */
} sq_cuda_graph_stats_t;
void sq_backend_cuda_graph_stats(const sq_backend_t *be, sq_cuda_graph_stats_t *st);

/* ---- communicators ---- */

typedef enum {
    SQ_CUDA_COMM_LOCAL = 0,     /* one rank: nothing to reduce */
    SQ_CUDA_COMM_NCCL,          /* ncclAllReduce on the compute stream */
    SQ_CUDA_COMM_HOST           /* download, host all-reduce, upload */
} sq_cuda_comm_mode_t;

/* A communicator for be's device wrapping host (borrowed; must outlive
 * it): SHARDQ_NCCL=0, ranks that share a device, or a build without NCCL
 * pick the host path, else NCCL. Collective: every rank of host calls it. */
sq_tp_comm_t *sq_tp_comm_cuda_new(sq_backend_t *be, sq_tp_comm_t *host);
/* The same with the mode forced (tests), kept even for one rank: NCCL or
 * the host path with one rank runs that path's code on a single device */
sq_tp_comm_t *sq_tp_comm_cuda_new_mode(sq_backend_t *be, sq_tp_comm_t *host,
                                       sq_cuda_comm_mode_t mode);
sq_cuda_comm_mode_t sq_tp_comm_cuda_mode(const sq_tp_comm_t *comm);

/* a device's key: sq_cuda_key of the host name and the device's PCI bus id
 * (or its ordinal), equal for ranks on one device */
unsigned long long sq_cuda_device_key(int device);

/* ---- host-side planning (no device needed; unit-tested on CPU) ---- */

/* The local rank from the launcher's environment (Open MPI, MPICH/Hydra,
 * Slurm); 0 when none is set. */
int sq_cuda_local_rank(void);
/* Device for a local rank: one rank per device, wrapping round when there
 * are more ranks than devices (they then share). -1 when n_devices < 1. */
int sq_cuda_pick_device(int local_rank, int n_devices);
/* Mode for a group from every rank's device key (host and device identity;
 * equal keys = same device), n_ranks of them, whether NCCL is built in and
 * the SHARDQ_NCCL value (NULL: unset; "0": refuse NCCL). */
sq_cuda_comm_mode_t sq_cuda_plan_comm(const unsigned long long *keys, int n_ranks,
                                      bool have_nccl, const char *shardq_nccl);
/* FNV-1a of a string, the device key's building block */
unsigned long long sq_cuda_key(const char *text);

#ifdef __cplusplus
}
#endif
#endif
