/*  sq_seq: a sequence of the continuous batcher: the engine's sq_sequence
 *  (prompt, sampler, stop rules — one implementation for every caller)
 *  plus what batching adds: how much of the prompt is in the KV cache and
 *  the LoRA adapter the sequence runs with.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_seq.h"

#include <stdlib.h>

#include "sq_error.h"
#include "sq_sequence.h"

struct sq_seq {
    sq_sequence_t *seq;
    size_t n_prompt, n_prefilled;
    size_t n_cached;            /* prompt tokens whose rows came from the KV cache */
    int32_t adapter;            /* LoRA adapter id, 0: base */
};

sq_seq_t *sq_seq_new(const sq_tokenizer_t *tok, const char *prompt, size_t len,
                     const sq_gen_params_t *params, int n_vocab, int n_ctx)
{
    const sq_tokenizer_text_t one = {prompt, len};
    return sq_seq_new_turns(tok, &one, 1, -1, params, n_vocab, n_ctx);
}

sq_seq_t *sq_seq_new_turns(const sq_tokenizer_t *tok, const sq_tokenizer_text_t *turns,
                           size_t n_turns, int32_t sep_id, const sq_gen_params_t *params,
                           int n_vocab, int n_ctx)
{
    sq_seq_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "sequence");
        return NULL;
    }
    if (!(self->seq = sq_sequence_new_turns(tok, turns, n_turns, sep_id, params, n_vocab,
                                            n_ctx))) {
        free(self);
        return NULL;
    }
    sq_sequence_prompt(self->seq, &self->n_prompt);
    return self;
}

void sq_seq_destroy(sq_seq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_sequence_destroy(&(*self_p)->seq);
    free(*self_p);
    *self_p = NULL;
}

size_t sq_seq_n_prompt(const sq_seq_t *self) { return self->n_prompt; }
size_t sq_seq_n_prefilled(const sq_seq_t *self) { return self->n_prefilled; }
size_t sq_seq_n_cached(const sq_seq_t *self) { return self->n_cached; }
void sq_seq_restart_prefill(sq_seq_t *self) { self->n_prefilled = self->n_cached = 0; }

int32_t sq_seq_token_at(const sq_seq_t *self, size_t pos)
{
    size_t n_prompt, n_ids;
    const int32_t *prompt = sq_sequence_prompt(self->seq, &n_prompt);
    const int32_t *ids = sq_sequence_ids(self->seq, &n_ids);
    return pos < n_prompt ? prompt[pos] : ids[pos - n_prompt];
}
bool sq_seq_decoding(const sq_seq_t *self) { return self->n_prefilled == self->n_prompt; }
void sq_seq_set_adapter(sq_seq_t *self, int32_t adapter) { self->adapter = adapter; }
int32_t sq_seq_adapter(const sq_seq_t *self) { return self->adapter; }
int32_t sq_seq_next_token(const sq_seq_t *self) { return sq_sequence_next_token(self->seq); }
int32_t sq_seq_next_pos(const sq_seq_t *self) { return sq_sequence_next_pos(self->seq); }
bool sq_seq_done(const sq_seq_t *self) { return sq_sequence_done(self->seq); }
int sq_seq_error(const sq_seq_t *self, const char **why_p)
{
    return sq_sequence_error(self->seq, why_p);
}
sq_finish_t sq_seq_finish(const sq_seq_t *self) { return sq_sequence_finish(self->seq); }

const int32_t *sq_seq_prompt_ids(const sq_seq_t *self)
{
    size_t n;
    return sq_sequence_prompt(self->seq, &n);
}

void sq_seq_mark_prefilled(sq_seq_t *self, size_t n)
{
    self->n_prefilled = self->n_prefilled + n > self->n_prompt ? self->n_prompt
                                                              : self->n_prefilled + n;
}

void sq_seq_mark_cached(sq_seq_t *self, size_t n)
{
    const size_t before = self->n_prefilled;
    sq_seq_mark_prefilled(self, n);
    self->n_cached += self->n_prefilled - before;
}

int32_t sq_seq_sample(sq_seq_t *self, const float *logits)
{
    return sq_sequence_sample(self->seq, logits);
}

sq_sample_row_t sq_seq_draw(sq_seq_t *self)
{
    return sq_sequence_draw(self->seq);
}

int sq_seq_accept_token(sq_seq_t *self, int32_t tok)
{
    return sq_sequence_accept_token(self->seq, tok);
}

bool sq_seq_greedy(const sq_seq_t *self)
{
    return sq_sequence_greedy(self->seq);
}

const char *sq_seq_text(const sq_seq_t *self, size_t *len_p)
{
    return sq_sequence_text(self->seq, len_p);
}

size_t sq_seq_n_generated(const sq_seq_t *self)
{
    size_t n;
    sq_sequence_ids(self->seq, &n);
    return n;
}
