/*  sq_engine: load a GGUF model with its tokenizer and generate text.
 *
 *  Rank 0 of the group is the only one that encodes, samples and decodes;
 *  it broadcasts the prompt ids once and then one small step message per
 *  token, so every rank runs the same forward calls in the same order.
 */
#include "sq_engine.h"

#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#ifdef SQ_HAVE_CUDA
#include "sq_backend_cuda.h"
#endif

struct sq_engine {
    sq_gguf_t *gguf;
    sq_backend_t *be;
    sq_tp_comm_t *comm;
    sq_tp_comm_t *own_comm;     /* the local comm when none was given */
    sq_tp_comm_t *dev_comm;     /* CUDA: device all-reduce over comm */
    sq_model_t *model;
    sq_tokenizer_t *tok;
    float *logits;              /* n_vocab, rank 0 */
};

/* ---- tokenizer from metadata ---- */

static int s_special_id(const sq_gguf_t *g, const char *key, int n_vocab, int32_t *out)
{
    uint32_t v;
    *out = -1;
    if (sq_gguf_find_key(g, key) < 0)
        return 0;
    int rc = sq_gguf_get_u32(g, key, &v);
    if (rc)
        return rc;
    if (v >= (uint32_t)n_vocab)
        return SQ_FAIL(SQ_EFORMAT, "key %s: id %u outside the vocabulary of %d", key, v, n_vocab);
    *out = (int32_t)v;
    return 0;
}

/* An optional flag of the tokenizer (a bool, or a number: 0 is false);
 * absent: dflt. */
static int s_flag(const sq_gguf_t *g, const char *key, bool dflt, bool *out)
{
    const int64_t k = sq_gguf_find_key(g, key);
    uint64_t v;
    *out = dflt;
    if (k < 0)
        return 0;
    if (sq_gguf_kv_uint(g, k, &v) != 0)
        return SQ_FAIL(SQ_EFORMAT, "key %s: expected a bool", key);
    *out = v != 0;
    return 0;
}

/* Optional per-token array of key: n entries or absent. */
static int s_token_array(const sq_gguf_t *g, const char *key, uint64_t n, int64_t *idx)
{
    uint32_t et;
    uint64_t count;
    *idx = sq_gguf_find_key(g, key);
    if (*idx < 0)
        return 0;
    if (sq_gguf_kv_arr(g, *idx, &et, &count) != 0 || count != n ||
        et == SQ_GGUF_STRING || et == SQ_GGUF_ARRAY)
        return SQ_FAIL(SQ_EFORMAT, "key %s: expected %llu numbers", key, (unsigned long long)n);
    return 0;
}

typedef struct {
    const char **pieces;
    uint32_t *lens;
    float *scores;
    int32_t *types;
} s_vocab_t;

static int s_read_vocab(const sq_gguf_t *g, int64_t ktok, uint64_t n, s_vocab_t *v)
{
    int64_t ksc, kty;
    int rc;
    if ((rc = s_token_array(g, "tokenizer.ggml.scores", n, &ksc)) ||
        (rc = s_token_array(g, "tokenizer.ggml.token_type", n, &kty)))
        return rc;
    v->pieces = calloc(n, sizeof *v->pieces);
    v->lens = calloc(n, sizeof *v->lens);
    v->scores = ksc >= 0 ? calloc(n, sizeof *v->scores) : NULL;
    v->types = kty >= 0 ? calloc(n, sizeof *v->types) : NULL;
    if (!v->pieces || !v->lens || (ksc >= 0 && !v->scores) || (kty >= 0 && !v->types))
        return SQ_FAIL(SQ_ENOMEM, "vocabulary of %llu", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        sq_gguf_str_t s;
        double d;
        int64_t t;
        sq_gguf_kv_arr_str(g, ktok, i, &s);
        if (s.len > UINT32_MAX)
            return SQ_FAIL(SQ_EFORMAT, "tokenizer.ggml.tokens[%llu] too long", (unsigned long long)i);
        v->pieces[i] = s.data;
        v->lens[i] = (uint32_t)s.len;
        if (v->scores && sq_gguf_kv_arr_float(g, ksc, i, &d) == 0)
            v->scores[i] = (float)d;
        if (v->types && sq_gguf_kv_arr_int(g, kty, i, &t) == 0)
            v->types[i] = (int32_t)(t < 0 || t > 6 ? SQ_TOKEN_UNDEFINED : t);
    }
    return 0;
}

sq_tokenizer_t *sq_tokenizer_from_gguf(const sq_gguf_t *g)
{
    sq_gguf_str_t model;
    uint32_t et;
    uint64_t n = 0;
    s_vocab_t v = {0};
    sq_tokenizer_t *tok = NULL;
    int64_t ktok = sq_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (sq_gguf_get_str(g, "tokenizer.ggml.model", &model) != 0)
        goto out;
    if (!sq_gguf_str_eq(model, "llama")) {
        SQ_FAIL(SQ_EUNSUPPORTED, "tokenizer.ggml.model %.*s (only llama is supported)",
                (int)(model.len > 64 ? 64 : model.len), model.data);
        goto out;
    }
    if (sq_gguf_kv_arr(g, ktok, &et, &n) != 0 || et != SQ_GGUF_STRING || n == 0 ||
        n > INT32_MAX) {
        SQ_FAIL(SQ_EFORMAT, "key tokenizer.ggml.tokens: missing or not a list of strings");
        goto out;
    }
    sq_tokenizer_config_t cfg = {.n_vocab = (int32_t)n};
    if (s_flag(g, "tokenizer.ggml.add_space_prefix", true, &cfg.add_space_prefix) != 0 ||
        s_flag(g, "tokenizer.ggml.add_bos_token", true, &cfg.add_bos) != 0 ||
        s_read_vocab(g, ktok, n, &v) != 0 ||
        s_special_id(g, "tokenizer.ggml.bos_token_id", (int)n, &cfg.bos_id) != 0 ||
        s_special_id(g, "tokenizer.ggml.eos_token_id", (int)n, &cfg.eos_id) != 0 ||
        s_special_id(g, "tokenizer.ggml.unknown_token_id", (int)n, &cfg.unk_id) != 0)
        goto out;
    cfg.pieces = v.pieces;
    cfg.piece_lens = v.lens;
    cfg.scores = v.scores;
    cfg.token_types = v.types;
    tok = sq_tokenizer_new(&cfg);
out:
    free(v.pieces);
    free(v.lens);
    free(v.scores);
    free(v.types);
    return tok;
}

/* ---- engine ---- */

sq_engine_t *sq_engine_new(const sq_engine_params_t *p)
{
    sq_engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        SQ_FAIL(SQ_ENOMEM, "engine");
        return NULL;
    }
    e->comm = p->comm;
    if (!e->comm && !(e->comm = e->own_comm = sq_tp_comm_local_new()))
        goto fail;
    if (!(e->gguf = sq_gguf_open(p->model_path)) ||
        !(e->be = sq_backend_new(p->device, p->n_threads > 0 ? p->n_threads : 1)))
        goto fail;
    sq_tp_comm_t *model_comm = e->comm;
#ifdef SQ_HAVE_CUDA
    /* CUDA ranks reduce device buffers: NCCL, or through host memory when
     * ranks share a device or SHARDQ_NCCL=0 (sq_backend_cuda.h) */
    if (sq_backend_is_cuda(e->be) &&
        !(model_comm = e->dev_comm = sq_tp_comm_cuda_new(e->be, e->comm)))
        goto fail;
#endif
    sq_model_params_t mp = {.n_ctx = p->n_ctx, .n_slots = p->n_slots,
                            .n_kv_pages = p->n_kv_pages, .kv_type = p->kv_type};
    if (!(e->model = sq_model_new(e->gguf, e->be, model_comm, &mp)) ||
        !(e->tok = sq_tokenizer_from_gguf(e->gguf)))
        goto fail;
    int n_vocab = sq_model_hparams(e->model)->n_vocab;
    if (sq_tokenizer_n_vocab(e->tok) != n_vocab) {
        SQ_FAIL(SQ_EFORMAT, "%s: tokenizer has %d pieces, token_embd.weight %d rows",
                p->model_path, sq_tokenizer_n_vocab(e->tok), n_vocab);
        goto fail;
    }
    if (!(e->logits = malloc((size_t)n_vocab * sizeof(float)))) {
        SQ_FAIL(SQ_ENOMEM, "logits");
        goto fail;
    }
    return e;
fail:
    sq_engine_destroy(&e);
    return NULL;
}

void sq_engine_destroy(sq_engine_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_engine_t *e = *self_p;
    sq_model_destroy(&e->model);
    sq_tokenizer_destroy(&e->tok);
    sq_tp_comm_destroy(&e->dev_comm);
    sq_backend_destroy(&e->be);
    sq_gguf_destroy(&e->gguf);
    sq_tp_comm_destroy(&e->own_comm);
    free(e->logits);
    free(e);
    *self_p = NULL;
}

sq_model_t *sq_engine_model(const sq_engine_t *self)
{
    return self->model;
}

const char *sq_engine_device(const sq_engine_t *self)
{
    return self->be->ops->name;
}

char *sq_engine_profile(sq_engine_t *self)
{
    return self && self->be->ops->profile ? self->be->ops->profile(self->be) : NULL;
}

const sq_tokenizer_t *sq_engine_tokenizer(const sq_engine_t *self)
{
    return self->tok;
}

const sq_gguf_t *sq_engine_gguf(const sq_engine_t *self)
{
    return self->gguf;
}

void sq_gen_result_free(sq_gen_result_t *r)
{
    free(r->prompt_ids);
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- generation ---- */

/* One decode step's decision, rank 0 to all. */
typedef struct {
    int32_t token;
    int32_t append;             /* token joins the continuation */
    int32_t finish;             /* -1: go on, else sq_finish_t */
} s_step_t;

/* Rank 0 starts the sequence (encodes the prompt); everyone gets the ids. */
static int s_start(sq_engine_t *e, const char *prompt, size_t len, const sq_gen_params_t *p,
                   sq_sequence_t **seq, sq_gen_result_t *r)
{
    const sq_model_t *m = e->model;
    uint64_t n = 0;
    int rc = 0;
    if (e->comm->rank(e->comm) == 0) {
        *seq = sq_sequence_new(e->tok, prompt, len, p, sq_model_hparams(m)->n_vocab,
                               sq_model_n_ctx(m));
        rc = *seq ? 0 : sq_error_code();
        if (*seq)
            sq_sequence_prompt(*seq, (size_t *)&n);
    }
    /* a failed start still takes part, with n = 0, so no rank hangs */
    int rc2 = e->comm->bcast(e->comm, &n, sizeof n, 0);
    if (rc || rc2)
        return rc ? rc : rc2;
    if (n == 0)
        return SQ_FAIL(SQ_ESTATE, "rank 0 could not start the sequence");
    const int max_new = p->max_tokens > 0 && p->max_tokens < sq_model_n_ctx(m)
                      ? p->max_tokens : sq_model_n_ctx(m);
    r->n_prompt = (size_t)n;
    r->prompt_ids = malloc(n * sizeof(int32_t));
    r->ids = malloc((size_t)max_new * sizeof(int32_t));
    if (!r->prompt_ids || !r->ids)
        return SQ_FAIL(SQ_ENOMEM, "prompt of %llu tokens", (unsigned long long)n);
    if (*seq)
        memcpy(r->prompt_ids, sq_sequence_prompt(*seq, &r->n_prompt), n * sizeof(int32_t));
    return e->comm->bcast(e->comm, r->prompt_ids, n * sizeof(int32_t), 0);
}

static int s_prefill(sq_engine_t *e, const sq_gen_result_t *r, float *logits)
{
    sq_batch_entry_t *b = malloc(r->n_prompt * sizeof *b);
    if (!b)
        return SQ_FAIL(SQ_ENOMEM, "prompt batch");
    for (size_t i = 0; i < r->n_prompt; i++)
        b[i] = (sq_batch_entry_t){.slot = 0, .token = r->prompt_ids[i], .pos = (int32_t)i,
                                  .want_logits = i + 1 == r->n_prompt};
    /* a fresh sequence in slot 0: let go of what it held (a batcher on the
     * same model may have shared those pages with other slots) */
    sq_model_kv_trim(e->model, 0, 0);
    int rc = sq_model_forward(e->model, b, (int)r->n_prompt, logits);
    free(b);
    return rc;
}

/* Rank 0: sample and apply the stop rules into a step message. */
static int s_decide(sq_sequence_t *seq, const float *logits, s_step_t *st)
{
    size_t before, after;
    sq_sequence_ids(seq, &before);
    const char *why;
    int rc = sq_sequence_accept(seq, logits);
    if (rc == 0 && (rc = sq_sequence_error(seq, &why)))
        rc = SQ_FAIL(rc, "%s", why);
    if (rc) {
        *st = (s_step_t){0, 0, SQ_FINISH_LENGTH};   /* tell the others to stop */
        return rc;
    }
    sq_sequence_ids(seq, &after);
    *st = (s_step_t){sq_sequence_next_token(seq), after > before,
                     sq_sequence_done(seq) ? (int32_t)sq_sequence_finish(seq) : -1};
    return 0;
}

static int s_generate(sq_engine_t *e, sq_sequence_t *seq, sq_gen_result_t *r)
{
    float *logits = seq ? e->logits : NULL;
    int rc = s_prefill(e, r, logits);
    for (int pos = (int)r->n_prompt; rc == 0; pos++) {
        s_step_t st = {0};
        int rc_decide = seq ? s_decide(seq, logits, &st) : 0;
        if ((rc = e->comm->bcast(e->comm, &st, sizeof st, 0)) || (rc = rc_decide))
            return rc;
        if (st.append)
            r->ids[r->n_ids++] = st.token;
        if (st.finish >= 0) {
            r->finish = (sq_finish_t)st.finish;
            return 0;
        }
        sq_batch_entry_t b = {.slot = 0, .token = st.token, .pos = pos, .want_logits = true};
        rc = sq_model_forward(e->model, &b, 1, logits);
    }
    return rc;
}

int sq_engine_generate(sq_engine_t *self, const char *prompt, size_t len,
                       const sq_gen_params_t *params, sq_gen_result_t *result)
{
    memset(result, 0, sizeof *result);
    sq_sequence_t *seq = NULL;
    int rc = s_start(self, prompt, len, params, &seq, result);
    if (rc == 0)
        rc = s_generate(self, seq, result);
    size_t n = 0;
    const char *text = seq ? sq_sequence_text(seq, &n) : "";
    if (rc == 0 && !(result->text = malloc(n + 1)))
        rc = SQ_FAIL(SQ_ENOMEM, "text of %zu bytes", n);
    if (rc == 0) {
        memcpy(result->text, text, n + 1);
        result->text_len = n;
    }
    sq_sequence_destroy(&seq);
    if (rc)
        sq_gen_result_free(result);
    return rc;
}
