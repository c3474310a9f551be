/*  LoRA adapters, unmerged and per sequence, under real mpirun (1 or 2
 *  ranks). Arguments: BASE ADAPTER_A ADAPTER_B MERGED_A MERGED_B WRONG,
 *  where MERGED_X is BASE with X merged into its matrices offline
 *  (`shardq-model lora-merge`, plain arithmetic on the files) and WRONG is
 *  an adapter made for another model shape.
 *
 *  - an adapter applied unmerged gives the logits and greedy text of its
 *    merged model (the independent reference), split over the ranks;
 *  - one batch mixing base, A and B sequences gives each the text it gets
 *    alone;
 *  - adapters really change the output; a mismatched adapter is refused
 *    with the tensor named; loading and unloading frees its id.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_batcher.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_test.h"

#define N_SEQ 6

static const char *const s_prompts[N_SEQ] = {
    "Once upon a time", "The bank was big", "Lily liked to count coins",
    "Once upon a time", "Tom saw a report", "The bank was big",
};
static const int s_which[N_SEQ] = {0, 1, 2, 1, 2, 0};   /* 0 base, 1 A, 2 B */

static int s_rank;
static sq_tp_comm_t *s_comm;
static sq_engine_t *s_base, *s_merged[2];
static int s_id[3];
static const char *s_wrong_path;
static char *s_out[N_SEQ];

static sq_engine_t *s_load(const char *path)
{
    /* an F32 KV cache: unmerged and merged weights give the same logits up
     * to F32 sums in another order, which an F16 cache would round into
     * differences of F16's size */
    sq_engine_params_t ep = {.model_path = path, .n_threads = 1, .n_slots = 8, .kv_type = SQ_KV_F32,
                             .comm = s_comm};
    sq_engine_t *e = sq_engine_new(&ep);
    if (!e) {
        fprintf(stderr, "cannot load %s: %s\n", path, sq_error_detail());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return e;
}

static int s_load_adapter(const char *path, int *id)
{
    sq_gguf_t *g = sq_gguf_open(path);
    if (!g)
        return sq_error_code();
    int rc = sq_model_adapter_load(sq_engine_model(s_base), g, 0.0f, id);
    sq_gguf_destroy(&g);
    return rc;
}

/* Logits of the prompt's last token with adapter id (0: base) on model m. */
static void s_logits(sq_engine_t *e, int adapter, const char *prompt, float *out)
{
    int32_t *ids;
    size_t n;
    sq_tokenizer_encode(sq_engine_tokenizer(e), prompt, strlen(prompt), true, &ids, &n);
    sq_batch_entry_t b[64];
    for (size_t i = 0; i < n && i < 64; i++)
        b[i] = (sq_batch_entry_t){0, ids[i], (int32_t)i, i + 1 == n, adapter};
    SQ_CHECK(sq_model_forward(sq_engine_model(e), b, (int)n, s_rank == 0 ? out : NULL) == 0);
    free(ids);
}

static void test_unmerged_equals_merged_logits(void)
{
    int V = sq_model_hparams(sq_engine_model(s_base))->n_vocab;
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    float *base = malloc((size_t)V * sizeof(float));
    s_logits(s_base, 0, s_prompts[1], base);
    for (int k = 0; k < 2; k++) {
        s_logits(s_base, s_id[k + 1], s_prompts[1], a);
        s_logits(s_merged[k], 0, s_prompts[1], b);
        if (s_rank != 0)
            continue;
        double max_rel = 0, max_change = 0;
        for (int i = 0; i < V; i++) {
            double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1.0);
            max_rel = d > max_rel ? d : max_rel;
            double c = fabs((double)a[i] - base[i]);
            max_change = c > max_change ? c : max_change;
        }
        printf("adapter %c: max relative difference to merged %.3g, max change vs base %.3g\n",
               'A' + k, max_rel, max_change);
        SQ_CHECK(max_rel < 1e-4);
        SQ_CHECK(max_change > 1e-2);    /* the adapter does something */
    }
    free(a);
    free(b);
    free(base);
}

static void s_on_done(void *arg, sq_seq_t *seq, void *user, const sq_seq_times_t *t)
{
    (void)arg;
    (void)t;
    size_t i = (size_t)(uintptr_t)user, len;
    const char *text = sq_seq_text(seq, &len);
    s_out[i] = strdup(text);
    sq_seq_destroy(&seq);
}

static sq_gen_params_t s_greedy(void)
{
    return (sq_gen_params_t){.max_tokens = 40, .sampler = {.temperature = 0, .top_p = 1}};
}

/* Batched run of all sequences, each on its adapter, joining staggered. */
static void s_run_batch(void)
{
    sq_batcher_t *b = sq_batcher_new(sq_engine_model(s_base), MPI_COMM_WORLD, N_SEQ, 5);
    SQ_REQUIRE(b);
    if (s_rank != 0) {
        SQ_CHECK(sq_batcher_follow(b) == 0);
        sq_batcher_destroy(&b);
        return;
    }
    sq_model_t *m = sq_engine_model(s_base);
    int next = 0;
    while (next < N_SEQ || sq_batcher_n_active(b) > 0) {
        if (next < N_SEQ) {
            sq_gen_params_t p = s_greedy();
            sq_seq_t *s = sq_seq_new(sq_engine_tokenizer(s_base), s_prompts[next],
                                     strlen(s_prompts[next]), &p, sq_model_hparams(m)->n_vocab,
                                     sq_model_n_ctx(m));
            sq_seq_set_adapter(s, s_id[s_which[next]]);
            SQ_CHECK(sq_batcher_admit(b, s, (void *)(uintptr_t)next) >= 0);
            next++;
        }
        SQ_REQUIRE(sq_batcher_step(b, s_on_done, NULL) == 0);
    }
    SQ_CHECK(sq_batcher_stop_followers(b) == 0);
    sq_batcher_destroy(&b);
}

static void test_mixed_batch_equals_alone(void)
{
    s_run_batch();
    for (int i = 0; i < N_SEQ; i++) {
        /* alone: the merged model (or the base) generating by itself */
        sq_engine_t *e = s_which[i] == 0 ? s_base : s_merged[s_which[i] - 1];
        sq_gen_params_t p = s_greedy();
        sq_gen_result_t r;
        SQ_REQUIRE(sq_engine_generate(e, s_prompts[i], strlen(s_prompts[i]), &p, &r) == 0);
        if (s_rank == 0) {
            SQ_CHECK(s_out[i] && strcmp(s_out[i], r.text) == 0);
            if (s_out[i] && strcmp(s_out[i], r.text) != 0)
                fprintf(stderr, "seq %d (adapter %d):\n  batched: %s\n  alone:   %s\n", i,
                        s_which[i], s_out[i], r.text);
        }
        sq_gen_result_free(&r);
    }
    /* same prompt, different adapter: different text */
    if (s_rank == 0)
        SQ_CHECK(s_out[0] && s_out[3] && strcmp(s_out[0], s_out[3]) != 0);
    for (int i = 0; i < N_SEQ; i++) {
        free(s_out[i]);
        s_out[i] = NULL;
    }
}

static void test_wrong_shape_refused(void)
{
    int id = 0;
    int rc = s_load_adapter(s_wrong_path, &id);
    SQ_CHECK(rc == SQ_EFORMAT);
    SQ_CHECK(strstr(sq_error_detail(), "blk.0.") != NULL);
    SQ_CHECK(strstr(sq_error_detail(), "shape") != NULL);
    SQ_CHECK(id == 0);
}

static void test_unload_frees_the_id(void)
{
    sq_model_t *m = sq_engine_model(s_base);
    SQ_CHECK(sq_model_adapter_unload(m, s_id[2]) == 0);
    SQ_CHECK(sq_model_adapter_unload(m, s_id[2]) == SQ_ENOTFOUND);
    /* a batch naming an unloaded adapter is refused, not run on garbage */
    sq_batch_entry_t e = {0, 1, 0, false, s_id[2]};
    SQ_CHECK(sq_model_forward(m, &e, 1, NULL) == SQ_EINVAL);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &s_rank);
    if (argc != 7) {
        fprintf(stderr, "usage: test_lora BASE A B MERGED_A MERGED_B WRONG\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    s_comm = sq_tp_comm_mpi_world_new();
    s_base = s_load(argv[1]);
    s_merged[0] = s_load(argv[4]);
    s_merged[1] = s_load(argv[5]);
    s_wrong_path = argv[6];
    if (s_load_adapter(argv[2], &s_id[1]) || s_load_adapter(argv[3], &s_id[2])) {
        fprintf(stderr, "cannot load adapters: %s\n", sq_error_detail());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    SQ_RUN(test_unmerged_equals_merged_logits);
    SQ_RUN(test_mixed_batch_equals_alone);
    SQ_RUN(test_wrong_shape_refused);
    SQ_RUN(test_unload_frees_the_id);
    sq_engine_destroy(&s_merged[1]);
    sq_engine_destroy(&s_merged[0]);
    sq_engine_destroy(&s_base);
    sq_tp_comm_destroy(&s_comm);
    int rc = s_rank == 0 ? sq_test_summary("lora") : (sq_test_n_failed_cases ? 1 : 0);
    MPI_Finalize();
    return rc;
}
