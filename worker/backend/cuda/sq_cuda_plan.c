/*  sq_cuda_plan: the host-side decisions of the CUDA backend that need no
 *  device (which device a rank takes, which all-reduce a group uses, the
 *  weight layout of sq_cuda_layout.h), kept
 *  apart so CPU-only CI tests them.
 */
#include <stdlib.h>
#include <string.h>

#include "sq_backend_cuda.h"
#include "sq_cuda_layout.h"
#include "sq_hash.h"

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
    return sq_fnv1a_str(text);
}

size_t sq_cu_row_bytes(int dtype, int64_t n)
{
    if (n <= 0)
        return 0;
    switch (dtype) {
    case SQ_CU_F32: return (size_t)n * 4;
    case SQ_CU_F16: return (size_t)n * 2;
    case SQ_CU_Q8_0: return n % SQ_CU_QK ? 0 : (size_t)(n / SQ_CU_QK) * SQ_CU_Q8_BYTES;
    default: return 0;
    }
}

size_t sq_cu_q8_scales_offset(int64_t n_out, int64_t n_in)
{
    return ((size_t)n_out * (size_t)n_in + 255) / 256 * 256;
}

size_t sq_cu_weight_bytes(int dtype, int64_t n_out, int64_t n_in)
{
    const size_t row = sq_cu_row_bytes(dtype, n_in);
    if (row == 0 || n_out <= 0)
        return 0;
    if (dtype != SQ_CU_Q8_0)
        return row * (size_t)n_out;
    return sq_cu_q8_scales_offset(n_out, n_in) + (size_t)n_out * (size_t)(n_in / SQ_CU_QK) * 2;
}

void sq_cu_q8_split(const void *blocks, int64_t n_out, int64_t n_in, void *out)
{
    const unsigned char *src = blocks;
    unsigned char *qs = out;
    unsigned char *d = qs + sq_cu_q8_scales_offset(n_out, n_in);
    const size_t n_blocks = (size_t)n_out * (size_t)(n_in / SQ_CU_QK);
    /* rows are whole blocks, so block b of the matrix is values 32 b.. */
    for (size_t b = 0; b < n_blocks; b++) {
        memcpy(d + 2 * b, src + b * SQ_CU_Q8_BYTES, 2);
        memcpy(qs + b * SQ_CU_QK, src + b * SQ_CU_Q8_BYTES + 2, SQ_CU_QK);
    }
    /* the gap before the scales: defined bytes, never read */
    memset(qs + n_blocks * SQ_CU_QK, 0, sq_cu_q8_scales_offset(n_out, n_in) - n_blocks * SQ_CU_QK);
}
