/*  test_model_quality: Q8_0 against F32 on a held-out text.
 *
 *  The text (tests/data/heldout_stories.txt, written for this test, not
 *  seen in training) is encoded once and cut into windows that fit the
 *  context, each starting with BOS. Both models score every position;
 *  we report perplexity of each, the mean KL divergence KL(F32 || Q8_0)
 *  of the next-token distributions and the top-1 agreement, and assert
 *  the agreement (>= 98 %) on at least 2,000 predicted tokens.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_engine.h"
#include "sq_error.h"
#include "sq_test.h"
#include "test_model_util.h"

static char s_f32[512], s_q8[512], s_text[512];

typedef struct {
    double nll_f32, nll_q8, kl;
    long n, agree;
} s_stats_t;

/* log-softmax of n logits into out */
static void s_log_softmax(const float *x, int n, double *out)
{
    double max = x[0], sum = 0.0;
    for (int i = 1; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++)
        sum += exp(x[i] - max);
    double lse = max + log(sum);
    for (int i = 0; i < n; i++)
        out[i] = x[i] - lse;
}

static void s_score(const float *lf, const float *lq, int n_vocab, int32_t next, s_stats_t *st,
                    double *pf, double *pq)
{
    s_log_softmax(lf, n_vocab, pf);
    s_log_softmax(lq, n_vocab, pq);
    double kl = 0.0;
    for (int i = 0; i < n_vocab; i++)
        kl += exp(pf[i]) * (pf[i] - pq[i]);
    st->kl += kl;
    st->nll_f32 -= pf[next];
    st->nll_q8 -= pq[next];
    st->agree += sq_sampler_argmax(lf, n_vocab) == sq_sampler_argmax(lq, n_vocab);
    st->n++;
}

static void test_q8_matches_f32(void)
{
    sq_engine_params_t pf = {.model_path = s_f32, .n_threads = 2};
    sq_engine_params_t pq = {.model_path = s_q8, .n_threads = 2};
    sq_engine_t *ef = sq_engine_new(&pf), *eq = sq_engine_new(&pq);
    size_t len;
    char *text = tm_slurp(s_text, &len);
    SQ_REQUIRE(ef && eq && text);
    int32_t *ids;
    size_t n_ids;
    SQ_REQUIRE(sq_tokenizer_encode(sq_engine_tokenizer(ef), text, len, false, &ids, &n_ids) == 0);
    const int n_vocab = sq_model_hparams(sq_engine_model(ef))->n_vocab;
    const int win = sq_model_n_ctx(sq_engine_model(ef));   /* BOS + win - 1 tokens */
    int32_t bos = sq_tokenizer_bos(sq_engine_tokenizer(ef));
    sq_batch_entry_t *b = malloc((size_t)win * sizeof *b);
    float *lf = malloc((size_t)win * n_vocab * sizeof(float));
    float *lq = malloc((size_t)win * n_vocab * sizeof(float));
    double *wf = malloc((size_t)n_vocab * sizeof(double)), *wq = malloc((size_t)n_vocab * sizeof(double));
    s_stats_t st = {0};
    for (size_t at = 0; at < n_ids; at += (size_t)win - 1) {
        size_t n = n_ids - at < (size_t)win - 1 ? n_ids - at : (size_t)win - 1;
        b[0] = tm_entry(0, bos, 0, true);
        for (size_t i = 0; i < n; i++)
            b[i + 1] = tm_entry(0, ids[at + i], (int32_t)(i + 1), true);
        /* position i predicts ids[at + i]; the window's last token predicts nothing */
        SQ_REQUIRE(sq_model_forward(sq_engine_model(ef), b, (int)n + 1, lf) == 0);
        SQ_REQUIRE(sq_model_forward(sq_engine_model(eq), b, (int)n + 1, lq) == 0);
        for (size_t i = 0; i < n; i++)
            s_score(lf + i * n_vocab, lq + i * n_vocab, n_vocab, ids[at + i], &st, wf, wq);
    }
    double ppl_f32 = exp(st.nll_f32 / st.n), ppl_q8 = exp(st.nll_q8 / st.n);
    double agree = (double)st.agree / st.n;
    printf("held-out text: %zu tokens, %ld predictions\n", n_ids, st.n);
    printf("perplexity F32 %.4f, Q8_0 %.4f (ratio %.4f)\n", ppl_f32, ppl_q8, ppl_q8 / ppl_f32);
    printf("mean KL(F32 || Q8_0) %.6f nats, top-1 agreement %.2f %%\n", st.kl / st.n,
           100.0 * agree);
    SQ_CHECK(st.n >= 2000);
    SQ_CHECK(agree >= 0.98);
    SQ_CHECK(ppl_f32 > 1.0 && ppl_f32 < 100.0);   /* a trained model on in-domain text */
    free(b);
    free(lf);
    free(lq);
    free(wf);
    free(wq);
    free(ids);
    free(text);
    sq_engine_destroy(&ef);
    sq_engine_destroy(&eq);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "models";
    const char *data = argc > 2 ? argv[2] : "tests/data";
    snprintf(s_f32, sizeof s_f32, "%s/stories260K.gguf", dir);
    snprintf(s_q8, sizeof s_q8, "%s/stories260K-q8_0.gguf", dir);
    snprintf(s_text, sizeof s_text, "%s/heldout_stories.txt", data);
    SQ_RUN(test_q8_matches_f32);
    return sq_test_summary("model_quality");
}
