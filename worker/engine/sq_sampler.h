/*  sq_sampler: choose the next token from logits.
 *
 *  temperature <= 0 is greedy (argmax, lowest id on ties). NaN logits are
 *  never chosen; a row whose largest logit is not a finite number (all
 *  NaN, or the largest infinite: a broken model or device, nothing can be
 *  drawn from it) gives SQ_SAMPLER_NOT_FINITE instead of a token. Otherwise the
 *  logits are divided by the temperature, cut to the top_k highest
 *  (top_k <= 0: all), turned into probabilities, cut to the smallest set
 *  whose mass reaches top_p (top_p >= 1: all; 0: the most likely token
 *  alone, as OpenAI's API takes it) and sampled with a
 *  generator seeded from seed: the same seed and logits give the same
 *  tokens on every machine (xoshiro256**, no libc rand()).
 */
#ifndef SQ_SAMPLER_H
#define SQ_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature;
    int top_k;
    float top_p;
    uint64_t seed;
} sq_sampler_params_t;

/* The "token" of a row without a finite largest logit (see above). */
#define SQ_SAMPLER_NOT_FINITE (-1)

typedef struct sq_sampler sq_sampler_t;

/* One token's draw for a backend that samples where the logits are
 * (sq_backend.h's sample op): the sampler's parameters and the uniform
 * it would have drawn. temperature <= 0: greedy (u unused). */
typedef struct {
    float temperature;
    int top_k;
    float top_p;
    double u;
} sq_sample_row_t;

/* NULL (detail set) on n_vocab < 1, a NaN parameter or top_p < 0. */
sq_sampler_t *sq_sampler_new(const sq_sampler_params_t *params, int n_vocab);
void sq_sampler_destroy(sq_sampler_t **self_p);
/* true when the sampler is greedy (temperature <= 0): its choice is the
 * argmax, which the model can compute where the logits are
 * (sq_model_forward_argmax) */
bool sq_sampler_greedy(const sq_sampler_t *self);
/* The next token for logits (n_vocab floats; not modified), or
 * SQ_SAMPLER_NOT_FINITE. */
int32_t sq_sampler_sample(sq_sampler_t *self, const float *logits);
/* The next token's draw for a backend that samples it (instead of
 * sq_sampler_sample, using the generator the same way: one uniform per
 * non-greedy token). */
sq_sample_row_t sq_sampler_draw(sq_sampler_t *self);
/* Argmax of n logits, lowest index on ties; SQ_SAMPLER_NOT_FINITE when
 * no logit is a number or the largest is infinite. */
int32_t sq_sampler_argmax(const float *logits, int n);

#ifdef __cplusplus
}
#endif
#endif
