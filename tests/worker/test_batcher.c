/*  Continuous batching equals running each sequence alone.
 *
 *  Run under mpirun with 1 or 2 ranks (tensor parallel). Eight different
 *  prompts are generated alone with sq_engine_generate (the reference),
 *  then together through sq_batcher with staggered joins (one sequence
 *  starts, the others join while it decodes, late ones take slots freed by
 *  finished ones) and several prefill budgets, so prompt chunks, decode
 *  tokens and slot reuse all mix in single steps. Greedy decoding must
 *  give byte-identical texts; so must seeded sampled decoding with the
 *  batch's tokens chosen on four threads.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_batcher.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_test.h"

#define N_PROMPTS 8

static const char *const s_prompts[N_PROMPTS] = {
    "Once upon a time",
    "Lily had a red ball",
    "The bank manager looked at the numbers and",
    "Tom",
    "One day, a little bird flew over the market. It saw",
    "Sue and Ben went to the park to play with their dog",
    "The quarterly report was late, so the fox",
    "A big tree stood next to the river. Every morning",
};

static char *s_alone[N_PROMPTS];
static size_t s_alone_len[N_PROMPTS];
static char *s_batched[N_PROMPTS];
static size_t s_batched_len[N_PROMPTS];
static sq_engine_t *s_engine;
static const char *s_model;
static int s_rank;

static bool s_sampled;   /* the sampled pass: temperature, top_p, a seed per prompt */
static int s_seed_of;    /* which prompt's seed s_params gives */

static sq_gen_params_t s_params(void)
{
    if (s_sampled)
        return (sq_gen_params_t){.max_tokens = 48,
                                 .sampler = {.temperature = 0.9f, .top_p = 0.95f,
                                             .seed = 1000 + (uint64_t)s_seed_of}};
    return (sq_gen_params_t){.max_tokens = 48, .sampler = {.temperature = 0, .top_p = 1}};
}

static void s_on_done(void *arg, sq_seq_t *seq, void *user, const sq_seq_times_t *t)
{
    (void)arg;
    size_t i = (size_t)(uintptr_t)user, len;
    const char *text = sq_seq_text(seq, &len);
    s_batched[i] = malloc(len + 1);
    memcpy(s_batched[i], text, len + 1);
    s_batched_len[i] = len;
    SQ_CHECK(t->admitted_ns <= t->prefilled_ns && t->prefilled_ns <= t->finished_ns);
    sq_seq_destroy(&seq);
}

/* A sequence of text's first len bytes on engine e's model and tokenizer */
static sq_seq_t *s_seq_on(sq_engine_t *e, const char *text, size_t len, const sq_gen_params_t *p)
{
    sq_model_t *m = sq_engine_model(e);
    return sq_seq_new(sq_engine_tokenizer(e), text, len, p, sq_model_hparams(m)->n_vocab,
                      sq_model_n_ctx(m));
}

static sq_seq_t *s_seq(int i)
{
    s_seed_of = i;
    sq_gen_params_t p = s_params();
    return s_seq_on(s_engine, s_prompts[i], strlen(s_prompts[i]), &p);
}

/* prompt's text under p run alone on s_engine (malloc'd; NULL, the
 * check failed, when it does not run) */
static char *s_alone_text(const char *prompt, const sq_gen_params_t *p)
{
    sq_gen_result_t r;
    const int rc = sq_engine_generate(s_engine, prompt, strlen(prompt), p, &r);
    SQ_CHECK(rc == 0);
    if (rc)
        return NULL;
    char *text = r.text;
    r.text = NULL;
    sq_gen_result_free(&r);
    return text;
}

static void test_reference_alone(void)
{
    for (int i = 0; i < N_PROMPTS; i++) {
        s_seed_of = i;
        sq_gen_params_t p = s_params();
        sq_gen_result_t r;
        SQ_REQUIRE(sq_engine_generate(s_engine, s_prompts[i], strlen(s_prompts[i]), &p, &r) == 0);
        if (s_rank == 0) {
            s_alone[i] = r.text;
            s_alone_len[i] = r.text_len;
            r.text = NULL;
            SQ_CHECK(s_alone_len[i] > 0);
        }
        sq_gen_result_free(&r);
    }
}

/* capacity 4 < 8 prompts: later prompts reuse slots of finished ones;
 * sampled rows chosen on sampling_threads threads */
static void s_run_batched_on(int capacity, int prefill_budget, int sampling_threads)
{
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(s_engine), MPI_COMM_WORLD, capacity,
                                     prefill_budget);
    SQ_REQUIRE(b);
    SQ_REQUIRE(s_rank != 0 || sq_batcher_set_sampling_threads(b, sampling_threads) == 0);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
        sq_batcher_destroy(&b);
        return;
    }
    memset(s_batched, 0, sizeof s_batched);
    int next = 0, steps = 0;
    SQ_CHECK(sq_batcher_admit(b, s_seq(next), (void *)(uintptr_t)next) >= 0);
    next++;
    while (next < N_PROMPTS || sq_batcher_n_active(b) > 0) {
        /* one newcomer every other step while there is room */
        if (next < N_PROMPTS && steps % 2 == 1 && sq_batcher_n_active(b) < capacity) {
            SQ_CHECK(sq_batcher_admit(b, s_seq(next), (void *)(uintptr_t)next) >= 0);
            next++;
        }
        SQ_REQUIRE(sq_batcher_step(b, s_on_done, NULL) == 0);
        SQ_REQUIRE(++steps < 10000);
    }
    SQ_CHECK(sq_batcher_stop_followers(b) == 0);
    for (int i = 0; i < N_PROMPTS; i++) {
        SQ_CHECK(s_batched[i] != NULL);
        if (!s_batched[i])
            continue;
        if (s_batched_len[i] != s_alone_len[i] || memcmp(s_batched[i], s_alone[i], s_alone_len[i]))
            fprintf(stderr, "prompt %d (capacity %d, budget %d):\n  alone:   %s\n  batched: %s\n",
                    i, capacity, prefill_budget, s_alone[i], s_batched[i]);
        SQ_CHECK(s_batched_len[i] == s_alone_len[i] &&
                 memcmp(s_batched[i], s_alone[i], s_alone_len[i]) == 0);
        free(s_batched[i]);
        s_batched[i] = NULL;
    }
    sq_batcher_destroy(&b);
}

static void s_run_batched(int capacity, int prefill_budget)
{
    s_run_batched_on(capacity, prefill_budget, 1);
}

static void test_batched_equals_alone_small_chunks(void) { s_run_batched(4, 3); }
static void test_batched_equals_alone_whole_prompts(void) { s_run_batched(8, 256); }
static void test_batched_equals_alone_one_token_chunks(void) { s_run_batched(8, 1); }

/* Sampled decoding (temperature 0.9, top_p 0.95, a seed per prompt):
 * alone, then batched with the rows' tokens chosen on four threads; each
 * sequence's own generator makes the texts identical */
static void test_sampled_batched_equals_alone(void)
{
    s_sampled = true;
    for (int i = 0; i < N_PROMPTS; i++)
        free(s_alone[i]);
    test_reference_alone();
    s_run_batched_on(8, 16, 4);
    s_sampled = false;
}

/* got[i] (taken and cleared) equals want[i] for each of n prompts; a
 * difference is printed, the run labelled how */
static void s_expect_texts(char **got, char *const *want, int n, const char *how)
{
    for (int i = 0; i < n; i++) {
        SQ_CHECK(got[i] && strcmp(got[i], want[i]) == 0);
        if (got[i] && strcmp(got[i], want[i]) != 0)
            fprintf(stderr, "prompt %d:\n  alone: %s\n  %s: %s\n", i, want[i], how, got[i]);
        free(got[i]);
        got[i] = NULL;
    }
}

/* Prefix reuse: six prompts that share a long instruction, run two at a
 * time, so each later one takes a slot a finished one left and skips the
 * shared part (sq_batcher_reused_tokens counts it); every text equals the
 * prompt's run alone. Then with reuse off: nothing reused, the same texts. */
#define N_SHARED 6
static const char *const s_endings[N_SHARED] = {
    "the rates", "the fox", "Lily", "the market was", "a big tree", "the bank"};
static char *s_shared_out[N_SHARED];
static size_t s_shared_cached[N_SHARED];   /* each one's prompt tokens from the cache */

static void s_shared_done(void *arg, sq_seq_t *seq, void *user, const sq_seq_times_t *t)
{
    (void)arg, (void)t;
    size_t len;
    const char *text = sq_seq_text(seq, &len);
    s_shared_out[(uintptr_t)user] = strndup(text, len);
    s_shared_cached[(uintptr_t)user] = sq_seq_n_cached(seq);
    sq_seq_destroy(&seq);
}

static void s_run_shared(char prompts[N_SHARED][256], bool reuse, long *reused)
{
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(s_engine), MPI_COMM_WORLD, 2, 16);
    SQ_REQUIRE(b);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
        sq_batcher_destroy(&b);
        return;
    }
    sq_batcher_set_prefix_reuse(b, reuse);
    sq_gen_params_t p = {.max_tokens = 24, .sampler = {.temperature = 0, .top_p = 1}};
    int next = 0, steps = 0;
    while (next < N_SHARED || sq_batcher_n_active(b) > 0) {
        while (next < N_SHARED && sq_batcher_n_active(b) < 2) {
            sq_seq_t *s = s_seq_on(s_engine, prompts[next], strlen(prompts[next]), &p);
            SQ_REQUIRE(s && sq_batcher_admit(b, s, (void *)(uintptr_t)next) >= 0);
            next++;
        }
        SQ_REQUIRE(sq_batcher_step(b, s_shared_done, NULL) == 0);
        SQ_REQUIRE(++steps < 10000);
    }
    SQ_CHECK(sq_batcher_stop_followers(b) == 0);
    *reused = sq_batcher_reused_tokens(b);
    sq_batcher_destroy(&b);
}

static void test_prefix_reuse(void)
{
    static char prompts[N_SHARED][256];
    char *alone[N_SHARED] = {0};
    for (int i = 0; i < N_SHARED; i++) {
        snprintf(prompts[i], sizeof prompts[i],
                 "The risk committee met on Monday to look at the bond book. The analyst said "
                 "that %s", s_endings[i]);
        sq_gen_params_t p = {.max_tokens = 24, .sampler = {.temperature = 0, .top_p = 1}};
        alone[i] = s_alone_text(prompts[i], &p);
    }
    for (int pass = 0; pass < 2; pass++) {
        long reused = 0;
        s_run_shared(prompts, pass == 0, &reused);
        if (s_rank != 0)
            continue;
        /* the four later prompts each find the ~20-token instruction cached */
        printf("prefix reuse %s: %ld prompt tokens not prefilled again\n", pass ? "off" : "on",
               reused);
        SQ_CHECK(pass == 0 ? reused >= 4 * 15 : reused == 0);
        s_expect_texts(s_shared_out, alone, N_SHARED, "batched");
    }
    for (int i = 0; i < N_SHARED; i++)
        free(alone[i]);
}

/* The paged KV cache: 8 slots share 16 pages (one whole context of the
 * model's 512 positions). Each prompt takes one page, so all 8 are
 * admitted; as they grow past 64 positions (3 pages each) the pool runs
 * short and the latest admitted are preempted (their pages go back on
 * every rank alike, or a follower's pass would find its pool short),
 * then run their context again and go on. Every text equals the prompt's
 * run alone, bit for bit: recomputing a context gives the rows it had. */
static void test_paged_preemption(void)
{
    sq_gen_params_t p = {.max_tokens = 100, .sampler = {.temperature = 0, .top_p = 1}};
    char *alone[N_PROMPTS] = {0};
    for (int i = 0; i < N_PROMPTS; i++) {
        alone[i] = s_alone_text(s_prompts[i], &p);
    }
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    sq_engine_params_t ep = {.model_path = s_model, .n_threads = 1, .n_slots = 8, .n_ctx = 512,
                             .n_kv_pages = 16, .comm = comm};
    sq_engine_t *e = sq_engine_new(&ep);
    SQ_REQUIRE(e);
    sq_model_t *m = sq_engine_model(e);
    sq_batcher_t *b = sq_batcher_new(m, MPI_COMM_WORLD, 8, 32);
    SQ_REQUIRE(b);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
    } else {
        memset(s_batched, 0, sizeof s_batched);
        int next = 0, steps = 0, waits = 0;
        while (next < N_PROMPTS || sq_batcher_n_active(b) > 0) {
            while (next < N_PROMPTS) {
                sq_seq_t *seq = s_seq_on(e, s_prompts[next], strlen(s_prompts[next]), &p);
                SQ_REQUIRE(seq);
                const int rc = sq_batcher_admit(b, seq, (void *)(uintptr_t)next);
                if (rc == SQ_EAGAIN) {
                    SQ_CHECK(sq_batcher_n_active(b) > 0);   /* with none running it fits */
                    sq_seq_destroy(&seq);
                    waits++;
                    break;
                }
                SQ_REQUIRE(rc >= 0);
                next++;
            }
            SQ_REQUIRE(sq_batcher_step(b, s_on_done, NULL) == 0);
            SQ_REQUIRE(++steps < 10000);
        }
        SQ_CHECK(sq_batcher_stop_followers(b) == 0);
        sq_batcher_kv_t kv;
        sq_batcher_kv_stats(b, &kv);
        printf("paged cache: %ld preemptions, %d admissions waited\n", kv.preemptions, waits);
        SQ_CHECK(kv.preemptions > 0 && kv.pages == 16);
        /* all done: what the slots still hold is cache, none of it in use */
        SQ_CHECK(kv.in_use == 0 && kv.free < 16);
        int held = 0;
        for (int i = 0; i < 8; i++)
            held += sq_model_kv_pages_held(m, i);
        SQ_CHECK(held + sq_model_kv_pages_free(m) == 16);
        s_expect_texts(s_batched, alone, N_PROMPTS, "paged");
    }
    for (int i = 0; i < N_PROMPTS; i++)
        free(alone[i]);
    sq_batcher_destroy(&b);
    sq_engine_destroy(&e);
    sq_tp_comm_destroy(&comm);
}

/* Shared prefix pages: five prompts arrive while a sixth with the same
 * ~100-token instruction runs. Each takes the instruction's whole pages
 * from the running sequence's cache (no copy: the slots share them) and
 * prefills only the rest; the pages in use are fewer than the slots hold
 * between them. Every text equals the prompt's run alone. */
/* Rank 0: step until every sequence has finished (done takes them) */
static void s_run_out(sq_batcher_t *b, sq_batcher_done_fn *done)
{
    int steps = 0;
    while (sq_batcher_n_active(b) > 0) {
        SQ_REQUIRE(sq_batcher_step(b, done, NULL) == 0);
        SQ_REQUIRE(++steps < 10000);
    }
}

/* The prompts with a ~100-token instruction and each one's text alone */
static void s_long_shared(char prompts[N_SHARED][512], char *alone[N_SHARED],
                          const sq_gen_params_t *p)
{
    for (int i = 0; i < N_SHARED; i++) {
        snprintf(prompts[i], sizeof prompts[i],
                 "The risk committee met on Monday to look at the bond book. The analyst said "
                 "that the rates had gone up again, and the fox in the market was very sad. The "
                 "bank manager looked at the numbers for a long time and then said that %s",
                 s_endings[i]);
        alone[i] = s_alone_text(prompts[i], p);
    }
}

static void test_shared_prefix_pages(void)
{
    static char prompts[N_SHARED][512];
    char *alone[N_SHARED] = {0};
    sq_gen_params_t p = {.max_tokens = 24, .sampler = {.temperature = 0, .top_p = 1}};
    s_long_shared(prompts, alone, &p);
    /* the instruction's first 100 bytes alone: the last phase below */
    sq_gen_result_t cut_alone;
    SQ_REQUIRE(sq_engine_generate(s_engine, prompts[0], 100, &p, &cut_alone) == 0);
    sq_model_t *m = sq_engine_model(s_engine);
    sq_batcher_t *b = sq_batcher_new(m, MPI_COMM_WORLD, 8, 256);
    SQ_REQUIRE(b);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
    } else {
        sq_seq_t *first = s_seq_on(s_engine, prompts[0], strlen(prompts[0]), &p);
        int admitted[N_SHARED];
        SQ_REQUIRE(first && (admitted[0] = sq_batcher_admit(b, first, (void *)(uintptr_t)0)) >= 0);
        SQ_REQUIRE(sq_batcher_step(b, s_shared_done, NULL) == 0);   /* its prompt, whole */
        for (int i = 1; i < N_SHARED; i++) {
            sq_seq_t *seq = s_seq_on(s_engine, prompts[i], strlen(prompts[i]), &p);
            SQ_REQUIRE(seq && (admitted[i] = sq_batcher_admit(b, seq, (void *)(uintptr_t)i)) >= 0);
        }
        /* the six hold the first one's pages, and the five its first 3 of
         * them again: the pages in use count each once */
        int admitted_held = 0;
        for (int i = 0; i < N_SHARED; i++)
            admitted_held += sq_model_kv_pages_held(m, admitted[i]);
        sq_batcher_kv_t kv;
        sq_batcher_kv_stats(b, &kv);
        SQ_CHECK(kv.in_use == admitted_held - 5 * 3);
        SQ_CHECK(kv.in_use == sq_model_kv_pages_held(m, admitted[0]));
        int held = 0;
        for (int i = 0; i < 8; i++)
            held += sq_model_kv_pages_held(m, i);
        const int in_use = sq_model_kv_pages(m) - sq_model_kv_pages_free(m);
        const long reused = sq_batcher_reused_tokens(b);
        printf("shared prefix pages: %ld prompt tokens not prefilled, %d pages held by the "
               "slots, %d in use\n", reused, held, in_use);
        SQ_CHECK(reused >= 5 * 3 * SQ_KV_PAGE);
        SQ_CHECK(held >= in_use + 5 * 3);   /* (the slots' pages from earlier tests on both sides) */
        s_run_out(b, s_shared_done);
        s_expect_texts(s_shared_out, alone, N_SHARED, "shared");
        /* a prompt that is the instruction's start: every slot's cache
         * holds it, but it ends inside a shared page, which the newcomer
         * may not write into: it starts at that page's first position */
        sq_seq_t *cut = s_seq_on(s_engine, prompts[0], 100, &p);
        SQ_REQUIRE(cut);
        const int n_cut = (int)sq_seq_n_prompt(cut);
        printf("a %d-token prompt ending inside a shared page\n", n_cut);
        SQ_REQUIRE(n_cut > SQ_KV_PAGE + 1 && n_cut < 2 * SQ_KV_PAGE);
        const long before = sq_batcher_reused_tokens(b);
        SQ_REQUIRE(sq_batcher_admit(b, cut, (void *)(uintptr_t)0) >= 0);
        SQ_CHECK(sq_batcher_reused_tokens(b) - before == SQ_KV_PAGE);
        s_run_out(b, s_shared_done);
        SQ_CHECK(sq_batcher_stop_followers(b) == 0);
        SQ_CHECK(s_shared_out[0] && strcmp(s_shared_out[0], cut_alone.text) == 0);
        free(s_shared_out[0]);
        s_shared_out[0] = NULL;
    }
    sq_gen_result_free(&cut_alone);
    for (int i = 0; i < N_SHARED; i++)
        free(alone[i]);
    sq_batcher_destroy(&b);
}

/* A wave of six prompts with the ~100-token instruction, admitted at
 * once before anything is stored (a batch job's first tasks): the five
 * later ones wait for the first one's prefill to store the instruction's
 * whole pages, then take them and prefill only the rest. Then the same
 * wave with the first one cancelled at once: the others stop waiting and
 * prefill the instruction themselves. Every text equals its run alone. */
static void test_first_wave_shares(void)
{
    static char prompts[N_SHARED][512];
    char *alone[N_SHARED] = {0};
    sq_gen_params_t p = {.max_tokens = 24, .sampler = {.temperature = 0, .top_p = 1}};
    s_long_shared(prompts, alone, &p);
    for (int cancel = 0; cancel < 2; cancel++) {
        /* a new batcher knows no cached rows: nothing is stored */
        sq_batcher_t *b = sq_batcher_new(sq_engine_model(s_engine), MPI_COMM_WORLD, 8, 256);
        SQ_REQUIRE(b);
        if (s_rank != 0) {
            SQ_CHECK(sq_batcher_follow(b) == 0);
            sq_batcher_destroy(&b);
            continue;
        }
        for (int i = 0; i < N_SHARED; i++) {
            sq_seq_t *seq = s_seq_on(s_engine, prompts[i], strlen(prompts[i]), &p);
            SQ_REQUIRE(seq && sq_batcher_admit(b, seq, (void *)(uintptr_t)i) >= 0);
        }
        SQ_CHECK(sq_batcher_reused_tokens(b) == 0);
        if (cancel)
            SQ_CHECK(sq_batcher_remove(b, (void *)(uintptr_t)0) == 0);
        s_run_out(b, s_shared_done);
        SQ_CHECK(sq_batcher_stop_followers(b) == 0);
        const long reused = sq_batcher_reused_tokens(b);
        printf("a first wave%s: %ld prompt tokens not prefilled\n",
               cancel ? " whose first task is cancelled" : "", reused);
        if (!cancel) {
            SQ_CHECK(reused >= 5 * 3 * SQ_KV_PAGE);
            /* each sequence's own count: none for the first, the rest theirs */
            long sum = 0;
            for (int i = 0; i < N_SHARED; i++)
                sum += (long)s_shared_cached[i];
            SQ_CHECK(s_shared_cached[0] == 0 && sum == reused);
        }
        SQ_CHECK(cancel == 0 || s_shared_out[0] == NULL);
        s_expect_texts(s_shared_out + cancel, alone + cancel, N_SHARED - cancel,
                       cancel ? "wave, first cancelled" : "wave");
        sq_batcher_destroy(&b);
    }
    for (int i = 0; i < N_SHARED; i++)
        free(alone[i]);
}

/* Preemption under shared prefixes: the six ~100-token-instruction
 * prompts, 80 new tokens each, on 6 slots sharing 16 pages. They share the
 * instruction's 3 pages, but each needs ~4 pages of its own, so the
 * latest admitted are preempted; coming back, each shares the
 * instruction's pages again from a running slot instead of running it
 * again. Every text equals its run alone. */
static void test_resume_shares_prefix(void)
{
    static char prompts[N_SHARED][512];
    char *alone[N_SHARED] = {0};
    sq_gen_params_t p = {.max_tokens = 80, .sampler = {.temperature = 0, .top_p = 1}};
    s_long_shared(prompts, alone, &p);
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    sq_engine_params_t ep = {.model_path = s_model, .n_threads = 1, .n_slots = 6, .n_ctx = 512,
                             .n_kv_pages = 16, .comm = comm};
    sq_engine_t *e = sq_engine_new(&ep);
    SQ_REQUIRE(e);
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(e), MPI_COMM_WORLD, 6, 64);
    SQ_REQUIRE(b);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
    } else {
        for (int i = 0; i < N_SHARED; i++) {
            sq_seq_t *seq = s_seq_on(e, prompts[i], strlen(prompts[i]), &p);
            SQ_REQUIRE(seq && sq_batcher_admit(b, seq, (void *)(uintptr_t)i) >= 0);
        }
        s_run_out(b, s_shared_done);
        SQ_CHECK(sq_batcher_stop_followers(b) == 0);
        sq_batcher_kv_t kv;
        sq_batcher_kv_stats(b, &kv);
        const long preempted = kv.preemptions, reused = sq_batcher_reused_tokens(b);
        printf("shared prefixes under preemption: %ld preemptions, %ld prompt tokens not run\n",
               preempted, reused);
        /* the first wave's five shares, then one for each resumption */
        SQ_CHECK(preempted > 0);
        SQ_CHECK(reused >= (5 + preempted) * 3 * SQ_KV_PAGE);
        s_expect_texts(s_shared_out, alone, N_SHARED, "preempted, shared");
    }
    for (int i = 0; i < N_SHARED; i++)
        free(alone[i]);
    sq_batcher_destroy(&b);
    sq_engine_destroy(&e);
    sq_tp_comm_destroy(&comm);
}

static void test_admit_full_and_remove(void)
{
    if (s_rank != 0)
        return;     /* rank-0 bookkeeping only; no forward pass runs */
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(s_engine), MPI_COMM_SELF, 2, 16);
    SQ_REQUIRE(b);
    SQ_CHECK(sq_batcher_admit(b, s_seq(0), (void *)1) == 0);
    SQ_CHECK(sq_batcher_admit(b, s_seq(1), (void *)2) == 1);
    sq_seq_t *extra = s_seq(2);
    SQ_CHECK(sq_batcher_admit(b, extra, (void *)3) == SQ_EAGAIN);
    sq_seq_destroy(&extra);
    SQ_CHECK(sq_batcher_remove(b, (void *)1) == 0);
    SQ_CHECK(sq_batcher_remove(b, (void *)1) == SQ_ENOTFOUND);
    SQ_CHECK(sq_batcher_n_active(b) == 1);
    SQ_CHECK(sq_batcher_admit(b, s_seq(3), (void *)4) == 0);   /* freed slot reused */
    sq_batcher_destroy(&b);
}

static void test_prompt_too_long_refused(void)
{
    if (s_rank != 0)
        return;
    size_t n = 64 * 1024;
    char *p = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        p[i] = "abcdefgh "[i % 9];
    p[n] = '\0';
    sq_gen_params_t gp = s_params();
    sq_seq_t *s = s_seq_on(s_engine, p, n, &gp);
    SQ_CHECK(s == NULL);
    SQ_CHECK(sq_error_code() == SQ_ETOOBIG);
    SQ_CHECK(strstr(sq_error_detail(), "context") != NULL);
    free(p);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &s_rank);
    const char *model = s_model = argc > 1 ? argv[1] : "models/stories260K.gguf";
    sq_tp_comm_t *comm = sq_tp_comm_mpi_world_new();
    sq_engine_params_t ep = {.model_path = model, .n_threads = 1, .n_slots = 8, .comm = comm};
    s_engine = sq_engine_new(&ep);
    if (!s_engine) {
        fprintf(stderr, "cannot load %s: %s\n", model, sq_error_detail());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    SQ_RUN(test_reference_alone);
    SQ_RUN(test_batched_equals_alone_small_chunks);
    SQ_RUN(test_batched_equals_alone_whole_prompts);
    SQ_RUN(test_batched_equals_alone_one_token_chunks);
    SQ_RUN(test_sampled_batched_equals_alone);
    SQ_RUN(test_prefix_reuse);
    SQ_RUN(test_paged_preemption);
    SQ_RUN(test_shared_prefix_pages);
    SQ_RUN(test_first_wave_shares);
    SQ_RUN(test_resume_shares_prefix);
    SQ_RUN(test_admit_full_and_remove);
    SQ_RUN(test_prompt_too_long_refused);
    for (int i = 0; i < N_PROMPTS; i++)
        free(s_alone[i]);
    sq_engine_destroy(&s_engine);
    sq_tp_comm_destroy(&comm);
    int rc = s_rank == 0 ? sq_test_summary("batcher") : (sq_test_n_failed_cases ? 1 : 0);
    MPI_Finalize();
    return rc;
}
