/*  sq_seq: one sequence of the continuous batcher: the engine's
 *  sq_sequence (prompt ids, sampler, the stop rules every caller shares)
 *  plus how much of the prompt is already in the KV cache and the LoRA
 *  adapter it runs with.
 *
 *  Only rank 0 of a group holds sequences: it decides tokens; the other
 *  ranks just run the forward passes rank 0 plans (sq_batcher).
 *  Ownership: the prompt ids and stop strings are copied; the tokenizer is
 *  borrowed and must outlive the sequence.
 */
#ifndef SQ_SEQ_H
#define SQ_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_engine.h"

typedef struct sq_seq sq_seq_t;

/* Encode prompt (len bytes, BOS prepended unless the vocabulary says not
 * to: sq_tokenizer_add_bos) and prepare to generate.
 * n_ctx is the model's context per slot. NULL on error: SQ_ETOOBIG when the
 * prompt leaves no room in the context, SQ_EINVAL for bad sampling
 * parameters (detail set). */
sq_seq_t *sq_seq_new(const sq_tokenizer_t *tok, const char *prompt, size_t len,
                     const sq_gen_params_t *params, int n_vocab, int n_ctx);
/* The same for a prompt in turns with the special token sep_id between
 * them (sq_sequence_new_turns: a chat task's template turns and EOS). */
sq_seq_t *sq_seq_new_turns(const sq_tokenizer_t *tok, const sq_tokenizer_text_t *turns,
                           size_t n_turns, int32_t sep_id, const sq_gen_params_t *params,
                           int n_vocab, int n_ctx);
void sq_seq_destroy(sq_seq_t **self_p);

size_t sq_seq_n_prompt(const sq_seq_t *self);
const int32_t *sq_seq_prompt_ids(const sq_seq_t *self);
/* Prompt tokens already run through the model. */
size_t sq_seq_n_prefilled(const sq_seq_t *self);
void sq_seq_mark_prefilled(sq_seq_t *self, size_t n);
/* The next n prompt tokens' rows are in the KV cache already (a reused
 * or shared prefix): prefilled, and counted as cached. */
void sq_seq_mark_cached(sq_seq_t *self, size_t n);
/* Prompt tokens whose rows came from the KV cache, not computed for it
 * (OpenAI's usage.prompt_tokens_details.cached_tokens). */
size_t sq_seq_n_cached(const sq_seq_t *self);
/* Its prompt must be run again from the start (its KV rows were dropped;
 * the cached count starts again too). */
void sq_seq_restart_prefill(sq_seq_t *self);
/* The token at position pos of its context: the prompt's, then the
 * generated ones' (pos < sq_seq_next_pos). */
int32_t sq_seq_token_at(const sq_seq_t *self, size_t pos);
/* True once the whole prompt is in the KV cache: the sequence decodes. */
bool sq_seq_decoding(const sq_seq_t *self);
/* The token to feed next while decoding, and its position. */
int32_t sq_seq_next_token(const sq_seq_t *self);
int32_t sq_seq_next_pos(const sq_seq_t *self);

/* The token its sampler chooses from logits (n_vocab floats), not yet
 * taken (sq_sequence_sample); sequences may sample on different threads
 * at once. sq_seq_accept_token then takes it. */
int32_t sq_seq_sample(sq_seq_t *self, const float *logits);
/* Its next token's draw for a model that samples on its device
 * (sq_sequence_draw), instead of sq_seq_sample. */
sq_sample_row_t sq_seq_draw(sq_seq_t *self);
/* Take tok as the next token (sq_seq_sample's, or the greedy one the
 * model chose on the device) and apply the stop rules. Returns 0 (see
 * sq_seq_done; SQ_SAMPLER_NOT_FINITE ends it failed, sq_seq_error) or
 * SQ_ENOMEM. */
int sq_seq_accept_token(sq_seq_t *self, int32_t tok);
bool sq_seq_greedy(const sq_seq_t *self);
bool sq_seq_done(const sq_seq_t *self);
/* 0, or why a done sequence failed (sq_sequence_error). */
int sq_seq_error(const sq_seq_t *self, const char **why_p);
sq_finish_t sq_seq_finish(const sq_seq_t *self);

/* The LoRA adapter id (sq_model_adapter_load) the sequence runs with;
 * 0, the default, is the base model. Set before the first step. */
void sq_seq_set_adapter(sq_seq_t *self, int32_t adapter);
int32_t sq_seq_adapter(const sq_seq_t *self);

/* The continuation so far (borrowed; text may hold any bytes). */
const char *sq_seq_text(const sq_seq_t *self, size_t *len_p);
size_t sq_seq_n_generated(const sq_seq_t *self);

#endif
