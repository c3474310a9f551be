/*  sq_engine: text in, text out. Ties a GGUF file, its tokenizer, the
 *  (possibly tensor-parallel) model and the sampler together.
 *
 *  Under tensor parallelism every rank of the group makes the same calls:
 *  rank 0 encodes the prompt, samples and decides when to stop, and
 *  broadcasts the prompt ids and each chosen token, so the other ranks only
 *  need the same parameters (the prompt text they pass is ignored).
 */
#ifndef SQ_ENGINE_H
#define SQ_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_gguf.h"
#include "sq_model.h"
#include "sq_sampler.h"
#include "sq_sequence.h"
#include "sq_tokenizer.h"
#include "sq_tp_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *model_path;
    const char *device;         /* "cpu" (default) */
    int n_threads;              /* 0: 1 */
    int n_ctx;                  /* 0: the model's trained context, at most 4096 */
    int n_slots;                /* 0: 1 */
    int n_kv_pages;             /* KV-cache pages; 0: every slot its context (sq_model_params_t) */
    int kv_type;                /* sq_kv_type_t; 0: F16 (sq_model_params_t) */
    sq_tp_comm_t *comm;         /* borrowed; NULL: a group of one */
} sq_engine_params_t;

/* What generate returns. ids/text: the continuation only, by the stop
 * rules of sq_sequence.h. All malloc'd: free with sq_gen_result_free. */
typedef struct {
    int32_t *prompt_ids;        /* encoded prompt, BOS first unless the vocabulary
                                 * says not (sq_tokenizer_add_bos) */
    size_t n_prompt;
    int32_t *ids;
    size_t n_ids;
    char *text;                 /* NUL-terminated; text_len bytes; decoded on
                                 * rank 0 only (other ranks: "") */
    size_t text_len;
    sq_finish_t finish;
} sq_gen_result_t;

typedef struct sq_engine sq_engine_t;

/* Load everything. NULL on error, the detail names the file and cause. */
sq_engine_t *sq_engine_new(const sq_engine_params_t *params);
void sq_engine_destroy(sq_engine_t **self_p);

sq_model_t *sq_engine_model(const sq_engine_t *self);
const sq_tokenizer_t *sq_engine_tokenizer(const sq_engine_t *self);
const sq_gguf_t *sq_engine_gguf(const sq_engine_t *self);
/* The backend the model runs on ("cpu", "cuda"): what --device auto chose. */
const char *sq_engine_device(const sq_engine_t *self);
/* Where this rank's device time went, as a text table (the caller's to
 * free), when its backend keeps a profile (SHARDQ_PROFILE=1 on
 * CUDA); else NULL (self NULL included). */
char *sq_engine_profile(sq_engine_t *self);

/* Build the tokenizer from a GGUF's tokenizer.ggml.* metadata. */
sq_tokenizer_t *sq_tokenizer_from_gguf(const sq_gguf_t *gguf);

/* Generate from prompt (len bytes) in KV slot 0. OUT *result. */
int sq_engine_generate(sq_engine_t *self, const char *prompt, size_t len,
                       const sq_gen_params_t *params, sq_gen_result_t *result);
void sq_gen_result_free(sq_gen_result_t *result);

#ifdef __cplusplus
}
#endif
#endif
