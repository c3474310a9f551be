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

struct sq_engine {
    sq_gguf_t *gguf;
    sq_backend_t *be;
    sq_tp_comm_t *comm;
    sq_tp_comm_t *own_comm;     /* the local comm when none was given */
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
    sq_tokenizer_config_t cfg = {.n_vocab = (int32_t)n, .add_space_prefix = true};
    int64_t kasp = sq_gguf_find_key(g, "tokenizer.ggml.add_space_prefix");
    uint64_t asp;
    if (kasp >= 0 && sq_gguf_kv_uint(g, kasp, &asp) == 0)
        cfg.add_space_prefix = asp != 0;
    if (s_read_vocab(g, ktok, n, &v) != 0 ||
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
    sq_model_params_t mp = {.n_ctx = p->n_ctx, .n_slots = p->n_slots};
    if (!(e->model = sq_model_new(e->gguf, e->be, e->comm, &mp)) ||
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

const sq_tokenizer_t *sq_engine_tokenizer(const sq_engine_t *self)
{
    return self->tok;
}

const sq_gguf_t *sq_engine_gguf(const sq_engine_t *self)
{
    return self->gguf;
}

const char *sq_finish_name(sq_finish_t finish)
{
    return finish == SQ_FINISH_EOS ? "eos" : finish == SQ_FINISH_STOP ? "stop" : "length";
}

void sq_gen_result_free(sq_gen_result_t *r)
{
    free(r->prompt_ids);
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---- generation ---- */

/* Growing text of the continuation (rank 0). */
typedef struct {
    char *p;
    size_t n, cap;
} s_text_t;

static int s_text_append(s_text_t *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        size_t cap = (t->n + n + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p)
            return SQ_FAIL(SQ_ENOMEM, "generated text of %zu bytes", t->n + n);
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = '\0';
    return 0;
}

/* Earliest end of a stop string in text, searching only where text that
 * grew from old_n bytes can hold a new match; truncates text there. */
static bool s_cut_at_stop(s_text_t *t, size_t old_n, const sq_gen_params_t *p)
{
    size_t best = SIZE_MAX;
    for (int i = 0; i < p->n_stop; i++) {
        size_t len = strlen(p->stop[i]);
        if (len == 0 || len > t->n)
            continue;
        size_t from = old_n >= len - 1 ? old_n - (len - 1) : 0;
        for (size_t at = from; at + len <= t->n && at < best; at++)
            if (memcmp(t->p + at, p->stop[i], len) == 0) {
                best = at;
                break;
            }
    }
    if (best == SIZE_MAX)
        return false;
    t->n = best;
    t->p[best] = '\0';
    return true;
}

/* One decode step's decision, rank 0 to all. */
typedef struct {
    int32_t token;
    int32_t append;             /* token joins the continuation */
    int32_t finish;             /* -1: go on, else sq_finish_t */
} s_step_t;

/* Rank 0: pick the next token and decide whether to go on. */
static int s_decide(sq_engine_t *e, sq_sampler_t *smp, const sq_gen_params_t *p,
                    sq_gen_result_t *r, s_text_t *text, int pos, int max_new, s_step_t *st)
{
    int32_t tok = sq_sampler_sample(smp, e->logits);
    *st = (s_step_t){tok, 1, -1};
    if (!p->ignore_eos && (tok == sq_tokenizer_eos(e->tok) || tok == sq_tokenizer_bos(e->tok))) {
        *st = (s_step_t){tok, 0, SQ_FINISH_EOS};
        return 0;
    }
    int32_t prev = r->n_ids ? r->ids[r->n_ids - 1] : r->prompt_ids[r->n_prompt - 1];
    size_t len, old_n = text->n;
    const char *piece = sq_tokenizer_token_text(e->tok, prev, tok, &len);
    int rc = s_text_append(text, piece ? piece : "", piece ? len : 0);
    if (rc)
        return rc;
    if (s_cut_at_stop(text, old_n, p))
        st->finish = SQ_FINISH_STOP;
    else if ((int)r->n_ids + 1 >= max_new || pos + 1 >= sq_model_n_ctx(e->model))
        st->finish = SQ_FINISH_LENGTH;
    return 0;
}

/* Rank 0 encodes; everyone gets the ids. */
static int s_share_prompt(sq_engine_t *e, const char *prompt, size_t len, sq_gen_result_t *r)
{
    uint64_t n = 0;
    int rc = 0;
    if (e->comm->rank(e->comm) == 0 &&
        (rc = sq_tokenizer_encode(e->tok, prompt, len, true, &r->prompt_ids, &r->n_prompt)) == 0)
        n = r->n_prompt;
    /* a failed encode still takes part, with n = 0, so no rank hangs */
    int rc2 = e->comm->bcast(e->comm, &n, sizeof n, 0);
    if (rc || rc2)
        return rc ? rc : rc2;
    if (n == 0)
        return SQ_FAIL(SQ_EINVAL, "prompt encodes to no tokens");
    if (n >= (uint64_t)sq_model_n_ctx(e->model))
        return SQ_FAIL(SQ_ETOOBIG, "prompt of %llu tokens does not fit the context of %d",
                       (unsigned long long)n, sq_model_n_ctx(e->model));
    if (!r->prompt_ids && !(r->prompt_ids = malloc(n * sizeof(int32_t))))
        return SQ_FAIL(SQ_ENOMEM, "prompt of %llu tokens", (unsigned long long)n);
    r->n_prompt = (size_t)n;
    return e->comm->bcast(e->comm, r->prompt_ids, n * sizeof(int32_t), 0);
}

static int s_prefill(sq_engine_t *e, const sq_gen_result_t *r, float *logits)
{
    sq_batch_entry_t *b = malloc(r->n_prompt * sizeof *b);
    if (!b)
        return SQ_FAIL(SQ_ENOMEM, "prompt batch");
    for (size_t i = 0; i < r->n_prompt; i++)
        b[i] = (sq_batch_entry_t){0, r->prompt_ids[i], (int32_t)i, i + 1 == r->n_prompt};
    int rc = sq_model_forward(e->model, b, (int)r->n_prompt, logits);
    free(b);
    return rc;
}

static int s_generate(sq_engine_t *e, const sq_gen_params_t *p, sq_gen_result_t *r,
                      s_text_t *text, sq_sampler_t *smp)
{
    const bool root = e->comm->rank(e->comm) == 0;
    float *logits = root ? e->logits : NULL;
    const int n_ctx = sq_model_n_ctx(e->model);
    const int max_new = p->max_tokens > 0 ? p->max_tokens : n_ctx;
    int rc = s_prefill(e, r, logits);
    if (rc)
        return rc;
    if (!(r->ids = malloc((size_t)(max_new < n_ctx ? max_new : n_ctx) * sizeof(int32_t))))
        return SQ_FAIL(SQ_ENOMEM, "output of %d tokens", max_new);
    for (int pos = (int)r->n_prompt;; pos++) {
        s_step_t st = {0, 0, SQ_FINISH_LENGTH};
        if (root && (rc = s_decide(e, smp, p, r, text, pos, max_new, &st)) != 0)
            st = (s_step_t){0, 0, SQ_FINISH_LENGTH};    /* tell the others to stop */
        int rc2 = e->comm->bcast(e->comm, &st, sizeof st, 0);
        if (rc || rc2)
            return rc ? rc : rc2;
        if (st.append)
            r->ids[r->n_ids++] = st.token;
        if (st.finish >= 0) {
            r->finish = (sq_finish_t)st.finish;
            return 0;
        }
        sq_batch_entry_t b = {0, st.token, pos, true};
        if ((rc = sq_model_forward(e->model, &b, 1, logits)))
            return rc;
    }
}

int sq_engine_generate(sq_engine_t *self, const char *prompt, size_t len,
                       const sq_gen_params_t *params, sq_gen_result_t *result)
{
    memset(result, 0, sizeof *result);
    s_text_t text = {0};
    sq_sampler_t *smp = NULL;
    int rc = s_share_prompt(self, prompt, len, result);
    if (rc == 0 && !(smp = sq_sampler_new(&params->sampler, sq_model_hparams(self->model)->n_vocab)))
        rc = sq_error_code();
    if (rc == 0)
        rc = s_text_append(&text, "", 0);
    if (rc == 0)
        rc = s_generate(self, params, result, &text, smp);
    sq_sampler_destroy(&smp);
    result->text = text.p;
    result->text_len = text.n;
    if (rc)
        sq_gen_result_free(result);
    return rc;
}
