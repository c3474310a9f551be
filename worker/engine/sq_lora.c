/*  sq_lora: load, shard and apply LoRA adapters (see sq_lora.h).
 *  apply() groups the batch's tokens by adapter: each group's input rows
 *  are gathered, run through A then B (two backend matmuls), and the
 *  result rows added back into y. Tokens of the base model cost nothing.
 */
#include "sq_lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"

#define S_MAX_RANK 1024

typedef struct {
    sq_weight_t a;              /* (r, n_cols or n_in) F32 */
    sq_weight_t b;              /* (n_rows or n_out, r) F32, pre-scaled */
    int r;
} s_pair_t;

typedef struct {
    bool used;
    int max_r;
    s_pair_t *pairs;            /* n_layers * SQ_LORA_N_TARGETS; r == 0: absent */
} s_adapter_t;

struct sq_lora_set {
    sq_backend_t *be;
    int n_layers, max_adapters, max_tokens;
    sq_lora_shard_t shards[SQ_LORA_N_TARGETS];
    s_adapter_t *ad;            /* max_adapters, index id - 1 */
    int n_loaded;
    int scratch_r;              /* rank the scratch buffers fit */
    float *xa, *ta, *ya;        /* backend scratch */
    int32_t *idx;               /* host: the tokens of one adapter (max_tokens) */
    int64_t max_in, max_out;    /* local extents over all targets */
};

static const char *const s_names[SQ_LORA_N_TARGETS] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

const char *sq_lora_target_name(sq_lora_target_t t)
{
    return t < SQ_LORA_N_TARGETS ? s_names[t] : "?";
}

sq_lora_set_t *sq_lora_set_new(sq_backend_t *be, int n_layers, int max_adapters, int max_tokens,
                               const sq_lora_shard_t shards[SQ_LORA_N_TARGETS])
{
    sq_lora_set_t *self = calloc(1, sizeof *self);
    if (!self || !(self->ad = calloc((size_t)max_adapters, sizeof *self->ad)) ||
        !(self->idx = malloc((size_t)max_tokens * sizeof *self->idx))) {
        if (self)
            free(self->ad);
        free(self);
        SQ_FAIL(SQ_ENOMEM, "LoRA set");
        return NULL;
    }
    self->be = be;
    self->n_layers = n_layers;
    self->max_adapters = max_adapters;
    self->max_tokens = max_tokens;
    memcpy(self->shards, shards, sizeof self->shards);
    for (int t = 0; t < SQ_LORA_N_TARGETS; t++) {
        if (shards[t].n_cols > self->max_in)
            self->max_in = shards[t].n_cols;
        if (shards[t].n_rows > self->max_out)
            self->max_out = shards[t].n_rows;
    }
    return self;
}

/* The layer of a tensor named "blk.N.<rest>", N written as the loader
 * looks it up (plain digits, no sign, space or leading zero), and where
 * <rest> starts; false for any other name. */
static bool s_blk_layer(const char *name, int *layer, int *rest)
{
    const char *p = name + 4;
    if (strncmp(name, "blk.", 4) != 0 || *p < '0' || *p > '9' || (*p == '0' && p[1] != '.'))
        return false;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        if ((v = v * 10 + (*p - '0')) > 1000000)
            return false;
    if (*p != '.')
        return false;
    *layer = (int)v;
    *rest = (int)(p + 1 - name);
    return true;
}

static void s_release_adapter(sq_lora_set_t *self, s_adapter_t *a)
{
    for (int i = 0; a->pairs && i < self->n_layers * SQ_LORA_N_TARGETS; i++)
        if (a->pairs[i].r) {
            self->be->ops->weight_release(self->be, &a->pairs[i].a);
            self->be->ops->weight_release(self->be, &a->pairs[i].b);
        }
    free(a->pairs);
    memset(a, 0, sizeof *a);
}

void sq_lora_set_destroy(sq_lora_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_lora_set_t *self = *self_p;
    for (int i = 0; i < self->max_adapters; i++)
        if (self->ad[i].used)
            s_release_adapter(self, &self->ad[i]);
    self->be->ops->free(self->be, self->xa);
    self->be->ops->free(self->be, self->ta);
    self->be->ops->free(self->be, self->ya);
    free(self->idx);
    free(self->ad);
    free(self);
    *self_p = NULL;
}

/* Rows [row0, row0 + n_rows) x columns [col0, col0 + n_cols) of tensor t
 * (n_rows_all rows of n_cols_all), as F32 times scale, into a new weight. */
static int s_slice(sq_lora_set_t *self, const sq_gguf_tensor_t *t, int64_t row0, int64_t n_rows,
                   int64_t col0, int64_t n_cols, float scale, sq_weight_t *w)
{
    const int64_t n_in = t->ne[0];
    size_t row_bytes = sq_cpu_row_bytes(t->dtype, n_in);
    if (row_bytes == 0)
        return SQ_FAIL(SQ_EUNSUPPORTED, "tensor %s: type %d rows of %lld cannot be read", t->name,
                       t->dtype, (long long)n_in);
    float *row = malloc((size_t)n_in * sizeof(float));
    float *out = malloc((size_t)(n_rows * n_cols) * sizeof(float));
    if (!row || !out) {
        free(row);
        free(out);
        return SQ_FAIL(SQ_ENOMEM, "tensor %s", t->name);
    }
    for (int64_t r = 0; r < n_rows; r++) {
        sq_cpu_dequantize_row(t->dtype, (const char *)t->data + row_bytes * (size_t)(row0 + r), row,
                              n_in);
        for (int64_t c = 0; c < n_cols; c++)
            out[r * n_cols + c] = row[col0 + c] * scale;
    }
    free(row);
    int rc = self->be->ops->weight_init(self->be, w, SQ_DTYPE_F32, n_rows, n_cols, out, false);
    free(out);
    return rc;
}

/* One target of one layer: check both halves against the base, load the
 * shard. *found: the pair exists. */
static int s_load_pair(sq_lora_set_t *self, const sq_gguf_t *g, int l, int t, float alpha,
                       float scale_override, s_pair_t *p, int *found)
{
    char na[96], nb[96];
    snprintf(na, sizeof na, "blk.%d.%s.weight.lora_a", l, s_names[t]);
    snprintf(nb, sizeof nb, "blk.%d.%s.weight.lora_b", l, s_names[t]);
    const sq_gguf_tensor_t *A = sq_gguf_find_tensor(g, na), *B = sq_gguf_find_tensor(g, nb);
    *found = (A != NULL) + (B != NULL);
    if (!A && !B)
        return 0;
    if (!A || !B)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s has no partner %s", A ? na : nb, A ? nb : na);
    const sq_lora_shard_t *s = &self->shards[t];
    int64_t r = A->ne[1];
    char shape[SQ_GGUF_SHAPE_BYTES];
    if (A->n_dims != 2 || A->ne[0] != s->n_in || r < 1 || r > S_MAX_RANK)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: shape %s, expected [%lld, r] with 1 <= r <= %d",
                       na, sq_gguf_shape(A, shape, sizeof shape), (long long)s->n_in, S_MAX_RANK);
    if (B->n_dims != 2 || B->ne[0] != r || B->ne[1] != s->n_out)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: shape %s, expected [%lld, %lld]", nb,
                       sq_gguf_shape(B, shape, sizeof shape), (long long)r, (long long)s->n_out);
    float scale = scale_override > 0.0f ? scale_override : alpha > 0.0f ? alpha / (float)r : 1.0f;
    int rc = s_slice(self, A, 0, r, s->col0, s->n_cols, 1.0f, &p->a);
    if (rc == 0 && (rc = s_slice(self, B, s->row0, s->n_rows, 0, r, scale, &p->b)) != 0)
        self->be->ops->weight_release(self->be, &p->a);
    if (rc == 0)
        p->r = (int)r;
    return rc;
}

/* Grow the gather/temporary buffers to rank r. */
static int s_scratch(sq_lora_set_t *self, int r)
{
    if (r <= self->scratch_r)
        return 0;
    sq_backend_t *be = self->be;
    size_t T = (size_t)self->max_tokens;
    be->ops->free(be, self->ta);
    self->ta = be->ops->alloc(be, T * (size_t)r * sizeof(float));
    if (!self->xa)
        self->xa = be->ops->alloc(be, T * (size_t)self->max_in * sizeof(float));
    if (!self->ya)
        self->ya = be->ops->alloc(be, T * (size_t)self->max_out * sizeof(float));
    if (!self->ta || !self->xa || !self->ya)
        return SQ_FAIL(SQ_ENOMEM, "LoRA scratch for rank %d", r);
    self->scratch_r = r;
    return 0;
}

/* The keys every adapter file has (llama.cpp's convention); OUT *alpha. */
static int s_check_keys(const sq_gguf_t *g, float *alpha)
{
    sq_gguf_str_t type;
    if (sq_gguf_get_str(g, "general.type", &type) != 0 || !sq_gguf_str_eq(type, "adapter"))
        return SQ_FAIL(SQ_EFORMAT, "key general.type: must be \"adapter\"");
    if (sq_gguf_get_str(g, "adapter.type", &type) != 0 || !sq_gguf_str_eq(type, "lora"))
        return SQ_FAIL(SQ_EFORMAT, "key adapter.type: must be \"lora\"");
    int rc = sq_gguf_get_f32_or(g, "adapter.lora.alpha", 0.0f, alpha);
    if (rc == 0 && (!(*alpha >= 0.0f) || isinf(*alpha)))
        rc = SQ_FAIL(SQ_EFORMAT, "key adapter.lora.alpha: %g is not a finite value >= 0",
                     (double)*alpha);
    return rc;
}

int sq_lora_load(sq_lora_set_t *self, const sq_gguf_t *g, float scale_override, int *id)
{
    float alpha = 0.0f;
    int rc = s_check_keys(g, &alpha);
    if (rc)
        return rc;
    int slot = -1;
    for (int i = 0; i < self->max_adapters && slot < 0; i++)
        if (!self->ad[i].used)
            slot = i;
    if (slot < 0)
        return SQ_FAIL(SQ_ETOOBIG, "all %d adapter slots are in use", self->max_adapters);
    s_adapter_t *a = &self->ad[slot];
    if (!(a->pairs = calloc((size_t)self->n_layers * SQ_LORA_N_TARGETS, sizeof *a->pairs)))
        return SQ_FAIL(SQ_ENOMEM, "adapter");
    a->used = true;
    int64_t n_found = 0;
    for (int l = 0; rc == 0 && l < self->n_layers; l++)
        for (int t = 0; rc == 0 && t < SQ_LORA_N_TARGETS; t++) {
            int found = 0;
            s_pair_t *p = &a->pairs[l * SQ_LORA_N_TARGETS + t];
            rc = s_load_pair(self, g, l, t, alpha, scale_override, p, &found);
            n_found += found;
            if (p->r > a->max_r)
                a->max_r = p->r;
        }
    /* every tensor of the file must have been a known pair */
    if (rc == 0 && n_found != sq_gguf_n_tensors(g)) {
        for (int64_t i = 0; i < sq_gguf_n_tensors(g); i++) {
            const char *name = sq_gguf_tensor(g, i)->name;
            int l, rest;
            if (!s_blk_layer(name, &l, &rest) || l >= self->n_layers) {
                rc = SQ_FAIL(SQ_EFORMAT, "tensor %s: not a LoRA tensor of this %d-layer model",
                             name, self->n_layers);
                break;
            }
        }
        if (rc == 0)
            rc = SQ_FAIL(SQ_EFORMAT, "adapter holds tensors for targets other than %s",
                         "attn_q/k/v/output, ffn_gate/up/down");
    }
    if (rc == 0 && a->max_r == 0)
        rc = SQ_FAIL(SQ_EFORMAT, "adapter holds no LoRA tensors");
    if (rc == 0)
        rc = s_scratch(self, a->max_r);
    if (rc) {
        s_release_adapter(self, a);
        return rc;
    }
    self->n_loaded++;
    *id = slot + 1;
    return 0;
}

int sq_lora_unload(sq_lora_set_t *self, int id)
{
    if (id < 1 || id > self->max_adapters || !self->ad[id - 1].used)
        return SQ_FAIL(SQ_ENOTFOUND, "adapter id %d is not loaded", id);
    s_release_adapter(self, &self->ad[id - 1]);
    self->n_loaded--;
    return 0;
}

int sq_lora_n_loaded(const sq_lora_set_t *self)
{
    return self->n_loaded;
}

int sq_lora_rank(const sq_lora_set_t *self, int id)
{
    if (id < 1 || id > self->max_adapters || !self->ad[id - 1].used)
        return 0;
    return self->ad[id - 1].max_r;
}

int sq_lora_apply(sq_lora_set_t *self, int layer, sq_lora_target_t target, const float *x,
                  int n_tok, const int32_t *adapter, float *y)
{
    if (!self || self->n_loaded == 0)
        return 0;
    const sq_backend_ops_t *op = self->be->ops;
    sq_backend_t *be = self->be;
    const sq_lora_shard_t *s = &self->shards[target];
    const size_t out = (size_t)s->n_rows;
    int rc = 0;
    if (n_tok > self->max_tokens)
        return SQ_FAIL(SQ_EINVAL, "LoRA: %d tokens, at most %d", n_tok, self->max_tokens);
    /* one pass per adapter present in the batch: its tokens gathered,
     * unless it has them all, the two products, the result added back */
    for (int id = 1; rc == 0 && id <= self->max_adapters; id++) {
        const s_adapter_t *a = &self->ad[id - 1];
        if (!a->used)
            continue;
        const s_pair_t *p = &a->pairs[layer * SQ_LORA_N_TARGETS + target];
        if (!p->r)
            continue;
        int n = 0;
        for (int t = 0; t < n_tok; t++)
            if (adapter[t] == id)
                self->idx[n++] = t;
        if (n == 0)
            continue;
        const bool all = n == n_tok;
        if ((!all && (rc = op->index_rows(be, self->xa, x, s->n_cols, self->idx, n, false))) ||
            (rc = op->matmul(be, &p->a, all ? x : self->xa, n, self->ta)) ||   /* (n, r) */
            (rc = op->matmul(be, &p->b, self->ta, n, self->ya)))              /* (n, n_rows) */
            break;
        rc = all ? op->add(be, y, self->ya, (size_t)n * out)
                 : op->index_rows(be, y, self->ya, (int64_t)out, self->idx, n, true);
    }
    return rc;
}

/* ---- checking a file without a model ---- */

int sq_lora_check(const sq_gguf_t *g, const sq_gguf_t *base, int *rank, unsigned *targets)
{
    float alpha;
    int rc = s_check_keys(g, &alpha);
    int64_t n_pairs = 0;
    *rank = 0;
    *targets = 0;
    for (int64_t i = 0; rc == 0 && i < sq_gguf_n_tensors(g); i++) {
        const sq_gguf_tensor_t *t = sq_gguf_tensor(g, i);
        char base_name[96], half;
        int l, n = 0;
        const char *dot = strstr(t->name, ".weight.lora_");
        if (!dot || !s_blk_layer(t->name, &l, &n) ||
            (half = dot[13]) == 0 || (half != 'a' && half != 'b') || dot[14] != '\0')
            return SQ_FAIL(SQ_EFORMAT, "tensor %s: not a LoRA tensor (blk.N.<target>.weight.lora_a|b)",
                           t->name);
        int target = -1;
        for (int k = 0; k < SQ_LORA_N_TARGETS; k++)
            if ((size_t)(dot - (t->name + n)) == strlen(s_names[k]) &&
                strncmp(t->name + n, s_names[k], strlen(s_names[k])) == 0)
                target = k;
        if (target < 0)
            return SQ_FAIL(SQ_EFORMAT, "tensor %s: unknown target (attn_q/k/v/output, "
                           "ffn_gate/up/down)", t->name);
        if (half == 'b')
            continue;   /* checked with its A below */
        snprintf(base_name, sizeof base_name, "%.*s", (int)(dot - t->name + 7), t->name);
        char nb[112];
        snprintf(nb, sizeof nb, "%s.lora_b", base_name);
        const sq_gguf_tensor_t *b = sq_gguf_find_tensor(g, nb);
        if (!b)
            return SQ_FAIL(SQ_EFORMAT, "tensor %s has no partner %s", t->name, nb);
        char ts[SQ_GGUF_SHAPE_BYTES], bs[SQ_GGUF_SHAPE_BYTES], ws[SQ_GGUF_SHAPE_BYTES];
        if (t->n_dims != 2 || b->n_dims != 2 || t->ne[1] < 1 || t->ne[1] > S_MAX_RANK ||
            b->ne[0] != t->ne[1])
            return SQ_FAIL(SQ_EFORMAT, "tensors %s %s and %s %s: ranks do not match", t->name,
                           sq_gguf_shape(t, ts, sizeof ts), nb, sq_gguf_shape(b, bs, sizeof bs));
        if (base) {
            const sq_gguf_tensor_t *w = sq_gguf_find_tensor(base, base_name);
            if (!w)
                return SQ_FAIL(SQ_EFORMAT, "tensor %s: the base model has no %s", t->name,
                               base_name);
            if (w->n_dims != 2 || w->ne[0] != t->ne[0] || w->ne[1] != b->ne[1])
                return SQ_FAIL(SQ_EFORMAT, "tensor %s: shape %s x %s does not fit base %s %s",
                               t->name, sq_gguf_shape(t, ts, sizeof ts),
                               sq_gguf_shape(b, bs, sizeof bs), base_name,
                               sq_gguf_shape(w, ws, sizeof ws));
        }
        if (t->ne[1] > *rank)
            *rank = (int)t->ne[1];
        *targets |= 1u << target;
        n_pairs++;
    }
    if (rc == 0 && n_pairs * 2 != sq_gguf_n_tensors(g))
        rc = SQ_FAIL(SQ_EFORMAT, "adapter has a lora_b tensor without its lora_a");
    if (rc == 0 && *targets == 0)
        rc = SQ_FAIL(SQ_EFORMAT, "adapter holds no LoRA tensors");
    return rc;
}
