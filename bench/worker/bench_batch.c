/*  shardq-bench-batch: the engine alone on a batch of prompts, through the
 *  same continuous batcher a worker group runs (so the cluster benchmark
 *  compares like with like), under mpirun for tensor parallelism.
 *
 *    shardq-bench-batch --print-prompts N [MAX_TOKENS [short|long]]
 *    mpirun -np 2 shardq-bench-batch MODEL [--n 1000] [--max-tokens 32]
 *        [--max-batch 16] [--adapters K] [--adapter-dir DIR] [--prefix-ab R]
 *        [--kv-pages-ab R] [--instruction short|long]
 *
 *  Prompts are the ones bench/worker/run.sh submits to the cluster
 *  (bench_prompt(i)). With --adapters K, K random LoRA adapters (rank 8,
 *  attn_q/attn_v/ffn_up/ffn_down, from shardq-model lora-random, made in
 *  --adapter-dir) are loaded and sequences use them round-robin, to compare
 *  mixed-adapter batches with base-only ones. With --prefix-ab R every
 *  prompt follows one shared instruction, and R rounds run the batch with
 *  the batcher's prefix reuse on and off in turn (the anchor: the same
 *  work without it, in the same process); the instruction is ~30 tokens,
 *  or with --instruction long ~150 words, a job's system prompt, several
 *  KV pages long. With --kv-pages-ab R, R rounds
 *  alternate between the engine with --max-batch B slots of whole contexts
 *  (the unpaged cache's memory and concurrency: the anchor) and a second
 *  one with 4B slots sharing the same number of KV pages, so the same
 *  memory. Prints one table row (rank 0).
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_prompts.h"
#include "sq_batcher.h"
#include "sq_engine.h"
#include "sq_error.h"

static long long s_tokens;

static void s_done(void *arg, sq_seq_t *seq, void *user, const sq_seq_times_t *t)
{
    (void)arg, (void)user, (void)t;
    s_tokens += (long long)sq_seq_n_generated(seq);
    sq_seq_destroy(&seq);
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One pass over n prompts (instr + bench_prompt(i)) on rank 0, the
 * followers serving it; wall seconds, and the prompt tokens prefix reuse
 * saved in *reused. */
static double s_pass(sq_engine_t *e, int max_batch, int n, int max_tokens, int n_adapters,
                     const int *ids, const char *instr, bool reuse, long *reused)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(e), MPI_COMM_WORLD, max_batch, 128);
    if (!b) {
        fprintf(stderr, "bench: %s\n", sq_error_detail());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rank != 0) {
        if (sq_batcher_follow(b) != 0)
            MPI_Abort(MPI_COMM_WORLD, 1);
        sq_batcher_destroy(&b);
        return 0.0;
    }
    sq_batcher_set_prefix_reuse(b, reuse);
    sq_model_t *m = sq_engine_model(e);
    sq_gen_params_t gp = {.max_tokens = max_tokens, .sampler = {.temperature = 0, .top_p = 1},
                          .ignore_eos = false};
    s_tokens = 0;
    double t0 = s_now();
    int next = 0;
    sq_seq_t *wait = NULL;      /* a sequence waiting for KV-cache pages */
    while (next < n || wait || sq_batcher_n_active(b) > 0) {
        while ((wait || next < n) && sq_batcher_n_active(b) < max_batch) {
            sq_seq_t *s = wait;
            if (!s) {
                char prompt[2048];
                const size_t k = (size_t)snprintf(prompt, sizeof prompt, "%s", instr);
                bench_prompt(next, prompt + k, sizeof prompt - k);
                s = sq_seq_new(sq_engine_tokenizer(e), prompt, strlen(prompt), &gp,
                               sq_model_hparams(m)->n_vocab, sq_model_n_ctx(m));
                if (n_adapters > 0)
                    sq_seq_set_adapter(s, ids[next % n_adapters]);
                next++;
            }
            wait = sq_batcher_admit(b, s, NULL) == SQ_EAGAIN ? s : NULL;
            if (wait)
                break;
        }
        if (sq_batcher_step(b, s_done, NULL) != 0) {
            fprintf(stderr, "bench: %s\n", sq_error_detail());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    double wall = s_now() - t0;
    sq_batcher_stop_followers(b);
    *reused = sq_batcher_reused_tokens(b);
    sq_batcher_destroy(&b);
    return wall;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc > 2 && !strcmp(argv[1], "--print-prompts")) {
        /* the cluster run submits exactly these, as a job file; a fourth
         * argument (short|long) puts that instruction before each */
        const char *instr = argc > 4 ? bench_instruction(argv[4]) : "";
        for (int i = 0, n = atoi(argv[2]); i < n; i++) {
            char p[256];
            bench_prompt(i, p, sizeof p);
            printf("{\"custom_id\": \"b-%d\", \"prompt\": \"%s%s\", \"max_tokens\": %s, "
                   "\"temperature\": 0}\n", i, instr, p, argc > 3 ? argv[3] : "32");
        }
        MPI_Finalize();
        return 0;
    }
    const char *model = argc > 1 ? argv[1] : "models/stories260K.gguf", *dir = "/tmp";
    int n = 1000, max_tokens = 32, max_batch = 16, n_adapters = 0, prefix_ab = 0, pages_ab = 0;
    bool long_instr = false;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--n")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-batch")) max_batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--adapters")) n_adapters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--adapter-dir")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--prefix-ab")) prefix_ab = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--kv-pages-ab")) pages_ab = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--instruction")) long_instr = !strcmp(argv[i + 1], "long");
    }
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    sq_engine_params_t ep = {.model_path = model, .n_threads = 1, .n_slots = max_batch,
                             .comm = comm};
    sq_engine_t *e = sq_engine_new(&ep);
    sq_batcher_t *b = e ? sq_batcher_new(sq_engine_model(e), MPI_COMM_WORLD, max_batch, 128) : NULL;
    if (!b) {
        fprintf(stderr, "bench: %s\n", sq_error_detail());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* rank 0 loads the adapters on every rank (the followers take the
     * commands in sq_batcher_follow); they stay loaded in the model, and
     * the passes below run on batchers of their own */
    int ids[16] = {0};
    for (int k = 0; rank == 0 && k < n_adapters && k < 16; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/bench-adapter-%d.gguf", dir, k);
        if (sq_batcher_adapter_load(b, path, &ids[k]) != 0) {
            fprintf(stderr, "bench: adapter %s: %s\n", path, sq_error_detail());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    }
    if (n_adapters > 0 && (rank == 0 ? sq_batcher_stop_followers(b) : sq_batcher_follow(b)) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    sq_batcher_destroy(&b);
    long reused = 0;
    if (pages_ab > 0) {
        /* the same KV pages shared by 4x the slots */
        sq_engine_params_t pp = ep;
        pp.n_slots = 4 * max_batch;
        pp.n_kv_pages = max_batch * sq_kv_pages_for(sq_model_n_ctx(sq_engine_model(e)));
        sq_engine_t *paged = sq_engine_new(&pp);
        if (!paged) {
            fprintf(stderr, "bench: %s\n", sq_error_detail());
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        double best[2] = {1e30, 1e30};
        long long toks[2] = {0, 0};
        for (int r = 0; r < pages_ab; r++)
            for (int k = 0; k < 2; k++) {
                double w = s_pass(k ? paged : e, k ? 4 * max_batch : max_batch, n, max_tokens,
                                  n_adapters, ids, "", true, &reused);
                best[k] = w < best[k] ? w : best[k];
                toks[k] = s_tokens;
            }
        if (rank == 0)
            printf("| paged KV | TP=%d | %d tasks | %.1f MiB of KV cache each | %d slots %.2f s "
                   "%.0f tokens/s | %d slots %.2f s %.0f tokens/s | %.2fx |\n", size, n,
                   (double)sq_model_kv_bytes(sq_engine_model(paged)) / 1048576.0, max_batch,
                   best[0], (double)toks[0] / best[0], 4 * max_batch, best[1],
                   (double)toks[1] / best[1], best[0] / best[1]);
        sq_engine_destroy(&paged);
    } else if (prefix_ab <= 0) {
        double wall = s_pass(e, max_batch, n, max_tokens, n_adapters, ids, "", true, &reused);
        if (rank == 0)
            printf("| engine alone | TP=%d | %d tasks | %d adapters | %.2f s | %.0f tokens/s |\n",
                   size, n, n_adapters, wall, (double)s_tokens / wall);
    } else {
        /* --prefix-ab R: every prompt after one shared instruction, R rounds
         * of prefix reuse on and off in turn, the best of each */
        const char *instr = bench_instruction(long_instr ? "long" : "short");
        double best[2] = {1e30, 1e30};
        long saved = 0;
        for (int r = 0; r < prefix_ab; r++)
            for (int on = 1; on >= 0; on--) {
                double w = s_pass(e, max_batch, n, max_tokens, n_adapters, ids, instr, on, &reused);
                best[on] = w < best[on] ? w : best[on];
                saved = on ? reused : saved;
            }
        if (rank == 0)
            printf("| prefix reuse | TP=%d | %d tasks | %s instruction | on %.2f s | off %.2f s | "
                   "%.2fx | %ld prompt tokens not prefilled |\n", size, n,
                   long_instr ? "long" : "short", best[1], best[0], best[0] / best[1], saved);
    }
    sq_engine_destroy(&e);
    sq_tp_comm_destroy(&comm);
    MPI_Finalize();
    return 0;
}
