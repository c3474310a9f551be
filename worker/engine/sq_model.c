/*  sq_model: Llama weights from GGUF, this rank's share of them, and the
 *  batched forward pass. See sq_model.h for the split.
 *
 *  Tensor names and shapes follow llama.cpp; GGUF lists dims fastest
 *  first, so a matrix with ne = [n_in, n_out] is n_out rows of n_in.
 *  Activations live in backend memory and are only touched through the
 *  backend's ops; host memory holds just the per-step ids and positions.
 */
#include "sq_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_kv_pages.h"
#include "sq_lora.h"

#define S_DEFAULT_MAX_BATCH 256
/* Default context when none is asked for: the trained one, capped so a
 * 128K-context model does not reserve a KV cache for 128K positions. */
#define S_DEFAULT_MAX_CTX 4096
#define S_DEFAULT_MAX_ADAPTERS 8

typedef struct {
    sq_weight_t attn_norm, wq, wk, wv, wo;
    sq_weight_t ffn_norm, wgate, wup, wdown;
    void *k_cache, *v_cache;    /* n_pages * SQ_KV_PAGE * n_kv_local * head_dim of
                                 * kv_dtype, backend order */
} s_layer_t;

struct sq_model {
    sq_model_hparams_t hp;
    const sq_gguf_t *gguf;
    sq_backend_t *be;
    sq_tp_comm_t *comm;
    int rank, n_ranks;
    int n_ctx, n_slots, max_batch;
    int n_pages;                /* KV-cache pages (sq_kv_pages.h) */
    sq_kv_pages_t *kv;
    size_t act_bytes;           /* backend memory of the activations */
    int kv_type;                /* sq_kv_type_t */
    int kv_dtype;               /* its SQ_DTYPE_F16, SQ_DTYPE_F32 or SQ_DTYPE_Q8_0 */
    /* this rank's share */
    int n_heads_local, q_head0, n_kv_local, kv_head0, group, ffn_local;
    sq_weight_t tok_embd, out_norm, output;
    s_layer_t *layers;
    /* activations, backend memory, max_batch rows each */
    float *x, *xb, *q, *k, *v, *att, *o, *gate, *up, *logits;
    /* host scratch, max_batch entries */
    int32_t *ids, *pos, *slots, *adapters;
    int32_t *last_pos;          /* n_slots: a batch's checks' scratch */
    int32_t *fit_slot, *fit_first, *fit_last;   /* n_slots: a batch's slots' spans */
    sq_lora_set_t *lora;        /* LoRA adapters, split like the weights */
    int max_adapters;
    bool chunk_has_lora;        /* some token of the current chunk uses one */
};

/* ---- hyper-parameters ---- */

static int s_arch_u32(const sq_gguf_t *g, const char *arch, const char *name, uint32_t *out,
                      bool required, uint32_t dflt)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    return required ? sq_gguf_get_u32(g, key, out) : sq_gguf_get_u32_or(g, key, dflt, out);
}

static int s_read_hparams(const sq_gguf_t *g, sq_model_hparams_t *hp)
{
    sq_gguf_str_t arch;
    char a[32], key[128];
    uint32_t dim, n_layers, n_heads, n_kv, ffn, ctx, n_rot, hd;
    int rc = sq_gguf_get_str(g, "general.architecture", &arch);
    if (rc)
        return rc;
    if (!sq_gguf_str_eq(arch, "llama"))
        return SQ_FAIL(SQ_EUNSUPPORTED, "general.architecture %.*s (only llama is supported)",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.data);
    snprintf(a, sizeof a, "llama");
    if ((rc = s_arch_u32(g, a, "embedding_length", &dim, true, 0)) ||
        (rc = s_arch_u32(g, a, "block_count", &n_layers, true, 0)) ||
        (rc = s_arch_u32(g, a, "attention.head_count", &n_heads, true, 0)) ||
        (rc = s_arch_u32(g, a, "attention.head_count_kv", &n_kv, false, n_heads)) ||
        (rc = s_arch_u32(g, a, "feed_forward_length", &ffn, true, 0)) ||
        (rc = s_arch_u32(g, a, "context_length", &ctx, false, 2048)))
        return rc;
    if (dim == 0 || n_layers == 0 || n_heads == 0 || n_kv == 0 || ffn == 0 || ctx == 0 ||
        dim > (1u << 20) || n_layers > 4096 || ffn > (1u << 22) || dim % n_heads != 0 ||
        n_heads % n_kv != 0)
        return SQ_FAIL(SQ_EFORMAT,
                       "llama hyper-parameters: dim %u, layers %u, heads %u, kv heads %u, "
                       "ffn %u, context %u do not fit together",
                       dim, n_layers, n_heads, n_kv, ffn, ctx);
    if ((rc = s_arch_u32(g, a, "attention.key_length", &hd, false, dim / n_heads)) ||
        (rc = s_arch_u32(g, a, "rope.dimension_count", &n_rot, false, dim / n_heads)))
        return rc;
    if (hd != dim / n_heads)
        return SQ_FAIL(SQ_EFORMAT, "llama.attention.key_length = %u, but a head has %u values "
                       "(llama.embedding_length %u / llama.attention.head_count %u)", hd,
                       dim / n_heads, dim, n_heads);
    if (n_rot == 0 || n_rot > hd || n_rot % 2 != 0)
        return SQ_FAIL(SQ_EFORMAT, "llama.rope.dimension_count = %u: RoPE rotates pairs of a "
                       "head's values, so it must be even and 2 to the head's %u "
                       "(llama.embedding_length %u / llama.attention.head_count %u)", n_rot, hd,
                       dim, n_heads);
    if (n_rot > 1024)
        return SQ_FAIL(SQ_EUNSUPPORTED, "llama.rope.dimension_count %u (at most 1024)", n_rot);
    *hp = (sq_model_hparams_t){.dim = (int)dim, .n_layers = (int)n_layers,
                               .n_heads = (int)n_heads, .n_kv_heads = (int)n_kv,
                               .head_dim = (int)hd, .ffn_dim = (int)ffn, .n_rot = (int)n_rot,
                               .n_ctx_train = (int)(ctx > (1u << 24) ? (1u << 24) : ctx)};
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    if ((rc = sq_gguf_get_f32_or(g, key, 10000.0f, &hp->rope_base)))
        return rc;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    if ((rc = sq_gguf_get_f32_or(g, key, 1e-5f, &hp->rms_eps)))
        return rc;
    if (!(hp->rope_base > 0.0f) || !(hp->rms_eps >= 0.0f))
        return SQ_FAIL(SQ_EFORMAT, "llama rope base %g / rms epsilon %g out of range",
                       (double)hp->rope_base, (double)hp->rms_eps);
    const sq_gguf_tensor_t *emb = sq_gguf_find_tensor(g, "token_embd.weight");
    if (!emb)
        return SQ_FAIL(SQ_EFORMAT, "tensor token_embd.weight missing");
    char shape[SQ_GGUF_SHAPE_BYTES];
    if (emb->n_dims != 2 || emb->ne[0] != dim || emb->ne[1] < 1 || emb->ne[1] > INT32_MAX)
        return SQ_FAIL(SQ_EFORMAT, "tensor token_embd.weight: shape %s, expected [%u, n_vocab]",
                       sq_gguf_shape(emb, shape, sizeof shape), dim);
    hp->n_vocab = (int)emb->ne[1];
    hp->tied_output = sq_gguf_find_tensor(g, "output.weight") == NULL;
    uint32_t n_vocab;
    if ((rc = s_arch_u32(g, a, "vocab_size", &n_vocab, false, (uint32_t)hp->n_vocab)))
        return rc;
    if (n_vocab != (uint32_t)hp->n_vocab)
        return SQ_FAIL(SQ_EFORMAT, "llama.vocab_size = %u, but token_embd.weight has %d rows "
                       "(a token each)", n_vocab, hp->n_vocab);
    return 0;
}

/* A layer's tensors, blk.N.PART.weight, in the order s_load_layer keeps */
#define S_LAYER_PARTS 9
static const char *const s_layer_parts[S_LAYER_PARTS] = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
    "ffn_down"};

/* Every tensor of the file is one the model uses: a file whose metadata
 * says fewer blocks than it holds (or that holds what this engine does
 * not compute) would otherwise load and run a different model, as
 * llama.cpp's "wrong number of tensors" refuses. */
static int s_check_all_used(const sq_gguf_t *g, const sq_model_hparams_t *hp)
{
    const int64_t n = sq_gguf_n_tensors(g);
    const sq_gguf_tensor_t *first = NULL;
    int64_t n_unused = 0, first_layer = -1;
    for (int64_t i = 0; i < n; i++) {
        const char *name = sq_gguf_tensor(g, i)->name;
        bool used = !strcmp(name, "token_embd.weight") || !strcmp(name, "output_norm.weight") ||
                    !strcmp(name, "output.weight");
        /* blk.L.PART.weight, spelled as the loader asks for it */
        long layer = -1;
        char part[32] = "", canon[64] = "";
        if (!used && sscanf(name, "blk.%ld.%31[a-z_]", &layer, part) == 2)
            snprintf(canon, sizeof canon, "blk.%ld.%s.weight", layer, part);
        if (strcmp(canon, name) != 0)
            layer = -1;
        for (size_t k = 0; k < S_LAYER_PARTS && layer >= 0 && !used; k++)
            used = !strcmp(part, s_layer_parts[k]) && layer < hp->n_layers;
        if (!used && n_unused++ == 0) {
            first = sq_gguf_tensor(g, i);
            first_layer = layer;
        }
    }
    if (n_unused == 0)
        return 0;
    char more[48] = "";
    if (n_unused > 1)
        snprintf(more, sizeof more, " and %lld more", (long long)(n_unused - 1));
    if (first_layer >= hp->n_layers)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s%s %s not used by llama.block_count = %d",
                       first->name, more, n_unused > 1 ? "are" : "is", hp->n_layers);
    return SQ_FAIL(SQ_EUNSUPPORTED, "tensor %s%s %s not part of the llama model this engine "
                   "runs (a file for another model, or one that needs what the engine does "
                   "not compute)", first->name, more, n_unused > 1 ? "are" : "is");
}

/* ---- weights ---- */

/* The tensor name, checked to be (n_out rows of n_in); n_out 0: a vector. */
static int s_tensor(const sq_model_t *m, const char *name, int64_t n_in, int64_t n_out,
                    const sq_gguf_tensor_t **out)
{
    const sq_gguf_tensor_t *t = sq_gguf_find_tensor(m->gguf, name);
    if (!t)
        return SQ_FAIL(SQ_EFORMAT, "tensor %s missing", name);
    bool ok = n_out == 0 ? (t->n_dims == 1 && t->ne[0] == n_in)
                         : (t->n_dims == 2 && t->ne[0] == n_in && t->ne[1] == n_out);
    if (!ok) {
        char shape[SQ_GGUF_SHAPE_BYTES], want[48];
        if (n_out == 0)
            snprintf(want, sizeof want, "[%lld]", (long long)n_in);
        else
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)n_in, (long long)n_out);
        return SQ_FAIL(SQ_EFORMAT, "tensor %s: shape %s, expected %s", name,
                       sq_gguf_shape(t, shape, sizeof shape), want);
    }
    *out = t;
    return 0;
}

static int s_weight_fail(int rc, const char *name)
{
    char detail[256];
    snprintf(detail, sizeof detail, "%s", sq_error_detail());
    return SQ_FAIL(rc, "tensor %s: %s", name, detail);
}

/* Rows [row0, row0 + n_rows) of name (n_out x n_in), used in place. */
static int s_load_rows(sq_model_t *m, const char *name, int64_t n_in, int64_t n_out,
                       int64_t row0, int64_t n_rows, sq_weight_t *w)
{
    const sq_gguf_tensor_t *t = NULL;   /* set by s_tensor on success */
    int rc = s_tensor(m, name, n_in, n_out, &t);
    if (rc)
        return rc;
    size_t row = sq_cpu_row_bytes(t->dtype, n_in);
    const char *p = (const char *)t->data + row * (size_t)row0;
    rc = m->be->ops->weight_init(m->be, w, t->dtype, n_rows, n_in, p, true);
    return rc ? s_weight_fail(rc, name) : 0;
}

/* Columns [col0, col0 + n_cols) of every row, copied to a contiguous
 * (n_out x n_cols) buffer: the row-parallel share. */
static int s_load_cols(sq_model_t *m, const char *name, int64_t n_in, int64_t n_out,
                       int64_t col0, int64_t n_cols, sq_weight_t *w)
{
    const sq_gguf_tensor_t *t = NULL;   /* set by s_tensor on success */
    int rc = s_tensor(m, name, n_in, n_out, &t);
    if (rc)
        return rc;
    if (n_cols == n_in)
        return s_load_rows(m, name, n_in, n_out, 0, n_out, w);
    if (t->dtype == SQ_DTYPE_Q8_0 && (col0 % SQ_QK8_0 != 0 || n_cols % SQ_QK8_0 != 0))
        return SQ_FAIL(SQ_EUNSUPPORTED,
                       "tensor %s: splitting %lld columns into blocks of %lld over %d ranks "
                       "would cut a Q8_0 block of 32",
                       name, (long long)n_in, (long long)n_cols, m->n_ranks);
    size_t row = sq_cpu_row_bytes(t->dtype, n_in);
    size_t part = sq_cpu_row_bytes(t->dtype, n_cols);
    size_t skip = sq_cpu_row_bytes(t->dtype, col0);
    char *buf = malloc(part * (size_t)n_out);
    if (!buf)
        return SQ_FAIL(SQ_ENOMEM, "tensor %s: %zu bytes", name, part * (size_t)n_out);
    for (int64_t r = 0; r < n_out; r++)
        memcpy(buf + part * (size_t)r, (const char *)t->data + row * (size_t)r + skip, part);
    rc = m->be->ops->weight_init(m->be, w, t->dtype, n_out, n_cols, buf, false);
    free(buf);
    return rc ? s_weight_fail(rc, name) : 0;
}

/* bytes of one page's K (or V) rows in one layer's cache on this rank */
static size_t s_kv_page_bytes(const sq_model_t *m)
{
    return (size_t)SQ_KV_PAGE * (size_t)m->n_kv_local *
           sq_cpu_row_bytes(m->kv_dtype, m->hp.head_dim);
}

/* bytes of one layer's K (or V) cache on this rank */
static size_t s_kv_layer_bytes(const sq_model_t *m)
{
    return (size_t)m->n_pages * s_kv_page_bytes(m);
}

/* A norm vector of n, converted to F32. */
static int s_load_vec(sq_model_t *m, const char *name, int64_t n, sq_weight_t *w)
{
    const sq_gguf_tensor_t *t = NULL;   /* set by s_tensor on success */
    int rc = s_tensor(m, name, n, 0, &t);
    if (rc)
        return rc;
    float *buf = malloc((size_t)n * sizeof(float));
    if (!buf)
        return SQ_FAIL(SQ_ENOMEM, "tensor %s", name);
    sq_cpu_dequantize_row(t->dtype, t->data, buf, n);
    rc = m->be->ops->weight_init(m->be, w, SQ_DTYPE_F32, 1, n, buf, false);
    free(buf);
    return rc ? s_weight_fail(rc, name) : 0;
}

static int s_load_layer(sq_model_t *m, int l, s_layer_t *L)
{
    const sq_model_hparams_t *hp = &m->hp;
    const int64_t dim = hp->dim, hd = hp->head_dim;
    char n[S_LAYER_PARTS][64];
    for (int i = 0; i < S_LAYER_PARTS; i++)
        snprintf(n[i], sizeof n[i], "blk.%d.%s.weight", l, s_layer_parts[i]);
    int rc;
    if ((rc = s_load_vec(m, n[0], dim, &L->attn_norm)) ||
        (rc = s_load_rows(m, n[1], dim, hp->n_heads * hd, m->q_head0 * hd,
                          m->n_heads_local * hd, &L->wq)) ||
        (rc = s_load_rows(m, n[2], dim, hp->n_kv_heads * hd, m->kv_head0 * hd,
                          m->n_kv_local * hd, &L->wk)) ||
        (rc = s_load_rows(m, n[3], dim, hp->n_kv_heads * hd, m->kv_head0 * hd,
                          m->n_kv_local * hd, &L->wv)) ||
        (rc = s_load_cols(m, n[4], hp->n_heads * hd, dim, m->q_head0 * hd,
                          m->n_heads_local * hd, &L->wo)) ||
        (rc = s_load_vec(m, n[5], dim, &L->ffn_norm)) ||
        (rc = s_load_rows(m, n[6], dim, hp->ffn_dim, (int64_t)m->rank * m->ffn_local,
                          m->ffn_local, &L->wgate)) ||
        (rc = s_load_rows(m, n[7], dim, hp->ffn_dim, (int64_t)m->rank * m->ffn_local,
                          m->ffn_local, &L->wup)) ||
        (rc = s_load_cols(m, n[8], hp->ffn_dim, dim, (int64_t)m->rank * m->ffn_local,
                          m->ffn_local, &L->wdown)))
        return rc;
    return 0;
}

/* What to lower for a smaller KV cache, as the flags that set it: the
 * sequences (--max-batch) and pages (--kv-pages) only where they are in
 * play (a one-shot run has one sequence and no page count), and a
 * smaller cache type where this model has one. */
static const char *s_kv_hint(const sq_model_t *m, bool slots, bool pages, char *buf, size_t size)
{
    const bool q8 = m->hp.head_dim % SQ_QK8_0 == 0;
    const char *smaller = m->kv_type == SQ_KV_F32 ? (q8 ? " or use --kv-type f16 or q8_0"
                                                        : " or use --kv-type f16")
                          : m->kv_type == SQ_KV_F16 && q8 ? " or use --kv-type q8_0"
                                                          : "";
    snprintf(buf, size, "lower %s%s%s--ctx%s", slots ? "--max-batch" : "",
             slots && pages ? ", " : slots ? " or " : "", pages ? "--kv-pages or " : "", smaller);
    return buf;
}

/* Pages and slots for n_slots = SQ_MODEL_SLOTS_AUTO (sq_model.h): the
 * memory shared by the ranks of the group on it (one host for CPU ranks,
 * one device for GPU ranks sharing it) split among them, and the smallest
 * count of any rank. Each rank broadcasts its pool, then its count, in
 * turn. */
static int s_auto_slots(sq_model_t *m)
{
    size_t free_b = 0;
    uint64_t pool = 0;
    int rc = m->be->ops->mem_free ? m->be->ops->mem_free(m->be, &free_b, &pool)
                                  : SQ_FAIL(SQ_EUNSUPPORTED, "%s backend: no memory figure",
                                            m->be->ops->name);
    if (rc)
        return rc;
    int sharing = 0;
    for (int r = 0; r < m->n_ranks; r++) {
        uint64_t theirs = pool;
        if ((rc = m->comm->bcast(m->comm, &theirs, sizeof theirs, r)))
            return rc;
        sharing += theirs == pool;
    }
    free_b /= (size_t)(sharing > 0 ? sharing : 1);
    const size_t per_page = 2 * (size_t)m->hp.n_layers * s_kv_page_bytes(m);   /* K and V */
    const size_t keep = free_b / 10 + m->act_bytes;
    const size_t fit = free_b > keep ? (free_b - keep) / per_page : 0;
    const int whole = sq_kv_pages_for(m->n_ctx);
    const size_t most = (size_t)SQ_MODEL_SLOTS_AUTO_MAX * (size_t)whole;
    int32_t pages = fit > most ? (int32_t)most : (int32_t)fit;
    for (int r = 0; r < m->n_ranks; r++) {
        int32_t theirs = pages;
        if ((rc = m->comm->bcast(m->comm, &theirs, sizeof theirs, r)))
            return rc;
        pages = theirs < pages ? theirs : pages;
    }
    char hint[96];
    if (pages < whole)
        return SQ_FAIL(SQ_ENOMEM, "KV cache: one sequence of %d positions takes %.1f MiB (%s) on "
                       "this rank, %.1f MiB of %s memory is free: %s", m->n_ctx,
                       (double)per_page * whole / 1048576.0, sq_model_kv_type(m),
                       (double)free_b / 1048576.0, m->be->ops->name,
                       s_kv_hint(m, false, false, hint, sizeof hint));
    const long quarter = 4L * pages / whole;
    m->n_pages = pages;
    m->n_slots = quarter > SQ_MODEL_SLOTS_AUTO_MAX ? SQ_MODEL_SLOTS_AUTO_MAX : (int)quarter;
    return 0;
}

/* Every layer's K and V caches (n_pages pages) and the page table of
 * n_slots sequences of n_ctx positions. */
static int s_alloc_kv(sq_model_t *m, bool pages_given)
{
    const int whole = sq_kv_pages_for(m->n_ctx);
    const long every = (long)m->n_slots * whole;
    char hint[96];
    if (every > INT32_MAX)
        return SQ_FAIL(SQ_EINVAL, "KV cache of %d sequences of %d positions: %ld pages, over "
                       "%d: %s", m->n_slots, m->n_ctx, every, INT32_MAX,
                       s_kv_hint(m, m->n_slots > 1, false, hint, sizeof hint));
    if (m->n_pages == 0)
        m->n_pages = (int)every;
    if (m->n_pages < whole || m->n_pages > every)
        return SQ_FAIL(SQ_EINVAL, "%d KV pages: between one context (%d pages of %d positions) "
                       "and every slot's (%ld)", m->n_pages, whole, SQ_KV_PAGE, every);
    const size_t cache = s_kv_layer_bytes(m);
    for (int l = 0; l < m->hp.n_layers; l++) {
        s_layer_t *L = &m->layers[l];
        L->k_cache = m->be->ops->alloc(m->be, cache);
        L->v_cache = m->be->ops->alloc(m->be, cache);
        if (!L->k_cache || !L->v_cache)
            return SQ_FAIL(SQ_ENOMEM, "KV cache of %.1f MiB (%d layers of %d pages of %d "
                           "positions, %s) does not fit in %s memory (at layer %d): %s",
                           2.0 * (double)cache * m->hp.n_layers / 1048576.0, m->hp.n_layers,
                           m->n_pages, SQ_KV_PAGE, sq_model_kv_type(m), m->be->ops->name, l,
                           s_kv_hint(m, m->n_slots > 1, pages_given, hint, sizeof hint));
    }
    const size_t n = (size_t)m->n_slots;
    if (!(m->kv = sq_kv_pages_new(m->n_slots, whole, m->n_pages)))
        return sq_error_code();
    m->last_pos = calloc(n, sizeof *m->last_pos);
    m->fit_slot = calloc(n, sizeof *m->fit_slot);
    m->fit_first = calloc(n, sizeof *m->fit_first);
    m->fit_last = calloc(n, sizeof *m->fit_last);
    return m->last_pos && m->fit_slot && m->fit_first && m->fit_last
               ? 0 : SQ_FAIL(SQ_ENOMEM, "%d sequence slots", m->n_slots);
}

/* This rank's heads and FFN columns; refuse shapes that do not split. */
static int s_partition(sq_model_t *m)
{
    const sq_model_hparams_t *hp = &m->hp;
    const int N = m->n_ranks, r = m->rank;
    if (hp->n_heads % N != 0)
        return SQ_FAIL(SQ_EUNSUPPORTED,
                       "tensor blk.0.attn_q.weight: %d attention heads cannot be split over %d ranks",
                       hp->n_heads, N);
    if (hp->ffn_dim % N != 0)
        return SQ_FAIL(SQ_EUNSUPPORTED,
                       "tensor blk.0.ffn_gate.weight: FFN width %d cannot be split over %d ranks",
                       hp->ffn_dim, N);
    m->n_heads_local = hp->n_heads / N;
    m->q_head0 = r * m->n_heads_local;
    m->group = hp->n_heads / hp->n_kv_heads;
    /* the KV heads this rank's query heads read; with fewer KV heads than
     * ranks one KV head lands on several ranks (replicated) */
    m->kv_head0 = m->q_head0 / m->group;
    m->n_kv_local = (m->q_head0 + m->n_heads_local - 1) / m->group - m->kv_head0 + 1;
    m->ffn_local = hp->ffn_dim / N;
    return 0;
}

static int s_alloc_activations(sq_model_t *m)
{
    const size_t B = (size_t)m->max_batch, hd = (size_t)m->hp.head_dim;
    struct { float **p; size_t cols; } bufs[] = {
        {&m->x, (size_t)m->hp.dim}, {&m->xb, (size_t)m->hp.dim},
        {&m->q, m->n_heads_local * hd}, {&m->k, m->n_kv_local * hd},
        {&m->v, m->n_kv_local * hd}, {&m->att, m->n_heads_local * hd},
        {&m->o, (size_t)m->hp.dim}, {&m->gate, (size_t)m->ffn_local},
        {&m->up, (size_t)m->ffn_local}, {&m->logits, (size_t)m->hp.n_vocab}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        const size_t bytes = B * bufs[i].cols * sizeof(float);
        if (!(*bufs[i].p = m->be->ops->alloc(m->be, bytes)))
            return SQ_FAIL(SQ_ENOMEM, "activations for a batch of %zu", B);
        m->act_bytes += bytes;
    }
    m->ids = calloc(B, sizeof *m->ids);
    m->pos = calloc(B, sizeof *m->pos);
    m->slots = calloc(B, sizeof *m->slots);
    m->adapters = calloc(B, sizeof *m->adapters);
    if (!m->ids || !m->pos || !m->slots || !m->adapters)
        return SQ_FAIL(SQ_ENOMEM, "batch of %zu", B);
    return 0;
}

/* How this rank holds each LoRA target: the same rows and columns as the
 * base weight it rides on (s_load_layer). */
static int s_lora_init(sq_model_t *m)
{
    const int64_t dim = m->hp.dim, hd = m->hp.head_dim, ffn = m->hp.ffn_dim;
    const int64_t nq = (int64_t)m->hp.n_heads * hd, nkv = (int64_t)m->hp.n_kv_heads * hd;
    const int64_t q0 = (int64_t)m->q_head0 * hd, ql = (int64_t)m->n_heads_local * hd;
    const int64_t kv0 = (int64_t)m->kv_head0 * hd, kvl = (int64_t)m->n_kv_local * hd;
    const int64_t f0 = (int64_t)m->rank * m->ffn_local, fl = m->ffn_local;
    const sq_lora_shard_t sh[SQ_LORA_N_TARGETS] = {
        [SQ_LORA_Q] = {dim, nq, q0, ql, 0, dim},
        [SQ_LORA_K] = {dim, nkv, kv0, kvl, 0, dim},
        [SQ_LORA_V] = {dim, nkv, kv0, kvl, 0, dim},
        [SQ_LORA_O] = {nq, dim, 0, dim, q0, ql},
        [SQ_LORA_GATE] = {dim, ffn, f0, fl, 0, dim},
        [SQ_LORA_UP] = {dim, ffn, f0, fl, 0, dim},
        [SQ_LORA_DOWN] = {ffn, dim, 0, dim, f0, fl},
    };
    m->lora = sq_lora_set_new(m->be, m->hp.n_layers, m->max_adapters, m->max_batch, sh);
    return m->lora ? 0 : sq_error_code();
}

/* y += the LoRA term of target for the chunk's tokens that use one. */
static int s_lora(sq_model_t *m, int l, sq_lora_target_t t, const float *x, int n, float *y)
{
    return m->chunk_has_lora ? sq_lora_apply(m->lora, l, t, x, n, m->adapters, y) : 0;
}

int sq_model_adapter_load(sq_model_t *self, const sq_gguf_t *adapter, float scale, int *id)
{
    return sq_lora_load(self->lora, adapter, scale, id);
}

int sq_model_adapter_unload(sq_model_t *self, int id)
{
    return sq_lora_unload(self->lora, id);
}

static int s_load(sq_model_t *m, const sq_model_params_t *p)
{
    int rc;
    if ((rc = s_read_hparams(m->gguf, &m->hp)) || (rc = s_check_all_used(m->gguf, &m->hp)))
        return rc;
    m->n_ctx = p && p->n_ctx > 0 ? p->n_ctx
             : m->hp.n_ctx_train < S_DEFAULT_MAX_CTX ? m->hp.n_ctx_train : S_DEFAULT_MAX_CTX;
    m->n_slots = !p || p->n_slots == 0 ? 1 : p->n_slots;   /* < 0: s_auto_slots */
    m->n_pages = p && p->n_slots > 0 && p->n_kv_pages > 0 ? p->n_kv_pages : 0;
    m->max_batch = p && p->max_batch > 0 ? p->max_batch : S_DEFAULT_MAX_BATCH;
    m->kv_type = p ? p->kv_type : SQ_KV_F16;
    if (m->kv_type < SQ_KV_F16 || m->kv_type > SQ_KV_Q8_0)
        return SQ_FAIL(SQ_EINVAL, "KV cache type %d: not f16, f32 or q8_0", m->kv_type);
    m->kv_dtype = m->kv_type == SQ_KV_F32    ? SQ_DTYPE_F32
                  : m->kv_type == SQ_KV_Q8_0 ? SQ_DTYPE_Q8_0
                                             : SQ_DTYPE_F16;
    if (m->kv_dtype == SQ_DTYPE_Q8_0 && m->hp.head_dim % SQ_QK8_0 != 0)
        return SQ_FAIL(SQ_EUNSUPPORTED, "KV cache q8_0: this model's head_dim (%d) is not a "
                       "multiple of %d, the values a Q8_0 block scales; use f16 or f32",
                       m->hp.head_dim, SQ_QK8_0);
    if ((rc = s_partition(m)))
        return rc;
    const int64_t dim = m->hp.dim, vocab = m->hp.n_vocab;
    if ((rc = s_load_rows(m, "token_embd.weight", dim, vocab, 0, vocab, &m->tok_embd)) ||
        (rc = s_load_vec(m, "output_norm.weight", dim, &m->out_norm)) ||
        (rc = s_load_rows(m, m->hp.tied_output ? "token_embd.weight" : "output.weight", dim,
                          vocab, 0, vocab, &m->output)))
        return rc;
    if (!(m->layers = calloc((size_t)m->hp.n_layers, sizeof *m->layers)))
        return SQ_FAIL(SQ_ENOMEM, "%d layers", m->hp.n_layers);
    for (int l = 0; l < m->hp.n_layers; l++)
        if ((rc = s_load_layer(m, l, &m->layers[l])))
            return rc;
    m->max_adapters = p && p->max_adapters > 0 ? p->max_adapters : S_DEFAULT_MAX_ADAPTERS;
    const bool pages_given = m->n_pages > 0;
    if ((rc = s_alloc_activations(m)) || (m->n_slots < 0 && (rc = s_auto_slots(m))) ||
        (rc = s_alloc_kv(m, pages_given)))
        return rc;
    return s_lora_init(m);
}

sq_model_t *sq_model_new(const sq_gguf_t *gguf, sq_backend_t *be, sq_tp_comm_t *comm,
                         const sq_model_params_t *params)
{
    sq_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        SQ_FAIL(SQ_ENOMEM, "model");
        return NULL;
    }
    m->gguf = gguf;
    m->be = be;
    m->comm = comm;
    m->rank = comm->rank(comm);
    m->n_ranks = comm->size(comm);
    if (s_load(m, params) != 0) {
        sq_model_destroy(&m);
        return NULL;
    }
    return m;
}

static void s_release(sq_model_t *m, sq_weight_t *w)
{
    if (w->data)
        m->be->ops->weight_release(m->be, w);
}

void sq_model_destroy(sq_model_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_model_t *m = *self_p;
    sq_backend_t *be = m->be;
    for (int l = 0; m->layers && l < m->hp.n_layers; l++) {
        s_layer_t *L = &m->layers[l];
        sq_weight_t *ws[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                             &L->ffn_norm, &L->wgate, &L->wup, &L->wdown};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            s_release(m, ws[i]);
        be->ops->free(be, L->k_cache);
        be->ops->free(be, L->v_cache);
    }
    free(m->layers);
    s_release(m, &m->tok_embd);
    s_release(m, &m->out_norm);
    s_release(m, &m->output);
    float *acts[] = {m->x, m->xb, m->q, m->k, m->v, m->att, m->o, m->gate, m->up, m->logits};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        be->ops->free(be, acts[i]);
    free(m->ids);
    free(m->pos);
    free(m->slots);
    free(m->adapters);
    free(m->last_pos);
    free(m->fit_slot);
    free(m->fit_first);
    free(m->fit_last);
    sq_kv_pages_destroy(&m->kv);
    sq_lora_set_destroy(&m->lora);
    free(m);
    *self_p = NULL;
}

const sq_model_hparams_t *sq_model_hparams(const sq_model_t *self)
{
    return &self->hp;
}

int sq_model_kv_dtype(const sq_model_t *self)
{
    return self->kv_dtype;
}

static const char *const s_kv_names[] = {[SQ_KV_F16] = "f16", [SQ_KV_F32] = "f32",
                                          [SQ_KV_Q8_0] = "q8_0"};

int sq_kv_type_parse(const char *name)
{
    for (int t = 0; t < (int)(sizeof s_kv_names / sizeof s_kv_names[0]); t++)
        if (name && !strcmp(name, s_kv_names[t]))
            return t;
    return -1;
}

const char *sq_kv_type_name(int kv_type)
{
    return kv_type >= 0 && kv_type < (int)(sizeof s_kv_names / sizeof s_kv_names[0])
               ? s_kv_names[kv_type]
               : "?";
}

const char *sq_model_kv_type(const sq_model_t *self)
{
    return sq_kv_type_name(self->kv_type);
}

size_t sq_model_kv_bytes(const sq_model_t *self)
{
    return 2 * (size_t)self->hp.n_layers * s_kv_layer_bytes(self);
}

int sq_model_kv_pages(const sq_model_t *self) { return self->n_pages; }
int sq_model_kv_pages_free(const sq_model_t *self) { return sq_kv_pages_free(self->kv); }

int sq_model_kv_pages_held(const sq_model_t *self, int slot)
{
    return sq_kv_pages_held(self->kv, slot);
}

int sq_model_kv_pages_held_by(sq_model_t *self, const bool *in)
{
    return sq_kv_pages_held_by(self->kv, in);
}

void sq_model_kv_trim(sq_model_t *self, int slot, int keep)
{
    sq_kv_pages_trim(self->kv, slot, keep);
}

int sq_model_kv_share(sq_model_t *self, int dst, int src, int n)
{
    return sq_kv_pages_share(self->kv, dst, src, n);
}

bool sq_model_kv_page_shared(const sq_model_t *self, int slot, int k)
{
    return sq_kv_pages_shared(self->kv, slot, k);
}

int sq_model_n_ctx(const sq_model_t *self)
{
    return self->n_ctx;
}

int sq_model_n_slots(const sq_model_t *self)
{
    return self->n_slots;
}

void sq_model_local_heads(const sq_model_t *self, int *n_heads, int *n_kv_heads)
{
    *n_heads = self->n_heads_local;
    *n_kv_heads = self->n_kv_local;
}

/* ---- forward ---- */

/* y[i] = x w[i]^T for n weights of one input: in one pass where the
 * backend has one, else one matmul each */
static int s_matmuls(sq_model_t *m, const sq_weight_t *const *w, int n_w, const float *x, int n,
                     float *const *y)
{
    return m->be->ops->matmul_n ? m->be->ops->matmul_n(m->be, w, n_w, x, n, y)
                                : sq_backend_matmul_each(m->be, w, n_w, x, n, y);
}

/* Attention half of layer l for n tokens: x (n, dim) += attn(norm(x)). */
static int s_attention_block(sq_model_t *m, int l, int n)
{
    s_layer_t *L = &m->layers[l];
    const sq_backend_ops_t *op = m->be->ops;
    sq_backend_t *be = m->be;
    const sq_model_hparams_t *hp = &m->hp;
    const sq_weight_t *const qkv[] = {&L->wq, &L->wk, &L->wv};
    float *const qkv_out[] = {m->q, m->k, m->v};   /* (n, hl * hd), (n, kvl * hd) twice */
    int rc;
    if ((rc = op->rmsnorm(be, m->x, &L->attn_norm, hp->rms_eps, n, m->xb)) ||
        (rc = s_matmuls(m, qkv, 3, m->xb, n, qkv_out)) ||
        (rc = s_lora(m, l, SQ_LORA_Q, m->xb, n, m->q)) ||
        (rc = s_lora(m, l, SQ_LORA_K, m->xb, n, m->k)) ||
        (rc = s_lora(m, l, SQ_LORA_V, m->xb, n, m->v)) ||
        (rc = op->rope(be, m->q, n, m->n_heads_local, hp->head_dim, hp->n_rot, m->pos,
                       hp->rope_base)) ||
        (rc = op->rope(be, m->k, n, m->n_kv_local, hp->head_dim, hp->n_rot, m->pos,
                       hp->rope_base)))
        return rc;
    sq_attn_args_t a = {.k_cache = L->k_cache, .v_cache = L->v_cache, .kv_dtype = m->kv_dtype,
                        .n_slots = m->n_slots, .n_ctx = m->n_ctx, .n_pages = m->n_pages,
                        .pages = sq_kv_pages_table(m->kv),
                        .pages_epoch = sq_kv_pages_epoch(m->kv), .n_heads = m->n_heads_local, .n_kv = m->n_kv_local,
                        .head_dim = hp->head_dim, .q_head0 = m->q_head0,
                        .kv_head0 = m->kv_head0, .group = m->group, .n_tok = n,
                        .slot = m->slots, .pos = m->pos, .q = m->q, .k = m->k, .v = m->v,
                        .out = m->att};
    if ((rc = op->attention(be, &a)) ||
        (rc = op->matmul(be, &L->wo, m->att, n, m->o)) ||   /* (n, dim), partial sum */
        (rc = s_lora(m, l, SQ_LORA_O, m->att, n, m->o)) ||
        (rc = m->comm->allreduce_sum_f32(m->comm, m->o, (size_t)n * hp->dim)))
        return rc;
    return op->add(be, m->x, m->o, (size_t)n * hp->dim);
}

/* MLP half: x (n, dim) += down(silu(gate(norm(x))) * up(norm(x))). */
static int s_mlp_block(sq_model_t *m, int l, int n)
{
    s_layer_t *L = &m->layers[l];
    const sq_backend_ops_t *op = m->be->ops;
    sq_backend_t *be = m->be;
    const sq_weight_t *const gate_up[] = {&L->wgate, &L->wup};
    float *const gate_up_out[] = {m->gate, m->up};   /* (n, ffn_local) each */
    int rc;
    if ((rc = op->rmsnorm(be, m->x, &L->ffn_norm, m->hp.rms_eps, n, m->xb)) ||
        (rc = s_matmuls(m, gate_up, 2, m->xb, n, gate_up_out)) ||
        (rc = s_lora(m, l, SQ_LORA_GATE, m->xb, n, m->gate)) ||
        (rc = s_lora(m, l, SQ_LORA_UP, m->xb, n, m->up)) ||
        (rc = op->swiglu(be, m->gate, m->up, (size_t)n * m->ffn_local)) ||
        (rc = op->matmul(be, &L->wdown, m->gate, n, m->o)) ||    /* (n, dim), partial */
        (rc = s_lora(m, l, SQ_LORA_DOWN, m->gate, n, m->o)) ||
        (rc = m->comm->allreduce_sum_f32(m->comm, m->o, (size_t)n * m->hp.dim)))
        return rc;
    return op->add(be, m->x, m->o, (size_t)n * m->hp.dim);
}

/* Where the wanted rows' results go: their logits, or (tokens set) only
 * their tokens, the argmax or (rows set) each row's draw */
typedef struct {
    float *logits;
    int32_t *tokens;
    const sq_sample_row_t *rows;
} s_out_t;

/* Logits of the wanted rows of x into out's host memory. */
static int s_output(sq_model_t *m, const sq_batch_entry_t *batch, int n, const s_out_t *out)
{
    const sq_backend_ops_t *op = m->be->ops;
    sq_backend_t *be = m->be;
    const size_t dim = (size_t)m->hp.dim;
    int n_out = 0, rc;
    for (int t = 0; t < n; t++)
        if (batch[t].want_logits &&
            (rc = op->copy(be, m->xb + n_out++ * dim, m->x + t * dim, dim * sizeof(float))))
            return rc;
    if (n_out == 0)
        return 0;
    if ((rc = op->rmsnorm(be, m->xb, &m->out_norm, m->hp.rms_eps, n_out, m->o)) ||
        (rc = op->matmul(be, &m->output, m->o, n_out, m->logits)))   /* (n_out, vocab) */
        return rc;
    if (out->tokens && out->rows)
        return op->sample(be, m->logits, n_out, m->hp.n_vocab, out->rows, out->tokens);
    if (out->tokens)
        return op->argmax(be, m->logits, n_out, m->hp.n_vocab, out->tokens);
    return op->download(be, out->logits, m->logits,
                        (size_t)n_out * m->hp.n_vocab * sizeof(float));
}

static int s_forward_chunk(sq_model_t *m, const sq_batch_entry_t *batch, int n,
                           const s_out_t *out)
{
    m->chunk_has_lora = false;
    for (int t = 0; t < n; t++) {
        m->ids[t] = batch[t].token;
        m->pos[t] = batch[t].pos;
        m->slots[t] = batch[t].slot;
        m->adapters[t] = batch[t].adapter;
        m->chunk_has_lora |= batch[t].adapter != 0;
    }
    int rc = m->be->ops->embed(m->be, &m->tok_embd, m->ids, n, m->x);   /* (n, dim) */
    for (int l = 0; rc == 0 && l < m->hp.n_layers; l++)
        if ((rc = s_attention_block(m, l, n)) == 0)
            rc = s_mlp_block(m, l, n);
    if (rc == 0 && (out->logits || out->tokens))
        rc = s_output(m, batch, n, out);
    return rc;
}

/* Every entry in range, adapters loaded, and each slot's positions
 * strictly increasing through the batch (an earlier chunk must have
 * stored what a later one attends to; a position twice is ambiguous). */
static int s_check_batch(sq_model_t *self, const sq_batch_entry_t *batch, int n)
{
    for (int t = 0; t < n; t++) {
        const sq_batch_entry_t *e = &batch[t];
        if (e->slot < 0 || e->slot >= self->n_slots || e->pos < 0 || e->pos >= self->n_ctx ||
            e->token < 0 || e->token >= self->hp.n_vocab)
            return SQ_FAIL(SQ_EINVAL,
                           "batch entry %d: slot %d, position %d, token %d out of range "
                           "(%d slots, context %d, vocabulary %d)",
                           t, e->slot, e->pos, e->token, self->n_slots, self->n_ctx,
                           self->hp.n_vocab);
        if (e->adapter != 0 && sq_lora_rank(self->lora, e->adapter) == 0)
            return SQ_FAIL(SQ_EINVAL, "batch entry %d: adapter %d is not loaded", t, e->adapter);
        self->last_pos[e->slot] = -1;
    }
    for (int t = 0; t < n; t++) {
        const sq_batch_entry_t *e = &batch[t];
        if (e->pos <= self->last_pos[e->slot])
            return SQ_FAIL(SQ_EINVAL,
                           "batch entry %d: slot %d position %d after position %d of the same "
                           "slot (positions of a slot must increase)",
                           t, e->slot, e->pos, self->last_pos[e->slot]);
        self->last_pos[e->slot] = e->pos;
    }
    return 0;
}

/* the pages the batch's slots need (sq_kv_pages_fit): each slot's first
 * and last positions in the batch, slots in order of first appearance */
static int s_fit_pages(sq_model_t *self, const sq_batch_entry_t *batch, int n)
{
    int k = 0;
    for (int t = 0; t < n; t++)
        self->last_pos[batch[t].slot] = -1;
    for (int t = 0; t < n; t++) {
        const sq_batch_entry_t *e = &batch[t];
        if (self->last_pos[e->slot] < 0) {
            self->last_pos[e->slot] = k;
            self->fit_slot[k] = e->slot;
            self->fit_first[k++] = e->pos;
        }
        self->fit_last[self->last_pos[e->slot]] = e->pos;
    }
    return sq_kv_pages_fit(self->kv, self->fit_slot, self->fit_first, self->fit_last, k);
}

/* the batch in chunks of max_batch tokens, each chunk's wanted rows after
 * the last chunk's */
static int s_forward(sq_model_t *self, const sq_batch_entry_t *batch, int n, s_out_t out)
{
    int rc = s_check_batch(self, batch, n);
    if (rc || (rc = s_fit_pages(self, batch, n)))
        return rc;
    for (int b0 = 0; b0 < n; b0 += self->max_batch) {
        int nb = n - b0 < self->max_batch ? n - b0 : self->max_batch;
        rc = s_forward_chunk(self, batch + b0, nb, &out);
        if (rc)
            return rc;
        for (int t = b0; t < b0 + nb; t++) {
            if (!batch[t].want_logits)
                continue;
            if (out.logits)
                out.logits += self->hp.n_vocab;
            if (out.tokens)
                out.tokens++;
            if (out.rows)
                out.rows++;
        }
    }
    return 0;
}

int sq_model_forward(sq_model_t *self, const sq_batch_entry_t *batch, int n, float *logits_out)
{
    return s_forward(self, batch, n, (s_out_t){logits_out, NULL, NULL});
}

int sq_model_forward_argmax(sq_model_t *self, const sq_batch_entry_t *batch, int n,
                            int32_t *tokens_out)
{
    return s_forward(self, batch, n, (s_out_t){NULL, tokens_out, NULL});
}

bool sq_model_samples_on_device(const sq_model_t *self)
{
    return self->be->ops->sample != NULL;
}

int sq_model_forward_sample(sq_model_t *self, const sq_batch_entry_t *batch, int n,
                            const sq_sample_row_t *rows, int32_t *tokens_out)
{
    if (!sq_model_samples_on_device(self))
        return SQ_FAIL(SQ_EUNSUPPORTED, "the %s backend does not sample", self->be->ops->name);
    return s_forward(self, batch, n, (s_out_t){NULL, tokens_out, tokens_out ? rows : NULL});
}
