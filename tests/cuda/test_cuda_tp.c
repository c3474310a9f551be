/*  test_cuda_tp: tensor parallelism on CUDA ranks (label gpu; label unit
 *  as test_cuda_emu_tp, on the CPU emulator), real mpirun.
 *
 *    mpirun -np N test_cuda_tp MODEL [STEPS] [host|nccl|auto] [TOLERANCE] [ADAPTER]
 *
 *  Every rank takes a device by local rank (sharing one when there are
 *  more ranks than devices) and loads its 1/N share of MODEL on it; the
 *  all-reduce is the one sq_engine would choose (auto: NCCL, or the host
 *  path when ranks share a device) or the one forced, kept even with one
 *  rank (`-np 1 ... nccl` runs NCCL's path on a single GPU). Rank 0 also runs the
 *  whole model on the CPU as the reference: logits within TOLERANCE
 *  (default 1e-3) of the largest |logit| at every step, same greedy tokens.
 *  With ADAPTER (a LoRA file), every token runs on it: each rank holds its
 *  share, split like the base weights. Exits 77 (skipped) when no CUDA
 *  device is usable.
 */
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "sq_backend_cuda.h"
#include "sq_error.h"
#include "sq_gguf.h"

static const char *const s_modes[] = {"local", "nccl", "host"};

static const char *s_path, *s_want = "auto", *s_adapter;
static int s_steps = 32;
static float s_tol = 1e-3f;   /* relative to the largest |logit|; see test_cuda_engine.c for Q8_0 */

/* this rank's share on its device, over mpi with the wanted all-reduce */
static sq_model_t *s_load_tp(ct_side_t *s, sq_tp_comm_t *mpi, const sq_model_params_t *p)
{
    s->gguf = sq_gguf_open(s_path);
    s->be = s->gguf ? sq_backend_cuda_new(-1) : NULL;
    if (!s->be)
        return NULL;
    if (!strcmp(s_want, "host"))
        s->comm = sq_tp_comm_cuda_new_mode(s->be, mpi, SQ_CUDA_COMM_HOST);
    else if (!strcmp(s_want, "nccl"))
        s->comm = sq_tp_comm_cuda_new_mode(s->be, mpi, SQ_CUDA_COMM_NCCL);
    else
        s->comm = sq_tp_comm_cuda_new(s->be, mpi);
    return s->model = s->comm ? sq_model_new(s->gguf, s->be, s->comm, p) : NULL;
}

/* rank 0's reference: the whole model on the CPU */
static sq_model_t *s_load_ref(ct_side_t *s, const sq_model_params_t *p)
{
    s->gguf = sq_gguf_open(s_path);
    s->be = s->gguf ? sq_backend_cpu_new(1) : NULL;
    s->comm = sq_tp_comm_local_new();
    return s->model = s->be && s->comm ? sq_model_new(s->gguf, s->be, s->comm, p) : NULL;
}

static sq_cuda_comm_mode_t s_expected_mode(int n_ranks)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess)
        n_dev = 0;
    const char *env = getenv("SHARDQ_NCCL");
    if (n_ranks == 1)
        return SQ_CUDA_COMM_LOCAL;
    /* all ranks of this test run on one host: they share iff n > devices */
    if (n_ranks > n_dev || (env && !strcmp(env, "0")))
        return SQ_CUDA_COMM_HOST;
    return SQ_CUDA_COMM_NCCL;
}

static void test_tp_matches_cpu(void)
{
    sq_tp_comm_t *mpi = sq_tp_comm_mpi_world_new();
    SQ_REQUIRE(mpi != NULL);
    const int rank = mpi->rank(mpi), n_ranks = mpi->size(mpi);
    /* an F32 KV cache, so the tolerance measures the split and the
     * all-reduce, not F16 rounding (test_cuda_engine covers the F16
     * cache) */
    sq_model_params_t p = {.n_ctx = s_steps + CT_PROMPT, .kv_type = SQ_KV_F32};
    ct_side_t tp = {0}, ref = {0};
    int ok = s_load_tp(&tp, mpi, &p) && (rank != 0 || s_load_ref(&ref, &p)), all_ok = 0;
    if (!ok)
        fprintf(stderr, "   rank %d: %s\n", rank, sq_error_detail());
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (all_ok) {
        const sq_cuda_comm_mode_t mode = sq_tp_comm_cuda_mode(tp.comm);
        if (!strcmp(s_want, "auto"))
            SQ_CHECK(mode == s_expected_mode(n_ranks));
        else   /* forced, one rank included */
            SQ_CHECK(mode == (!strcmp(s_want, "nccl") ? SQ_CUDA_COMM_NCCL : SQ_CUDA_COMM_HOST));
        int adapter = 0;
        if (s_adapter) {   /* every rank's share of it, and the whole on rank 0's reference */
            sq_gguf_t *g = sq_gguf_open(s_adapter);
            int ref_id = 0;
            SQ_REQUIRE(g && sq_model_adapter_load(tp.model, g, 0.0f, &adapter) == 0);
            SQ_REQUIRE(rank != 0 || (sq_model_adapter_load(ref.model, g, 0.0f, &ref_id) == 0 &&
                                     ref_id == adapter));
            sq_gguf_destroy(&g);
        }
        ct_result_t r;
        SQ_CHECK(ct_compare(tp.model, ref.model, tp.comm, s_steps, adapter, s_tol, &r) == 0);
        if (rank == 0) {
            SQ_CHECK(r.worst <= s_tol);
            SQ_CHECK(r.same_tokens);
            printf("cuda TP=%d (%s all-reduce, device %d)%s vs cpu TP=1: %d steps, max relative "
                   "logit difference %.3g, tokens %s (near ties taken the other way: %d)\n",
                   n_ranks, s_modes[mode], sq_backend_cuda_device(tp.be),
                   s_adapter ? " with a LoRA adapter" : "", r.steps_run, (double)r.worst,
                   r.same_tokens ? "agree" : "DIFFER", r.near_ties);
        }
    } else {
        SQ_CHECK(all_ok);
    }
    ct_unload(&ref);
    ct_unload(&tp);
    sq_tp_comm_destroy(&mpi);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc < 2 || argc > 6) {
        fprintf(stderr, "usage: test_cuda_tp MODEL [STEPS] [host|nccl|auto] [TOLERANCE] "
                        "[ADAPTER]\n");
        MPI_Finalize();
        return 2;
    }
    char why[256];
    if (!sq_cuda_usable(why, sizeof why)) {
        printf("skipped: %s\n", why);
        MPI_Finalize();
        return 77;
    }
    s_path = argv[1];
    s_steps = argc > 2 ? atoi(argv[2]) : 32;
    s_want = argc > 3 ? argv[3] : "auto";
    s_tol = argc > 4 ? strtof(argv[4], NULL) : 1e-3f;
    s_adapter = argc > 5 ? argv[5] : NULL;
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    SQ_RUN(test_tp_matches_cpu);
    int failed = sq_test_summary(rank == 0 ? "cuda_tp" : "cuda_tp (other rank)");
    MPI_Finalize();
    return failed;
}
