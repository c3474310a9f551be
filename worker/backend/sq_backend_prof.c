/*  sq_backend_prof: the timing wrapper (see sq_backend_prof.h). Every
 *  timed op is one wrapper: start the clock, call the inner backend's op,
 *  add the time under the op's label. Ops that move memory or make
 *  weights pass straight through.
 */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#include "sq_backend_prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_prof.h"

typedef struct {
    sq_backend_t *inner;
    sq_backend_ops_t ops;       /* inner's table with the timed ops replaced */
    sq_prof_t *prof;
    int n_tok;                  /* the current forward pass's tokens */
    char header[96];
} s_prof_t;

static s_prof_t *s_ctx(sq_backend_t *be)
{
    return be->ctx;
}

static sq_backend_t *s_in(sq_backend_t *be)
{
    return s_ctx(be)->inner;
}

static double s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* the time since t0 under what (and the pass's bucket); rc passed on */
static int s_add(sq_backend_t *be, int rc, double t0, const char *what, double bytes)
{
    s_prof_t *p = s_ctx(be);
    char label[64];
    snprintf(label, sizeof label, "%s [%s]", what, sq_prof_bucket(p->n_tok));
    int arc = sq_prof_add(p->prof, label, s_now_ms() - t0, bytes);
    return rc ? rc : arc;
}

/* a weight's dtype as GGUF names it (the CPU's packed Q8_0 is Q8_0) */
static int s_dtype(const sq_weight_t *w)
{
    return w->dtype == SQ_DTYPE_Q8_0X16 ? SQ_DTYPE_Q8_0 : w->dtype;
}

static double s_weight_bytes(const sq_weight_t *w)
{
    return (double)sq_cpu_row_bytes(s_dtype(w), w->n_in) * (double)w->n_out;
}

static int s_embed(sq_backend_t *be, const sq_weight_t *emb, const int32_t *ids, int n,
                   float *out)
{
    s_ctx(be)->n_tok = n;   /* a forward pass starts here */
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->embed(s_in(be), emb, ids, n, out);
    return s_add(be, rc, t0, "embed", 0.0);
}

static int s_rmsnorm(sq_backend_t *be, const float *x, const sq_weight_t *w, float eps, int n,
                     float *out)
{
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->rmsnorm(s_in(be), x, w, eps, n, out);
    return s_add(be, rc, t0, "rmsnorm", 0.0);
}

static int s_matmul(sq_backend_t *be, const sq_weight_t *w, const float *x, int n_tok, float *y)
{
    char what[48];
    snprintf(what, sizeof what, "matmul %s %lldx%lld", sq_prof_dtype(s_dtype(w)),
             (long long)w->n_out, (long long)w->n_in);
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->matmul(s_in(be), w, x, n_tok, y);
    return s_add(be, rc, t0, what, s_weight_bytes(w));
}

static int s_matmul_n(sq_backend_t *be, const sq_weight_t *const *w, int n, const float *x,
                      int n_tok, float *const *y)
{
    int64_t n_out = 0;
    double bytes = 0.0;
    for (int i = 0; i < n; i++) {
        n_out += w[i]->n_out;
        bytes += s_weight_bytes(w[i]);
    }
    char what[48];
    snprintf(what, sizeof what, "matmul %s x%d %lldx%lld", sq_prof_dtype(s_dtype(w[0])), n,
             (long long)n_out, (long long)w[0]->n_in);
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->matmul_n(s_in(be), w, n, x, n_tok, y);
    return s_add(be, rc, t0, what, bytes);
}

static int s_rope(sq_backend_t *be, float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                  const int32_t *pos, float freq_base)
{
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->rope(s_in(be), x, n_tok, n_heads, head_dim, n_rot, pos, freq_base);
    return s_add(be, rc, t0, "rope", 0.0);
}

/* the cache rows the tokens attend to, each KV head's once, K and V */
static int s_attention(sq_backend_t *be, const sq_attn_args_t *a)
{
    double keys = 0.0;
    for (int t = 0; t < a->n_tok; t++)
        keys += (double)a->pos[t] + 1.0;
    char what[48];
    snprintf(what, sizeof what, "attention kv %s", sq_prof_dtype(a->kv_dtype));
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->attention(s_in(be), a);
    return s_add(be, rc, t0, what,
                 keys * a->n_kv * (double)sq_cpu_row_bytes(a->kv_dtype, a->head_dim) * 2.0);
}

static int s_swiglu(sq_backend_t *be, float *gate, const float *up, size_t n)
{
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->swiglu(s_in(be), gate, up, n);
    return s_add(be, rc, t0, "swiglu", 0.0);
}

static int s_add_op(sq_backend_t *be, float *x, const float *y, size_t n)
{
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->add(s_in(be), x, y, n);
    return s_add(be, rc, t0, "add", 0.0);
}

static int s_index_rows(sq_backend_t *be, float *dst, const float *src, int64_t row_len,
                        const int32_t *idx, int n, bool add)
{
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->index_rows(s_in(be), dst, src, row_len, idx, n, add);
    return s_add(be, rc, t0, "index_rows", 0.0);
}

static int s_argmax(sq_backend_t *be, const float *x, int n_rows, int n_cols, int32_t *host_out)
{
    char what[48];
    snprintf(what, sizeof what, "argmax %d logits", n_cols);
    const double t0 = s_now_ms();
    int rc = s_in(be)->ops->argmax(s_in(be), x, n_rows, n_cols, host_out);
    return s_add(be, rc, t0, what, (double)n_rows * n_cols * sizeof(float));
}

/* ---- passed through ---- */

static void *s_alloc(sq_backend_t *be, size_t bytes)
{
    return s_in(be)->ops->alloc(s_in(be), bytes);
}

static void s_free(sq_backend_t *be, void *p)
{
    s_in(be)->ops->free(s_in(be), p);
}

static int s_upload(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    return s_in(be)->ops->upload(s_in(be), dst, src, bytes);
}

static int s_download(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    return s_in(be)->ops->download(s_in(be), dst, src, bytes);
}

static int s_copy(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    return s_in(be)->ops->copy(s_in(be), dst, src, bytes);
}

static int s_weight_init(sq_backend_t *be, sq_weight_t *w, int dtype, int64_t n_out,
                         int64_t n_in, const void *host, bool borrow)
{
    return s_in(be)->ops->weight_init(s_in(be), w, dtype, n_out, n_in, host, borrow);
}

static void s_weight_release(sq_backend_t *be, sq_weight_t *w)
{
    s_in(be)->ops->weight_release(s_in(be), w);
}

static int s_sample(sq_backend_t *be, const float *x, int n_rows, int n_cols,
                    const sq_sample_row_t *rows, int32_t *host_out)
{
    return s_in(be)->ops->sample(s_in(be), x, n_rows, n_cols, rows, host_out);
}

static int s_mem_free(sq_backend_t *be, size_t *bytes, uint64_t *pool)
{
    return s_in(be)->ops->mem_free(s_in(be), bytes, pool);
}

static char *s_profile(sq_backend_t *be)
{
    s_prof_t *p = s_ctx(be);
    return sq_prof_text(p->prof, p->header);
}

static void s_destroy(sq_backend_t *be)
{
    s_prof_t *p = s_ctx(be);
    sq_backend_destroy(&p->inner);
    sq_prof_destroy(&p->prof);
    free(p);
}

sq_backend_t *sq_backend_prof_new(sq_backend_t *inner)
{
    if (!inner)
        return NULL;
    sq_backend_t *be = calloc(1, sizeof *be);
    s_prof_t *p = calloc(1, sizeof *p);
    sq_prof_t *prof = sq_prof_new();
    if (!be || !p || !prof) {
        free(be);
        free(p);
        sq_prof_destroy(&prof);
        sq_backend_destroy(&inner);
        SQ_FAIL(SQ_ENOMEM, "profiling backend");
        return NULL;
    }
    const sq_backend_ops_t *in = inner->ops;
    /* the inner table's name and optional ops (NULL stays NULL) */
    p->ops = (sq_backend_ops_t){
        .name = in->name, .destroy = s_destroy, .alloc = s_alloc, .free = s_free,
        .upload = s_upload, .download = s_download, .copy = s_copy,
        .weight_init = s_weight_init, .weight_release = s_weight_release,
        .embed = s_embed, .rmsnorm = s_rmsnorm, .matmul = s_matmul,
        .matmul_n = in->matmul_n ? s_matmul_n : NULL, .rope = s_rope,
        .attention = s_attention, .swiglu = s_swiglu, .add = s_add_op,
        .index_rows = in->index_rows ? s_index_rows : NULL,
        .argmax = in->argmax ? s_argmax : NULL, .sample = in->sample ? s_sample : NULL,
        .mem_free = in->mem_free ? s_mem_free : NULL, .profile = s_profile};
    p->inner = inner;
    p->prof = prof;
    snprintf(p->header, sizeof p->header,
             "%s profile: every op timed on the host clock as it ran", in->name);
    be->ops = &p->ops;
    be->ctx = p;
    return be;
}
