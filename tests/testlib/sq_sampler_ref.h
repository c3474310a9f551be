/*  sq_sampler_ref: the sampler's rules written the plain way, for the
 *  sampler test (its oracle) and shardq-bench-sampler (its anchor).
 *  Header-only, static.
 *
 *  The same rules as sq_sampler.h: NaN as -inf, the vocabulary sorted by
 *  (logit descending, id ascending) with qsort, cut to top_k, weights
 *  expf((logit - max) / T) summed in double in that order, cut to the
 *  smallest prefix whose share reaches top_p, then the draw r = u * sum
 *  walked in order; -1 (SQ_SAMPLER_NOT_FINITE) when the largest logit is
 *  not finite. The caller draws u (sq_sampler's generator) and gives
 *  a scratch array of n candidates.
 */
#ifndef SQ_SAMPLER_REF_H
#define SQ_SAMPLER_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    float logit;
    int32_t id;
} sq_ref_cand_t;

static inline int sq_ref_cmp(const void *a, const void *b)
{
    const sq_ref_cand_t *x = (const sq_ref_cand_t *)a, *y = (const sq_ref_cand_t *)b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static inline int32_t sq_ref_sample(const float *logits, int n_vocab, float temperature,
                                    int top_k, float top_p, double u, sq_ref_cand_t *c)
{
    int n = n_vocab;
    for (int i = 0; i < n; i++)
        c[i] = (sq_ref_cand_t){isnan(logits[i]) ? -INFINITY : logits[i], i};
    qsort(c, (size_t)n, sizeof *c, sq_ref_cmp);
    if (top_k > 0 && top_k < n)
        n = top_k;
    const float max = c[0].logit;
    if (!isfinite(max))
        return -1;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float e = expf((c[i].logit - max) / temperature);
        c[i].logit = e;
        sum += e;
    }
    if (top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += c[i].logit / sum;
            if (cum >= top_p) {
                n = i + 1;
                break;
            }
        }
        sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += c[i].logit;
    }
    double r = u * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].logit;
        if (r < cum)
            return c[i].id;
    }
    return c[n - 1].id;
}

#endif
