/*  shardq-model random: a randomly initialised Llama model of a real shape,
 *  for benchmarks and tests (tensor-parallel splits, KV-head replication).
 *
 *  The vocabulary is synthetic and byte-level: <unk>, <s>, </s>, the 256
 *  byte pieces <0x00>..<0xFF>, then filler pieces ("▁", printable ASCII,
 *  then lower-case words with and without "▁", shortest first) scored so
 *  that shorter pieces merge first. Any text encodes.
 *
 *  Weights are uniform in [-a, a] with a = 1/sqrt(fan_in) (so a matrix
 *  product keeps activations near unit scale), norm weights are 1 and the
 *  embedding uses a = 0.5. Tensors are generated one row at a time
 *  straight into the writer: a 4.4 GB F32 model needs one row of memory.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardq_model.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf_writer.h"
#include "sq_tokenizer.h"

#define S_N_SPECIAL 259   /* <unk>, <s>, </s> and 256 byte pieces */

const char *const sq_model_shape_names[] = { "llama-110m", "tinyllama-1.1b", "tiny-gqa", NULL };

static const sq_model_shape_t s_shapes[] = {
    { "llama-110m", 768, 12, 12, 12, 2048, 32000, 1024 },
    { "tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000, 2048 },
    { "tiny-gqa", 64, 2, 8, 2, 128, 300, 256 },
};

const sq_model_shape_t *sq_model_shape_find(const char *name)
{
    for (size_t i = 0; i < sizeof s_shapes / sizeof *s_shapes; i++)
        if (strcmp(s_shapes[i].name, name) == 0)
            return &s_shapes[i];
    return NULL;
}

/* ---- vocabulary -------------------------------------------------------- */

/* Filler piece i (0-based) into buf: "▁", the 94 printable ASCII
 * characters, then for length 1, 2, 3...: "▁"+word and word over a-z. */
static size_t s_filler_piece(uint64_t i, char *buf)
{
    if (i == 0) {
        memcpy(buf, "\xe2\x96\x81", 3);
        return 3;
    }
    if (i <= 94) {
        buf[0] = (char) ('!' + i - 1);
        return 1;
    }
    i -= 95;
    for (size_t len = 1;; len++) {
        uint64_t n_words = 1;
        for (size_t k = 0; k < len; k++)
            n_words *= 26;
        for (int spaced = 1; spaced >= 0; spaced--) {
            if (!spaced && len == 1)
                continue;   /* single letters are among the ASCII above */
            if (i < n_words) {
                size_t k = 0;
                if (spaced) {
                    memcpy(buf, "\xe2\x96\x81", 3);
                    k = 3;
                }
                for (size_t c = len; c-- > 0; i /= 26)
                    buf[k + c] = (char) ('a' + i % 26);
                return k + len;
            }
            i -= n_words;
        }
    }
}

static int s_add_vocab(sq_gguf_writer_t *w, int64_t vocab)
{
    char **pieces = calloc((size_t) vocab, sizeof *pieces);
    uint32_t *lens = calloc((size_t) vocab, sizeof *lens);
    float *scores = calloc((size_t) vocab, sizeof *scores);
    int32_t *types = calloc((size_t) vocab, sizeof *types);
    char *text = malloc((size_t) vocab * 16);   /* filler pieces are short */
    int rc = SQ_FAIL(SQ_ENOMEM, "random: no memory for a vocabulary of %lld", (long long) vocab);
    if (!pieces || !lens || !scores || !types || !text)
        goto done;
    static const char *const special[] = { "<unk>", "<s>", "</s>" };
    static const int32_t special_type[] = { SQ_TOKEN_UNKNOWN, SQ_TOKEN_CONTROL, SQ_TOKEN_CONTROL };
    for (int64_t i = 0; i < vocab; i++) {
        char *p = pieces[i] = text + i * 16;
        if (i < 3) {
            lens[i] = (uint32_t) strlen(special[i]);
            memcpy(p, special[i], lens[i]);
            types[i] = special_type[i];
        } else if (i < S_N_SPECIAL) {
            lens[i] = (uint32_t) snprintf(p, 16, "<0x%02X>", (unsigned) (i - 3));
            types[i] = SQ_TOKEN_BYTE;
        } else {
            lens[i] = (uint32_t) s_filler_piece((uint64_t) (i - S_N_SPECIAL), p);
            types[i] = SQ_TOKEN_NORMAL;
            scores[i] = -(float) (i - S_N_SPECIAL);
        }
    }
    rc = sq_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama", 5);
    if (rc == 0)
        rc = sq_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", (const char *const *) pieces,
                                          lens, (uint64_t) vocab);
    if (rc == 0)
        rc = sq_gguf_writer_add_array(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores,
                                      (uint64_t) vocab);
    if (rc == 0)
        rc = sq_gguf_writer_add_array(w, "tokenizer.ggml.token_type", SQ_GGUF_INT32, types,
                                      (uint64_t) vocab);
done:
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(text);
    return rc;
}

/* ---- metadata and tensor list ----------------------------------------- */

static int s_check_shape(const sq_model_shape_t *s)
{
    if (s->dim <= 0 || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0
        || s->ffn <= 0 || s->ctx <= 0 || s->dim > (1 << 20) || s->ffn > (1 << 22)
        || s->n_layers > 1024 || s->vocab > (1 << 22) || s->ctx > (1 << 24))
        return SQ_FAIL(SQ_EINVAL, "random: every size must be positive (and sane): dim %lld, "
                       "layers %lld, heads %lld, kv heads %lld, ffn %lld, vocab %lld, ctx %lld",
                       (long long) s->dim, (long long) s->n_layers, (long long) s->n_heads,
                       (long long) s->n_kv_heads, (long long) s->ffn, (long long) s->vocab,
                       (long long) s->ctx);
    if (s->dim % s->n_heads != 0 || (s->dim / s->n_heads) % 2 != 0)
        return SQ_FAIL(SQ_EINVAL, "random: dim %lld is not %lld heads of an even size",
                       (long long) s->dim, (long long) s->n_heads);
    if (s->n_heads % s->n_kv_heads != 0)
        return SQ_FAIL(SQ_EINVAL, "random: %lld heads cannot share %lld kv heads evenly",
                       (long long) s->n_heads, (long long) s->n_kv_heads);
    if (s->vocab < S_N_SPECIAL + 1)
        return SQ_FAIL(SQ_EINVAL, "random: vocab %lld is below %d (specials, bytes and \xe2\x96\x81)",
                       (long long) s->vocab, S_N_SPECIAL + 1);
    return 0;
}

static int s_add_metadata(sq_gguf_writer_t *w, const sq_model_random_opts_t *o)
{
    const sq_model_shape_t *s = &o->shape;
    uint32_t file_type = o->dtype == SQ_DTYPE_Q8_0 ? 7 : o->dtype == SQ_DTYPE_F16 ? 1 : 0;
    char name[160];
    snprintf(name, sizeof name, "random %s seed %llu", s->name, (unsigned long long) o->seed);
    int rc = sq_gguf_writer_add_str(w, "general.architecture", "llama", 5);
    if (rc == 0) rc = sq_gguf_writer_add_str(w, "general.name", name, strlen(name));
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "general.file_type", file_type);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.context_length", (uint32_t) s->ctx);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t) s->dim);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.block_count", (uint32_t) s->n_layers);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t) s->ffn);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.rope.dimension_count",
                                             (uint32_t) (s->dim / s->n_heads));
    if (rc == 0) rc = sq_gguf_writer_add_f32(w, "llama.rope.freq_base", 10000.0f);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t) s->n_heads);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.attention.head_count_kv",
                                             (uint32_t) s->n_kv_heads);
    if (rc == 0) rc = sq_gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t) s->vocab);
    if (rc == 0) rc = s_add_vocab(w, s->vocab);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (rc == 0) rc = sq_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (rc == 0) rc = sq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (rc == 0) rc = sq_gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false);
    return rc;
}

/* Matrices take the chosen type; vectors, and Q8_0 rows that are not whole
 * blocks, stay F32 (as llama.cpp's quantizer does). */
static int s_tensor_dtype(int dtype, int n_dims, int64_t n_in)
{
    if (n_dims == 1 || (dtype == SQ_DTYPE_Q8_0 && n_in % SQ_QK8_0 != 0))
        return SQ_DTYPE_F32;
    return dtype;
}

static int s_add_tensor(sq_gguf_writer_t *w, int dtype, const char *name, int64_t n_in,
                        int64_t n_out)
{
    int64_t ne[2] = { n_in, n_out };   /* n_out rows of n_in */
    int n_dims = n_out > 0 ? 2 : 1;
    return sq_gguf_writer_add_tensor(w, name, s_tensor_dtype(dtype, n_dims, n_in), n_dims, ne);
}

static int s_add_tensors(sq_gguf_writer_t *w, const sq_model_random_opts_t *o)
{
    const sq_model_shape_t *s = &o->shape;
    int64_t kv_dim = s->dim / s->n_heads * s->n_kv_heads;
    int rc = s_add_tensor(w, o->dtype, "token_embd.weight", s->dim, s->vocab);
    if (rc == 0) rc = s_add_tensor(w, o->dtype, "output_norm.weight", s->dim, 0);
    if (rc == 0 && !o->tied) rc = s_add_tensor(w, o->dtype, "output.weight", s->dim, s->vocab);
    for (int64_t l = 0; l < s->n_layers && rc == 0; l++) {
        struct { const char *part; int64_t n_in, n_out; } t[] = {
            { "attn_norm", s->dim, 0 },      { "attn_q", s->dim, s->dim },
            { "attn_k", s->dim, kv_dim },    { "attn_v", s->dim, kv_dim },
            { "attn_output", s->dim, s->dim }, { "ffn_norm", s->dim, 0 },
            { "ffn_gate", s->dim, s->ffn },  { "ffn_up", s->dim, s->ffn },
            { "ffn_down", s->ffn, s->dim },
        };
        for (size_t i = 0; i < sizeof t / sizeof *t && rc == 0; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%lld.%s.weight", (long long) l, t[i].part);
            rc = s_add_tensor(w, o->dtype, name, t[i].n_in, t[i].n_out);
        }
    }
    return rc;
}

/* ---- data ----------------------------------------------------------------- */

/* splitmix64: fast, seedable, good enough for weights */
uint64_t sq_model_rand_u64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* One row of n values in dtype, into row (room for n floats). */
static void s_fill_row(uint64_t *rng, float amp, int dtype, int64_t n, float *x, void *row)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = amp < 0 ? 1.0f
             : amp * ((float) (sq_model_rand_u64(rng) >> 40) * (2.0f / 16777216.0f) - 1.0f);
    if (dtype == SQ_DTYPE_F32) {
        memcpy(row, x, (size_t) n * sizeof *x);
    } else if (dtype == SQ_DTYPE_F16) {
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *) row)[i] = sq_fp32_to_fp16(x[i]);
    } else {
        sq_cpu_quantize_row_q8_0(x, row, n);
    }
}

static int s_write_data(sq_gguf_writer_t *w, const sq_model_random_opts_t *o)
{
    uint64_t rng = o->seed;
    int64_t n_max = o->shape.dim > o->shape.ffn ? o->shape.dim : o->shape.ffn;
    float *x = malloc((size_t) n_max * sizeof *x);
    void *row = malloc((size_t) n_max * sizeof *x);
    if (!x || !row) {
        free(x);
        free(row);
        return SQ_FAIL(SQ_ENOMEM, "random: no memory for a row of %lld", (long long) n_max);
    }
    int rc = 0;
    for (int64_t t = 0; t < sq_gguf_writer_n_tensors(w) && rc == 0; t++) {
        int dtype;
        int64_t n_in, n_rows;
        sq_gguf_writer_tensor_shape(w, t, &dtype, &n_in, &n_rows);
        float amp = n_rows == 1 ? -1.0f           /* a norm vector: ones */
                  : t == 0 ? 0.5f : 1.0f / sqrtf((float) n_in);
        size_t row_bytes = sq_cpu_row_bytes(dtype, n_in);
        for (int64_t r = 0; r < n_rows && rc == 0; r++) {
            s_fill_row(&rng, amp, dtype, n_in, x, row);
            rc = sq_gguf_writer_write(w, row, row_bytes);
        }
    }
    free(x);
    free(row);
    return rc;
}

int sq_model_random(const sq_model_random_opts_t *opts, const char *path, FILE *out)
{
    int rc = s_check_shape(&opts->shape);
    if (rc < 0)
        return rc;
    sq_gguf_writer_t *w = sq_gguf_writer_new(SQ_GGUF_DEFAULT_ALIGNMENT);
    if (!w)
        return SQ_FAIL(SQ_ENOMEM, "random: no memory");
    rc = s_add_metadata(w, opts);
    if (rc == 0)
        rc = s_add_tensors(w, opts);
    if (rc == 0 && (rc = sq_gguf_writer_open(w, path)) == 0) {
        rc = s_write_data(w, opts);
        if (rc == 0)
            rc = sq_gguf_writer_close(w);
        if (rc < 0) {
            sq_gguf_writer_destroy(&w);   /* closes without a second error */
            remove(path);                 /* never leave a half-written model */
        }
    }
    if (rc == 0)
        fprintf(out, "wrote %s: %s, %lld tensors, %lld bytes\n", path, opts->shape.name,
                (long long) sq_gguf_writer_n_tensors(w),
                (long long) sq_gguf_writer_pos(w, SQ_GGUF_POS_END, 0));
    sq_gguf_writer_destroy(&w);
    return rc;
}
