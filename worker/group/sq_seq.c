/*  sq_seq: the per-sequence state of continuous batching (rank 0 only).
 *  Text grows by one token's bytes at a time; a stop string is searched
 *  only where the new bytes can complete one, so a long generation stays
 *  linear.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_seq.h"

#include <stdlib.h>
#include <string.h>

#include "sq_error.h"

struct sq_seq {
    const sq_tokenizer_t *tok;
    sq_sampler_t *sampler;
    int32_t *prompt_ids;
    size_t n_prompt, n_prefilled;
    int32_t *ids;               /* generated tokens */
    size_t n_ids, cap_ids;
    char *text;
    size_t n_text, cap_text;
    char **stop;
    int n_stop;
    int max_new;                /* tokens to generate at most */
    int n_ctx;
    bool ignore_eos;
    bool done;
    sq_finish_t finish;
    int32_t pending;            /* last accepted token, fed next */
    int32_t adapter;            /* LoRA adapter id, 0: base */
};

static int s_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap * 2 : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q)
        return SQ_FAIL(SQ_ENOMEM, "sequence buffer of %zu entries", cap2);
    *p = q;
    *cap = cap2;
    return 0;
}

sq_seq_t *sq_seq_new(const sq_tokenizer_t *tok, const char *prompt, size_t len,
                     const sq_gen_params_t *params, int n_vocab, int n_ctx)
{
    sq_seq_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "sequence");
        return NULL;
    }
    self->tok = tok;
    self->n_ctx = n_ctx;
    self->ignore_eos = params->ignore_eos;
    self->max_new = params->max_tokens > 0 ? params->max_tokens : n_ctx;
    if (sq_tokenizer_encode(tok, prompt, len, true, &self->prompt_ids, &self->n_prompt) != 0)
        goto fail;
    if (self->n_prompt == 0) {
        SQ_FAIL(SQ_EINVAL, "prompt encodes to no tokens");
        goto fail;
    }
    if (self->n_prompt >= (size_t)n_ctx) {
        SQ_FAIL(SQ_ETOOBIG, "prompt of %zu tokens does not fit the context of %d",
                self->n_prompt, n_ctx);
        goto fail;
    }
    if (!(self->sampler = sq_sampler_new(&params->sampler, n_vocab)))
        goto fail;
    if (params->n_stop > 0) {
        if (!(self->stop = calloc((size_t)params->n_stop, sizeof(char *))))
            goto nomem;
        for (int i = 0; i < params->n_stop; i++)
            if (!(self->stop[self->n_stop++] = strdup(params->stop[i])))
                goto nomem;
    }
    if (s_grow((void **)&self->text, &self->cap_text, 1, 1))
        goto fail;
    self->text[0] = '\0';
    return self;
nomem:
    SQ_FAIL(SQ_ENOMEM, "sequence stop strings");
fail:
    sq_seq_destroy(&self);
    return NULL;
}

void sq_seq_destroy(sq_seq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_seq_t *self = *self_p;
    sq_sampler_destroy(&self->sampler);
    for (int i = 0; i < self->n_stop; i++)
        free(self->stop[i]);
    free(self->stop);
    free(self->prompt_ids);
    free(self->ids);
    free(self->text);
    free(self);
    *self_p = NULL;
}

size_t sq_seq_n_prompt(const sq_seq_t *self) { return self->n_prompt; }
const int32_t *sq_seq_prompt_ids(const sq_seq_t *self) { return self->prompt_ids; }
size_t sq_seq_n_prefilled(const sq_seq_t *self) { return self->n_prefilled; }
bool sq_seq_decoding(const sq_seq_t *self) { return self->n_prefilled == self->n_prompt; }
int32_t sq_seq_next_token(const sq_seq_t *self) { return self->pending; }
bool sq_seq_done(const sq_seq_t *self) { return self->done; }
sq_finish_t sq_seq_finish(const sq_seq_t *self) { return self->finish; }
size_t sq_seq_n_generated(const sq_seq_t *self) { return self->n_ids; }
void sq_seq_set_adapter(sq_seq_t *self, int32_t adapter) { self->adapter = adapter; }
int32_t sq_seq_adapter(const sq_seq_t *self) { return self->adapter; }

void sq_seq_mark_prefilled(sq_seq_t *self, size_t n)
{
    self->n_prefilled += n;
    if (self->n_prefilled > self->n_prompt)
        self->n_prefilled = self->n_prompt;
}

/* Position of the pending token: it follows the prompt and every
 * generated token before it. */
int32_t sq_seq_next_pos(const sq_seq_t *self)
{
    return (int32_t)(self->n_prompt + self->n_ids - 1);
}

const char *sq_seq_text(const sq_seq_t *self, size_t *len_p)
{
    *len_p = self->n_text;
    return self->text;
}

/* Earliest stop string that the text, grown from old_n bytes, now holds;
 * truncates the text there. */
static bool s_cut_at_stop(sq_seq_t *self, size_t old_n)
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

int sq_seq_accept(sq_seq_t *self, const float *logits)
{
    int32_t tok = sq_sampler_sample(self->sampler, logits);
    if (!self->ignore_eos &&
        (tok == sq_tokenizer_eos(self->tok) || tok == sq_tokenizer_bos(self->tok))) {
        self->done = true;
        self->finish = SQ_FINISH_EOS;
        return 0;
    }
    int32_t prev = self->n_ids ? self->ids[self->n_ids - 1] : self->prompt_ids[self->n_prompt - 1];
    int rc = s_grow((void **)&self->ids, &self->cap_ids, self->n_ids + 1, sizeof(int32_t));
    if (rc)
        return rc;
    self->ids[self->n_ids++] = tok;
    self->pending = tok;
    size_t len = 0, old_n = self->n_text;
    const char *piece = sq_tokenizer_token_text(self->tok, prev, tok, &len);
    if (!piece)
        len = 0;
    if ((rc = s_grow((void **)&self->text, &self->cap_text, self->n_text + len + 1, 1)))
        return rc;
    memcpy(self->text + self->n_text, piece ? piece : "", len);
    self->n_text += len;
    self->text[self->n_text] = '\0';
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
