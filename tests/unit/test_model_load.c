/*  test_model_load: loading llama models written here with the GGUF
 *  writer, valid and broken.
 *
 *  - each kind of bad model (other architecture, missing tensor, wrong
 *    shape, hyper-parameters that do not fit, missing key, bad tokenizer
 *    metadata) is refused with an error naming the key or tensor;
 *  - F16 and Q8_0 weights give logits close to the same F32 weights, an
 *    untied output.weight and partial RoPE load and run;
 *  - one forward step does exactly two all-reduces per layer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sq_cpu_kernels.h"
#include "sq_engine.h"
#include "sq_error.h"
#include "sq_gguf_writer.h"
#include "sq_test.h"
#include "test_model_util.h"

#define S_VOCAB 300

typedef struct {
    const char *arch;
    uint32_t dim, n_layers, n_heads, n_kv, ffn, n_rot;
    int dtype;
    bool untied;
    const char *drop;           /* tensor left out */
    const char *misshape;       /* tensor written one row short */
    const char *drop_key;
    const char *tok_model;
    uint32_t bos;
    uint32_t key_layers;        /* llama.block_count when not n_layers (0: n_layers) */
    uint32_t vocab_key;         /* llama.vocab_size written (0: none) */
    const char *three_d;        /* tensor written as [n_in, n_out / 2, 2] */
    const char *extra;          /* one more tensor (a norm vector) of this name */
    int add_bos;                /* tokenizer.ggml.add_bos_token: 0 absent, 1 true, -1 false,
                                 * 2 a string */
} s_spec_t;

static char s_path[256];

static s_spec_t s_default(void)
{
    return (s_spec_t){.arch = "llama", .dim = 64, .n_layers = 2, .n_heads = 8, .n_kv = 2,
                      .ffn = 96, .n_rot = 8, .dtype = SQ_DTYPE_F32, .tok_model = "llama",
                      .bos = 1};
}

static uint64_t s_rng = 1;

static float s_rand(void)
{
    s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((s_rng >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

static void s_add_u32(sq_gguf_writer_t *w, const s_spec_t *s, const char *key, uint32_t v)
{
    if (!s->drop_key || strcmp(s->drop_key, key) != 0)
        sq_gguf_writer_add_u32(w, key, v);
}

static void s_add_vocab(sq_gguf_writer_t *w, const s_spec_t *s)
{
    static char names[S_VOCAB][16];
    const char *pieces[S_VOCAB];
    float scores[S_VOCAB];
    int32_t types[S_VOCAB];
    for (int i = 0; i < S_VOCAB; i++) {
        if (i < 3)
            snprintf(names[i], sizeof names[i], "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(names[i], sizeof names[i], "<0x%02X>", i - 3);
        else
            snprintf(names[i], sizeof names[i], "\xe2\x96\x81w%d", i);
        pieces[i] = names[i];
        scores[i] = (float)-i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    sq_gguf_writer_add_str(w, "tokenizer.ggml.model", s->tok_model, strlen(s->tok_model));
    sq_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", pieces, NULL, S_VOCAB);
    sq_gguf_writer_add_array(w, "tokenizer.ggml.scores", SQ_GGUF_FLOAT32, scores, S_VOCAB);
    sq_gguf_writer_add_array(w, "tokenizer.ggml.token_type", SQ_GGUF_INT32, types, S_VOCAB);
    sq_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", s->bos);
    sq_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (s->add_bos == 2)
        sq_gguf_writer_add_str(w, "tokenizer.ggml.add_bos_token", "yes", 3);
    else if (s->add_bos)
        sq_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", s->add_bos > 0);
}

/* Tensor list in file order: name, n_in, n_out (0: a norm vector). */
typedef struct {
    char name[48];
    int64_t n_in, n_out;
} s_tdef_t;

static int s_tensor_defs(const s_spec_t *s, s_tdef_t *t)
{
    int n = 0;
    const int64_t d = s->dim, kv = (int64_t)s->dim / s->n_heads * s->n_kv;
    t[n++] = (s_tdef_t){"token_embd.weight", d, S_VOCAB};
    t[n++] = (s_tdef_t){"output_norm.weight", d, 0};
    if (s->untied)
        t[n++] = (s_tdef_t){"output.weight", d, S_VOCAB};
    for (uint32_t l = 0; l < s->n_layers; l++) {
        const char *parts[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                               "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        const int64_t in[] = {d, d, d, d, d, d, d, d, s->ffn};
        const int64_t out[] = {0, d, kv, kv, d, 0, s->ffn, s->ffn, d};
        for (int i = 0; i < 9; i++) {
            t[n] = (s_tdef_t){"", in[i], out[i]};
            snprintf(t[n++].name, sizeof t[0].name, "blk.%u.%s.weight", l, parts[i]);
        }
    }
    return n;
}

static void s_write_row(sq_gguf_writer_t *w, int dtype, const float *x, int64_t n)
{
    char buf[4096];
    if (dtype == SQ_DTYPE_F32) {
        sq_gguf_writer_write(w, x, (size_t)n * 4);
    } else if (dtype == SQ_DTYPE_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = sq_fp32_to_fp16(x[i]);
            memcpy(buf + 2 * i, &h, 2);
        }
        sq_gguf_writer_write(w, buf, (size_t)n * 2);
    } else {
        sq_cpu_quantize_row_q8_0(x, (sq_block_q8_0_t *)buf, n);
        sq_gguf_writer_write(w, buf, sq_cpu_row_bytes(SQ_DTYPE_Q8_0, n));
    }
}

/* Write the model of spec to s_path; weights depend only on the shapes. */
static int s_write(const s_spec_t *s)
{
    s_tdef_t defs[64];
    int n = s_tensor_defs(s, defs);
    if (s->extra)
        defs[n++] = (s_tdef_t){"", s->dim, 0};
    if (s->extra)
        snprintf(defs[n - 1].name, sizeof defs[0].name, "%s", s->extra);
    sq_gguf_writer_t *w = sq_gguf_writer_new(32);
    if (!w)
        return -1;
    char key[96];
    sq_gguf_writer_add_str(w, "general.architecture", s->arch, strlen(s->arch));
#define S_KEY(k, v) (snprintf(key, sizeof key, "%s." k, s->arch), s_add_u32(w, s, key, v))
    S_KEY("embedding_length", s->dim);
    S_KEY("block_count", s->key_layers ? s->key_layers : s->n_layers);
    S_KEY("attention.head_count", s->n_heads);
    S_KEY("attention.head_count_kv", s->n_kv);
    S_KEY("feed_forward_length", s->ffn);
    S_KEY("context_length", 64);
    S_KEY("rope.dimension_count", s->n_rot);
    if (s->vocab_key)
        S_KEY("vocab_size", s->vocab_key);
#undef S_KEY
    s_add_vocab(w, s);
    for (int i = 0; i < n; i++) {
        if (s->drop && strcmp(s->drop, defs[i].name) == 0)
            continue;
        bool vec = defs[i].n_out == 0;
        int64_t ne[2] = {defs[i].n_in, vec ? 1 : defs[i].n_out};
        if (s->misshape && strcmp(s->misshape, defs[i].name) == 0)
            ne[1]--;
        defs[i].n_out = vec ? 0 : ne[1];
        int dt = vec || ne[0] % 32 ? SQ_DTYPE_F32 : s->dtype;
        if (s->three_d && strcmp(s->three_d, defs[i].name) == 0) {
            const int64_t ne3[3] = {ne[0], ne[1] / 2, 2};
            sq_gguf_writer_add_tensor(w, defs[i].name, dt, 3, ne3);
            continue;
        }
        sq_gguf_writer_add_tensor(w, defs[i].name, dt, vec ? 1 : 2, ne);
    }
    int rc = sq_gguf_writer_open(w, s_path);
    s_rng = 1;
    float row[512];
    for (int i = 0; rc == 0 && i < n; i++) {
        if (s->drop && strcmp(s->drop, defs[i].name) == 0)
            continue;
        bool vec = defs[i].n_out == 0;
        int64_t rows = vec ? 1 : defs[i].n_out, cols = defs[i].n_in;
        float scale = vec ? 0.0f : 1.0f / sqrtf((float)cols);
        int dt = vec || cols % 32 ? SQ_DTYPE_F32 : s->dtype;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++)
                row[c] = vec ? 1.0f + 0.1f * s_rand() : scale * s_rand();
            s_write_row(w, dt, row, cols);
        }
    }
    if (rc == 0)
        rc = sq_gguf_writer_close(w);
    sq_gguf_writer_destroy(&w);
    return rc;
}

static sq_engine_t *s_load(void)
{
    sq_engine_params_t p = {.model_path = s_path, .n_threads = 1};
    return sq_engine_new(&p);
}

static void s_expect_refused(s_spec_t s, int rc, const char *needle)
{
    SQ_REQUIRE(s_write(&s) == 0);
    sq_error_clear();
    sq_engine_t *e = s_load();
    SQ_CHECK(e == NULL);
    SQ_CHECK(sq_error_code() == rc);
    if (!strstr(sq_error_detail(), needle)) {
        fprintf(stderr, "   detail \"%s\" lacks \"%s\"\n", sq_error_detail(), needle);
        SQ_CHECK(!"detail names the problem");
    }
    sq_engine_destroy(&e);
}

static void test_bad_models_refused(void)
{
    s_spec_t s = s_default();
    s.arch = "gpt2";
    s_expect_refused(s, SQ_EUNSUPPORTED, "general.architecture gpt2");
    s = s_default();
    s.drop = "blk.1.ffn_up.weight";
    s_expect_refused(s, SQ_EFORMAT, "tensor blk.1.ffn_up.weight missing");
    s = s_default();
    s.misshape = "blk.0.attn_k.weight";
    s_expect_refused(s, SQ_EFORMAT, "tensor blk.0.attn_k.weight: shape [64, 15], expected [64, 16]");
    s = s_default();
    s.n_heads = 7;
    s.n_kv = 7;
    s_expect_refused(s, SQ_EFORMAT, "hyper-parameters");
    s = s_default();
    s.n_kv = 3;
    s_expect_refused(s, SQ_EFORMAT, "kv heads 3");
    s = s_default();
    s.drop_key = "llama.block_count";
    s_expect_refused(s, SQ_ENOTFOUND, "llama.block_count");
    s = s_default();
    s.n_rot = 9;
    s_expect_refused(s, SQ_EFORMAT, "llama.rope.dimension_count = 9: RoPE rotates pairs of a "
                                    "head's values, so it must be even and 2 to the head's 8");
    /* 0 rotated nothing (it loaded, a model without positions) */
    s = s_default();
    s.n_rot = 0;
    s_expect_refused(s, SQ_EFORMAT, "llama.rope.dimension_count = 0: RoPE rotates pairs");
    /* heads too small for the rotated dims: which key says what */
    s = s_default();
    s.n_heads = 16;
    s_expect_refused(s, SQ_EFORMAT, "llama.rope.dimension_count = 8: RoPE rotates pairs of a "
                     "head's values, so it must be even and 2 to the head's 4 "
                     "(llama.embedding_length 64 / llama.attention.head_count 16)");
    /* fewer blocks in the metadata than in the file: it ran 1 of 2 */
    s = s_default();
    s.key_layers = 1;
    s_expect_refused(s, SQ_EFORMAT, "tensor blk.1.attn_norm.weight and 8 more are not used by "
                                    "llama.block_count = 1");
    s = s_default();
    s.extra = "rope_freqs.weight";
    s_expect_refused(s, SQ_EUNSUPPORTED, "tensor rope_freqs.weight is not part of the llama "
                                         "model");
    s = s_default();
    s.extra = "blk.0.attn_q.weight.bias";
    s_expect_refused(s, SQ_EUNSUPPORTED, "tensor blk.0.attn_q.weight.bias is not part of");
    /* a vocabulary size the tokenizer and the embeddings do not have */
    s = s_default();
    s.vocab_key = S_VOCAB + 1;
    s_expect_refused(s, SQ_EFORMAT, "llama.vocab_size = 301, but token_embd.weight has 300 "
                                    "rows");
    /* a 3-D tensor's shape shows its three dims */
    s = s_default();
    s.three_d = "blk.0.attn_k.weight";
    s_expect_refused(s, SQ_EFORMAT, "tensor blk.0.attn_k.weight: shape [64, 8, 2], expected "
                                    "[64, 16]");
    s = s_default();
    s.tok_model = "gpt2";
    s_expect_refused(s, SQ_EUNSUPPORTED, "tokenizer.ggml.model gpt2");
    s = s_default();
    s.bos = 4000;
    s_expect_refused(s, SQ_EFORMAT, "tokenizer.ggml.bos_token_id");
    /* the checks refuse nothing they should take: llama.vocab_size equal,
     * an untied output */
    s = s_default();
    s.vocab_key = S_VOCAB;
    s.untied = true;
    SQ_REQUIRE(s_write(&s) == 0);
    sq_engine_t *e = s_load();
    SQ_CHECK(e != NULL);
    sq_engine_destroy(&e);
}

/* Logits of a fixed 6-token sequence for the model now at s_path. */
static int s_logits(float *out)
{
    sq_engine_t *e = s_load();
    if (!e) {
        fprintf(stderr, "   load: %s\n", sq_error_detail());
        return -1;
    }
    sq_batch_entry_t b[6];
    const int32_t toks[6] = {1, 70, 280, 5, 299, 40};
    for (int i = 0; i < 6; i++)
        b[i] = tm_entry(0, toks[i], i, true);
    int rc = sq_model_forward(sq_engine_model(e), b, 6, out);
    sq_engine_destroy(&e);
    return rc;
}

static void test_dtypes_agree(void)
{
    static float f32[6 * S_VOCAB], other[6 * S_VOCAB];
    s_spec_t s = s_default();
    SQ_REQUIRE(s_write(&s) == 0 && s_logits(f32) == 0);
    s.dtype = SQ_DTYPE_F16;
    SQ_REQUIRE(s_write(&s) == 0 && s_logits(other) == 0);
    float d16 = tm_max_rel_diff(other, f32, 6 * S_VOCAB);
    s.dtype = SQ_DTYPE_Q8_0;
    SQ_REQUIRE(s_write(&s) == 0 && s_logits(other) == 0);
    float d8 = tm_max_rel_diff(other, f32, 6 * S_VOCAB);
    fprintf(stderr, "   relative logit difference to F32: F16 %.3g, Q8_0 %.3g\n", (double)d16,
            (double)d8);
    SQ_CHECK(d16 < 5e-3f);
    SQ_CHECK(d8 < 5e-2f);
    SQ_CHECK(d16 > 0.0f && d8 > d16);   /* they really ran different weights */
    /* untied output layer and partial RoPE load and run */
    s = s_default();
    s.untied = true;
    s.n_rot = 4;
    SQ_REQUIRE(s_write(&s) == 0 && s_logits(other) == 0);
    SQ_CHECK(tm_max_rel_diff(other, f32, 6 * S_VOCAB) > 1e-3f);
}

/* ---- collectives per step ---- */

static int s_n_allreduce;

static int s_count_allreduce(sq_tp_comm_t *c, float *buf, size_t n)
{
    s_n_allreduce++;
    return 0;
}
static int s_one_rank(const sq_tp_comm_t *c) { return 0; }
static int s_one_size(const sq_tp_comm_t *c) { return 1; }

/* tokenizer.ggml.add_bos_token: absent or true, a prompt starts with
 * BOS; false, it does not (it always did); not a bool, refused */
static void test_add_bos_token(void)
{
    for (int add = -1; add <= 1; add++) {
        s_spec_t s = s_default();
        s.add_bos = add;
        SQ_REQUIRE(s_write(&s) == 0);
        sq_engine_t *e = s_load();
        SQ_REQUIRE(e);
        const sq_tokenizer_t *tok = sq_engine_tokenizer(e);
        SQ_CHECK(sq_tokenizer_add_bos(tok) == (add >= 0));
        sq_gen_params_t p = {.max_tokens = 2, .sampler = {.top_p = 1.0f}};
        sq_gen_result_t r;
        SQ_REQUIRE(sq_engine_generate(e, "w260 w261", 9, &p, &r) == 0);
        int32_t *ids = NULL;
        size_t n = 0;
        SQ_REQUIRE(sq_tokenizer_encode(tok, "w260 w261", 9, false, &ids, &n) == 0);
        const size_t bos = add >= 0;
        SQ_CHECK(r.n_prompt == n + bos && (!bos || r.prompt_ids[0] == 1) &&
                 memcmp(r.prompt_ids + bos, ids, n * sizeof *ids) == 0);
        free(ids);
        sq_gen_result_free(&r);
        sq_engine_destroy(&e);
    }
    s_spec_t s = s_default();
    s.add_bos = 2;
    s_expect_refused(s, SQ_EFORMAT, "key tokenizer.ggml.add_bos_token: expected a bool");
}

static void test_two_allreduces_per_layer(void)
{
    s_spec_t s = s_default();
    s.n_layers = 3;
    SQ_REQUIRE(s_write(&s) == 0);
    sq_tp_comm_t counting = {.allreduce_sum_f32 = s_count_allreduce, .rank = s_one_rank,
                             .size = s_one_size};
    sq_engine_params_t p = {.model_path = s_path, .n_threads = 1, .comm = &counting};
    sq_engine_t *e = sq_engine_new(&p);
    SQ_REQUIRE(e);
    float logits[2 * S_VOCAB];
    sq_batch_entry_t b[2] = {tm_entry(0, 1, 0, true), tm_entry(0, 77, 1, true)};
    s_n_allreduce = 0;
    SQ_CHECK(sq_model_forward(sq_engine_model(e), b, 2, logits) == 0);
    SQ_CHECK(s_n_allreduce == 2 * 3);
    sq_engine_destroy(&e);
}

int main(void)
{
    snprintf(s_path, sizeof s_path, "/tmp/test_model_load_%d.gguf", (int)getpid());
    SQ_RUN(test_bad_models_refused);
    SQ_RUN(test_dtypes_agree);
    SQ_RUN(test_two_allreduces_per_layer);
    SQ_RUN(test_add_bos_token);
    unlink(s_path);
    return sq_test_summary("model_load");
}
