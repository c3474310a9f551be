/*  sq_lora: LoRA adapters applied unmerged, per token, next to the base
 *  weights — so one batch mixes sequences on different adapters (and
 *  different versions of one adapter).
 *
 *  Format (llama.cpp convention): a GGUF with general.type = "adapter",
 *  adapter.type = "lora", adapter.lora.alpha, and for any of the targets
 *  attn_q/k/v/output and ffn_gate/up/down of layer N the pair
 *      blk.N.<target>.weight.lora_a   ne = [n_in, r]   (A: r rows of n_in)
 *      blk.N.<target>.weight.lora_b   ne = [r, n_out]  (B: n_out rows of r)
 *  so that y = W x + (alpha / r) * B (A x).
 *
 *  Sharding follows the base weights (sq_model.h): for a column-parallel
 *  target (q, k, v, gate, up) a rank keeps A whole and its rows of B; for
 *  a row-parallel one (output, down) it keeps its columns of A and B whole,
 *  and the all-reduce that follows the base matmul also sums the LoRA
 *  term (it is linear in the partial input). Weights are converted to F32
 *  at load and B is pre-scaled, so applying costs two small matmuls.
 *
 *  Ownership: a set owns its adapters' backend memory; the GGUF passed to
 *  load is read during the call only.
 */
#ifndef SQ_LORA_H
#define SQ_LORA_H

#include <stdint.h>

#include "sq_backend.h"
#include "sq_gguf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SQ_LORA_Q = 0, SQ_LORA_K, SQ_LORA_V, SQ_LORA_O, SQ_LORA_GATE, SQ_LORA_UP, SQ_LORA_DOWN,
    SQ_LORA_N_TARGETS
} sq_lora_target_t;

/* Base tensor name part of a target ("attn_q", ...). */
const char *sq_lora_target_name(sq_lora_target_t t);

/* How this rank holds one target of the base model: the full matrix is
 * (n_out, n_in); the rank keeps rows [row0, row0 + n_rows) (column-parallel)
 * or columns [col0, col0 + n_cols) (row-parallel); the other pair is the
 * whole extent. */
typedef struct {
    int64_t n_in, n_out;
    int64_t row0, n_rows;
    int64_t col0, n_cols;
} sq_lora_shard_t;

typedef struct sq_lora_set sq_lora_set_t;

/* max_adapters loaded at once (ids 1..max_adapters; 0 is the base model);
 * max_tokens: the largest batch apply sees. */
sq_lora_set_t *sq_lora_set_new(sq_backend_t *be, int n_layers, int max_adapters, int max_tokens,
                               const sq_lora_shard_t shards[SQ_LORA_N_TARGETS]);
void sq_lora_set_destroy(sq_lora_set_t **self_p);

/* Validate adapter (its keys, as sq_lora_check requires them, and its
 * shapes against the base) and load this rank's share.
 * scale <= 0 takes alpha / r. OUT *id (>= 1). SQ_EFORMAT naming the tensor
 * or key for a mismatch, SQ_ETOOBIG when every id is taken. */
int sq_lora_load(sq_lora_set_t *self, const sq_gguf_t *adapter, float scale, int *id);
int sq_lora_unload(sq_lora_set_t *self, int id);
int sq_lora_n_loaded(const sq_lora_set_t *self);
/* Rank r of the adapter, 0 when id is not loaded. */
int sq_lora_rank(const sq_lora_set_t *self, int id);

/* Check an adapter file on its own and, when base is given, against the
 * base model's matrices (no model needs loading): llama.cpp LoRA keys,
 * every tensor a lora_a/lora_b pair of a known target, shapes that fit.
 * OUT *rank (largest r), *targets (bit t set when target t is adapted).
 * SQ_EFORMAT naming the key or tensor at fault. */
int sq_lora_check(const sq_gguf_t *adapter, const sq_gguf_t *base, int *rank, unsigned *targets);

/* y (n_tok, n_out_local) += for each token t with adapter[t] != 0 that has
 * this target in this layer: scale * B (A x[t]). x: (n_tok, n_in_local),
 * the input the base matmul saw. adapter: host array of n_tok ids.
 * Returns 0 or the backend's error. */
int sq_lora_apply(sq_lora_set_t *self, int layer, sq_lora_target_t target, const float *x,
                  int n_tok, const int32_t *adapter, float *y);

#ifdef __cplusplus
}
#endif
#endif
