/*  sq_tp_comm: local (size 1) and MPI communicators.
 *
 *  MPI counts are int: large buffers go in chunks of at most INT_MAX
 *  elements. MPI errors are turned into SQ_EMPI with the MPI error text.
 */
#include "sq_tp_comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "sq_error.h"

/* ---- local ---- */

static int s_local_allreduce(sq_tp_comm_t *self, float *buf, size_t n)
{
    return 0;
}

static int s_local_bcast(sq_tp_comm_t *self, void *buf, size_t bytes, int root)
{
    return root == 0 ? 0 : SQ_FAIL(SQ_EINVAL, "bcast root %d in a group of 1", root);
}

static int s_local_barrier(sq_tp_comm_t *self)
{
    return 0;
}

static int s_local_rank(const sq_tp_comm_t *self)
{
    return 0;
}

static int s_local_size(const sq_tp_comm_t *self)
{
    return 1;
}

static void s_local_destroy(sq_tp_comm_t **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

sq_tp_comm_t *sq_tp_comm_local_new(void)
{
    sq_tp_comm_t *c = calloc(1, sizeof *c);
    if (!c) {
        SQ_FAIL(SQ_ENOMEM, "local communicator");
        return NULL;
    }
    *c = (sq_tp_comm_t){s_local_allreduce, s_local_bcast, s_local_barrier, s_local_rank,
                        s_local_size, s_local_destroy, NULL};
    return c;
}

/* ---- MPI ---- */

typedef struct {
    MPI_Comm comm;
    int rank, size;
} s_mpi_t;

static int s_mpi_fail(int err, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, text, &len) != MPI_SUCCESS)
        len = 0;
    text[len] = '\0';
    return SQ_FAIL(SQ_EMPI, "%s: %s", what, text);
}

#define S_MPI(call, what)                                                 \
    do {                                                                  \
        int err_ = (call);                                                \
        if (err_ != MPI_SUCCESS)                                          \
            return s_mpi_fail(err_, what);                                \
    } while (0)

static s_mpi_t *s_mpi(const sq_tp_comm_t *self)
{
    return self->ctx;
}

static int s_mpi_allreduce(sq_tp_comm_t *self, float *buf, size_t n)
{
    for (size_t done = 0; done < n;) {
        int chunk = n - done > INT_MAX ? INT_MAX : (int)(n - done);
        S_MPI(MPI_Allreduce(MPI_IN_PLACE, buf + done, chunk, MPI_FLOAT, MPI_SUM, s_mpi(self)->comm),
              "MPI_Allreduce");
        done += (size_t)chunk;
    }
    return 0;
}

static int s_mpi_bcast(sq_tp_comm_t *self, void *buf, size_t bytes, int root)
{
    for (size_t done = 0; done < bytes;) {
        int chunk = bytes - done > INT_MAX ? INT_MAX : (int)(bytes - done);
        S_MPI(MPI_Bcast((char *)buf + done, chunk, MPI_BYTE, root, s_mpi(self)->comm),
              "MPI_Bcast");
        done += (size_t)chunk;
    }
    return 0;
}

static int s_mpi_barrier(sq_tp_comm_t *self)
{
    S_MPI(MPI_Barrier(s_mpi(self)->comm), "MPI_Barrier");
    return 0;
}

static int s_mpi_rank(const sq_tp_comm_t *self)
{
    return s_mpi(self)->rank;
}

static int s_mpi_size(const sq_tp_comm_t *self)
{
    return s_mpi(self)->size;
}

static void s_mpi_destroy(sq_tp_comm_t **self_p)
{
    s_mpi_t *m = s_mpi(*self_p);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Comm_free(&m->comm);
    free(m);
    free(*self_p);
    *self_p = NULL;
}

static int s_mpi_init(s_mpi_t *m)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited)
        return SQ_FAIL(SQ_ESTATE, "MPI is not initialised");
    S_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &m->comm), "MPI_Comm_dup");
    /* errors come back as codes, never abort the job from inside a call */
    S_MPI(MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    S_MPI(MPI_Comm_rank(m->comm, &m->rank), "MPI_Comm_rank");
    S_MPI(MPI_Comm_size(m->comm, &m->size), "MPI_Comm_size");
    return 0;
}

sq_tp_comm_t *sq_tp_comm_mpi_world_new(void)
{
    sq_tp_comm_t *c = calloc(1, sizeof *c);
    s_mpi_t *m = calloc(1, sizeof *m);
    if (!c || !m) {
        SQ_FAIL(SQ_ENOMEM, "MPI communicator");
        goto fail;
    }
    m->comm = MPI_COMM_NULL;
    if (s_mpi_init(m) != 0)
        goto fail;
    *c = (sq_tp_comm_t){s_mpi_allreduce, s_mpi_bcast, s_mpi_barrier, s_mpi_rank,
                        s_mpi_size, s_mpi_destroy, m};
    return c;
fail:
    if (m && m->comm != MPI_COMM_NULL)
        MPI_Comm_free(&m->comm);
    free(m);
    free(c);
    return NULL;
}
