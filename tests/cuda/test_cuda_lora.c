/*  test_cuda_lora: LoRA adapters on the CUDA backend against the CPU
 *  reference (label gpu; built against the CPU emulator of tests/cuda/emu
 *  as test_cuda_emu_lora, label unit).
 *
 *    test_cuda_lora MODEL ADAPTER_A ADAPTER_B TOLERANCE
 *
 *  MODEL is loaded on both backends with the two adapters (ids 1 and 2).
 *  Three sequences, on the base model, A and B, run their 8-token prompts
 *  in one batch (24 tokens: the big-batch products), then decode
 *  together one token each a step (the GEMV products) for S_STEPS steps,
 *  then a fourth sequence on A decodes alone. Every logit row is within
 *  TOLERANCE of the CPU's (relative to the largest |logit|), the greedy
 *  tokens agree (or differ on a near tie), and the adapters change the
 *  logits by far more than the tolerance (they are applied at all).
 *  Exits 77 (skipped) when no CUDA device is usable.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_test_util.h"
#include "sq_backend_cuda.h"
#include "sq_error.h"
#include "sq_gguf.h"

enum { S_SEQS = 3, S_STEPS = 24 };

static const char *s_model, *s_adapter[2];
static float s_tol;

typedef struct {
    ct_side_t side;
    int id[2];
} s_side_t;

static int s_load(s_side_t *s, bool cuda)
{
    ct_side_t *c = &s->side;
    c->gguf = sq_gguf_open(s_model);
    c->comm = sq_tp_comm_local_new();
    c->be = !c->gguf ? NULL : cuda ? sq_backend_cuda_new(0) : sq_backend_cpu_new(1);
    /* an F32 KV cache, so the tolerance measures the adapters, not F16
     * rounding (test_cuda_engine covers the F16 cache) */
    sq_model_params_t p = {.n_ctx = 64, .n_slots = S_SEQS + 1, .kv_type = SQ_KV_F32};
    c->model = c->be && c->comm ? sq_model_new(c->gguf, c->be, c->comm, &p) : NULL;
    int rc = c->model ? 0 : -1;
    for (int a = 0; rc == 0 && a < 2; a++) {
        sq_gguf_t *g = sq_gguf_open(s_adapter[a]);
        rc = g ? sq_model_adapter_load(c->model, g, 0.0f, &s->id[a]) : -1;
        sq_gguf_destroy(&g);
    }
    if (rc)
        fprintf(stderr, "   load (%s): %s\n", cuda ? "cuda" : "cpu", sq_error_detail());
    return rc;
}

/* the worst difference of n rows, and whether each row's greedy token
 * agrees with the reference's (or differs on a near tie); next[r] = the
 * reference's token */
static float s_rows(const float *got, const float *want, int n, int n_vocab, bool *same,
                    int32_t *next)
{
    float worst = 0.0f;
    for (int r = 0; r < n; r++) {
        const float *g = got + (size_t)r * n_vocab, *w = want + (size_t)r * n_vocab;
        worst = fmaxf(worst, tm_max_rel_diff(g, w, n_vocab));
        next[r] = sq_sampler_argmax(w, n_vocab);
        const int32_t mine = sq_sampler_argmax(g, n_vocab);
        *same &= mine == next[r] || ct_near_tie(w, n_vocab, next[r], mine, s_tol);
    }
    return worst;
}

static void test_lora_against_cpu(void)
{
    s_side_t gpu = {0}, cpu = {0};
    SQ_REQUIRE(s_load(&gpu, true) == 0 && s_load(&cpu, false) == 0);
    SQ_REQUIRE(gpu.id[0] == cpu.id[0] && gpu.id[1] == cpu.id[1]);
    const int n_vocab = sq_model_hparams(gpu.side.model)->n_vocab;
    const int32_t adapter[S_SEQS + 1] = {0, gpu.id[0], gpu.id[1], gpu.id[0]};
    float *a = malloc((size_t)S_SEQS * CT_PROMPT * n_vocab * sizeof(float));
    float *b = malloc((size_t)S_SEQS * CT_PROMPT * n_vocab * sizeof(float));
    SQ_REQUIRE(a && b);
    /* the prompts, interleaved: one batch, every row's logits */
    sq_batch_entry_t batch[S_SEQS * CT_PROMPT];
    int n = 0;
    for (int i = 0; i < CT_PROMPT; i++)
        for (int s = 0; s < S_SEQS; s++) {
            batch[n] = tm_entry(s, (int32_t)((i * 37 + s * 11) % n_vocab + 1), i, true);
            batch[n++].adapter = adapter[s];
        }
    SQ_REQUIRE(sq_model_forward(gpu.side.model, batch, n, a) == 0);
    SQ_REQUIRE(sq_model_forward(cpu.side.model, batch, n, b) == 0);
    bool same = true;
    int32_t next[S_SEQS * CT_PROMPT];
    float worst = s_rows(a, b, n, n_vocab, &same, next);
    /* the adapters change the last prompt row of their sequences */
    float moved = fminf(tm_max_rel_diff(b + (size_t)(n - 3) * n_vocab,
                                        b + (size_t)(n - 2) * n_vocab, n_vocab),
                        tm_max_rel_diff(b + (size_t)(n - 3) * n_vocab,
                                        b + (size_t)(n - 1) * n_vocab, n_vocab));
    int32_t tok[S_SEQS + 1];
    for (int s = 0; s < S_SEQS; s++)
        tok[s] = next[n - S_SEQS + s];
    /* decode together, then a fourth sequence alone on A */
    for (int step = 0; step < S_STEPS; step++) {
        for (int s = 0; s < S_SEQS; s++) {
            batch[s] = tm_entry(s, tok[s], CT_PROMPT + step, true);
            batch[s].adapter = adapter[s];
        }
        SQ_REQUIRE(sq_model_forward(gpu.side.model, batch, S_SEQS, a) == 0);
        SQ_REQUIRE(sq_model_forward(cpu.side.model, batch, S_SEQS, b) == 0);
        worst = fmaxf(worst, s_rows(a, b, S_SEQS, n_vocab, &same, tok));
    }
    tok[S_SEQS] = 1;
    for (int step = 0; step < S_STEPS; step++) {
        batch[0] = tm_entry(S_SEQS, tok[S_SEQS], step, true);
        batch[0].adapter = adapter[S_SEQS];
        SQ_REQUIRE(sq_model_forward(gpu.side.model, batch, 1, a) == 0);
        SQ_REQUIRE(sq_model_forward(cpu.side.model, batch, 1, b) == 0);
        worst = fmaxf(worst, s_rows(a, b, 1, n_vocab, &same, &tok[S_SEQS]));
    }
    SQ_CHECK(worst <= s_tol);
    SQ_CHECK(same);
    SQ_CHECK(moved > 10.0f * s_tol);
    printf("cuda vs cpu with LoRA, %s: base + 2 adapters, a %d-token mixed prompt batch, %d mixed "
           "decode steps, %d alone: max relative logit difference %.3g (limit %.0e), tokens %s; "
           "the adapters move the logits by >= %.3g\n",
           strrchr(s_model, '/') ? strrchr(s_model, '/') + 1 : s_model, S_SEQS * CT_PROMPT,
           S_STEPS, S_STEPS, (double)worst, (double)s_tol, same ? "agree" : "DIFFER",
           (double)moved);
    free(a);
    free(b);
    ct_unload(&gpu.side);
    ct_unload(&cpu.side);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_cuda_lora MODEL ADAPTER_A ADAPTER_B TOLERANCE\n");
        return 2;
    }
    s_model = argv[1];
    s_adapter[0] = argv[2];
    s_adapter[1] = argv[3];
    s_tol = strtof(argv[4], NULL);
    char why[256];
    if (!sq_cuda_usable(why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;
    }
    SQ_RUN(test_lora_against_cpu);
    return sq_test_summary("cuda_lora");
}
