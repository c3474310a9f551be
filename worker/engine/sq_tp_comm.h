/*  sq_tp_comm: the collectives tensor parallelism needs, as a table of
 *  function pointers, so the model does not know whether MPI (CPU ranks,
 *  now) or NCCL (CUDA devices, later) moves the bytes.
 *
 *  Every rank of a group must make the same calls in the same order
 *  (collective semantics). Buffers are in the memory of the backend the
 *  communicator was made for: host memory for MPI.
 */
#ifndef SQ_TP_COMM_H
#define SQ_TP_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_tp_comm sq_tp_comm_t;

struct sq_tp_comm {
    /* buf (n) = sum over ranks of buf, on every rank */
    int (*allreduce_sum_f32)(sq_tp_comm_t *self, float *buf, size_t n);
    /* bytes at buf from root to every rank */
    int (*bcast)(sq_tp_comm_t *self, void *buf, size_t bytes, int root);
    int (*barrier)(sq_tp_comm_t *self);
    int (*rank)(const sq_tp_comm_t *self);
    int (*size)(const sq_tp_comm_t *self);
    void (*destroy)(sq_tp_comm_t **self_p);
    void *ctx;
};

/* A group of one: collectives are no-ops. */
sq_tp_comm_t *sq_tp_comm_local_new(void);
/* All ranks of MPI_COMM_WORLD (duplicated, so our traffic never mixes with
 * the caller's). MPI must be initialised by the caller and outlive it. */
sq_tp_comm_t *sq_tp_comm_mpi_world_new(void);

static inline void sq_tp_comm_destroy(sq_tp_comm_t **self_p)
{
    if (self_p && *self_p)
        (*self_p)->destroy(self_p);
}

#ifdef __cplusplus
}
#endif
#endif
