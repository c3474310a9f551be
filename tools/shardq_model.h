/*  shardq-model: the commands of the model tool, one file each.
 *
 *  Each command returns 0 or a negative SQ_E* code with the detail
 *  recorded (SQ_FAIL); main() turns that into one message and an exit
 *  code. Commands print only their own output to `out`.
 */
#ifndef SHARDQ_MODEL_H
#define SHARDQ_MODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* `info FILE`: metadata and tensors. */
int sq_model_info(const char *path, FILE *out);

/* `quantize IN OUT q8_0`: 2-D F32/F16 tensors whose rows are whole Q8_0
 * blocks become Q8_0, the rest are copied as they are. */
int sq_model_quantize(const char *in_path, const char *out_path, FILE *out);

/* A Llama shape for `random`. */
typedef struct {
    const char *name;
    int64_t dim, n_layers, n_heads, n_kv_heads, ffn, vocab, ctx;
} sq_model_shape_t;

typedef struct {
    sq_model_shape_t shape;
    int dtype;               /* SQ_DTYPE_F32 / F16 / Q8_0 for the matrices */
    uint64_t seed;
    bool tied;               /* no output.weight: the embedding is reused */
} sq_model_random_opts_t;

/* The named shape (llama-110m, tinyllama-1.1b, tiny-gqa) or NULL. */
const sq_model_shape_t *sq_model_shape_find(const char *name);
/* Names of the known shapes, NULL-terminated. */
extern const char *const sq_model_shape_names[];

/* The tool's seeded generator (splitmix64): the same seed, the same file. */
uint64_t sq_model_rand_u64(uint64_t *state);

/* `random`: write a randomly initialised model of opts->shape to path,
 * streaming (memory use is one row). */
int sq_model_random(const sq_model_random_opts_t *opts, const char *path, FILE *out);

struct sq_gguf_writer;
struct sq_gguf;
/* Copy every key/value of g into w as it is, except general.alignment:
 * make w with sq_gguf_alignment(g), and the writer writes that key. */
int sq_model_copy_kvs(struct sq_gguf_writer *w, const struct sq_gguf *g);
/* `lora-merge BASE ADAPTER OUT`: W + scale * B A for each adapted matrix
 * (written F32), everything else copied. */
int sq_model_lora_merge(const char *base_path, const char *adapter_path, const char *path,
                        FILE *out);

/* `lora-random`: a seeded random LoRA adapter for the base model's shape. */
typedef struct {
    const char *base_path;
    int rank;
    unsigned targets;        /* bit t: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down */
    float alpha;             /* <= 0: rank (scale 1) */
    float gain;              /* amplitude of B */
    uint64_t seed;
    const char *name;        /* general.name, may be NULL */
} sq_model_lora_opts_t;
/* Parse "attn_q,ffn_up,..." into a target mask. */
int sq_model_lora_target_mask(const char *list, unsigned *mask);
int sq_model_lora_random(const sq_model_lora_opts_t *opts, const char *path, FILE *out);

#endif
