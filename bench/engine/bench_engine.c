/*  shardq-bench-engine: how fast the CPU engine is, next to the machine's
 *  limits and to llama.cpp.
 *
 *  Prints markdown tables: memory read bandwidth per thread count, matmul
 *  throughput per dtype and SIMD level (with the share of the bandwidth
 *  roofline a GEMV reaches), and for each --model: prompt processing,
 *  decode and batched decode tokens/s of shardq and of llama.cpp on the
 *  same file with the same thread count, as ratios. Under mpirun with
 *  --tp, decode with the model split over all ranks against rank 0 alone.
 *
 *  exit codes: 0 done, 1 a run failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include "bench_engine.h"
#include "sq_model.h"
#include "sq_tp_comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define S_MAX_POOLS 4
#define S_MAX_MODELS 8

typedef struct {
    int n_threads[S_MAX_POOLS];
    int n_pools;
    const char *models[S_MAX_MODELS];
    int n_models;
    int kernels, tp;
    int repeat;                          /* runs per figure; the best is kept */
    int kv_type[3];                      /* shardq's KV cache types, in turn */
    int n_kv;
    bench_opts_t o;
} s_args_t;

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: shardq-bench-engine [options]\n"
            "  --threads LIST        thread counts per rank (default 1,2)\n"
            "  --model FILE          a GGUF to run end to end (repeatable, up to 8)\n"
            "  --llama-dir DIR       folder where `npm i -E node-llama-cpp@3.21.1` ran:\n"
            "                        also run llama.cpp on each model (the anchor)\n"
            "  --anchor-script FILE  llama_anchor.mjs (default: the source tree's)\n"
            "  --prompt-tokens N     prefill length (default 128)\n"
            "  --gen-tokens N        decode steps (default 32)\n"
            "  --agg-prompt N        prompt tokens of each sequence of the aggregate\n"
            "                        batches, before their decode steps (default 8)\n"
            "  --kv-type LIST        shardq's KV cache: f16 (default, as llama.cpp's), f32,\n"
            "                        q8_0, or several (f16,q8_0: in turn in each round)\n"
            "  --batch LIST          aggregate decode batch sizes (default 1,4,16)\n"
            "  --repeat N            runs per figure, alternating shardq and llama.cpp;\n"
            "                        the best is kept (default 3: the machine is shared)\n"
            "  --no-kernels          skip the matmul and attention tables\n"
            "  --tp                  under mpirun -np N: decode split N ways vs rank 0 alone\n");
}

/* "1,2" -> {1, 2}; returns the count, or -1 on a bad list. */
static int
s_parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096 || n == max || (*end && *end != ','))
            return -1;
        out[n++] = (int) v;
        s = *end ? end + 1 : end;
    }
    return n;
}

/* A comma-separated list of up to 3 of f16, f32 and q8_0 into
 * a->kv_type; 1 ok, -1 bad. */
static int
s_parse_kv(const char *s, s_args_t *a)
{
    a->n_kv = 0;
    while (*s && a->n_kv < 3) {
        char name[8];
        size_t len = strcspn(s, ",");
        if (len >= sizeof name)
            return -1;
        memcpy(name, s, len);
        name[len] = '\0';
        if ((a->kv_type[a->n_kv++] = sq_kv_type_parse(name)) < 0)
            return -1;
        s += len;
        if (*s == ',' && s[1])
            s++;
    }
    return *s || a->n_kv == 0 ? -1 : 1;
}

/* 0 ok, 1 --help, 2 bad usage (message printed). */
static int
s_parse_args(int argc, char **argv, s_args_t *a)
{
    *a = (s_args_t){.n_threads = {1, 2}, .n_pools = 2, .kernels = 1, .repeat = 3, .n_kv = 1,
                    .o = {.n_prompt = 128, .n_gen = 32, .agg_prompt = 8,
                          .batches = {1, 4, 16}, .n_batches = 3,
                          .anchor_script = BENCH_ANCHOR_SCRIPT}};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int n = 0;
        if (strcmp(k, "--help") == 0)
            return 1;
        else if (strcmp(k, "--no-kernels") == 0)
            a->kernels = 0, n = 1;
        else if (strcmp(k, "--tp") == 0)
            a->tp = 1, n = 1;
        else if (!v)
            n = -1;
        else if (strcmp(k, "--threads") == 0)
            n = a->n_pools = s_parse_list(v, a->n_threads, S_MAX_POOLS);
        else if (strcmp(k, "--batch") == 0)
            n = a->o.n_batches = s_parse_list(v, a->o.batches, BENCH_MAX_BATCHES);
        else if (strcmp(k, "--repeat") == 0)
            n = s_parse_list(v, &a->repeat, 1);
        else if (strcmp(k, "--prompt-tokens") == 0)
            n = s_parse_list(v, &a->o.n_prompt, 1);
        else if (strcmp(k, "--gen-tokens") == 0)
            n = s_parse_list(v, &a->o.n_gen, 1);
        else if (strcmp(k, "--agg-prompt") == 0)
            n = s_parse_list(v, &a->o.agg_prompt, 1);
        else if (strcmp(k, "--model") == 0 && a->n_models < S_MAX_MODELS)
            a->models[a->n_models++] = v, n = 1;
        else if (strcmp(k, "--kv-type") == 0)
            n = s_parse_kv(v, a);
        else if (strcmp(k, "--llama-dir") == 0)
            a->o.llama_dir = v, n = 1;
        else if (strcmp(k, "--anchor-script") == 0)
            a->o.anchor_script = v, n = 1;
        else
            n = -1;
        if (n < 1) {
            fprintf(stderr, "shardq-bench-engine: bad argument '%s'%s%s\n", k, v ? " " : "",
                    v ? v : "");
            return 2;
        }
        i += strcmp(k, "--no-kernels") != 0 && strcmp(k, "--tp") != 0;
    }
    a->o.kv_type = a->kv_type[0];   /* the TP table's */
    return 0;
}

static void
s_header(const s_args_t *a)
{
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# shardq-bench-engine\n\n%s, %s %s, SIMD level %s, prompt %d tokens, decode %d "
           "steps, aggregate batches after %d-token prompts\n",
           date, u.sysname, u.machine, sq_cpu_simd_level(), a->o.n_prompt, a->o.n_gen,
           a->o.agg_prompt);
}

static const char *
s_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static double
s_ratio(double a, double b)
{
    return b > 0 ? a / b : 0.0;
}

static void
s_keep_best(bench_result_t *best, const bench_result_t *r)
{
    best->pp_tok_s = r->pp_tok_s > best->pp_tok_s ? r->pp_tok_s : best->pp_tok_s;
    best->tg_tok_s = r->tg_tok_s > best->tg_tok_s ? r->tg_tok_s : best->tg_tok_s;
    if (r->tg_cpu_ms > 0 && (best->tg_cpu_ms == 0 || r->tg_cpu_ms < best->tg_cpu_ms))
        best->tg_cpu_ms = r->tg_cpu_ms;
    for (int b = 0; b < BENCH_MAX_BATCHES; b++)
        if (r->agg_tok_s[b] > best->agg_tok_s[b])
            best->agg_tok_s[b] = r->agg_tok_s[b];
}

/* Best of a->repeat runs of shardq (mine, one entry per KV cache type)
 * and of llama.cpp (theirs, one entry per batch size), alternating so all
 * see the same machine. */
static int
s_measure(const s_args_t *a, const char *path, int t, bench_result_t mine[2],
          bench_result_t theirs[BENCH_MAX_BATCHES])
{
    int failed = 0;
    for (int rep = 0; rep < a->repeat; rep++) {
        bench_result_t r;
        for (int kv = 0; kv < a->n_kv; kv++) {
            bench_opts_t o = a->o;
            o.kv_type = a->kv_type[kv];
            failed |= bench_model_run(path, t, NULL, &o, &r) != 0;
            s_keep_best(&mine[kv], &r);
        }
        for (int b = 0; a->o.llama_dir && b < a->o.n_batches; b++) {
            if (b > 0 && a->o.batches[b] == 1)
                continue;
            memset(&r, 0, sizeof r);
            failed |= bench_anchor_run(path, t, a->o.batches[b], &a->o, &r) != 0;
            s_keep_best(&theirs[b], &r);
        }
    }
    return failed;
}

/* One model: shardq and llama.cpp at each thread count. */
static int
s_model_tables(const s_args_t *a, const char *path, const double *bw)
{
    int64_t bytes = bench_model_bytes_per_token(path);
    int failed = 0;
    printf("\n## %s (%.1f MB of weights read per decode step)\n\n", s_base(path), bytes / 1e6);
    printf("| threads | shardq KV | pp tok/s | llama.cpp pp | ratio | decode tok/s | llama.cpp decode "
           "| ratio | roofline tok/s | %% of roofline | decode CPU ms/token | llama.cpp CPU "
           "ms/token |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    bench_result_t mine[S_MAX_POOLS][2], theirs[S_MAX_POOLS][BENCH_MAX_BATCHES];
    memset(mine, 0, sizeof mine);
    memset(theirs, 0, sizeof theirs);
    for (int p = 0; p < a->n_pools; p++) {
        int t = a->n_threads[p];
        failed |= s_measure(a, path, t, mine[p], theirs[p]);
        double roof = bytes > 0 ? bw[p] * 1e9 / (double) bytes : 0.0;
        for (int kv = 0; kv < a->n_kv; kv++) {
            const bench_result_t *m = &mine[p][kv];
            printf("| %d | %s | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f %% | %.1f | "
                   "%.1f |\n", t, sq_kv_type_name(a->kv_type[kv]), m->pp_tok_s,
                   theirs[p][0].pp_tok_s,
                   s_ratio(m->pp_tok_s, theirs[p][0].pp_tok_s), m->tg_tok_s, theirs[p][0].tg_tok_s,
                   s_ratio(m->tg_tok_s, theirs[p][0].tg_tok_s), roof,
                   100.0 * s_ratio(m->tg_tok_s, roof), m->tg_cpu_ms, theirs[p][0].tg_cpu_ms);
        }
        fflush(stdout);
    }
    printf("\n| threads | shardq KV | batch | aggregate decode tok/s | vs batch 1 | llama.cpp | ratio "
           "|\n|---|---|---|---|---|---|---|\n");
    for (int p = 0; p < a->n_pools; p++) {
        for (int kv = 0; kv < a->n_kv; kv++) {
            const bench_result_t *m = &mine[p][kv];
            for (int b = 0; b < a->o.n_batches; b++) {
                double llama = a->o.batches[b] > 1 ? theirs[p][b].agg_tok_s[0] : theirs[p][0].tg_tok_s;
                printf("| %d | %s | %d | %.2f | %.2f | %.2f | %.2f |\n", a->n_threads[p],
                       sq_kv_type_name(a->kv_type[kv]), a->o.batches[b], m->agg_tok_s[b],
                       s_ratio(m->agg_tok_s[b], m->tg_tok_s), llama,
                       s_ratio(m->agg_tok_s[b], llama));
            }
        }
    }
    return failed;
}

/* Under mpirun: rank 0 alone (the other ranks wait), then all ranks. */
static int
s_tp_table(const s_args_t *a)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int t = a->n_threads[0], failed = 0;
    if (rank == 0)
        printf("\n## tensor parallel: %d ranks x %d thread(s) vs 1 rank x %d\n\n"
               "| model | TP=1 pp | TP=%d pp | speedup | TP=1 decode | TP=%d decode | speedup |\n"
               "|---|---|---|---|---|---|---|\n",
               size, t, t, size, size);
    for (int m = 0; m < a->n_models; m++) {
        bench_result_t one = {0}, all = {0}, r;
        for (int rep = 0; rep < a->repeat; rep++) {
            if (rank == 0) {
                failed |= bench_model_run(a->models[m], t, NULL, &a->o, &r) != 0;
                s_keep_best(&one, &r);
            }
            MPI_Barrier(MPI_COMM_WORLD);
            sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
            failed |= !comm || bench_model_run(a->models[m], t, comm, &a->o, &r) != 0;
            s_keep_best(&all, &r);
            sq_tp_comm_destroy(&comm);
        }
        if (rank == 0)
            printf("| %s | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f |\n", s_base(a->models[m]),
                   one.pp_tok_s, all.pp_tok_s, s_ratio(all.pp_tok_s, one.pp_tok_s), one.tg_tok_s,
                   all.tg_tok_s, s_ratio(all.tg_tok_s, one.tg_tok_s));
        fflush(stdout);
    }
    return failed;
}

int
main(int argc, char **argv)
{
    s_args_t a;
    int rc = s_parse_args(argc, argv, &a);
    if (rc) {
        s_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    if (a.tp) {
        MPI_Init(&argc, &argv);
        a.o.n_batches = 0;
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (rank == 0)
            s_header(&a);
        int failed = s_tp_table(&a);
        MPI_Finalize();
        return failed ? 1 : 0;
    }
    s_header(&a);
    sq_threadpool_t *pools[S_MAX_POOLS] = {0};
    double bw[S_MAX_POOLS] = {0};
    printf("\n## memory read bandwidth\n\n| threads | GB/s |\n|---|---|\n");
    for (int p = 0; p < a.n_pools; p++) {
        pools[p] = sq_threadpool_new(a.n_threads[p]);
        if (!pools[p]) {
            fprintf(stderr, "shardq-bench-engine: cannot start %d threads\n", a.n_threads[p]);
            return 1;
        }
        bw[p] = bench_read_bandwidth_gbs(pools[p]);
        printf("| %d | %.1f |\n", a.n_threads[p], bw[p]);
        fflush(stdout);
    }
    if (a.kernels) {
        bench_kernels_table(pools, a.n_threads, a.n_pools, bw);
        int one = 0;   /* the attention table runs on one thread */
        for (int p = 0; p < a.n_pools; p++)
            one = a.n_threads[p] == 1 ? p : one;
        bench_attention_table(bw[one]);
    }
    for (int p = 0; p < a.n_pools; p++)
        sq_threadpool_destroy(&pools[p]);
    int failed = 0;
    for (int m = 0; m < a.n_models; m++)
        failed |= s_model_tables(&a, a.models[m], bw);
    return failed ? 1 : 0;
}
