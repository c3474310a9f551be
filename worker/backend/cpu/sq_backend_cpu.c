/*  sq_backend_cpu: the CPU backend. Backend memory is host memory.
 *
 *  Matrix products go to sq_cpu_matmul (SIMD kernels, thread pool, owned by
 *  the kernels library). The rest of the transformer step (RMSNorm, RoPE,
 *  attention over the KV cache, SwiGLU) is plain C here; attention is the
 *  only one heavy enough to spread over the pool (one task per token x
 *  head). Weights given with borrow=true (the GGUF mapping) are used in
 *  place: loading a model copies nothing but the row-parallel slices,
 *  except that where the SIMD level has a packed Q8_0 kernel (VNNI) each
 *  Q8_0 weight of 16 rows or more is repacked into a copy of its own
 *  (sq_cpu_pack_q8_0x16), which then replaces it.
 */
#define _DEFAULT_SOURCE   /* sysconf's _SC_AVPHYS_PAGES, madvise */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sq_backend.h"
#include "sq_backend_prof.h"
#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_hash.h"
#include "sq_prof.h"
#include "sq_sampler.h"
#ifdef SQ_HAVE_CUDA
#include "sq_backend_cuda.h"
#endif

typedef struct {
    sq_threadpool_t *pool;
    int n_threads;
    float *scores;              /* n_threads x scores_per_thread scratch */
    size_t scores_per_thread;
    struct s_tile *tiles;       /* the attention's tiles, tiles_cap of them */
    int tiles_cap;
} s_cpu_t;

static s_cpu_t *s_ctx(sq_backend_t *be)
{
    return be->ctx;
}

static void s_destroy(sq_backend_t *be)
{
    s_cpu_t *c = s_ctx(be);
    sq_threadpool_destroy(&c->pool);
    free(c->scores);
    free(c->tiles);
    free(c);
}

/* Memory for the kernels: 64-byte aligned, not cleared, so a large KV
 * cache costs pages only as positions are written. Above 2 MiB (packed
 * weights, each layer's K and V caches, the largest activations) it is
 * aligned to and asks for 2 MiB pages (transparent huge pages in
 * "madvise" mode, the usual default): a stream through a weight is not
 * cut at every 4 KiB page, where the hardware prefetcher stops and the
 * TLB misses; attention's reads of many sequences' pages hit the TLB; a
 * cache's pages are faulted 2 MiB at a time, not 4 KiB at a time in the
 * middle of a decode step (measured: docs/benchmarks.md, "KV caches on
 * 2 MiB pages"). Where the kernel refuses, the memory is ordinary pages. */
#define S_HUGE_PAGE ((size_t)2 << 20)
static void *s_alloc(sq_backend_t *be, size_t bytes)
{
    if (bytes < S_HUGE_PAGE) {
        size_t rounded = (bytes + 63) & ~(size_t)63;
        return aligned_alloc(64, rounded ? rounded : 64);
    }
    size_t rounded = (bytes + S_HUGE_PAGE - 1) & ~(S_HUGE_PAGE - 1);
    void *p = aligned_alloc(S_HUGE_PAGE, rounded);
    if (p)
        (void)madvise(p, rounded, MADV_HUGEPAGE);
    return p;
}

/* The whole pages of [p, p + bytes), borrowed memory this backend no
 * longer reads, offered back to the kernel: a model file's pages leave
 * this process's resident set (and the page cache, if no other process
 * maps them) instead of sitting beside their packed copy. MADV_PAGEOUT
 * never discards data (anonymous memory would go to swap), so it is safe
 * whatever the caller lent; a kernel without it (before 5.4) ignores it. */
static void s_page_out(const void *p, size_t bytes)
{
#ifdef MADV_PAGEOUT
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t to = ((uintptr_t)p + bytes) & ~(page - 1);
    if (to > from)
        (void)madvise((void *)from, to - from, MADV_PAGEOUT);
#else
    (void)p;
    (void)bytes;
#endif
}

static void s_free(sq_backend_t *be, void *p)
{
    free(p);
}

static int s_memcpy(sq_backend_t *be, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    return 0;
}

static int s_weight_init(sq_backend_t *be, sq_weight_t *w, int dtype, int64_t n_out,
                         int64_t n_in, const void *host, bool borrow)
{
    size_t row = sq_cpu_row_bytes(dtype, n_in);
    if (row == 0 || n_out <= 0)
        return SQ_FAIL(SQ_EINVAL, "weight of %lld x %lld, dtype %d", (long long)n_out,
                       (long long)n_in, dtype);
    *w = (sq_weight_t){.dtype = dtype, .n_out = n_out, .n_in = n_in, .data = host};
    if (dtype == SQ_DTYPE_Q8_0 && n_out >= SQ_CPU_PACK_ROWS && sq_cpu_packs_q8_0()) {
        /* a packed copy replaces the GGUF rows, borrowed or not; a
         * borrowed weight's pages are handed back once copied */
        size_t bytes = sq_cpu_q8_0x16_bytes(n_out, n_in);
        if (!(w->owned = s_alloc(be, bytes)))
            return SQ_FAIL(SQ_ENOMEM, "packed weight of %lld x %lld", (long long)n_out,
                           (long long)n_in);
        sq_cpu_pack_q8_0x16(s_ctx(be)->pool, host, n_out, n_in, w->owned);
        if (borrow)
            s_page_out(host, sq_cpu_row_bytes(dtype, n_in) * (size_t)n_out);
        w->dtype = SQ_DTYPE_Q8_0X16;
        w->data = w->owned;
        return 0;
    }
    if (!borrow) {
        if (!(w->owned = s_alloc(be, row * (size_t)n_out)))
            return SQ_FAIL(SQ_ENOMEM, "weight of %lld x %lld", (long long)n_out, (long long)n_in);
        memcpy(w->owned, host, row * (size_t)n_out);
        w->data = w->owned;
    }
    return 0;
}

static void s_weight_release(sq_backend_t *be, sq_weight_t *w)
{
    free(w->owned);
    memset(w, 0, sizeof *w);
}

static int s_embed(sq_backend_t *be, const sq_weight_t *emb, const int32_t *ids, int n,
                   float *out)
{
    size_t row = sq_cpu_row_bytes(emb->dtype, emb->n_in);
    for (int t = 0; t < n; t++) {
        if (ids[t] < 0 || ids[t] >= emb->n_out)
            return SQ_FAIL(SQ_EINVAL, "token id %d out of range [0, %lld)", ids[t],
                           (long long)emb->n_out);
        float *dst = out + (size_t)t * emb->n_in;
        if (emb->dtype == SQ_DTYPE_Q8_0X16)
            sq_cpu_q8_0x16_row(emb->data, emb->n_out, emb->n_in, ids[t], dst);
        else
            sq_cpu_dequantize_row(emb->dtype, (const char *)emb->data + row * (size_t)ids[t], dst,
                                  emb->n_in);
    }
    return 0;
}

static int s_rmsnorm(sq_backend_t *be, const float *x, const sq_weight_t *w, float eps, int n,
                     float *out)
{
    const int64_t dim = w->n_in;
    const float *g = w->data;
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * dim;
        float *ot = out + (size_t)t * dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++)
            ss += (double)xt[i] * xt[i];
        float scale = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
        for (int64_t i = 0; i < dim; i++)
            ot[i] = xt[i] * scale * g[i];
    }
    return 0;
}

static int s_matmul(sq_backend_t *be, const sq_weight_t *w, const float *x, int n_tok, float *y)
{
    return sq_cpu_matmul(s_ctx(be)->pool, w->dtype, w->data, w->n_out, w->n_in, x, n_tok, y,
                         w->n_out);
}

static int s_matmul_n(sq_backend_t *be, const sq_weight_t *const *w, int n, const float *x,
                      int n_tok, float *const *y)
{
    sq_cpu_mat_t mats[SQ_CPU_MATMUL_MAX];
    bool one_pass = n >= 1 && n <= SQ_CPU_MATMUL_MAX;
    for (int i = 0; one_pass && i < n; i++) {
        one_pass = w[i]->dtype == w[0]->dtype && w[i]->n_in == w[0]->n_in;
        mats[i] = (sq_cpu_mat_t){.w = w[i]->data, .n_out = w[i]->n_out, .y = y[i],
                                 .ldy = w[i]->n_out};
    }
    /* mixed dtypes (a small weight left unpacked beside packed ones) go
     * one by one */
    return one_pass ? sq_cpu_matmul_n(s_ctx(be)->pool, w[0]->dtype, mats, n, w[0]->n_in, x, n_tok)
                    : sq_backend_matmul_each(be, w, n, x, n_tok, y);
}

static int s_rope(sq_backend_t *be, float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                  const int32_t *pos, float freq_base)
{
    float inv_freq[512];
    if (n_rot / 2 > (int)(sizeof inv_freq / sizeof inv_freq[0]))
        return SQ_FAIL(SQ_EINVAL, "rope over %d dims", n_rot);
    for (int i = 0; i < n_rot / 2; i++)
        inv_freq[i] = powf(freq_base, -2.0f * (float)i / (float)n_rot);
    for (int t = 0; t < n_tok; t++) {
        for (int i = 0; i < n_rot / 2; i++) {
            /* same angle for every head: compute once per (t, i) */
            float theta = (float)pos[t] * inv_freq[i];
            float c = cosf(theta), s = sinf(theta);
            for (int h = 0; h < n_heads; h++) {
                float *p = x + ((size_t)t * n_heads + h) * head_dim + 2 * i;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
    }
    return 0;
}

/* Cache rows an attention reads at a time: blocks start at multiples of
 * it, so a token's blocks are the same alone or in a tile. A tile is up
 * to S_TILE tokens of a batch that run one prompt (one slot, consecutive
 * positions, consecutive entries): each block is read once for all of
 * them. Scratch per thread is held to S_SCRATCH_FLOATS by smaller tiles
 * at long contexts. */
enum { S_KV_ROWS = 32, S_TILE = 16, S_SCRATCH_FLOATS = 1 << 20 };
_Static_assert(SQ_KV_PAGE % S_KV_ROWS == 0, "a block of cache rows is inside one page");

typedef struct s_tile {
    int t0, n;                  /* batch entries t0 .. t0 + n - 1 */
} s_tile_t;

/* One (tile, KV head) pair per task: the query heads that share a KV
 * head go through its rows together, so each row is read once per group
 * (grouped-query attention) and per tile. */
typedef struct {
    const sq_attn_args_t *a;
    s_cpu_t *cpu;
    const s_tile_t *tiles;
    int n_tiles;
} s_attn_job_t;

/* the cache offset (in values) of position pos of slot's KV head kvh.
 * Pages go in chunks of S_KV_CHUNK (the last one narrower), and in a
 * chunk each KV head's pages are together: (chunk, n_kv, page in chunk,
 * SQ_KV_PAGE, head_dim). A sequence whose pages are consecutive (a lone
 * one takes them in order, a prompt its pages together) has its rows of a
 * head in streams of up to 16 pages, which the hardware prefetcher
 * follows; from one stream to the next the kernels prefetch the next
 * block by hand. The first pages in use are at the start of the cache,
 * every head's, so on 2 MiB pages a cache is committed 2 MiB at a time
 * for all heads, not 2 MiB for each head (docs/benchmarks.md, "KV caches
 * on 2 MiB pages"). */
enum { S_KV_CHUNK = 16 };
static size_t s_kv_at(const sq_attn_args_t *a, int slot, int kvh, int pos)
{
    const size_t page = (size_t)a->pages[(size_t)slot * (size_t)sq_kv_pages_for(a->n_ctx) +
                                         (size_t)(pos / SQ_KV_PAGE)];
    const size_t first = page / S_KV_CHUNK * S_KV_CHUNK, left = (size_t)a->n_pages - first;
    const size_t width = left < S_KV_CHUNK ? left : S_KV_CHUNK;
    const size_t at = first * (size_t)a->n_kv + (size_t)kvh * width + (page - first);
    return (at * SQ_KV_PAGE + (size_t)(pos % SQ_KV_PAGE)) * (size_t)a->head_dim;
}

/* where rows j0.. (j0 a multiple of S_KV_ROWS: in one page) of slot's
 * KV head kvh start in cache */
static const void *s_kv_rows(const sq_attn_args_t *a, const void *cache, int slot, int kvh, int j0)
{
    return (const char *)cache + sq_cpu_row_bytes(a->kv_dtype, (int64_t)s_kv_at(a, slot, kvh, j0));
}

/* the local query heads [*h0, *h1) that read local KV head kvh:
 * (q_head0 + h) / group - kv_head0 == kvh */
static void s_group_heads(const sq_attn_args_t *a, int kvh, int *h0, int *h1)
{
    *h0 = (a->kv_head0 + kvh) * a->group - a->q_head0;
    *h1 = *h0 + a->group;
    *h0 = *h0 < 0 ? 0 : *h0;
    *h1 = *h1 > a->n_heads ? a->n_heads : *h1;
}

/* scratch: for token i of the tile, the scores (g, n_ctx) of its g query
 * heads at i * g * n_ctx (row stride its own context, pos + 1); then
 * S_KV_ROWS * head_dim floats for widened rows. Blocks go K 0, 1, ...,
 * then V 0, 1, .... A lone token (a decode step) reads an F16 block as it
 * is, the kernels widening in registers, and each block names the next,
 * which they prefetch: a slot's pages need not be adjacent in the pool,
 * and the hardware prefetcher does not cross into the next one. A tile of
 * several tokens (a prompt) widens each F16 block once into scratch for
 * all of them: the same bits, with one conversion instead of one per
 * token. */
static void s_attn_tile(const sq_attn_args_t *a, const s_tile_t *tile, int kvh, float *scratch)
{
    const int hd = a->head_dim;
    int h0, h1;
    s_group_heads(a, kvh, &h0, &h1);
    if (h0 >= h1)
        return;
    const int g = h1 - h0;
    const size_t per_tok = (size_t)g * (size_t)a->n_ctx;
    const int slot = a->slot[tile->t0];
    const int n_max = a->pos[tile->t0 + tile->n - 1] + 1;
    float *wide = scratch + (size_t)tile->n * per_tok;
    const bool widen = tile->n > 1 && a->kv_dtype != SQ_DTYPE_F32;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: scores = q K^T over each token's positions 0..pos;
         * pass 1: out = softmax(scores) V, each head's sum in position order */
        const void *cache = pass ? a->v_cache : a->k_cache;
        for (int j0 = 0; j0 < n_max; j0 += S_KV_ROWS) {
            const int j1 = j0 + S_KV_ROWS;
            sq_cpu_kv_block_t b = {
                .rows = s_kv_rows(a, cache, slot, kvh, j0), .dtype = a->kv_dtype, .hd = hd};
            if (widen) {
                const int rows = n_max - j0 < S_KV_ROWS ? n_max - j0 : S_KV_ROWS;
                if (a->kv_dtype == SQ_DTYPE_F16)
                    sq_cpu_f16_to_f32_row(b.rows, wide, (int64_t)rows * hd);
                else
                    sq_cpu_q8_0_to_f32_row(b.rows, wide, (int64_t)rows * hd);
                b.rows = wide;
                b.dtype = SQ_DTYPE_F32;
            } else {
                b.next = j1 < n_max    ? s_kv_rows(a, cache, slot, kvh, j1)
                         : pass == 0 ? s_kv_rows(a, a->v_cache, slot, kvh, 0)
                                     : NULL;
            }
            for (int i = 0; i < tile->n; i++) {
                const int t = tile->t0 + i, n = a->pos[t] + 1;
                float *sc = scratch + (size_t)i * per_tok + j0;
                const size_t at = ((size_t)t * a->n_heads + h0) * hd;
                b.n = n - j0 < S_KV_ROWS ? n - j0 : S_KV_ROWS;
                if (b.n <= 0)
                    continue;
                if (pass == 0)
                    sq_cpu_attn_scores(a->q + at, g, &b, sc, (size_t)n);
                else
                    sq_cpu_attn_values(sc, (size_t)n, g, &b, a->out + at);
            }
        }
        for (int i = 0; pass == 0 && i < tile->n; i++) {
            const int t = tile->t0 + i, n = a->pos[t] + 1;
            for (int h = 0; h < g; h++)
                sq_cpu_softmax_row(scratch + (size_t)i * per_tok + (size_t)h * n, n,
                                   1.0f / sqrtf((float)hd));
            memset(a->out + ((size_t)t * a->n_heads + h0) * hd, 0, (size_t)g * hd * sizeof(float));
        }
    }
}

static void s_attn_worker(void *arg, int ith, int nth)
{
    s_attn_job_t *job = arg;
    const sq_attn_args_t *a = job->a;
    float *scratch = job->cpu->scores + (size_t)ith * job->cpu->scores_per_thread;
    const int n_tasks = job->n_tiles * a->n_kv;
    for (int i = ith; i < n_tasks; i += nth)
        s_attn_tile(a, &job->tiles[i / a->n_kv], i % a->n_kv, scratch);
}

/* Store each token's k/v rows at (slot, kv head, pos), as kv_dtype. */
static void s_kv_store(const sq_attn_args_t *a)
{
    const size_t hd = (size_t)a->head_dim;
    const bool f16 = a->kv_dtype == SQ_DTYPE_F16;
    for (int t = 0; t < a->n_tok; t++)
        for (int h = 0; h < a->n_kv; h++) {
            size_t at = s_kv_at(a, a->slot[t], h, a->pos[t]);
            size_t from = ((size_t)t * a->n_kv + h) * hd;
            if (a->kv_dtype == SQ_DTYPE_Q8_0) {
                const size_t to = sq_cpu_row_bytes(SQ_DTYPE_Q8_0, (int64_t)at);
                sq_cpu_quantize_row_q8_0(a->k + from,
                                         (sq_block_q8_0_t *)((char *)a->k_cache + to),
                                         (int64_t)hd);
                sq_cpu_quantize_row_q8_0(a->v + from,
                                         (sq_block_q8_0_t *)((char *)a->v_cache + to),
                                         (int64_t)hd);
            } else if (f16) {
                sq_cpu_f32_to_f16_row(a->k + from, (uint16_t *)a->k_cache + at, (int64_t)hd);
                sq_cpu_f32_to_f16_row(a->v + from, (uint16_t *)a->v_cache + at, (int64_t)hd);
            } else {
                memcpy((float *)a->k_cache + at, a->k + from, hd * sizeof(float));
                memcpy((float *)a->v_cache + at, a->v + from, hd * sizeof(float));
            }
        }
}

static int s_attention(sq_backend_t *be, const sq_attn_args_t *a)
{
    s_cpu_t *c = s_ctx(be);
    if (a->kv_dtype != SQ_DTYPE_F32 && a->kv_dtype != SQ_DTYPE_F16 &&
        !(a->kv_dtype == SQ_DTYPE_Q8_0 && a->head_dim % SQ_QK8_0 == 0))
        return SQ_FAIL(SQ_EUNSUPPORTED, "cpu attention: KV cache of dtype %d, head_dim %d",
                       a->kv_dtype, a->head_dim);
    /* store every token's k/v first: a token may attend to another of the
     * same batch at an earlier position */
    s_kv_store(a);
    /* tiles: runs of one slot at consecutive positions, of at most max_tile */
    const size_t g = (size_t)(a->group < a->n_heads ? a->group : a->n_heads);
    const size_t per_tok = g * (size_t)a->n_ctx;
    int max_tile = (int)(S_SCRATCH_FLOATS / per_tok);
    max_tile = max_tile < 1 ? 1 : max_tile > S_TILE ? S_TILE : max_tile;
    if (a->n_tok > c->tiles_cap) {
        s_tile_t *t = realloc(c->tiles, (size_t)a->n_tok * sizeof *t);
        if (!t)
            return SQ_FAIL(SQ_ENOMEM, "attention tiles for %d tokens", a->n_tok);
        c->tiles = t;
        c->tiles_cap = a->n_tok;
    }
    int n_tiles = 0;
    for (int t = 0; t < a->n_tok; t++) {
        s_tile_t *last = n_tiles ? &c->tiles[n_tiles - 1] : NULL;
        const int prev = t - 1;
        if (last && last->n < max_tile && a->slot[t] == a->slot[prev] &&
            a->pos[t] == a->pos[prev] + 1)
            last->n++;
        else
            c->tiles[n_tiles++] = (s_tile_t){t, 1};
    }
    const size_t need = (size_t)max_tile * per_tok + (size_t)S_KV_ROWS * (size_t)a->head_dim;
    if (need > c->scores_per_thread) {
        float *s = realloc(c->scores, need * c->n_threads * sizeof(float));
        if (!s)
            return SQ_FAIL(SQ_ENOMEM, "attention scores for context %d", a->n_ctx);
        c->scores = s;
        c->scores_per_thread = need;
    }
    s_attn_job_t job = {a, c, c->tiles, n_tiles};
    sq_threadpool_run(c->pool, s_attn_worker, &job);
    return 0;
}

/* gate (n) = silu(gate) * up, each thread one contiguous part */
typedef struct {
    float *gate;
    const float *up;
    size_t n;
} s_swiglu_job_t;

static void s_swiglu_worker(void *arg, int ith, int nth)
{
    s_swiglu_job_t *j = arg;
    size_t per = (j->n + (size_t)nth - 1) / (size_t)nth;
    size_t lo = per * (size_t)ith, hi = lo + per < j->n ? lo + per : j->n;
    if (hi > lo)
        sq_cpu_swiglu_row(j->gate + lo, j->up + lo, (int64_t)(hi - lo));
}

static int s_swiglu(sq_backend_t *be, float *gate, const float *up, size_t n)
{
    s_swiglu_job_t job = {gate, up, n};
    /* below a few thousand values a wake-up costs more than it saves */
    if (n < 4096)
        s_swiglu_worker(&job, 0, 1);
    else
        sq_threadpool_run(s_ctx(be)->pool, s_swiglu_worker, &job);
    return 0;
}

static int s_add(sq_backend_t *be, float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
    return 0;
}

static int s_index_rows(sq_backend_t *be, float *dst, const float *src, int64_t row_len,
                        const int32_t *idx, int n, bool add)
{
    const size_t len = (size_t)row_len;
    for (int k = 0; k < n; k++) {
        if (add)
            s_add(be, dst + (size_t)idx[k] * len, src + (size_t)k * len, len);
        else
            memcpy(dst + (size_t)k * len, src + (size_t)idx[k] * len, len * sizeof(float));
    }
    return 0;
}

static int s_argmax(sq_backend_t *be, const float *x, int n_rows, int n_cols, int32_t *host_out)
{
    for (int r = 0; r < n_rows; r++)
        host_out[r] = sq_sampler_argmax(x + (size_t)r * (size_t)n_cols, n_cols);
    return 0;
}

/* The first unsigned number in file dir/name; 0 when absent or not one
 * (cgroup v2 writes "max" for no limit) */
static unsigned long long s_read_u64(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%.440s/%.64s", dir, name);
    FILE *fp = fopen(path, "r");
    unsigned long long v = 0;
    if (fp && fscanf(fp, "%llu", &v) != 1)
        v = 0;
    if (fp)
        fclose(fp);
    return v;
}

/* Room left under the process's memory cgroup (a container's limit,
 * which /proc/meminfo does not show): limit - usage of cgroup v2, else
 * v1; ULLONG_MAX when there is no limit. The root is /sys/fs/cgroup, or
 * SQ_CGROUP_ROOT (tests). */
static unsigned long long s_cgroup_room(void)
{
    const char *root = getenv("SQ_CGROUP_ROOT");
    char v1[512];
    root = root && *root ? root : "/sys/fs/cgroup";
    snprintf(v1, sizeof v1, "%.440s/memory", root);
    unsigned long long limit = s_read_u64(root, "memory.max"), used = 0;
    if (limit)
        used = s_read_u64(root, "memory.current");
    else if ((limit = s_read_u64(v1, "memory.limit_in_bytes")))
        used = s_read_u64(v1, "memory.usage_in_bytes");
    if (limit == 0 || limit >= (1ULL << 62))   /* v1 writes a huge number for none */
        return ULLONG_MAX;
    return limit > used ? limit - used : 0;
}

/* MemAvailable of /proc/meminfo (else the free pages), or less when a
 * memory cgroup leaves less; the pool is the host (its name, hashed) */
static int s_mem_free(sq_backend_t *be, size_t *bytes, uint64_t *pool)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "unknown-host");
    *pool = sq_fnv1a_str(host);
    FILE *fp = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kib = 0;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    if (fp)
        fclose(fp);
    if (kib == 0) {
        const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        kib = pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page / 1024 : 0;
    }
    if (kib == 0)
        return SQ_FAIL(SQ_EDEVICE, "cpu: cannot tell the available memory");
    const unsigned long long room = s_cgroup_room();
    *bytes = (size_t)(kib * 1024 < room ? kib * 1024 : room);
    return 0;
}

static const sq_backend_ops_t s_cpu_ops = {
    .name = "cpu",
    .destroy = s_destroy,
    .alloc = s_alloc,
    .free = s_free,
    .upload = s_memcpy,
    .download = s_memcpy,
    .copy = s_memcpy,
    .weight_init = s_weight_init,
    .weight_release = s_weight_release,
    .embed = s_embed,
    .rmsnorm = s_rmsnorm,
    .matmul = s_matmul,
    .matmul_n = s_matmul_n,
    .rope = s_rope,
    .attention = s_attention,
    .swiglu = s_swiglu,
    .add = s_add,
    .index_rows = s_index_rows,
    .argmax = s_argmax,
    .mem_free = s_mem_free,
};

sq_backend_t *sq_backend_cpu_new(int n_threads)
{
    if (n_threads < 1) {
        SQ_FAIL(SQ_EINVAL, "cpu backend: %d threads", n_threads);
        return NULL;
    }
    sq_backend_t *be = calloc(1, sizeof *be);
    s_cpu_t *c = calloc(1, sizeof *c);
    if (be && c)
        c->pool = sq_threadpool_new(n_threads);
    if (!be || !c || !c->pool) {
        SQ_FAIL(SQ_ENOMEM, "cpu backend with %d threads", n_threads);
        if (c)
            sq_threadpool_destroy(&c->pool);
        free(c);
        free(be);
        return NULL;
    }
    c->n_threads = sq_threadpool_size(c->pool);
    be->ops = &s_cpu_ops;
    be->ctx = c;
    return be;
}

/* the CPU backend, in the timing wrapper when SHARDQ_PROFILE=1 (the CUDA
 * backend reads the variable itself) */
static sq_backend_t *s_cpu_by_name(int n_threads)
{
    sq_backend_t *be = sq_backend_cpu_new(n_threads);
    return sq_prof_wanted() ? sq_backend_prof_new(be) : be;
}

sq_backend_t *sq_backend_new(const char *device, int n_threads)
{
    if (!device || strcmp(device, "cpu") == 0)
        return s_cpu_by_name(n_threads);
    const bool is_auto = strcmp(device, "auto") == 0;
#ifdef SQ_HAVE_CUDA
    /* auto: the GPU when one is usable, else the CPU; cuda: the GPU or a
     * clear error (no driver, no device) */
    char why[256];
    if (is_auto || strcmp(device, "cuda") == 0) {
        if (sq_cuda_usable(why, sizeof why))
            return sq_backend_cuda_new(-1);
        if (is_auto)
            return s_cpu_by_name(n_threads);
        SQ_FAIL(SQ_EDEVICE, "%s", why);
        return NULL;
    }
#endif
    if (is_auto)
        return s_cpu_by_name(n_threads);
    if (strcmp(device, "cuda") == 0)
        SQ_FAIL(SQ_EUNSUPPORTED, "device cuda: this build has the cpu backend only");
    else
        SQ_FAIL(SQ_EUNSUPPORTED, "device '%s': not cpu, cuda or auto", device);
    return NULL;
}

void sq_backend_destroy(sq_backend_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    (*self_p)->ops->destroy(*self_p);
    free(*self_p);
    *self_p = NULL;
}
