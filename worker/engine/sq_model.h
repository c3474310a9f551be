/*  sq_model: a Llama-architecture transformer loaded from GGUF, split over
 *  the ranks of a tensor-parallel group, run on a backend.
 *
 *  Split (Megatron): each of N ranks holds 1/N of the query heads and the
 *  K/V heads they read (Q, K, V column-parallel: a contiguous block of rows
 *  of W, used in place from the mapping unless the backend repacks it),
 *  1/N of the MLP (gate, up column-parallel; down row-parallel: the rank's
 *  block of columns copied into its own buffer at load), and attn_output
 *  row-parallel like down.
 *  Each layer does exactly two all-reduces (after attn_output and after
 *  ffn_down). When there are fewer KV heads than ranks a KV head is
 *  replicated on every rank whose query heads read it. Embedding, norms
 *  and the output layer are replicated. Shapes that cannot be split (heads
 *  or FFN width not divisible by N, a Q8_0 32-block cut by a column split)
 *  are refused at load with SQ_EUNSUPPORTED naming the tensor.
 *
 *  Batched forward: one call advances any number of sequences, each in
 *  its own KV-cache slot at its own position, so a caller can run
 *  continuous batching. Within a call, entries of one slot must come in
 *  increasing position order (a prompt is one run of consecutive
 *  positions); a sequence's cache holds what was written at positions
 *  0..pos-1 by earlier calls, so a slot is reused simply by starting again
 *  at position 0.
 */
#ifndef SQ_MODEL_H
#define SQ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_backend.h"
#include "sq_gguf.h"
#include "sq_tp_comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int n_vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim;
    int n_rot;                  /* rotated dims per head */
    int n_ctx_train;
    float rope_base, rms_eps;
    bool tied_output;           /* no output.weight: token_embd serves */
} sq_model_hparams_t;

/* The KV cache is paged (sq_backend.h, SQ_KV_PAGE positions a page): a
 * sequence holds the pages of the positions it has reached.
 * n_slots = SQ_MODEL_SLOTS_AUTO: as many pages as 90 % of the memory the
 * backend has free after the weights and activations holds (less the
 * activations' size again for the backend's scratch), the same on every
 * rank (the smallest), at most SQ_MODEL_SLOTS_AUTO_MAX whole contexts; and
 * as many slots as sequences of a quarter of the context would fill them
 * (at least 1, at most SQ_MODEL_SLOTS_AUTO_MAX). SQ_ENOMEM naming the
 * sizes when not even one whole context fits. sq_model_n_slots and
 * sq_model_kv_pages say what was chosen. */
enum { SQ_MODEL_SLOTS_AUTO = -1, SQ_MODEL_SLOTS_AUTO_MAX = 256 };

/* What the KV cache holds (--kv-type): F16, the default (as llama.cpp and
 * vLLM keep it: half the memory and the attention's reads of F32); F32;
 * or Q8_0, blocks of 32 values and their F16 scale (34 bytes for 32
 * values: 53 % of F16), for a model whose head_dim is a multiple of 32. */
typedef enum { SQ_KV_F16 = 0, SQ_KV_F32, SQ_KV_Q8_0 } sq_kv_type_t;
/* the type "f16", "f32" or "q8_0" names; -1 for anything else */
int sq_kv_type_parse(const char *name);
/* "f16", "f32" or "q8_0"; "?" for another value */
const char *sq_kv_type_name(int kv_type);

typedef struct {
    int n_ctx;                  /* positions per slot; 0: the trained context, at most 4096 */
    int n_slots;                /* KV-cache slots (concurrent sequences); 0: 1;
                                 * SQ_MODEL_SLOTS_AUTO: as many as fit (above) */
    int n_kv_pages;             /* KV-cache pages; 0: every slot its whole context
                                 * (n_slots * ceil(n_ctx / SQ_KV_PAGE)); fewer, at least
                                 * one whole context, share the memory among the slots
                                 * (ignored with SQ_MODEL_SLOTS_AUTO) */
    int max_batch;              /* tokens per internal step; 0: 256 */
    int max_adapters;           /* LoRA adapters loaded at once; 0: 8 */
    int kv_type;                /* sq_kv_type_t; 0: SQ_KV_F16 */
} sq_model_params_t;

/* One token of a batch. want_logits: return this token's logits.
 * adapter: a LoRA adapter id from sq_model_adapter_load, 0 for the base
 * model; tokens of one batch may use different adapters. */
typedef struct {
    int32_t slot;
    int32_t token;
    int32_t pos;
    bool want_logits;
    int32_t adapter;
} sq_batch_entry_t;

typedef struct sq_model sq_model_t;

/* Load from gguf (borrowed; must outlive the model), on be (borrowed),
 * split over comm (borrowed; every rank of comm calls this). params may
 * be NULL. NULL on error with the detail set. */
sq_model_t *sq_model_new(const sq_gguf_t *gguf, sq_backend_t *be, sq_tp_comm_t *comm,
                         const sq_model_params_t *params);
void sq_model_destroy(sq_model_t **self_p);

const sq_model_hparams_t *sq_model_hparams(const sq_model_t *self);
int sq_model_n_ctx(const sq_model_t *self);
int sq_model_n_slots(const sq_model_t *self);
/* The KV cache's values: SQ_DTYPE_F16 or SQ_DTYPE_F32, by name ("f16",
 * "f32", as --kv-type and the lineage spell it); its bytes on this rank,
 * all layers, K and V */
int sq_model_kv_dtype(const sq_model_t *self);
const char *sq_model_kv_type(const sq_model_t *self);
size_t sq_model_kv_bytes(const sq_model_t *self);
/* KV-cache pages: in all, free, and those slot holds (the pages of the
 * positions its last pass reached: a finished sequence's rows stay until
 * a pass rewrites or sq_model_kv_trim drops them). Every rank's counts
 * are the same. */
int sq_model_kv_pages(const sq_model_t *self);
int sq_model_kv_pages_free(const sq_model_t *self);
int sq_model_kv_pages_held(const sq_model_t *self, int slot);
/* Distinct pages the slots flagged in `in` (one per slot) hold together */
int sq_model_kv_pages_held_by(sq_model_t *self, const bool *in);
/* slot keeps its first keep positions in the cache; the pages of the rest
 * go back to the pool. Every rank calls it alike. */
void sq_model_kv_trim(sq_model_t *self, int slot, int keep);
/* Slot dst (holding no pages) shares src's first n pages: a prompt prefix
 * src stored (sq_kv_pages_share; a pass may not write into a shared
 * page). Every rank calls it alike. 0 or SQ_EINVAL. */
int sq_model_kv_share(sq_model_t *self, int dst, int src, int n);
bool sq_model_kv_page_shared(const sq_model_t *self, int slot, int k);
/* Heads this rank holds: query heads and (possibly replicated) KV heads. */
void sq_model_local_heads(const sq_model_t *self, int *n_heads, int *n_kv_heads);

/* Run batch (n entries) through the model. Every rank of the group calls
 * it with the same batch. logits_out: host memory for (number of entries
 * with want_logits, n_vocab) floats, rows in batch order; may be NULL on
 * ranks that do not sample (they then skip the output layer). A slot's
 * entries continue its sequence (their first position at most one past
 * the last one stored) or restart it from an earlier position (what was
 * stored from there on no longer counts). Returns 0, SQ_EINVAL (slot,
 * position or token out of range, or a slot starting past what its cache
 * holds, named), SQ_ENOMEM when the KV cache has too few free pages for
 * the batch (nothing ran), or the backend's or communicator's error. */
int sq_model_forward(sq_model_t *self, const sq_batch_entry_t *batch, int n, float *logits_out);
/* The same, but of each want_logits row only its greedy token (the
 * argmax, as sq_sampler_argmax: SQ_SAMPLER_NOT_FINITE for a row without a
 * finite largest logit) into tokens_out (one per such row, in
 * batch order; NULL as for logits_out): on a GPU one integer per row
 * crosses to the host instead of n_vocab floats. */
int sq_model_forward_argmax(sq_model_t *self, const sq_batch_entry_t *batch, int n,
                            int32_t *tokens_out);
/* The same with each want_logits row's token drawn where the logits are:
 * rows[i] (sq_sampler_draw) for the i-th such row, greedy rows included.
 * Only on a backend that samples (sq_model_samples_on_device; else
 * SQ_EUNSUPPORTED); see sq_backend.h's sample op for how its draws can
 * differ from sq_sampler's. */
bool sq_model_samples_on_device(const sq_model_t *self);
int sq_model_forward_sample(sq_model_t *self, const sq_batch_entry_t *batch, int n,
                            const sq_sample_row_t *rows, int32_t *tokens_out);

/* Load a LoRA adapter (GGUF, llama.cpp convention; see sq_lora.h), split
 * like the base weights. Every rank calls it with the same file. scale <= 0
 * takes alpha / r. OUT *id >= 1. The adapter file is read during the call
 * only. SQ_EFORMAT names a tensor whose shape does not fit the base. */
int sq_model_adapter_load(sq_model_t *self, const sq_gguf_t *adapter, float scale, int *id);
/* Unload an adapter no running sequence uses any more. */
int sq_model_adapter_unload(sq_model_t *self, int id);

#ifdef __cplusplus
}
#endif
#endif
