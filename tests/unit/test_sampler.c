/*  test_sampler: greedy, temperature, top-k, top-p and seeds on fixed
 *  logits, where the right distribution is known exactly; and on large
 *  random vocabularies (ties, signed zeros, NaN, -inf) the same tokens as
 *  the plain qsort version of the rules (tests/testlib/sq_sampler_ref.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "sq_error.h"
#include "sq_rng.h"
#include "sq_sampler.h"
#include "sq_sampler_ref.h"
#include "sq_test.h"

#define S_N 6

static const float s_logits[S_N] = {1.0f, 3.0f, 0.5f, 3.0f, 2.0f, -1.0f};

static void s_histogram(sq_sampler_params_t p, int draws, int *counts)
{
    sq_sampler_t *s = sq_sampler_new(&p, S_N);
    memset(counts, 0, S_N * sizeof *counts);
    for (int i = 0; s && i < draws; i++) {
        int32_t t = sq_sampler_sample(s, s_logits);
        if (t >= 0 && t < S_N)
            counts[t]++;
    }
    sq_sampler_destroy(&s);
}

static void test_greedy(void)
{
    sq_sampler_params_t p = {.temperature = 0.0f, .top_p = 1.0f, .seed = 1};
    sq_sampler_t *s = sq_sampler_new(&p, S_N);
    SQ_REQUIRE(s);
    for (int i = 0; i < 10; i++)
        SQ_CHECK(sq_sampler_sample(s, s_logits) == 1);   /* tie 1/3: lowest id */
    sq_sampler_destroy(&s);
    sq_sampler_destroy(&s);
    SQ_CHECK(sq_sampler_argmax(s_logits, S_N) == 1);
}

static void test_same_seed_same_draws(void)
{
    sq_sampler_params_t p = {.temperature = 1.0f, .top_p = 1.0f, .seed = 99};
    sq_sampler_t *a = sq_sampler_new(&p, S_N), *b = sq_sampler_new(&p, S_N);
    p.seed = 100;
    sq_sampler_t *c = sq_sampler_new(&p, S_N);
    SQ_REQUIRE(a && b && c);
    int same_ab = 1, same_ac = 1;
    for (int i = 0; i < 200; i++) {
        int32_t x = sq_sampler_sample(a, s_logits), y = sq_sampler_sample(b, s_logits);
        int32_t z = sq_sampler_sample(c, s_logits);
        same_ab &= x == y;
        same_ac &= x == z;
    }
    SQ_CHECK(same_ab);
    SQ_CHECK(!same_ac);
    sq_sampler_destroy(&a);
    sq_sampler_destroy(&b);
    sq_sampler_destroy(&c);
}

static void test_temperature_distribution(void)
{
    /* softmax at T = 1: p_i = e^l_i / sum; check frequencies within 1.5 % */
    int counts[S_N];
    const int draws = 40000;
    s_histogram((sq_sampler_params_t){.temperature = 1.0f, .top_p = 1.0f, .seed = 5}, draws,
                counts);
    double sum = 0.0;
    for (int i = 0; i < S_N; i++)
        sum += exp(s_logits[i]);
    for (int i = 0; i < S_N; i++) {
        double want = exp(s_logits[i]) / sum, got = (double)counts[i] / draws;
        SQ_CHECK(fabs(got - want) < 0.015);
    }
    /* a low temperature concentrates on the two best */
    s_histogram((sq_sampler_params_t){.temperature = 0.05f, .top_p = 1.0f, .seed = 5}, 2000,
                counts);
    SQ_CHECK(counts[1] + counts[3] == 2000);
    SQ_CHECK(counts[1] > 800 && counts[3] > 800);
}

static void test_top_k_and_top_p(void)
{
    int counts[S_N];
    /* top-k 3 keeps ids 1, 3 (3.0) and 4 (2.0) */
    s_histogram((sq_sampler_params_t){.temperature = 1.0f, .top_k = 3, .top_p = 1.0f, .seed = 3},
                5000, counts);
    SQ_CHECK(counts[0] == 0 && counts[2] == 0 && counts[5] == 0);
    SQ_CHECK(counts[1] > 0 && counts[3] > 0 && counts[4] > 0);
    /* top-p 0.6: ids 1 and 3 hold ~0.38 each, so the set is {1, 3} */
    s_histogram((sq_sampler_params_t){.temperature = 1.0f, .top_p = 0.6f, .seed = 3}, 5000,
                counts);
    SQ_CHECK(counts[1] + counts[3] == 5000);
    SQ_CHECK(counts[1] > 2000 && counts[3] > 2000);
    /* top-p tiny: only the first of the sorted (ties by id): always 1 */
    s_histogram((sq_sampler_params_t){.temperature = 1.0f, .top_p = 1e-6f, .seed = 3}, 100,
                counts);
    SQ_CHECK(counts[1] == 100);
    /* top-p 0 (OpenAI's API takes it): the most likely token alone */
    s_histogram((sq_sampler_params_t){.temperature = 1.0f, .top_p = 0.0f, .seed = 3}, 100,
                counts);
    SQ_CHECK(counts[1] == 100);
}

static void test_bad_params(void)
{
    sq_sampler_params_t p = {.temperature = NAN, .top_p = 1.0f};
    SQ_CHECK(sq_sampler_new(&p, S_N) == NULL);
    p = (sq_sampler_params_t){.temperature = 1.0f, .top_p = -0.1f};
    SQ_CHECK(sq_sampler_new(&p, S_N) == NULL);
    SQ_CHECK(sq_error_code() == SQ_EINVAL);
    p.top_p = 1.0f;
    SQ_CHECK(sq_sampler_new(&p, 0) == NULL);
    /* NaN logits are never chosen */
    float nanl[3] = {NAN, 0.0f, NAN};
    sq_sampler_t *s = sq_sampler_new(&p, 3);
    SQ_REQUIRE(s);
    for (int i = 0; i < 50; i++)
        SQ_CHECK(sq_sampler_sample(s, nanl) == 1);
    sq_sampler_destroy(&s);
    SQ_CHECK(sq_sampler_argmax(nanl, 3) == 1);
}

/* A row with no finite largest logit gives no token, greedy or sampled
 * (it gave id 0, or the last candidate: garbage as if a token) */
static void test_not_finite(void)
{
    const float rows[][3] = {
        {NAN, NAN, NAN},                    /* a NaN in the weights */
        {-INFINITY, NAN, -INFINITY},
        {1.0f, INFINITY, 2.0f},             /* an overflow */
        {-INFINITY, INFINITY, NAN},
    };
    for (int greedy = 0; greedy < 2; greedy++) {
        sq_sampler_params_t p = {.temperature = greedy ? 0.0f : 0.8f, .top_k = greedy ? 0 : 2,
                                 .top_p = 0.9f, .seed = 5};
        sq_sampler_t *s = sq_sampler_new(&p, 3);
        SQ_REQUIRE(s);
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            SQ_CHECK(sq_sampler_sample(s, rows[r]) == SQ_SAMPLER_NOT_FINITE);
            SQ_CHECK(sq_sampler_argmax(rows[r], 3) == SQ_SAMPLER_NOT_FINITE);
        }
        /* a finite maximum among NaN and -inf is a token */
        const float some[3] = {NAN, -INFINITY, -3.0f};
        SQ_CHECK(sq_sampler_sample(s, some) == 2 && sq_sampler_argmax(some, 3) == 2);
        sq_sampler_destroy(&s);
    }
    sq_ref_cand_t c[3];
    SQ_CHECK(sq_ref_sample(rows[0], 3, 1.0f, 0, 1.0f, 0.5, c) == SQ_SAMPLER_NOT_FINITE);
}

/* logits with what a sort gets wrong most easily: many exact ties, -0
 * beside +0, negative and positive values, NaN and -inf */
static void s_hard_logits(float *l, int n, uint64_t seed)
{
    sq_rng_t r;
    sq_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        const double u = sq_rng_uniform(&r);
        const int kind = (int)(sq_rng_next(&r) % 64);
        l[i] = kind == 0 ? NAN : kind == 1 ? -INFINITY : kind == 2 ? -0.0f : kind == 3 ? 0.0f
             : kind < 32 ? (float)((int)(u * 16.0) - 8) / 4.0f   /* ties */
                         : (float)(u * 12.0 - 6.0);
    }
}

static void test_same_tokens_as_reference(void)
{
    const sq_sampler_params_t params[] = {
        {.temperature = 1.0f, .top_p = 1.0f, .seed = 11},
        {.temperature = 0.7f, .top_p = 0.9f, .seed = 12},
        {.temperature = 1.3f, .top_k = 50, .top_p = 1.0f, .seed = 13},
        {.temperature = 0.5f, .top_k = 5, .top_p = 0.5f, .seed = 14},
        {.temperature = 2.0f, .top_p = 0.999f, .seed = 15},
    };
    const int vocabs[] = {7, 1000, 32000};
    int checked = 0, differ = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        const int n = vocabs[v];
        float *l = malloc((size_t)n * sizeof *l);
        sq_ref_cand_t *c = malloc((size_t)n * sizeof *c);
        SQ_REQUIRE(l && c);
        for (size_t k = 0; k < sizeof params / sizeof params[0]; k++) {
            sq_sampler_t *s = sq_sampler_new(&params[k], n);
            sq_rng_t r;
            sq_rng_seed(&r, params[k].seed);
            SQ_REQUIRE(s);
            for (int draw = 0; draw < 60; draw++) {
                s_hard_logits(l, n, (uint64_t)(draw * 131 + k * 7 + v));
                const int32_t got = sq_sampler_sample(s, l);
                const int32_t want = sq_ref_sample(l, n, params[k].temperature, params[k].top_k,
                                                   params[k].top_p, sq_rng_uniform(&r), c);
                differ += got != want;
                checked++;
            }
            sq_sampler_destroy(&s);
        }
        free(l);
        free(c);
    }
    printf("sampler vs the qsort reference: %d draws, %d different\n", checked, differ);
    SQ_CHECK(differ == 0);
}

int main(void)
{
    SQ_RUN(test_greedy);
    SQ_RUN(test_same_seed_same_draws);
    SQ_RUN(test_temperature_distribution);
    SQ_RUN(test_top_k_and_top_p);
    SQ_RUN(test_bad_params);
    SQ_RUN(test_not_finite);
    SQ_RUN(test_same_tokens_as_reference);
    return sq_test_summary("sampler");
}
