/*  shardq-bench-sampler: time to choose one token from a vocabulary's
 *  logits, sq_sampler against the plain qsort version of the same rules
 *  (tests/testlib/sq_sampler_ref.h: what sq_sampler did before its radix
 *  sort), in the same run; one table row per vocabulary and setting.
 *
 *    shardq-bench-sampler [--draws N] [--vocab V,V,...]
 *
 *  Logits are normal with sd 2.5 (about a trained model's spread), new
 *  for every draw. A row also says whether both chose the same tokens.
 *  Exit codes: 0 ok, 1 the two differed, 2 usage error.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq_rng.h"
#include "sq_sampler.h"
#include "sq_sampler_ref.h"

enum { S_MAX_VOCABS = 8 };

static const double S_TWO_PI = 6.283185307179586;

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void s_normal_logits(sq_rng_t *r, float *l, int n)
{
    for (int i = 0; i < n; i += 2) {
        const double u1 = 1.0 - sq_rng_uniform(r), u2 = sq_rng_uniform(r);
        const double m = 2.5 * sqrt(-2.0 * log(u1));
        l[i] = (float)(m * cos(S_TWO_PI * u2));
        if (i + 1 < n)
            l[i + 1] = (float)(m * sin(S_TWO_PI * u2));
    }
}

/* "V,V,...": 1 to S_MAX_VOCABS sizes of at least 1; 0 or -1 */
static int s_parse_vocabs(char *v, int *out, int *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        if (*n == S_MAX_VOCABS || (out[(*n)++] = atoi(tok)) < 1)
            return -1;
    return *n ? 0 : -1;
}

int main(int argc, char **argv)
{
    int draws = 200, vocabs[S_MAX_VOCABS] = {32000, 128256}, n_vocabs = 2;
    for (int i = 1; i < argc; i += 2) {
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const bool ok =
            v && ((!strcmp(argv[i], "--draws") && (draws = atoi(v)) > 0) ||
                  (!strcmp(argv[i], "--vocab") && s_parse_vocabs(v, vocabs, &n_vocabs) == 0));
        if (!ok) {
            fprintf(stderr, "usage: shardq-bench-sampler [--draws N] [--vocab V,V,...]\n");
            return 2;
        }
    }
    static const struct {
        const char *name;
        sq_sampler_params_t p;
    } settings[] = {
        {"T=1", {.temperature = 1.0f, .top_p = 1.0f, .seed = 1}},
        {"T=0.8 top_p=0.95", {.temperature = 0.8f, .top_p = 0.95f, .seed = 2}},
        {"T=1 top_k=40", {.temperature = 1.0f, .top_k = 40, .top_p = 1.0f, .seed = 3}},
    };
    printf("%-8s %-18s %12s %12s %8s %6s\n", "vocab", "setting", "sq us/tok", "qsort us/tok",
           "ratio", "same");
    int failed = 0;
    for (int v = 0; v < n_vocabs; v++) {
        const int n = vocabs[v];
        float *l = malloc((size_t)n * draws * sizeof *l);
        sq_ref_cand_t *c = malloc((size_t)n * sizeof *c);
        int32_t *got = malloc((size_t)draws * sizeof *got);
        if (!l || !c || !got)
            return 1;
        sq_rng_t gen;
        sq_rng_seed(&gen, (uint64_t)n);
        for (int d = 0; d < draws; d++)
            s_normal_logits(&gen, l + (size_t)d * n, n);
        for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
            const sq_sampler_params_t *p = &settings[k].p;
            sq_sampler_t *s = sq_sampler_new(p, n);
            if (!s)
                return 1;
            double t0 = s_now();
            for (int d = 0; d < draws; d++)
                got[d] = sq_sampler_sample(s, l + (size_t)d * n);
            const double t_sq = s_now() - t0;
            sq_sampler_destroy(&s);
            sq_rng_t r;
            sq_rng_seed(&r, p->seed);
            int same = 1;
            t0 = s_now();
            for (int d = 0; d < draws; d++)
                same &= got[d] == sq_ref_sample(l + (size_t)d * n, n, p->temperature, p->top_k,
                                                 p->top_p, sq_rng_uniform(&r), c);
            const double t_ref = s_now() - t0;
            printf("%-8d %-18s %12.1f %12.1f %7.1fx %6s\n", n, settings[k].name,
                   t_sq / draws * 1e6, t_ref / draws * 1e6, t_ref / t_sq, same ? "yes" : "NO");
            failed |= !same;
        }
        free(l);
        free(c);
        free(got);
    }
    return failed;
}
