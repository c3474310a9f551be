/*  sq_sampler: greedy / temperature / top-k / top-p sampling.
 *
 *  The candidate list is sorted once per token (descending logit, ties by
 *  id, so the order and hence the draw are deterministic); top-k and top-p
 *  then both cut a prefix of it. One qsort of the vocabulary costs well
 *  under a forward step, so no partial selection.
 */
#include "sq_sampler.h"

#include <math.h>
#include <stdlib.h>

#include "sq_error.h"

typedef struct {
    float logit;
    int32_t id;
} s_cand_t;

struct sq_sampler {
    sq_sampler_params_t p;
    int n_vocab;
    uint64_t s[4];              /* xoshiro256** state */
    s_cand_t *cands;
};

static uint64_t s_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t s_next(sq_sampler_t *self)
{
    uint64_t *s = self->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double s_uniform(sq_sampler_t *self)
{
    return (double)(s_next(self) >> 11) * (1.0 / 9007199254740992.0);
}

sq_sampler_t *sq_sampler_new(const sq_sampler_params_t *params, int n_vocab)
{
    if (n_vocab < 1 || isnan(params->temperature) || isnan(params->top_p) ||
        !(params->top_p > 0.0f)) {
        SQ_FAIL(SQ_EINVAL, "sampler: vocabulary %d, temperature %g, top_p %g", n_vocab,
                (double)params->temperature, (double)params->top_p);
        return NULL;
    }
    sq_sampler_t *self = calloc(1, sizeof *self);
    if (self)
        self->cands = malloc((size_t)n_vocab * sizeof *self->cands);
    if (!self || !self->cands) {
        free(self);
        SQ_FAIL(SQ_ENOMEM, "sampler for %d tokens", n_vocab);
        return NULL;
    }
    self->p = *params;
    self->n_vocab = n_vocab;
    uint64_t x = params->seed;
    for (int i = 0; i < 4; i++)
        self->s[i] = s_splitmix(&x);
    return self;
}

void sq_sampler_destroy(sq_sampler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->cands);
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
    return best < 0 ? 0 : best;
}

static int s_cmp(const void *a, const void *b)
{
    const s_cand_t *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

bool sq_sampler_greedy(const sq_sampler_t *self)
{
    return self->p.temperature <= 0.0f;
}

int32_t sq_sampler_sample(sq_sampler_t *self, const float *logits)
{
    if (self->p.temperature <= 0.0f)
        return sq_sampler_argmax(logits, self->n_vocab);
    int n = self->n_vocab;
    for (int i = 0; i < n; i++)
        self->cands[i] = (s_cand_t){isnan(logits[i]) ? -INFINITY : logits[i], i};
    qsort(self->cands, (size_t)n, sizeof *self->cands, s_cmp);
    if (self->p.top_k > 0 && self->p.top_k < n)
        n = self->p.top_k;
    /* probabilities (stored back into .logit) relative to the best */
    const float max = self->cands[0].logit;
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
    double r = s_uniform(self) * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += self->cands[i].logit;
        if (r < cum)
            return self->cands[i].id;
    }
    return self->cands[n - 1].id;
}
