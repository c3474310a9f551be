/*  shardq-worker: one rank of a worker group.
 *
 *  `mpirun -np N shardq-worker --model PATH --prompt TEXT ...` runs one
 *  generation with the model split N ways and prints it from rank 0
 *  (sq_oneshot). main only parses flags, owns MPI's lifetime and turns
 *  the outcome into an exit code: 0 ok, 1 runtime failure, 2 usage.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_args.h"
#include "sq_group.h"
#include "sq_log.h"
#include "sq_oneshot.h"
#include "sq_version.h"

#define S_MAX_STOP 16

static void s_usage(FILE *fp)
{
    fputs("usage: shardq-worker --model PATH --prompt TEXT [options]\n"
          "       shardq-worker --broker ENDPOINT --model PATH [options]  (see --broker --help)\n"
          "  under mpirun -np N the model is split N ways (tensor parallel); rank 0 prints\n"
          "options:\n"
          "  --model PATH        GGUF v3 llama model (F32, F16, Q8_0)\n"
          "  --prompt TEXT       generate a continuation of TEXT, print it, exit\n"
          "  --max-tokens N      most tokens to generate (default 128; 0: up to the context)\n"
          "  --temperature T     0 = greedy (default 0)\n"
          "  --top-k K           keep the K most likely tokens (default 0: all)\n"
          "  --top-p P           keep the smallest set with mass P (default 1; 0: the top token)\n"
          "  --seed S            sampling seed (default 0); same seed, same output\n"
          "  --stop TEXT         end the text before TEXT (repeatable, up to 16)\n"
          "  --ignore-eos        do not stop at end-of-sequence tokens\n"
          "  --threads N         CPU threads per rank (default 1)\n"
          "  --ctx N             context length (default: the model's, at most 4096)\n"
          "  --kv-type T         KV cache values: f16 (default), f32, or q8_0 (53 % of\n"
          "                      f16's memory; head_dim a multiple of 32)\n"
          "  --device D          cpu (default), cuda, or auto (cuda when a device is usable)\n"
          "  --json              print {\"prompt_ids\", \"ids\", \"text\", \"finish_reason\"}\n"
          "  --help, --version\n"
          "exit codes: 0 ok, 1 runtime failure, 2 usage error\n",
          fp);
}

/* the flags s_parse takes a value for, each named once */
enum { F_MODEL, F_PROMPT, F_DEVICE, F_MAX_TOKENS, F_THREADS, F_CTX, F_KV_TYPE, F_TOP_K,
       F_TEMPERATURE, F_TOP_P, F_SEED, F_STOP, F_N };
static const char *const s_value_flags[F_N] = {
    [F_MODEL] = "--model", [F_PROMPT] = "--prompt", [F_DEVICE] = "--device",
    [F_MAX_TOKENS] = "--max-tokens", [F_THREADS] = "--threads", [F_CTX] = "--ctx",
    [F_KV_TYPE] = "--kv-type", [F_TOP_K] = "--top-k", [F_TEMPERATURE] = "--temperature",
    [F_TOP_P] = "--top-p", [F_SEED] = "--seed", [F_STOP] = "--stop"};

/* Accepts "--flag value" and "--flag=value", as the broker mode does.
 * 0 ok, 1 --help/--version printed, -1 usage error (reported). */
static int s_parse(int argc, char **argv, sq_oneshot_opts_t *o, const char **stops)
{
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (sq_args_help_version(argv[i], s_usage))
            return 1;
        if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "--ignore-eos")) {
            *(argv[i][2] == 'j' ? &o->json : &o->gen.ignore_eos) = true;
            continue;
        }
        const int f = sq_args_flag_value(argc, argv, &i, s_value_flags, F_N, &v);
        const char *a = f >= 0 ? s_value_flags[f] : "";
        int rc = 0;
        switch (f) {
        case F_MODEL: o->model_path = v; break;
        case F_PROMPT: o->prompt = v; break;
        case F_DEVICE: rc = sq_args_device(a, v, &o->device); break;
        case F_MAX_TOKENS: rc = sq_args_int(a, v, 0, INT_MAX, &o->gen.max_tokens); break;
        case F_THREADS: rc = sq_args_int(a, v, 1, 1024, &o->n_threads); break;
        case F_CTX: rc = sq_args_int(a, v, 1, 1 << 24, &o->n_ctx); break;
        case F_KV_TYPE: rc = sq_args_kv_type(a, v, &o->kv_type); break;
        case F_TOP_K: rc = sq_args_int(a, v, 0, INT_MAX, &o->gen.sampler.top_k); break;
        case F_TEMPERATURE:
            rc = sq_args_float(a, v, 0.0, 100.0, &o->gen.sampler.temperature);
            break;
        case F_TOP_P: rc = sq_args_float(a, v, 0.0, 1.0, &o->gen.sampler.top_p); break;
        case F_SEED: rc = sq_args_u64(a, v, &o->gen.sampler.seed); break;
        case F_STOP:
            if (o->gen.n_stop < S_MAX_STOP) {
                stops[o->gen.n_stop++] = v;
                break;
            }
            fprintf(stderr, "shardq-worker: --stop: at most %d (see --help)\n", S_MAX_STOP);
            return -1;
        default: return -1; /* reported */
        }
        if (rc)
            return -1;
    }
    if (!o->model_path || !o->prompt) {
        fprintf(stderr, "shardq-worker: --model and --prompt are required (see --help)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* --broker: serve the queue as one rank of a worker group */
    if (sq_group_wanted(argc, argv))
        return sq_group_main(argc, argv);
    const char *stops[S_MAX_STOP];
    sq_oneshot_opts_t o = {.device = "cpu", .n_threads = 1,
                           .gen = {.max_tokens = 128, .sampler = {.top_p = 1.0f}, .stop = stops}};
    int rc = s_parse(argc, argv, &o, stops);
    if (rc)
        return rc > 0 ? 0 : 2;
    sq_log_init("worker");
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "shardq-worker: MPI_Init failed\n");
        return 1;
    }
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int code = sq_oneshot_run(&o);
    /* a failure on one rank must not leave the others blocked in a
     * collective: take the whole group down */
    if (code != 0 && size > 1)
        MPI_Abort(MPI_COMM_WORLD, code);
    MPI_Finalize();
    return code;
}
