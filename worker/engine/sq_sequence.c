/*  sq_sequence: per-sequence generation state and the stop rules.
 *
 *  The text grows by each token's piece (sq_tokenizer_token_text, which
 *  drops the space the encoder put after BOS); a stop string is looked
 *  for only where the newly added bytes can complete one.
 */
#include "sq_sequence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_error.h"

struct sq_sequence {
    const sq_tokenizer_t *tok;
    sq_sampler_t *sampler;
    int32_t *prompt;
    size_t n_prompt;
    int32_t *ids;
    size_t n_ids, cap_ids;
    char *text;
    size_t n_text, cap_text;
    char **stop;
    int n_stop;
    int max_new, n_ctx;
    bool ignore_eos, done;
    sq_finish_t finish;
    int error;                  /* it failed (sq_sequence_error): SQ_E*, else 0 */
    char why[128];
};

const char *sq_finish_name(sq_finish_t finish)
{
    return finish == SQ_FINISH_EOS ? "eos" : finish == SQ_FINISH_STOP ? "stop" : "length";
}

static int s_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return SQ_FAIL(SQ_ENOMEM, "sequence buffer of %zu", n * elem);
    *p = q;
    *cap = n;
    return 0;
}

static int s_copy_stops(sq_sequence_t *self, const sq_gen_params_t *p)
{
    if (p->n_stop <= 0)
        return 0;
    if (!(self->stop = calloc((size_t)p->n_stop, sizeof *self->stop)))
        return SQ_FAIL(SQ_ENOMEM, "stop strings");
    for (; self->n_stop < p->n_stop; self->n_stop++) {
        size_t n = strlen(p->stop[self->n_stop]) + 1;
        if (!(self->stop[self->n_stop] = malloc(n)))
            return SQ_FAIL(SQ_ENOMEM, "stop strings");
        memcpy(self->stop[self->n_stop], p->stop[self->n_stop], n);
    }
    return 0;
}

static int s_init(sq_sequence_t *self, const sq_tokenizer_text_t *turns, size_t n_turns,
                  int32_t sep_id, const sq_gen_params_t *p, int n_vocab)
{
    int rc = sq_tokenizer_encode_turns(self->tok, turns, n_turns, sep_id,
                                       sq_tokenizer_add_bos(self->tok), &self->prompt,
                                       &self->n_prompt);
    if (rc)
        return rc;
    if (self->n_prompt == 0)
        return SQ_FAIL(SQ_EINVAL, "prompt encodes to no tokens");
    if (self->n_prompt >= (size_t)self->n_ctx)
        return SQ_FAIL(SQ_ETOOBIG, "prompt of %zu tokens does not fit the context of %d",
                       self->n_prompt, self->n_ctx);
    if (!(self->sampler = sq_sampler_new(&p->sampler, n_vocab)))
        return sq_error_code();
    if ((rc = s_grow((void **)&self->text, &self->cap_text, 1, 1)))
        return rc;
    self->text[0] = '\0';
    return s_copy_stops(self, p);
}

sq_sequence_t *sq_sequence_new(const sq_tokenizer_t *tok, const char *prompt, size_t len,
                               const sq_gen_params_t *params, int n_vocab, int n_ctx)
{
    const sq_tokenizer_text_t one = {prompt, len};
    return sq_sequence_new_turns(tok, &one, 1, -1, params, n_vocab, n_ctx);
}

sq_sequence_t *sq_sequence_new_turns(const sq_tokenizer_t *tok, const sq_tokenizer_text_t *turns,
                                     size_t n_turns, int32_t sep_id,
                                     const sq_gen_params_t *params, int n_vocab, int n_ctx)
{
    sq_sequence_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "sequence");
        return NULL;
    }
    self->tok = tok;
    self->n_ctx = n_ctx;
    self->max_new = params->max_tokens > 0 ? params->max_tokens : n_ctx;
    self->ignore_eos = params->ignore_eos;
    if (s_init(self, turns, n_turns, sep_id, params, n_vocab) != 0)
        sq_sequence_destroy(&self);
    return self;
}

void sq_sequence_destroy(sq_sequence_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_sequence_t *self = *self_p;
    sq_sampler_destroy(&self->sampler);
    for (int i = 0; i < self->n_stop; i++)
        free(self->stop[i]);
    free(self->stop);
    free(self->prompt);
    free(self->ids);
    free(self->text);
    free(self);
    *self_p = NULL;
}

const int32_t *sq_sequence_prompt(const sq_sequence_t *self, size_t *n_p)
{
    *n_p = self->n_prompt;
    return self->prompt;
}

bool sq_sequence_done(const sq_sequence_t *self)
{
    return self->done;
}

sq_finish_t sq_sequence_finish(const sq_sequence_t *self)
{
    return self->finish;
}

int32_t sq_sequence_next_token(const sq_sequence_t *self)
{
    return self->n_ids ? self->ids[self->n_ids - 1] : self->prompt[self->n_prompt - 1];
}

int32_t sq_sequence_next_pos(const sq_sequence_t *self)
{
    return (int32_t)(self->n_prompt + self->n_ids - 1);
}

const int32_t *sq_sequence_ids(const sq_sequence_t *self, size_t *n_p)
{
    *n_p = self->n_ids;
    return self->ids;
}

const char *sq_sequence_text(const sq_sequence_t *self, size_t *len_p)
{
    *len_p = self->n_text;
    return self->text;
}

/* Earliest stop string the text, grown from old_n bytes, now holds;
 * truncates the text there. */
static bool s_cut_at_stop(sq_sequence_t *self, size_t old_n)
{
    size_t best = SIZE_MAX;
    for (int i = 0; i < self->n_stop; i++) {
        size_t len = strlen(self->stop[i]);
        if (len == 0 || len > self->n_text)
            continue;
        size_t from = old_n >= len - 1 ? old_n - (len - 1) : 0;
        for (size_t at = from; at + len <= self->n_text && at < best; at++)
            if (memcmp(self->text + at, self->stop[i], len) == 0) {
                best = at;
                break;
            }
    }
    if (best == SIZE_MAX)
        return false;
    self->n_text = best;
    self->text[best] = '\0';
    return true;
}

/* Append tok's id and text. */
static int s_append(sq_sequence_t *self, int32_t tok)
{
    int32_t prev = sq_sequence_next_token(self);
    size_t len = 0;
    const char *piece = sq_tokenizer_token_text(self->tok, prev, tok, &len);
    if (!piece)
        len = 0;
    int rc = s_grow((void **)&self->ids, &self->cap_ids, self->n_ids + 1, sizeof(int32_t));
    if (rc || (rc = s_grow((void **)&self->text, &self->cap_text, self->n_text + len + 1, 1)))
        return rc;
    self->ids[self->n_ids++] = tok;
    memcpy(self->text + self->n_text, piece ? piece : "", len);
    self->n_text += len;
    self->text[self->n_text] = '\0';
    return 0;
}

int32_t sq_sequence_sample(sq_sequence_t *self, const float *logits)
{
    return sq_sampler_sample(self->sampler, logits);
}

sq_sample_row_t sq_sequence_draw(sq_sequence_t *self)
{
    return sq_sampler_draw(self->sampler);
}

int sq_sequence_accept(sq_sequence_t *self, const float *logits)
{
    return sq_sequence_accept_token(self, sq_sequence_sample(self, logits));
}

bool sq_sequence_greedy(const sq_sequence_t *self)
{
    return sq_sampler_greedy(self->sampler);
}

int sq_sequence_error(const sq_sequence_t *self, const char **why_p)
{
    if (why_p)
        *why_p = self->error ? self->why : "";
    return self->error;
}

int sq_sequence_accept_token(sq_sequence_t *self, int32_t tok)
{
    if (tok == SQ_SAMPLER_NOT_FINITE) {
        /* no token can be drawn: garbage must not pass for a result */
        self->done = true;
        self->error = SQ_ENOTFINITE;
        snprintf(self->why, sizeof self->why,
                 "the logits for position %zu were not finite (NaN or infinite)",
                 self->n_prompt + self->n_ids);
        return 0;
    }
    if (!self->ignore_eos &&
        (tok == sq_tokenizer_eos(self->tok) || tok == sq_tokenizer_bos(self->tok))) {
        self->done = true;
        self->finish = SQ_FINISH_EOS;
        return 0;
    }
    size_t old_n = self->n_text;
    int rc = s_append(self, tok);
    if (rc)
        return rc;
    if (s_cut_at_stop(self, old_n)) {
        self->done = true;
        self->finish = SQ_FINISH_STOP;
    } else if ((int)self->n_ids >= self->max_new ||
               self->n_prompt + self->n_ids >= (size_t)self->n_ctx) {
        self->done = true;
        self->finish = SQ_FINISH_LENGTH;
    }
    return 0;
}
