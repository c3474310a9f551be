/*  bench_model: end-to-end prompt processing and decode speed of the
 *  shardq engine on one GGUF file, and of llama.cpp on the same file.
 *
 *  shardq side: sq_engine loads the model; sq_model_forward runs
 *  deterministic token ids (no tokenizer, no sampling), so both engines do
 *  the same forward passes:
 *    prefill: one batch of n_prompt consecutive tokens in slot 0;
 *    decode:  n_gen steps of one token each, logits every step;
 *    batch B: B slots, agg_prompt prompt tokens each (default 8), then
 *             n_gen steps that advance all B together (aggregate tokens/s
 *             = B * n_gen / time).
 *  llama.cpp side: llama_anchor.mjs under node, one process per call.
 */
#define _GNU_SOURCE
#include "bench_engine.h"
#include "sq_engine.h"
#include "sq_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deterministic ids in [3, n_vocab): no BOS/EOS/UNK. */
static int32_t
s_token(int64_t i, int n_vocab)
{
    return 3 + (int32_t) ((i * 7919 + 13) % (n_vocab - 3));
}

static int
s_forward(sq_model_t *model, sq_batch_entry_t *batch, int n, float *logits)
{
    int rc = sq_model_forward(model, batch, n, logits);
    if (rc)
        fprintf(stderr, "shardq-bench-engine: forward: %s (%s)\n", sq_strerror(rc),
                sq_error_detail());
    return rc;
}

/* Fill slots [0, n_slots) with n_tok tokens each from position 0; the last
 * of each wants logits. */
static int
s_prefill(sq_model_t *model, sq_batch_entry_t *batch, int n_slots, int n_tok, int n_vocab,
          float *logits)
{
    int n = 0;
    for (int s = 0; s < n_slots; s++)
        for (int p = 0; p < n_tok; p++, n++)
            batch[n] = (sq_batch_entry_t){.slot = s, .token = s_token(n, n_vocab), .pos = p,
                                          .want_logits = p == n_tok - 1};
    return s_forward(model, batch, n, logits);
}

/* n_gen steps advancing slots [0, n_slots) from position pos0. */
static int
s_decode(sq_model_t *model, sq_batch_entry_t *batch, int n_slots, int pos0, int n_gen,
         int n_vocab, float *logits)
{
    for (int g = 0; g < n_gen; g++) {
        for (int s = 0; s < n_slots; s++)
            batch[s] = (sq_batch_entry_t){.slot = s, .token = s_token(g * 31 + s, n_vocab),
                                          .pos = pos0 + g, .want_logits = true};
        int rc = s_forward(model, batch, n_slots, logits);
        if (rc)
            return rc;
    }
    return 0;
}

int64_t
bench_model_bytes_per_token(const char *path)
{
    sq_gguf_t *g = sq_gguf_open(path);
    if (!g)
        return 0;
    int tied = sq_gguf_find_tensor(g, "output.weight") == NULL;
    int64_t bytes = 0;
    for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        /* The embedding is one row per token unless it is also the output. */
        if (strcmp(t->name, "token_embd.weight") != 0 || tied)
            bytes += (int64_t) t->size_bytes;
    }
    sq_gguf_destroy(&g);
    return bytes;
}

int
bench_model_run(const char *path, int n_threads, sq_tp_comm_t *comm, const bench_opts_t *o,
                bench_result_t *r)
{
    int max_batch = 1;
    for (int b = 0; b < o->n_batches; b++)
        max_batch = o->batches[b] > max_batch ? o->batches[b] : max_batch;
    sq_engine_params_t ep = {.model_path = path, .n_threads = n_threads, .comm = comm,
                             .n_ctx = (o->n_prompt > o->agg_prompt ? o->n_prompt : o->agg_prompt) +
                                      o->n_gen + 16,
                             .n_slots = max_batch,
                             .kv_type = o->kv_type};
    sq_engine_t *engine = sq_engine_new(&ep);
    if (!engine) {
        fprintf(stderr, "shardq-bench-engine: %s: %s\n", path, sq_error_detail());
        return -1;
    }
    sq_model_t *model = sq_engine_model(engine);
    int n_vocab = sq_model_hparams(model)->n_vocab;
    int n_batch = o->n_prompt > max_batch * o->agg_prompt ? o->n_prompt : max_batch * o->agg_prompt;
    sq_batch_entry_t *batch = calloc((size_t) n_batch, sizeof *batch);
    float *logits = malloc(sizeof(float) * (size_t) max_batch * (size_t) n_vocab);
    int rc = !batch || !logits ? -1 : 0;
    memset(r, 0, sizeof *r);
    /* Warm-up: fault the mapped weights in. */
    rc = rc ? rc : s_prefill(model, batch, 1, 8, n_vocab, logits);
    double t0 = bench_now_s();
    rc = rc ? rc : s_prefill(model, batch, 1, o->n_prompt, n_vocab, logits);
    r->pp_tok_s = o->n_prompt / (bench_now_s() - t0);
    t0 = bench_now_s();
    double cpu0 = bench_cpu_s();
    rc = rc ? rc : s_decode(model, batch, 1, o->n_prompt, o->n_gen, n_vocab, logits);
    r->tg_tok_s = o->n_gen / (bench_now_s() - t0);
    r->tg_cpu_ms = (bench_cpu_s() - cpu0) * 1e3 / o->n_gen;
    for (int b = 0; b < o->n_batches && !rc; b++) {
        int nb = o->batches[b];
        rc = s_prefill(model, batch, nb, o->agg_prompt, n_vocab, logits);
        t0 = bench_now_s();
        rc = rc ? rc : s_decode(model, batch, nb, o->agg_prompt, o->n_gen, n_vocab, logits);
        r->agg_tok_s[b] = (double) nb * o->n_gen / (bench_now_s() - t0);
    }
    free(batch);
    free(logits);
    sq_engine_destroy(&engine);
    return rc;
}

/* The value of "key": in a JSON line, or 0. */
static double
s_json_num(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : 0.0;
}

int
bench_anchor_run(const char *path, int n_threads, int batch, const bench_opts_t *o,
                 bench_result_t *r)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "node '%s' --llama-dir '%s' --model '%s' --threads %d --prompt-tokens %d "
             "--gen-tokens %d --agg-prompt %d --batch %d",
             o->anchor_script, o->llama_dir, path, n_threads, o->n_prompt, o->n_gen,
             o->agg_prompt, batch);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024] = "";
    char *got = fgets(line, sizeof line, p);
    int status = pclose(p);
    if (!got || status != 0) {
        fprintf(stderr, "shardq-bench-engine: llama.cpp anchor failed: %s\n", cmd);
        return -1;
    }
    r->pp_tok_s = s_json_num(line, "pp_tok_s");
    r->tg_tok_s = s_json_num(line, "tg_tok_s");
    r->tg_cpu_ms = s_json_num(line, "tg_cpu_ms");
    r->agg_tok_s[0] = s_json_num(line, "agg_tok_s");
    return 0;
}
