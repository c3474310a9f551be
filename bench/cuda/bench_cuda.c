/*  shardq-bench-cuda: prefill and decode speed of the engine's model on a
 *  backend (CUDA by default), one table row per model file.
 *
 *    shardq-bench-cuda [--device cuda|cpu|auto] [--prompt N] [--gen N]
 *                      [--agg-prompt N] [--agg-steps N] [--batches B,B,...]
 *                      [--hbm-tbs X] [--lora ADAPTER] [--temperature T]
 *                      [--kv-type f16|f32|q8_0] MODEL...
 *
 *  prefill: one --prompt-token batch (after a warm-up), tokens/s.
 *  decode b1: --gen greedy steps of one sequence after the prompt, ms/token.
 *  aggregate bB: B sequences (slots) each after an --agg-prompt-token
 *  prompt (default 16; a long one makes the steps read a long KV cache),
 *  one token of each per step for --agg-steps steps, tokens/s over all.
 *  --kv-type: the KV cache's values (default f16, the engine's).
 *  Decode steps read back each sequence's greedy token every step
 *  (sq_model_forward_argmax), as the worker does for greedy sequences and
 *  as the transformers anchor (bench/cuda/hf_bench.py) does.
 *  roofline: weight bytes one token reads / --hbm-tbs (4.8 TB/s, H200) as
 *  ms/token, and that over the measured batch-1 ms/token.
 *  --lora: a LoRA adapter for every model given (shardq-model lora-random
 *  --base MODEL), applied unmerged to the even slots: the prompt and the
 *  batch-1 decode run on it, the aggregate batches half on it, half on
 *  the base model (the mixed-batch path).
 *  --temperature: decode steps draw their tokens at T (top_p 1) where the
 *  logits are (sq_model_forward_sample) instead of taking the argmax.
 *  SHARDQ_PROFILE=1: each row is followed by the backend's profile,
 *  where the device time of all its runs went, step by step (graphs are
 *  off then, so the row's own figures are slower than without it).
 *  Exit codes: 0 ok, 1 a model failed to load or run, 2 usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq_backend.h"
#include "sq_error.h"
#include "sq_gguf.h"
#include "sq_model.h"
#include "sq_rng.h"
#include "sq_sampler.h"
#include "sq_tp_comm.h"

enum { S_MAX_BATCHES = 8 };

typedef struct {
    const char *device, *lora;
    float temperature;          /* 0: greedy decode steps */
    int n_prompt, n_gen, agg_prompt, agg_steps;
    int kv_type;
    int batches[S_MAX_BATCHES], n_batches;
    double hbm_tbs;
} s_opts_t;

typedef struct {
    double pp_tok_s, b1_ms, agg_tok_s[S_MAX_BATCHES];
    double weight_bytes;
    const char *backend;
    char *profile;              /* the backend's, when it keeps one */
} s_row_t;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* bytes of weights one decode step reads: every tensor, but only one row
 * of the embedding unless it is also the output layer */
static double s_weight_bytes(const sq_gguf_t *g)
{
    const bool tied = sq_gguf_find_tensor(g, "output.weight") == NULL;
    double bytes = 0.0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        if (strcmp(t->name, "token_embd.weight") != 0 || tied)
            bytes += (double)t->size_bytes;
    }
    return bytes;
}

/* the adapter id slot's tokens use (0: the base model; see --lora) */
static int32_t s_adapter(int lora_id, int slot)
{
    return slot % 2 == 0 ? lora_id : 0;
}

/* n tokens of slot at positions pos0.., logits of the last into logits */
static int s_prefill(sq_model_t *m, sq_batch_entry_t *b, int slot, int n, int pos0, int lora_id,
                     float *logits)
{
    const int n_vocab = sq_model_hparams(m)->n_vocab;
    for (int i = 0; i < n; i++)
        b[i] = (sq_batch_entry_t){.slot = slot, .token = (int32_t)((i * 131 + slot * 7 + 1) % n_vocab),
                                  .pos = pos0 + i, .want_logits = i == n - 1,
                                  .adapter = s_adapter(lora_id, slot)};
    return sq_model_forward(m, b, n, logits);
}

/* one decode step of b[0..n): every row's token into tokens, the argmax
 * or (--temperature) a draw at T with a fixed seed's uniforms */
static int s_decode(sq_model_t *m, const s_opts_t *o, const sq_batch_entry_t *b, int n,
                    sq_rng_t *rng, sq_sample_row_t *rows, int32_t *tokens)
{
    if (o->temperature <= 0.0f)
        return sq_model_forward_argmax(m, b, n, tokens);
    for (int i = 0; i < n; i++)
        rows[i] = (sq_sample_row_t){o->temperature, 0, 1.0f, sq_rng_uniform(rng)};
    return sq_model_forward_sample(m, b, n, rows, tokens);
}

static int s_measure(sq_model_t *m, const s_opts_t *o, int lora_id, s_row_t *r)
{
    const int n_vocab = sq_model_hparams(m)->n_vocab;
    int max_b = 1;
    for (int i = 0; i < o->n_batches; i++)
        max_b = o->batches[i] > max_b ? o->batches[i] : max_b;
    size_t n_entries = (size_t)(o->n_prompt > max_b * o->agg_prompt ? o->n_prompt : max_b * o->agg_prompt);
    sq_batch_entry_t *b = malloc(n_entries * sizeof *b);
    float *logits = malloc((size_t)max_b * n_vocab * sizeof(float));
    int32_t *tokens = malloc((size_t)max_b * sizeof *tokens);
    sq_sample_row_t *rows = malloc((size_t)max_b * sizeof *rows);
    sq_rng_t rng;
    sq_rng_seed(&rng, 7);
    int rc = b && logits && tokens && rows ? 0 : SQ_FAIL(SQ_ENOMEM, "bench buffers");
    /* warm-up (cuBLAS handles, first-touch), then the timed prefill */
    if (rc == 0)
        rc = s_prefill(m, b, 0, o->n_prompt, 0, lora_id, logits);
    double t0 = s_now();
    if (rc == 0)
        rc = s_prefill(m, b, 0, o->n_prompt, 0, lora_id, logits);
    r->pp_tok_s = o->n_prompt / (s_now() - t0);
    tokens[0] = sq_sampler_argmax(logits, n_vocab);
    t0 = s_now();
    for (int k = 0; rc == 0 && k < o->n_gen; k++) {
        b[0] = (sq_batch_entry_t){.slot = 0, .token = tokens[0], .pos = o->n_prompt + k,
                                  .want_logits = true, .adapter = s_adapter(lora_id, 0)};
        rc = s_decode(m, o, b, 1, &rng, rows, tokens);
    }
    r->b1_ms = (s_now() - t0) * 1e3 / o->n_gen;
    for (int i = 0; rc == 0 && i < o->n_batches; i++) {
        const int B = o->batches[i];
        for (int s = 0; rc == 0 && s < B; s++)
            rc = s_prefill(m, b + (size_t)s * o->agg_prompt, s, o->agg_prompt, 0, lora_id, NULL);
        t0 = s_now();
        for (int k = 0; rc == 0 && k < o->agg_steps; k++) {
            for (int s = 0; s < B; s++)
                b[s] = (sq_batch_entry_t){.slot = s, .token = (int32_t)((s * 17 + k) % n_vocab),
                                          .pos = o->agg_prompt + k, .want_logits = true,
                                          .adapter = s_adapter(lora_id, s)};
            rc = s_decode(m, o, b, B, &rng, rows, tokens);
        }
        r->agg_tok_s[i] = (double)B * o->agg_steps / (s_now() - t0);
    }
    free(b);
    free(logits);
    free(tokens);
    free(rows);
    return rc;
}

static int s_run(const char *path, const s_opts_t *o, s_row_t *r)
{
    int max_b = 1;
    for (int i = 0; i < o->n_batches; i++)
        max_b = o->batches[i] > max_b ? o->batches[i] : max_b;
    sq_gguf_t *g = sq_gguf_open(path);
    sq_backend_t *be = g ? sq_backend_new(o->device, 1) : NULL;
    sq_tp_comm_t *comm = be ? sq_tp_comm_local_new() : NULL;
    const int n_ctx = o->n_prompt + o->n_gen + o->agg_prompt + o->agg_steps;
    int max_tok = o->n_prompt > o->agg_prompt ? o->n_prompt : o->agg_prompt;
    max_tok = max_tok > max_b ? max_tok : max_b;
    sq_model_params_t p = {.n_ctx = n_ctx, .n_slots = max_b, .max_batch = max_tok,
                           .kv_type = o->kv_type};
    sq_model_t *m = comm ? sq_model_new(g, be, comm, &p) : NULL;
    int rc = m ? 0 : -1, lora_id = 0;
    if (m && o->lora) {
        sq_gguf_t *ad = sq_gguf_open(o->lora);
        rc = ad ? sq_model_adapter_load(m, ad, 0.0f, &lora_id) : -1;
        sq_gguf_destroy(&ad);
    }
    if (rc == 0 && m) {
        r->weight_bytes = s_weight_bytes(g);
        r->backend = be->ops->name;
        rc = s_measure(m, o, lora_id, r);
        r->profile = be->ops->profile ? be->ops->profile(be) : NULL;
    }
    if (rc)
        fprintf(stderr, "shardq-bench-cuda: %s: %s\n", path, sq_error_detail());
    sq_model_destroy(&m);
    sq_tp_comm_destroy(&comm);
    sq_backend_destroy(&be);
    sq_gguf_destroy(&g);
    return rc;
}

static int s_usage(const char *why)
{
    fprintf(stderr, "shardq-bench-cuda: %s\nusage: shardq-bench-cuda [--device cuda|cpu|auto] "
                    "[--prompt N] [--gen N] [--agg-prompt N] [--agg-steps N] [--batches B,B,...] "
                    "[--hbm-tbs X] [--lora ADAPTER] [--temperature T] [--kv-type f16|f32|q8_0] "
                    "MODEL...\n", why);
    return 2;
}

static int s_parse_int(const char *v, int lo, int hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        return -1;
    *out = (int)x;
    return 0;
}

static int s_parse_batches(char *v, s_opts_t *o)
{
    o->n_batches = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (o->n_batches == S_MAX_BATCHES || s_parse_int(tok, 1, 4096, &o->batches[o->n_batches++]))
            return -1;
    return o->n_batches ? 0 : -1;
}

int main(int argc, char **argv)
{
    s_opts_t o = {.device = "cuda", .n_prompt = 512, .n_gen = 64, .agg_prompt = 16,
                  .agg_steps = 16,
                  .batches = {16, 64, 256}, .n_batches = 3, .hbm_tbs = 4.8};
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = !v;
        if (bad)
            ;
        else if (!strcmp(a, "--device"))
            o.device = v;
        else if (!strcmp(a, "--prompt"))
            bad = s_parse_int(v, 1, 1 << 16, &o.n_prompt);
        else if (!strcmp(a, "--gen"))
            bad = s_parse_int(v, 1, 1 << 16, &o.n_gen);
        else if (!strcmp(a, "--agg-steps"))
            bad = s_parse_int(v, 1, 1 << 16, &o.agg_steps);
        else if (!strcmp(a, "--agg-prompt"))
            bad = s_parse_int(v, 1, 1 << 16, &o.agg_prompt);
        else if (!strcmp(a, "--kv-type"))
            bad = (o.kv_type = sq_kv_type_parse(v)) < 0;
        else if (!strcmp(a, "--batches"))
            bad = s_parse_batches(argv[i + 1], &o);
        else if (!strcmp(a, "--lora"))
            o.lora = v;
        else if (!strcmp(a, "--temperature"))
            bad = !((o.temperature = strtof(v, NULL)) > 0.0f && o.temperature <= 100.0f);
        else if (!strcmp(a, "--hbm-tbs"))
            bad = (o.hbm_tbs = atof(v)) <= 0.0;
        else
            return s_usage("unknown option");
        if (bad)
            return s_usage("bad or missing option value");
    }
    if (i == argc)
        return s_usage("no model given");
    printf("KV cache %s; prompt %d, %d decode steps; aggregates after %d-token prompts, %d steps\n",
           sq_kv_type_name(o.kv_type), o.n_prompt, o.n_gen, o.agg_prompt, o.agg_steps);
    printf("%-28s %-5s %9s %11s %10s", "model", "dev", "weights", "prefill", "b1 decode");
    for (int k = 0; k < o.n_batches; k++)
        printf("   b%-3d tok/s", o.batches[k]);
    printf(" %11s %8s\n", "roofline", "b1/roof");
    printf("%-28s %-5s %9s %11s %10s", "", "", "MB", "tok/s", "ms/tok");
    for (int k = 0; k < o.n_batches; k++)
        printf(" %12s", "");
    printf(" %11s %8s\n", "ms/tok", "");
    int failed = 0;
    for (; i < argc; i++) {
        s_row_t r = {0};
        if (s_run(argv[i], &o, &r)) {
            failed = 1;
            continue;
        }
        const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        const double roof_ms = r.weight_bytes / (o.hbm_tbs * 1e12) * 1e3;
        printf("%-28s %-5s %9.1f %11.0f %10.3f", name, r.backend, r.weight_bytes / 1e6,
               r.pp_tok_s, r.b1_ms);
        for (int k = 0; k < o.n_batches; k++)
            printf(" %12.0f", r.agg_tok_s[k]);
        printf(" %11.4f %7.1f%%\n", roof_ms, 100.0 * roof_ms / r.b1_ms);
        if (r.profile)
            printf("%s\n", r.profile);
        free(r.profile);
        fflush(stdout);
    }
    return failed;
}
