/*  test_model: the engine end to end on the bundled stories260K models.
 *
 *  - greedy from BOS reproduces the model's published sample;
 *  - stop conditions: max tokens, stop strings, BOS/EOS, context;
 *  - seeded sampling repeats;
 *  - continuous batching: 8 prompts joining at different steps, each at its
 *    own positions in its own slot, give the tokens and logits of each run
 *    alone;
 *  - the greedy output path (only the argmax of each row) agrees with the
 *    logits path;
 *  - Q8_0 weights packed for VNNI agree with the same weights unpacked;
 *  - the CPU backend's large buffers ask for 2 MiB pages, and its KV pages
 *    in chunks of 16 (the last one narrower) hold each sequence apart;
 *  - shapes that cannot be split and bad batch entries are refused.
 *  The Q8_0-against-F32 quality check is in test_model_quality.c.
 */
#define _POSIX_C_SOURCE 200809L   /* mkdtemp, setenv */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq_cpu_kernels.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_sampler.h"
#include "sq_test.h"
#include "test_model_util.h"

static char s_f32[512], s_q8[512];
/* a random model whose head_dim is 32, the Q8_0 KV cache's block (argv[2]) */
static const char *s_hd32;

static sq_engine_t *s_engine_kv(const char *path, int n_slots, int n_ctx, int kv_type)
{
    sq_engine_params_t p = {.model_path = path, .n_threads = 2, .n_slots = n_slots, .n_ctx = n_ctx,
                            .kv_type = kv_type};
    sq_engine_t *e = sq_engine_new(&p);
    if (!e)
        fprintf(stderr, "   load %s: %s\n", path, sq_error_detail());
    return e;
}

/* with the default F16 KV cache */
static sq_engine_t *s_engine(const char *path, int n_slots, int n_ctx)
{
    return s_engine_kv(path, n_slots, n_ctx, SQ_KV_F16);
}

static sq_gen_params_t s_greedy(int max_tokens)
{
    return (sq_gen_params_t){.max_tokens = max_tokens, .sampler = {.top_p = 1.0f}};
}

static void test_greedy_story(void)
{
    sq_engine_t *e = s_engine(s_f32, 1, 0);
    SQ_REQUIRE(e);
    sq_gen_params_t p = s_greedy(40);
    sq_gen_result_t r;
    SQ_REQUIRE(sq_engine_generate(e, "", 0, &p, &r) == 0);
    const char *want = "Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park.";
    fprintf(stderr, "   greedy: %s\n", r.text);
    SQ_CHECK(strncmp(r.text, want, strlen(want)) == 0);
    SQ_CHECK(r.n_prompt == 1 && r.prompt_ids[0] == sq_tokenizer_bos(sq_engine_tokenizer(e)));
    SQ_CHECK(r.n_ids == 40 && r.finish == SQ_FINISH_LENGTH);
    /* ids and text agree: decoding the ids after BOS gives the text */
    int32_t all[41];
    all[0] = r.prompt_ids[0];
    memcpy(all + 1, r.ids, 40 * sizeof *all);
    char *text;
    size_t len;
    SQ_CHECK(sq_tokenizer_decode(sq_engine_tokenizer(e), all, 41, &text, &len) == 0);
    SQ_CHECK(len == r.text_len && memcmp(text, r.text, len) == 0);
    free(text);
    sq_gen_result_free(&r);
    /* a prompt continues the same story */
    SQ_REQUIRE(sq_engine_generate(e, "Once upon a time", 16, &p, &r) == 0);
    SQ_CHECK(strncmp(r.text, ", there was a little girl named Lily.", 37) == 0);
    sq_gen_result_free(&r);
    sq_engine_destroy(&e);
}

static void test_stop_conditions(void)
{
    sq_engine_t *e = s_engine(s_f32, 1, 0);
    SQ_REQUIRE(e);
    sq_gen_result_t r;
    const char *stops[] = {"zebra", "Lily"};
    sq_gen_params_t p = s_greedy(100);
    p.stop = stops;
    p.n_stop = 2;
    SQ_REQUIRE(sq_engine_generate(e, "", 0, &p, &r) == 0);
    SQ_CHECK(strcmp(r.text, "Once upon a time, there was a little girl named ") == 0);
    SQ_CHECK(r.finish == SQ_FINISH_STOP);
    sq_gen_result_free(&r);
    /* a stop string spread over several tokens, ending inside one */
    const char *spread[] = {"ere was a lit"};
    p.stop = spread;
    p.n_stop = 1;
    SQ_REQUIRE(sq_engine_generate(e, "", 0, &p, &r) == 0);
    SQ_CHECK(strcmp(r.text, "Once upon a time, th") == 0);
    SQ_CHECK(r.finish == SQ_FINISH_STOP && r.n_ids == 9);   /* ... " a" " little" */
    fprintf(stderr, "   spread stop: \"%s\" after %zu tokens\n", r.text, r.n_ids);
    sq_gen_result_free(&r);
    /* the model ends a story with BOS: generation stops there, BOS not kept */
    p = s_greedy(0);
    SQ_REQUIRE(sq_engine_generate(e, "", 0, &p, &r) == 0);
    fprintf(stderr, "   story of %zu tokens, finish %s\n", r.n_ids, sq_finish_name(r.finish));
    SQ_CHECK(r.finish == SQ_FINISH_EOS);
    int32_t bos = sq_tokenizer_bos(sq_engine_tokenizer(e));
    int32_t eos = sq_tokenizer_eos(sq_engine_tokenizer(e));
    for (size_t i = 0; i < r.n_ids; i++)
        SQ_CHECK(r.ids[i] != bos && r.ids[i] != eos);
    size_t story = r.n_ids;
    sq_gen_result_free(&r);
    /* ignore_eos runs on past it, up to the context */
    p.ignore_eos = true;
    SQ_REQUIRE(sq_engine_generate(e, "", 0, &p, &r) == 0);
    SQ_CHECK(r.n_ids > story);
    SQ_CHECK(r.finish == SQ_FINISH_LENGTH);
    SQ_CHECK((int)(r.n_ids + r.n_prompt) == sq_model_n_ctx(sq_engine_model(e)));
    sq_gen_result_free(&r);
    sq_engine_destroy(&e);
}

/* A token that cannot be chosen (the sampler's SQ_SAMPLER_NOT_FINITE)
 * ends the sequence as failed, naming the position, and nothing joins
 * its text */
static void test_not_finite_token(void)
{
    sq_engine_t *e = s_engine(s_f32, 1, 0);
    SQ_REQUIRE(e);
    const sq_gen_params_t p = s_greedy(8);
    sq_sequence_t *seq = sq_sequence_new(sq_engine_tokenizer(e), "Once upon a time", 16, &p,
                                         sq_model_hparams(sq_engine_model(e))->n_vocab, 64);
    SQ_REQUIRE(seq);
    const char *why = NULL;
    SQ_CHECK(sq_sequence_error(seq, &why) == 0 && strcmp(why, "") == 0);
    SQ_CHECK(sq_sequence_accept_token(seq, 432) == 0 && !sq_sequence_done(seq));
    SQ_CHECK(sq_sequence_accept_token(seq, SQ_SAMPLER_NOT_FINITE) == 0);
    SQ_CHECK(sq_sequence_done(seq) && sq_sequence_error(seq, &why) == SQ_ENOTFINITE);
    SQ_CHECK(strcmp(why, "the logits for position 6 were not finite (NaN or infinite)") == 0);
    size_t n;
    sq_sequence_ids(seq, &n);
    SQ_CHECK(n == 1);
    sq_sequence_destroy(&seq);
    sq_engine_destroy(&e);
}

static void test_prompt_too_long(void)
{
    sq_engine_t *e = s_engine(s_f32, 1, 8);
    SQ_REQUIRE(e);
    sq_gen_params_t p = s_greedy(4);
    sq_gen_result_t r;
    const char *text = "Once upon a time there was a girl who liked long stories";
    SQ_CHECK(sq_engine_generate(e, text, strlen(text), &p, &r) == SQ_ETOOBIG);
    SQ_CHECK(strstr(sq_error_detail(), "context of 8") != NULL);
    SQ_CHECK(r.ids == NULL && r.text == NULL);
    /* a prompt that fits runs until the context is full */
    SQ_REQUIRE(sq_engine_generate(e, "Once", 4, &p, &r) == 0);
    SQ_CHECK(r.n_prompt + r.n_ids <= 8);
    sq_gen_result_free(&r);
    sq_engine_destroy(&e);
}

static void test_seeded_sampling(void)
{
    sq_engine_t *e = s_engine(s_q8, 1, 0);
    SQ_REQUIRE(e);
    sq_gen_params_t p = {.max_tokens = 48, .sampler = {.temperature = 1.0f, .top_p = 0.95f,
                                                        .top_k = 40, .seed = 7}};
    sq_gen_result_t a, b, c, g;
    SQ_REQUIRE(sq_engine_generate(e, "Tom", 3, &p, &a) == 0);
    SQ_REQUIRE(sq_engine_generate(e, "Tom", 3, &p, &b) == 0);
    p.sampler.seed = 8;
    SQ_REQUIRE(sq_engine_generate(e, "Tom", 3, &p, &c) == 0);
    fprintf(stderr, "   seed 7: %s\n   seed 8: %s\n", a.text, c.text);
    SQ_CHECK(a.n_ids == b.n_ids && memcmp(a.ids, b.ids, a.n_ids * sizeof *a.ids) == 0);
    SQ_CHECK(strcmp(a.text, b.text) == 0);
    SQ_CHECK(a.n_ids != c.n_ids || memcmp(a.ids, c.ids, a.n_ids * sizeof *a.ids) != 0);
    /* top_k = 1 leaves only the argmax: greedy whatever the seed */
    p.sampler.top_k = 1;
    sq_gen_params_t gp = s_greedy(48);
    sq_gen_result_t k1;
    SQ_REQUIRE(sq_engine_generate(e, "Tom", 3, &p, &k1) == 0);
    SQ_REQUIRE(sq_engine_generate(e, "Tom", 3, &gp, &g) == 0);
    SQ_CHECK(k1.n_ids == g.n_ids && memcmp(k1.ids, g.ids, g.n_ids * sizeof *g.ids) == 0);
    sq_gen_result_free(&a);
    sq_gen_result_free(&b);
    sq_gen_result_free(&c);
    sq_gen_result_free(&g);
    sq_gen_result_free(&k1);
    sq_engine_destroy(&e);
}

/* ---- continuous batching ---- */

#define S_N_SEQ 8
#define S_N_STEPS 12

static const char *const s_prompts[S_N_SEQ] = {
    "Once upon a time", "The dog", "Lily and Ben went to the park to play with",
    "One day, a little bird", "Sam", "The sun was hot and the children wanted",
    "Mom said", "There was a big red ball in the garden. Tim"};

typedef struct {
    int32_t *prompt;
    size_t n_prompt;
    int32_t toks[S_N_STEPS];
    float *logits;              /* (S_N_STEPS, n_vocab) */
} s_seq_t;

/* Each sequence alone in slot 0: prefill, then greedy steps. */
static int s_run_alone(sq_model_t *m, s_seq_t *s, int n_vocab)
{
    sq_batch_entry_t b[64];
    for (size_t i = 0; i < s->n_prompt; i++)
        b[i] = tm_entry(0, s->prompt[i], (int32_t)i, i + 1 == s->n_prompt);
    int rc = sq_model_forward(m, b, (int)s->n_prompt, s->logits);
    for (int k = 0; rc == 0 && k < S_N_STEPS; k++) {
        s->toks[k] = sq_sampler_argmax(s->logits + (size_t)k * n_vocab, n_vocab);
        if (k + 1 < S_N_STEPS) {
            sq_batch_entry_t e = tm_entry(0, s->toks[k], (int32_t)(s->n_prompt + k), true);
            rc = sq_model_forward(m, &e, 1, s->logits + (size_t)(k + 1) * n_vocab);
        }
    }
    return rc;
}

/* All together: sequence i joins (its whole prompt) at step i while the
 * earlier ones decode, each in slot i at its own position. */
static int s_run_batched(sq_model_t *m, s_seq_t *seqs, int n_vocab, float *out)
{
    int done[S_N_SEQ] = {0};
    for (int step = 0; step < S_N_SEQ + S_N_STEPS; step++) {
        sq_batch_entry_t b[S_N_SEQ * 64];
        int owner[S_N_SEQ * 64], n = 0, n_out = 0;
        for (int i = 0; i < S_N_SEQ; i++) {
            s_seq_t *s = &seqs[i];
            if (step == i) {
                for (size_t j = 0; j < s->n_prompt; j++) {
                    owner[n] = i;
                    b[n++] = tm_entry(i, s->prompt[j], (int32_t)j, j + 1 == s->n_prompt);
                }
            } else if (step > i && done[i] < S_N_STEPS) {
                int k = done[i];
                owner[n] = i;
                b[n++] = tm_entry(i, s->toks[k - 1], (int32_t)(s->n_prompt + k - 1), true);
            }
        }
        if (n == 0)
            break;
        int rc = sq_model_forward(m, b, n, out);
        if (rc)
            return rc;
        for (int t = 0; t < n; t++) {
            if (!b[t].want_logits)
                continue;
            s_seq_t *s = &seqs[owner[t]];
            int k = done[owner[t]]++;
            const float *lg = out + (size_t)n_out++ * n_vocab;
            /* batch invariance: the same bits as alone (every CPU kernel
             * computes a token's values in an order that does not depend
             * on the batch) */
            float d = tm_max_rel_diff(lg, s->logits + (size_t)k * n_vocab, n_vocab);
            SQ_CHECK(d == 0.0f);
            if (d != 0.0f)
                fprintf(stderr, "   seq %d step %d: relative difference %g\n", owner[t], k, d);
            SQ_CHECK(sq_sampler_argmax(lg, n_vocab) == s->toks[k]);
        }
    }
    for (int i = 0; i < S_N_SEQ; i++)
        SQ_CHECK(done[i] == S_N_STEPS);
    return 0;
}

static void s_batching_on(const char *path, int kv_type)
{
    sq_engine_t *alone = s_engine_kv(path, 1, 128, kv_type);
    sq_engine_t *batch = s_engine_kv(path, S_N_SEQ, 128, kv_type);
    SQ_REQUIRE(alone && batch);
    const sq_tokenizer_t *tok = sq_engine_tokenizer(alone);
    const int n_vocab = sq_model_hparams(sq_engine_model(alone))->n_vocab;
    s_seq_t seqs[S_N_SEQ];
    float *out = malloc((size_t)S_N_SEQ * n_vocab * sizeof(float));
    for (int i = 0; i < S_N_SEQ; i++) {
        SQ_REQUIRE(sq_tokenizer_encode(tok, s_prompts[i], strlen(s_prompts[i]), true,
                                       &seqs[i].prompt, &seqs[i].n_prompt) == 0);
        SQ_REQUIRE(seqs[i].n_prompt < 64);
        seqs[i].logits = malloc((size_t)S_N_STEPS * n_vocab * sizeof(float));
        SQ_REQUIRE(s_run_alone(sq_engine_model(alone), &seqs[i], n_vocab) == 0);
    }
    SQ_CHECK(s_run_batched(sq_engine_model(batch), seqs, n_vocab, out) == 0);
    for (int i = 0; i < S_N_SEQ; i++) {
        free(seqs[i].prompt);
        free(seqs[i].logits);
    }
    free(out);
    sq_engine_destroy(&alone);
    sq_engine_destroy(&batch);
}

static void test_batched_equals_alone_f32(void)
{
    s_batching_on(s_f32, SQ_KV_F16);
}

static void test_batched_equals_alone_q8(void)
{
    s_batching_on(s_q8, SQ_KV_F16);
}

/* A 40-token prompt in one call (its tokens share attention tiles and
 * matrix products) gives each position the same logits, bit for bit, as
 * feeding it one token per call. */
static void s_prompt_whole_vs_stepwise(const char *path, int kv_type)
{
    sq_engine_t *e1 = s_engine_kv(path, 1, 64, kv_type), *e2 = s_engine_kv(path, 1, 64, kv_type);
    SQ_REQUIRE(e1 && e2);
    sq_model_t *whole = sq_engine_model(e1), *step = sq_engine_model(e2);
    enum { N = 40 };
    const int n_vocab = sq_model_hparams(whole)->n_vocab;
    float *a = malloc((size_t)N * n_vocab * sizeof(float));
    float *b = malloc((size_t)N * n_vocab * sizeof(float));
    SQ_REQUIRE(a && b);
    sq_batch_entry_t batch[N];
    for (int i = 0; i < N; i++)
        batch[i] = tm_entry(0, i == 0 ? 1 : (int32_t)(3 + (i * 37) % (n_vocab - 3)), i, true);
    SQ_CHECK(sq_model_forward(whole, batch, N, a) == 0);
    for (int i = 0; i < N; i++)
        SQ_CHECK(sq_model_forward(step, &batch[i], 1, b + (size_t)i * n_vocab) == 0);
    SQ_CHECK(memcmp(a, b, (size_t)N * n_vocab * sizeof(float)) == 0);
    free(a);
    free(b);
    sq_engine_destroy(&e1);
    sq_engine_destroy(&e2);
}

static void test_prompt_whole_equals_stepwise(void)
{
    s_prompt_whole_vs_stepwise(s_f32, SQ_KV_F16);
    s_prompt_whole_vs_stepwise(s_q8, SQ_KV_F16);
    s_prompt_whole_vs_stepwise(s_q8, SQ_KV_F32);
    s_prompt_whole_vs_stepwise(s_hd32, SQ_KV_Q8_0);
}

/* SQ_MODEL_SLOTS_AUTO on the CPU under a (fake) memory cgroup leaving 40
 * MiB: fewer slots than the cap, each of 4,096 positions, within 90 % of
 * the room. */
/* A fake memory cgroup in dir (a mkdtemp template) with room bytes left
 * under its limit, made the engine's (SQ_CGROUP_ROOT); s_cgroup_drop
 * undoes both. */
static void s_cgroup_fake(char *dir, unsigned long long room)
{
    char path[64];
    SQ_REQUIRE(mkdtemp(dir) != NULL);
    const char *names[2] = {"memory.max", "memory.current"};
    const unsigned long long vals[2] = {(1ULL << 30) + room, 1ULL << 30};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *fp = fopen(path, "w");
        SQ_REQUIRE(fp);
        fprintf(fp, "%llu\n", vals[i]);
        fclose(fp);
    }
    setenv("SQ_CGROUP_ROOT", dir, 1);
}

static void s_cgroup_drop(const char *dir)
{
    char path[64];
    unsetenv("SQ_CGROUP_ROOT");
    snprintf(path, sizeof path, "%s/memory.max", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/memory.current", dir);
    unlink(path);
    rmdir(dir);
}

static void s_auto_slots_cgroup(void)
{
    char dir[] = "/tmp/sq-cgroup-XXXXXX";
    s_cgroup_fake(dir, 40ULL << 20);
    sq_engine_params_t p = {.model_path = s_f32, .n_threads = 1, .n_ctx = 4096,
                            .n_slots = SQ_MODEL_SLOTS_AUTO};
    sq_engine_t *e = sq_engine_new(&p);
    s_cgroup_drop(dir);
    SQ_REQUIRE(e);
    sq_model_t *m = sq_engine_model(e);
    const int slots = sq_model_n_slots(m);
    fprintf(stderr, "   auto slots under a cgroup with 40 MiB of room: %d (%zu bytes of cache)\n",
            slots, sq_model_kv_bytes(m));
    SQ_CHECK(slots >= 2 && slots < SQ_MODEL_SLOTS_AUTO_MAX);
    SQ_CHECK(sq_model_kv_bytes(m) <= (size_t)(40ULL << 20) / 10 * 9);
    sq_engine_destroy(&e);
}

/* Under a cgroup with 1 MiB of room, a context of 4,096 positions does
 * not fit: refused, naming the memory and what would help, a smaller
 * cache type only where the model has one (q8_0: heads of a multiple of
 * 32). */
static void s_auto_slots_no_room(const char *path, int kv_type, const char *hint, bool q8_hint)
{
    char dir[] = "/tmp/sq-cgroup-XXXXXX";
    s_cgroup_fake(dir, 1ULL << 20);
    sq_engine_params_t p = {.model_path = path, .n_threads = 1, .n_ctx = 4096,
                            .n_slots = SQ_MODEL_SLOTS_AUTO, .kv_type = kv_type};
    sq_engine_t *e = sq_engine_new(&p);
    s_cgroup_drop(dir);
    SQ_CHECK(e == NULL);
    const char *why = sq_error_detail();
    SQ_CHECK(strstr(why, "one sequence of 4096 positions") && strstr(why, "lower --ctx"));
    SQ_CHECK(strstr(why, hint) != NULL);
    SQ_CHECK((strstr(why, "q8_0") != NULL) == q8_hint);
    sq_engine_destroy(&e);
}

/* SQ_MODEL_SLOTS_AUTO on the CPU: the host's free memory holds far more
 * than the cap, so the cap; the last slot runs. Then under a cgroup. */
static void test_auto_slots_cpu(void)
{
    sq_engine_params_t p = {.model_path = s_f32, .n_threads = 1, .n_ctx = 128,
                            .n_slots = SQ_MODEL_SLOTS_AUTO};
    sq_engine_t *e = sq_engine_new(&p);
    SQ_REQUIRE(e);
    sq_model_t *m = sq_engine_model(e);
    SQ_CHECK(sq_model_n_slots(m) == SQ_MODEL_SLOTS_AUTO_MAX);
    float *logits = malloc((size_t)sq_model_hparams(m)->n_vocab * sizeof(float));
    const sq_batch_entry_t b = tm_entry(SQ_MODEL_SLOTS_AUTO_MAX - 1, 1, 0, true);
    SQ_CHECK(logits && sq_model_forward(m, &b, 1, logits) == 0);
    free(logits);
    sq_engine_destroy(&e);
    s_auto_slots_cgroup();
    s_auto_slots_no_room(s_f32, SQ_KV_F32, "or use --kv-type f16", false);
    s_auto_slots_no_room(s_f32, SQ_KV_F16, "lower --ctx", false);
    s_auto_slots_no_room(s_hd32, SQ_KV_F16, "or use --kv-type q8_0", true);
    s_auto_slots_no_room(s_hd32, SQ_KV_F32, "or use --kv-type f16 or q8_0", true);
}

static void test_batched_equals_alone_kv_f32(void)
{
    s_batching_on(s_q8, SQ_KV_F32);
}

static void test_batched_equals_alone_kv_q8_0(void)
{
    s_batching_on(s_hd32, SQ_KV_Q8_0);
}

/* Every prompt run alone on two models: the same greedy tokens (checked);
 * OUT *worst_p: the largest relative difference of their logits. */
static void s_max_logit_diff(sq_engine_t *ea, sq_engine_t *eb, float *worst_p)
{
    sq_model_t *ma = sq_engine_model(ea), *mb = sq_engine_model(eb);
    const int n_vocab = sq_model_hparams(ma)->n_vocab;
    float worst = 0.0f;
    for (int i = 0; i < S_N_SEQ; i++) {
        s_seq_t a = {0}, b = {0};
        SQ_REQUIRE(sq_tokenizer_encode(sq_engine_tokenizer(ea), s_prompts[i],
                                       strlen(s_prompts[i]), true, &a.prompt, &a.n_prompt) == 0);
        b.prompt = a.prompt;
        b.n_prompt = a.n_prompt;
        a.logits = malloc((size_t)S_N_STEPS * n_vocab * sizeof(float));
        b.logits = malloc((size_t)S_N_STEPS * n_vocab * sizeof(float));
        SQ_REQUIRE(a.logits && b.logits);
        SQ_CHECK(s_run_alone(ma, &a, n_vocab) == 0 && s_run_alone(mb, &b, n_vocab) == 0);
        SQ_CHECK(memcmp(a.toks, b.toks, sizeof a.toks) == 0);
        for (int k = 0; k < S_N_STEPS; k++) {
            const float d = tm_max_rel_diff(a.logits + (size_t)k * n_vocab,
                                            b.logits + (size_t)k * n_vocab, n_vocab);
            worst = d > worst ? d : worst;
        }
        free(a.prompt);
        free(a.logits);
        free(b.logits);
    }
    *worst_p = worst;
}

/* The F16 KV cache (the default) against F32: half the bytes, logits
 * within F16 rounding of the stored keys and values, the same greedy
 * tokens on every prompt. */
static void test_kv_f16_vs_f32(void)
{
    sq_engine_t *e16 = s_engine_kv(s_f32, 1, 128, SQ_KV_F16),
                *e32 = s_engine_kv(s_f32, 1, 128, SQ_KV_F32);
    SQ_REQUIRE(e16 && e32);
    sq_model_t *m16 = sq_engine_model(e16), *m32 = sq_engine_model(e32);
    SQ_CHECK(sq_model_kv_dtype(m16) == SQ_DTYPE_F16 && sq_model_kv_dtype(m32) == SQ_DTYPE_F32);
    SQ_CHECK(sq_model_kv_bytes(m16) > 0 && 2 * sq_model_kv_bytes(m16) == sq_model_kv_bytes(m32));
    float worst = 0.0f;
    s_max_logit_diff(e16, e32, &worst);
    fprintf(stderr, "   F16 KV vs F32: largest relative logit difference %g\n", worst);
    SQ_CHECK(worst > 0.0f && worst < 5e-3f);
    sq_engine_destroy(&e16);
    sq_engine_destroy(&e32);
}

/* The Q8_0 KV cache: refused, with the reason, for a model whose heads
 * are not whole blocks of 32 values; on one whose are, 34 bytes for every
 * 64 of the F16 cache, and logits within what rounding the stored keys and
 * values to 8 bits moves, against the F32 cache, position by position over
 * the same 96 tokens (the prompt path for the first 48, in one call, then
 * one token a call). */
static void test_kv_q8_0(void)
{
    SQ_CHECK(s_engine_kv(s_f32, 1, 64, SQ_KV_Q8_0) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "head_dim (8) is not a multiple of 32") != NULL);
    sq_engine_t *e8 = s_engine_kv(s_hd32, 1, 128, SQ_KV_Q8_0),
                *e16 = s_engine_kv(s_hd32, 1, 128, SQ_KV_F16),
                *e32 = s_engine_kv(s_hd32, 1, 128, SQ_KV_F32);
    SQ_REQUIRE(e8 && e16 && e32);
    sq_model_t *m8 = sq_engine_model(e8), *m16 = sq_engine_model(e16), *m32 = sq_engine_model(e32);
    SQ_CHECK(sq_model_kv_dtype(m8) == SQ_DTYPE_Q8_0 && !strcmp(sq_model_kv_type(m8), "q8_0"));
    SQ_CHECK(sq_model_kv_bytes(m8) > 0 &&
             64 * sq_model_kv_bytes(m8) == 34 * sq_model_kv_bytes(m16));
    enum { N = 96, PROMPT = 48 };
    const int n_vocab = sq_model_hparams(m8)->n_vocab;
    float *a = malloc((size_t)N * n_vocab * sizeof(float));
    float *b = malloc((size_t)N * n_vocab * sizeof(float));
    SQ_REQUIRE(a && b);
    sq_batch_entry_t toks[N];
    for (int i = 0; i < N; i++)
        toks[i] = tm_entry(0, i == 0 ? 1 : (int32_t)(3 + (i * 53) % (n_vocab - 3)), i, true);
    SQ_CHECK(sq_model_forward(m8, toks, PROMPT, a) == 0 &&
             sq_model_forward(m32, toks, PROMPT, b) == 0);
    for (int i = PROMPT; i < N; i++)
        SQ_CHECK(sq_model_forward(m8, &toks[i], 1, a + (size_t)i * n_vocab) == 0 &&
                 sq_model_forward(m32, &toks[i], 1, b + (size_t)i * n_vocab) == 0);
    float worst = 0.0f;
    for (int i = 0; i < N; i++) {
        const float d = tm_max_rel_diff(a + (size_t)i * n_vocab, b + (size_t)i * n_vocab, n_vocab);
        worst = d > worst ? d : worst;
    }
    fprintf(stderr, "   Q8_0 KV vs F32: largest relative logit difference %g\n", worst);
    SQ_CHECK(worst > 0.0f && worst < 3e-2f);
    free(a);
    free(b);
    sq_engine_destroy(&e8);
    sq_engine_destroy(&e16);
    sq_engine_destroy(&e32);
}

/* Q8_0 weights packed for VNNI (what the CPU backend does where the CPU
 * has it) against the same weights unpacked (SQ_CPU_PACK=0): only the
 * order of float sums differs, so the same greedy tokens, logits within
 * what a Q8_0 rounding of an activation moves (as mpi.tp2.stories_q8). */
static void test_packed_vs_unpacked(void)
{
    if (!sq_cpu_packs_q8_0()) {
        fprintf(stderr, "   this CPU (%s) has no packed Q8_0 kernel: the engine never packs; "
                "test_cpu_kernels checks the packed layout's portable kernel\n",
                sq_cpu_simd_level());
        return;
    }
    sq_engine_t *packed = s_engine(s_q8, 1, 128);
    SQ_REQUIRE(setenv("SQ_CPU_PACK", "0", 1) == 0);
    SQ_CHECK(!sq_cpu_packs_q8_0());
    sq_engine_t *plain = s_engine(s_q8, 1, 128);
    SQ_REQUIRE(unsetenv("SQ_CPU_PACK") == 0);
    SQ_REQUIRE(packed && plain);
    float worst = 0.0f;
    s_max_logit_diff(packed, plain, &worst);
    fprintf(stderr, "   Q8_0 packed (%s) vs unpacked: largest relative logit difference %g\n",
            sq_cpu_simd_level(), worst);
    SQ_CHECK(worst > 0.0f && worst < 2e-2f);   /* > 0: the two paths did run */
    sq_engine_destroy(&packed);
    sq_engine_destroy(&plain);
}

/* A slot that held a longer sequence starts over at position 0: what it
 * held before must not leak into the new sequence. */
static void test_slot_reuse(void)
{
    sq_engine_t *used = s_engine(s_f32, 2, 128), *fresh = s_engine(s_f32, 1, 128);
    SQ_REQUIRE(used && fresh);
    const int n_vocab = sq_model_hparams(sq_engine_model(used))->n_vocab;
    float *a = malloc((size_t)n_vocab * sizeof(float)), *b = malloc((size_t)n_vocab * sizeof(float));
    for (int pos = 0; pos < 100; pos++) {   /* fill slot 1 with another text */
        sq_batch_entry_t e = tm_entry(1, 300 + pos % 200, pos, false);
        SQ_REQUIRE(sq_model_forward(sq_engine_model(used), &e, 1, NULL) == 0);
    }
    float worst = 0.0f;
    for (int pos = 0; pos < 20; pos++) {
        sq_batch_entry_t e1 = tm_entry(1, pos ? 400 + pos : 1, pos, true);
        sq_batch_entry_t e0 = tm_entry(0, pos ? 400 + pos : 1, pos, true);
        SQ_REQUIRE(sq_model_forward(sq_engine_model(used), &e1, 1, a) == 0);
        SQ_REQUIRE(sq_model_forward(sq_engine_model(fresh), &e0, 1, b) == 0);
        worst = fmaxf(worst, tm_max_rel_diff(a, b, n_vocab));
    }
    SQ_CHECK(worst == 0.0f);
    free(a);
    free(b);
    sq_engine_destroy(&used);
    sq_engine_destroy(&fresh);
}

/* forward_argmax gives, for each want_logits row, the argmax of what
 * forward gives, across chunks (max_batch 3 cuts 8 entries into 3) */
static void test_argmax_matches_logits(void)
{
    sq_gguf_t *g = sq_gguf_open(s_q8);
    sq_backend_t *be = sq_backend_cpu_new(1);
    sq_tp_comm_t *comm = sq_tp_comm_local_new();
    sq_model_params_t p = {.n_ctx = 64, .n_slots = 4, .max_batch = 3};
    sq_model_t *m = g && be && comm ? sq_model_new(g, be, comm, &p) : NULL;
    SQ_REQUIRE(m);
    const int n_vocab = sq_model_hparams(m)->n_vocab;
    sq_batch_entry_t b[8];
    int n_want = 0;
    for (int i = 0; i < 8; i++) {
        b[i] = tm_entry(i % 4, i < 4 ? 1 : 100 + 37 * i, i / 4, i != 2 && i != 5);
        n_want += b[i].want_logits;
    }
    float *logits = malloc((size_t)n_want * (size_t)n_vocab * sizeof(float));
    int32_t tokens[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    SQ_REQUIRE(logits);
    SQ_REQUIRE(sq_model_forward(m, b, 8, logits) == 0);
    SQ_REQUIRE(sq_model_forward_argmax(m, b, 8, tokens) == 0);
    int same = 1, distinct = 0;
    for (int r = 0; r < n_want; r++) {
        same &= tokens[r] == sq_sampler_argmax(logits + (size_t)r * (size_t)n_vocab, n_vocab);
        distinct += r > 0 && tokens[r] != tokens[r - 1];
    }
    SQ_CHECK(same);
    SQ_CHECK(distinct > 0);          /* rows really differ: no row read twice */
    SQ_CHECK(tokens[n_want] == -1);  /* one token per wanted row, no more */
    free(logits);
    sq_model_destroy(&m);
    sq_tp_comm_destroy(&comm);
    sq_backend_destroy(&be);
    sq_gguf_destroy(&g);
}

/* ---- the CPU backend's memory ---- */

/* Whether the mapping in /proc/self/smaps that holds p is marked for huge
 * pages ("hg" in its VmFlags): 1 or 0, -1 when no mapping says. */
static int s_vm_huge(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[512];
    bool inside = false;
    int huge = -1;
    while (huge < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (inside && strncmp(line, "VmFlags:", 8) == 0)
            huge = strstr(line, " hg") != NULL;
    }
    fclose(f);
    return huge;
}

/* Buffers of 2 MiB and more (packed weights, each layer's K and V caches)
 * are 2 MiB aligned and marked for transparent huge pages ("hg" in the
 * mapping's VmFlags, as madvise(MADV_HUGEPAGE) leaves it); smaller ones
 * are 64-byte aligned and not marked. */
static void test_large_buffers_on_huge_pages(void)
{
    sq_backend_t *be = sq_backend_cpu_new(1);
    SQ_REQUIRE(be);
    const size_t mib = (size_t)1 << 20;
    char *big = be->ops->alloc(be, 5 * mib + 3);
    char *small = be->ops->alloc(be, 4096 + 8);
    SQ_REQUIRE(big && small);
    SQ_CHECK((uintptr_t)big % (2 * mib) == 0);
    SQ_CHECK((uintptr_t)small % 64 == 0);
    memset(big, 1, 5 * mib + 3);   /* all of it writable */
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
        printf("   no transparent huge pages in this kernel: VmFlags not checked\n");
    } else {
        SQ_CHECK(s_vm_huge(big) == 1);
        SQ_CHECK(s_vm_huge(small) == 0);
    }
    be->ops->free(be, big);
    be->ops->free(be, small);
    sq_backend_destroy(&be);
}

/* ---- refusals ---- */

/* A group of n that is only ever asked its rank and size: loading does no
 * collective, so this checks the split rules without starting ranks (the
 * real multi-rank runs are tests/mpi). */
static int s_fake_rank(const sq_tp_comm_t *c) { return 0; }
static int s_fake_size(const sq_tp_comm_t *c) { return *(const int *)c->ctx; }

static void s_expect_refused(const char *path, int n_ranks, const char *needle)
{
    sq_gguf_t *g = sq_gguf_open(path);
    sq_backend_t *be = sq_backend_cpu_new(1);
    SQ_REQUIRE(g && be);
    sq_tp_comm_t comm = {.rank = s_fake_rank, .size = s_fake_size, .ctx = &n_ranks};
    sq_model_t *m = sq_model_new(g, be, &comm, NULL);
    SQ_CHECK(m == NULL);
    SQ_CHECK(sq_error_code() == SQ_EUNSUPPORTED);
    SQ_CHECK(strstr(sq_error_detail(), needle) != NULL);
    fprintf(stderr, "   %d ranks: %s\n", n_ranks, sq_error_detail());
    sq_model_destroy(&m);
    sq_backend_destroy(&be);
    sq_gguf_destroy(&g);
}

/* ---- the paged KV cache ---- */

#define S_PAGED_STEPS 70

/* prompt then S_PAGED_STEPS greedy steps of slot in m, the batch of
 * each step holding one token of each of the n sequences in slots[]
 * (their positions stepping together): logits (n, steps, n_vocab) */
static int s_paged_run(sq_model_t *m, const int32_t *prompt, int n_prompt, const int *slots,
                       int n, float *logits, int n_vocab)
{
    sq_batch_entry_t b[2 * 64];
    int32_t tok[2];
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n_prompt; j++)
            b[k++] = tm_entry(slots[i], prompt[j], j, j + 1 == n_prompt);
    float *row = malloc((size_t)n * n_vocab * sizeof(float));
    int rc = sq_model_forward(m, b, k, row);
    for (int step = 0; rc == 0 && step < S_PAGED_STEPS; step++) {
        for (int i = 0; i < n; i++) {
            memcpy(logits + ((size_t)i * S_PAGED_STEPS + step) * n_vocab,
                   row + (size_t)i * n_vocab, (size_t)n_vocab * sizeof(float));
            tok[i] = sq_sampler_argmax(row + (size_t)i * n_vocab, n_vocab);
            b[i] = tm_entry(slots[i], tok[i], n_prompt + step, true);
        }
        if (step + 1 < S_PAGED_STEPS)
            rc = sq_model_forward(m, b, n, row);
    }
    free(row);
    return rc;
}

/* 3 slots of n_ctx positions in a pool of n_pages pages (F32 model) */
static sq_engine_params_t s_paged_params(int n_ctx, int n_pages)
{
    return (sq_engine_params_t){.model_path = s_f32, .n_threads = 2, .n_slots = 3,
                                .n_ctx = n_ctx, .n_kv_pages = n_pages};
}

/* Two sequences grow in step through a cache of 8 pages (shared by 3
 * slots of 256 positions, which would take 24 whole): their pages
 * interleave in the pool, and every logit equals the same sequence's run
 * alone in a whole-context cache, bit for bit. A third sequence then
 * finds the pool short when it crosses into its third page: SQ_ENOMEM,
 * naming the pages, with nothing run; once slot 0 is trimmed, it goes on. */
static void test_paged_cache(void)
{
    sq_engine_params_t p = s_paged_params(256, 8);
    sq_engine_t *paged = sq_engine_new(&p);
    sq_engine_t *whole = s_engine(s_f32, 1, 256);
    SQ_REQUIRE(paged && whole);
    sq_model_t *m = sq_engine_model(paged);
    SQ_CHECK(sq_model_kv_pages(m) == 8 && sq_model_kv_pages_free(m) == 8);
    /* 3 slots in the memory of one whole context */
    SQ_CHECK(sq_model_kv_bytes(m) == sq_model_kv_bytes(sq_engine_model(whole)));
    const int n_vocab = sq_model_hparams(m)->n_vocab;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    const char *text = "Once upon a time, there was a little dog who liked to run";
    SQ_REQUIRE(sq_tokenizer_encode(sq_engine_tokenizer(paged), text, strlen(text), true, &prompt,
                                   &n_prompt) == 0 && n_prompt < 32);
    const size_t per = (size_t)S_PAGED_STEPS * n_vocab;
    float *ref = malloc(per * sizeof(float)), *got = malloc(2 * per * sizeof(float));
    const int slot0 = 0, both[2] = {1, 2};
    SQ_REQUIRE(s_paged_run(sq_engine_model(whole), prompt, (int)n_prompt, &slot0, 1, ref,
                           n_vocab) == 0);
    SQ_REQUIRE(s_paged_run(m, prompt, (int)n_prompt, both, 2, got, n_vocab) == 0);
    for (int i = 0; i < 2; i++)
        SQ_CHECK(memcmp(got + i * per, ref, per * sizeof(float)) == 0);
    const int held = sq_kv_pages_for((int)n_prompt + S_PAGED_STEPS - 1);
    SQ_CHECK(held == 3 && sq_model_kv_pages_held(m, 1) == 3 && sq_model_kv_pages_held(m, 2) == 3);
    SQ_CHECK(sq_model_kv_pages_free(m) == 2);
    /* slot 0: positions 0..63 fit in the 2 free pages, 64 does not */
    sq_batch_entry_t b[64];
    for (int j = 0; j < 64; j++)
        b[j] = tm_entry(0, prompt[j % n_prompt], j, j == 63);
    SQ_CHECK(sq_model_forward(m, b, 64, got) == 0);
    b[0] = tm_entry(0, prompt[0], 64, true);
    SQ_CHECK(sq_model_forward(m, b, 1, got) == SQ_ENOMEM);
    SQ_CHECK(strstr(sq_error_detail(), "KV cache full: this pass needs 1 more pages of 32 "
                                       "positions, 0 are free of 8") != NULL);
    SQ_CHECK(sq_model_kv_pages_held(m, 0) == 2 && sq_model_kv_pages_free(m) == 0);
    sq_model_kv_trim(m, 1, 0);
    SQ_CHECK(sq_model_kv_pages_free(m) == 3);
    SQ_CHECK(sq_model_forward(m, b, 1, got) == 0);
    /* slot 1 was trimmed: it cannot go on at its next position */
    b[0] = tm_entry(1, prompt[0], (int)n_prompt + S_PAGED_STEPS - 1, true);
    SQ_CHECK(sq_model_forward(m, b, 1, got) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "slot 1 starts at position") != NULL);
    /* fewer pages than one context, or more than every slot's, are refused */
    p.n_kv_pages = 7;
    sq_engine_t *bad = sq_engine_new(&p);
    SQ_CHECK(bad == NULL && strstr(sq_error_detail(), "7 KV pages") != NULL);
    p.n_kv_pages = 25;
    SQ_CHECK((bad = sq_engine_new(&p)) == NULL && strstr(sq_error_detail(), "25 KV pages"));
    free(prompt);
    free(ref);
    free(got);
    sq_engine_destroy(&paged);
    sq_engine_destroy(&whole);
}

/* Sequence i of n: lengths[i] tokens of pattern pats[i] into slots[i],
 * the first lengths[i] - S_STEPS in pieces of S_PIECE (every sequence's
 * piece in one pass), then one token a pass, keeping each of those last
 * S_STEPS passes' logits of sequence i at out + (i * S_STEPS + step) *
 * n_vocab. */
enum { S_PIECE = 20, S_STEPS = 8 };
static int s_interleaved(sq_model_t *m, const int *slots, const int *pats, const int *lengths,
                         int n, int n_vocab, float *out)
{
    sq_batch_entry_t b[3 * S_PIECE];
    float *rows = malloc(3 * (size_t)n_vocab * sizeof(float));
    int rc = rows && n <= 3 ? 0 : -1, next[3] = {0, 0, 0};
    for (int k = -1; rc == 0 && k != 0;) {
        int step[3] = {-1, -1, -1};
        k = 0;
        for (int i = 0; i < n; i++) {
            const int prompt = lengths[i] - S_STEPS;
            int to = next[i] < prompt ? next[i] + S_PIECE : next[i] + 1;
            to = next[i] < prompt && to > prompt ? prompt : to > lengths[i] ? lengths[i] : to;
            for (; next[i] < to; next[i]++) {
                step[i] = next[i] >= prompt ? next[i] - prompt : -1;
                b[k++] = tm_entry(slots[i], 1 + (next[i] * 37 + pats[i] * 101) % (n_vocab - 1),
                                  next[i], step[i] >= 0);
            }
        }
        if (k > 0)
            rc = sq_model_forward(m, b, k, rows);
        for (int i = 0, w = 0; rc == 0 && i < n; i++)
            if (step[i] >= 0)
                memcpy(out + ((size_t)i * S_STEPS + (size_t)step[i]) * n_vocab,
                       rows + (size_t)w++ * n_vocab, (size_t)n_vocab * sizeof(float));
    }
    free(rows);
    return rc;
}

/* A pool of 41 pages, not a whole number of the CPU backend's chunks of
 * 16: three sequences fed in turn take all 41 pages between them,
 * interleaved through both whole chunks and the narrower last one, then
 * step together, one token a pass, 8 times; every step's logits equal
 * the same sequence's alone, bit for bit. A page placed over another (of
 * another head, or of another sequence) would show in a later read. */
static void test_paged_cache_chunks(void)
{
    sq_engine_params_t p = s_paged_params(512, 41);
    sq_engine_t *paged = sq_engine_new(&p);
    sq_engine_t *whole = s_engine(s_f32, 1, 512);
    SQ_REQUIRE(paged && whole);
    sq_model_t *m = sq_engine_model(paged), *alone = sq_engine_model(whole);
    const int n_vocab = sq_model_hparams(m)->n_vocab;
    const int slots[3] = {0, 1, 2}, lengths[3] = {470, 460, 340};
    const size_t per = (size_t)S_STEPS * n_vocab;
    float *got = malloc(3 * per * sizeof(float)), *ref = malloc(per * sizeof(float));
    SQ_REQUIRE(got && ref);
    SQ_REQUIRE(s_interleaved(m, slots, slots, lengths, 3, n_vocab, got) == 0);
    SQ_CHECK(sq_model_kv_pages_free(m) == 0);   /* 15 + 15 + 11 pages */
    for (int i = 0; i < 3; i++) {
        const int zero = 0;
        sq_model_kv_trim(alone, 0, 0);
        SQ_CHECK(s_interleaved(alone, &zero, &slots[i], &lengths[i], 1, n_vocab, ref) == 0);
        SQ_CHECK(memcmp(got + i * per, ref, per * sizeof(float)) == 0);
    }
    free(got);
    free(ref);
    sq_engine_destroy(&paged);
    sq_engine_destroy(&whole);
}

static void test_unsplittable_refused(void)
{
    s_expect_refused(s_f32, 3, "tensor blk.0.attn_q.weight: 8 attention heads");
    s_expect_refused(s_q8, 4, "tensor blk.0.attn_output.weight");
    s_expect_refused(s_f32, 16, "tensor blk.0.attn_q.weight");
}

static void test_bad_batch_refused(void)
{
    sq_engine_t *e = s_engine(s_f32, 2, 32);
    SQ_REQUIRE(e);
    sq_model_t *m = sq_engine_model(e);
    float logits[512];
    sq_batch_entry_t bad[] = {tm_entry(2, 1, 0, true), tm_entry(-1, 1, 0, true),
                              tm_entry(0, 1, 32, true), tm_entry(0, 512, 0, true),
                              tm_entry(0, -3, 0, true)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        SQ_CHECK(sq_model_forward(m, &bad[i], 1, logits) == SQ_EINVAL);
        SQ_CHECK(strstr(sq_error_detail(), "batch entry 0") != NULL);
    }
    sq_batch_entry_t ok = tm_entry(1, 1, 0, true);
    SQ_CHECK(sq_model_forward(m, &ok, 1, logits) == 0);
    /* a slot's positions must increase through the batch; slots interleave */
    sq_batch_entry_t order[] = {tm_entry(0, 1, 0, false), tm_entry(1, 1, 0, false),
                                tm_entry(0, 5, 1, false), tm_entry(0, 6, 1, true)};
    SQ_CHECK(sq_model_forward(m, order, 4, logits) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "batch entry 3: slot 0 position 1 after position 1") != NULL);
    order[3].pos = 2;
    SQ_CHECK(sq_model_forward(m, order, 4, logits) == 0);
    order[2].pos = 3;
    SQ_CHECK(sq_model_forward(m, order, 4, logits) == SQ_EINVAL);
    sq_engine_destroy(&e);
    sq_engine_params_t p = {.model_path = "/nonexistent/model.gguf"};
    SQ_CHECK(sq_engine_new(&p) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent/model.gguf") != NULL);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "models";
    snprintf(s_f32, sizeof s_f32, "%s/stories260K.gguf", dir);
    snprintf(s_q8, sizeof s_q8, "%s/stories260K-q8_0.gguf", dir);
    if (argc < 3) {
        fprintf(stderr, "usage: test_model MODELS_DIR HD32_MODEL\n");
        return 2;
    }
    s_hd32 = argv[2];
    SQ_RUN(test_greedy_story);
    SQ_RUN(test_stop_conditions);
    SQ_RUN(test_prompt_too_long);
    SQ_RUN(test_not_finite_token);
    SQ_RUN(test_seeded_sampling);
    SQ_RUN(test_batched_equals_alone_f32);
    SQ_RUN(test_batched_equals_alone_q8);
    SQ_RUN(test_batched_equals_alone_kv_f32);
    SQ_RUN(test_batched_equals_alone_kv_q8_0);
    SQ_RUN(test_prompt_whole_equals_stepwise);
    SQ_RUN(test_auto_slots_cpu);
    SQ_RUN(test_kv_f16_vs_f32);
    SQ_RUN(test_kv_q8_0);
    SQ_RUN(test_packed_vs_unpacked);
    SQ_RUN(test_slot_reuse);
    SQ_RUN(test_argmax_matches_logits);
    SQ_RUN(test_large_buffers_on_huge_pages);
    SQ_RUN(test_paged_cache);
    SQ_RUN(test_paged_cache_chunks);
    SQ_RUN(test_unsplittable_refused);
    SQ_RUN(test_bad_batch_refused);
    return sq_test_summary("model");
}
