/*  sq_sequence: one sequence being generated — its prompt ids, the tokens
 *  and text produced so far, its sampler and its stop rules.
 *
 *  The stop rules, in one place for every caller (sq_engine_generate, the
 *  worker's continuous batcher): end at EOS or BOS unless ignore_eos (the
 *  bundled model ends a story with BOS; the end token is not kept), at a
 *  stop string (the text ends just before it; ids keep the token that
 *  completed it), at max_tokens, or when the context is full. A token
 *  that cannot be chosen (the logits were not finite: a broken model or
 *  device) ends it as failed (sq_sequence_error) rather than with a
 *  made-up token.
 *
 *  Only the rank that samples (rank 0 of a group) holds sequences.
 *  Ownership: the prompt ids and stop strings are copied; the tokenizer is
 *  borrowed and must outlive the sequence.
 */
#ifndef SQ_SEQUENCE_H
#define SQ_SEQUENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_sampler.h"
#include "sq_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int max_tokens;             /* <= 0: up to the context */
    sq_sampler_params_t sampler;
    const char *const *stop;    /* n_stop stop strings (may be NULL) */
    int n_stop;
    bool ignore_eos;            /* keep going past EOS/BOS (benchmarks) */
} sq_gen_params_t;

typedef enum { SQ_FINISH_LENGTH = 0, SQ_FINISH_EOS, SQ_FINISH_STOP } sq_finish_t;
/* "length", "eos", "stop" */
const char *sq_finish_name(sq_finish_t finish);

typedef struct sq_sequence sq_sequence_t;

/* Encode prompt (len bytes, BOS prepended unless the vocabulary says
 * tokenizer.ggml.add_bos_token = false) and prepare to generate with a
 * context of n_ctx positions. NULL on error (detail set): SQ_ETOOBIG when
 * the prompt leaves no room in the context, SQ_EINVAL for bad sampling
 * parameters, SQ_ENOMEM. */
sq_sequence_t *sq_sequence_new(const sq_tokenizer_t *tok, const char *prompt, size_t len,
                               const sq_gen_params_t *params, int n_vocab, int n_ctx);
/* The same for a prompt in turns with the special token sep_id between
 * them (sq_tokenizer_encode_turns: a chat template's turns and its EOS). */
sq_sequence_t *sq_sequence_new_turns(const sq_tokenizer_t *tok, const sq_tokenizer_text_t *turns,
                                     size_t n_turns, int32_t sep_id,
                                     const sq_gen_params_t *params, int n_vocab, int n_ctx);
void sq_sequence_destroy(sq_sequence_t **self_p);

/* The encoded prompt, BOS first (when the tokenizer adds it) (borrowed). */
const int32_t *sq_sequence_prompt(const sq_sequence_t *self, size_t *n_p);

/* Choose the next token from logits (n_vocab floats) and apply the stop
 * rules. Returns 0 or SQ_ENOMEM; logits without a finite largest value
 * end the sequence as failed (sq_sequence_error). */
int sq_sequence_accept(sq_sequence_t *self, const float *logits);
/* The token the sampler chooses from logits, without accepting it (what
 * sq_sequence_accept does first). Sequences are independent: different
 * sequences may sample at the same time on different threads. */
int32_t sq_sequence_sample(sq_sequence_t *self, const float *logits);
/* Its next token's draw for a backend that samples it (sq_sampler_draw);
 * sq_sequence_accept_token then takes the token. */
sq_sample_row_t sq_sequence_draw(sq_sequence_t *self);
/* The same with the next token already chosen: tok, the argmax, for a
 * greedy sequence (sq_sequence_greedy), or a backend's draw;
 * SQ_SAMPLER_NOT_FINITE ends it as failed */
int sq_sequence_accept_token(sq_sequence_t *self, int32_t tok);
bool sq_sequence_greedy(const sq_sequence_t *self);
bool sq_sequence_done(const sq_sequence_t *self);
/* 0, or why a done sequence failed: SQ_ENOTFINITE, the logits for its
 * next token had no finite value; *why_p (may be NULL) the text, naming
 * the position (borrowed; "" when it did not fail). */
int sq_sequence_error(const sq_sequence_t *self, const char **why_p);
sq_finish_t sq_sequence_finish(const sq_sequence_t *self);
/* While not done: the token to feed next and its position. */
int32_t sq_sequence_next_token(const sq_sequence_t *self);
int32_t sq_sequence_next_pos(const sq_sequence_t *self);

/* The generated ids and text so far (borrowed; text is NUL-terminated but
 * may hold any bytes: use *len_p). */
const int32_t *sq_sequence_ids(const sq_sequence_t *self, size_t *n_p);
const char *sq_sequence_text(const sq_sequence_t *self, size_t *len_p);

#ifdef __cplusplus
}
#endif
#endif
