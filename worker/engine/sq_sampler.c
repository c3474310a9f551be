/*  sq_sampler: greedy / temperature / top-k / top-p sampling.
 *
 *  The candidate list is sorted once per token (descending logit, ties by
 *  id, so the order and hence the draw are deterministic); top-k and top-p
 *  then both cut a prefix of it. The sort is a stable LSD radix sort on a
 *  32-bit key of the logit, of candidates made in id order: the order a
 *  comparison sort by (logit, id) gives, in a few linear passes (a qsort
 *  of a 32k vocabulary took milliseconds a token, longer than a GPU's
 *  decode step). tests/testlib/sq_sampler_ref.h is the plain version;
 *  unit.sampler checks that both draw the same tokens.
 */
#include "sq_sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#include "sq_rng.h"

typedef struct {
    float logit;
    int32_t id;
} s_cand_t;

struct sq_sampler {
    sq_sampler_params_t p;
    int n_vocab;
    sq_rng_t rng;
    s_cand_t *cands, *tmp;      /* n_vocab each: the list and the sort's buffer */
};

/* a key whose ascending order is the logits' descending order: the IEEE
 * bits made monotonic (negative floats reversed), then inverted; -0 keyed
 * as +0, since the comparison sort sees them equal (NaN is -inf by now) */
static uint32_t s_key(float f)
{
    f += 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

/* cands[0..n) (in id order) sorted by (logit descending, id ascending):
 * one pass counts the four key bytes, then a stable scatter per byte that
 * tells candidates apart */
static void s_sort(sq_sampler_t *self, int n)
{
    uint32_t count[4][256] = {{0}};
    for (int i = 0; i < n; i++) {
        const uint32_t k = s_key(self->cands[i].logit);
        for (int b = 0; b < 4; b++)
            count[b][(k >> (8 * b)) & 255]++;
    }
    s_cand_t *src = self->cands, *dst = self->tmp;
    for (int b = 0; b < 4; b++) {
        uint32_t at = 0, *c = count[b];
        if (c[(s_key(src[0].logit) >> (8 * b)) & 255] == (uint32_t)n)
            continue;   /* every key has this byte: nothing moves */
        for (int v = 0; v < 256; v++) {
            const uint32_t k = c[v];
            c[v] = at;
            at += k;
        }
        for (int i = 0; i < n; i++)
            dst[c[(s_key(src[i].logit) >> (8 * b)) & 255]++] = src[i];
        s_cand_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != self->cands)
        memcpy(self->cands, src, (size_t)n * sizeof *src);
}

sq_sampler_t *sq_sampler_new(const sq_sampler_params_t *params, int n_vocab)
{
    if (n_vocab < 1 || isnan(params->temperature) || isnan(params->top_p) ||
        params->top_p < 0.0f) {
        SQ_FAIL(SQ_EINVAL, "sampler: vocabulary %d, temperature %g, top_p %g", n_vocab,
                (double)params->temperature, (double)params->top_p);
        return NULL;
    }
    sq_sampler_t *self = calloc(1, sizeof *self);
    if (self) {
        self->cands = malloc((size_t)n_vocab * sizeof *self->cands);
        self->tmp = malloc((size_t)n_vocab * sizeof *self->tmp);
    }
    if (!self || !self->cands || !self->tmp) {
        if (self)
            free(self->cands);
        free(self);
        SQ_FAIL(SQ_ENOMEM, "sampler for %d tokens", n_vocab);
        return NULL;
    }
    self->p = *params;
    self->n_vocab = n_vocab;
    sq_rng_seed(&self->rng, params->seed);
    return self;
}

void sq_sampler_destroy(sq_sampler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->cands);
    free((*self_p)->tmp);
    free(*self_p);
    *self_p = NULL;
}

int32_t sq_sampler_argmax(const float *logits, int n)
{
    /* NaN never wins (a NaN first entry must not stick as the best) */
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best]))
            best = i;
    return best < 0 || !isfinite(logits[best]) ? SQ_SAMPLER_NOT_FINITE : best;
}

bool sq_sampler_greedy(const sq_sampler_t *self)
{
    return self->p.temperature <= 0.0f;
}

sq_sample_row_t sq_sampler_draw(sq_sampler_t *self)
{
    const bool greedy = self->p.temperature <= 0.0f;
    return (sq_sample_row_t){self->p.temperature, self->p.top_k, self->p.top_p,
                             greedy ? 0.0 : sq_rng_uniform(&self->rng)};
}

int32_t sq_sampler_sample(sq_sampler_t *self, const float *logits)
{
    if (self->p.temperature <= 0.0f)
        return sq_sampler_argmax(logits, self->n_vocab);
    int n = self->n_vocab;
    for (int i = 0; i < n; i++)
        self->cands[i] = (s_cand_t){isnan(logits[i]) ? -INFINITY : logits[i], i};
    s_sort(self, n);
    if (self->p.top_k > 0 && self->p.top_k < n)
        n = self->p.top_k;
    /* probabilities (stored back into .logit) relative to the best */
    const float max = self->cands[0].logit;
    if (!isfinite(max))
        return SQ_SAMPLER_NOT_FINITE;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        float e = expf((self->cands[i].logit - max) / self->p.temperature);
        self->cands[i].logit = e;
        sum += e;
    }
    if (self->p.top_p < 1.0f) {
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += self->cands[i].logit / sum;
            if (cum >= self->p.top_p) {
                n = i + 1;
                break;
            }
        }
        sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += self->cands[i].logit;
    }
    double r = sq_rng_uniform(&self->rng) * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += self->cands[i].logit;
        if (r < cum)
            return self->cands[i].id;
    }
    return self->cands[n - 1].id;
}
