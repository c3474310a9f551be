/*  sq_cuda_plan: the host-side decisions of the CUDA backend that need no
 *  device (which device a rank takes, which all-reduce a group uses), kept
 *  apart so CPU-only CI tests them.
 */
#include <stdlib.h>
#include <string.h>

#include "sq_backend_cuda.h"

int sq_cuda_local_rank(void)
{
    /* Open MPI, MPICH/Hydra, Slurm, in that order */
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                       "SLURM_LOCALID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        char *end;
        if (v && *v) {
            long r = strtol(v, &end, 10);
            if (*end == '\0' && r >= 0 && r < 1 << 20)
                return (int)r;
        }
    }
    return 0;
}

int sq_cuda_pick_device(int local_rank, int n_devices)
{
    if (n_devices < 1)
        return -1;
    return (local_rank < 0 ? 0 : local_rank) % n_devices;
}

sq_cuda_comm_mode_t sq_cuda_plan_comm(const unsigned long long *keys, int n_ranks,
                                      bool have_nccl, const char *shardq_nccl)
{
    if (n_ranks <= 1)
        return SQ_CUDA_COMM_LOCAL;
    if (!have_nccl || (shardq_nccl && strcmp(shardq_nccl, "0") == 0))
        return SQ_CUDA_COMM_HOST;
    /* NCCL refuses two ranks on one device: such groups go through host
     * memory (what lets multi-rank code run on a single GPU) */
    for (int i = 0; i < n_ranks; i++)
        for (int j = i + 1; j < n_ranks; j++)
            if (keys[i] == keys[j])
                return SQ_CUDA_COMM_HOST;
    return SQ_CUDA_COMM_NCCL;
}

unsigned long long sq_cuda_key(const char *text)
{
    unsigned long long h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}
