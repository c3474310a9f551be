/*  sq_backend: the compute backend interface (ggml-backend style).
 *
 *  A backend is a table of function pointers plus its private context. It
 *  owns all activation, KV-cache and weight memory it hands out: the model
 *  code holds pointers into backend memory and never dereferences them; it
 *  only passes them to the ops below (pointer arithmetic to address a row
 *  is fine, as with device pointers). Host data crosses the boundary only
 *  through upload/download, weight_init and the host arrays of ids and
 *  positions that ops take. So a CUDA backend can be added next to the CPU
 *  one without touching sq_model.c.
 *
 *  Shapes are written (rows, cols), row-major, cols contiguous. All ops
 *  return 0 or a negative SQ_E* code.
 */
#ifndef SQ_BACKEND_H
#define SQ_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_backend sq_backend_t;

/* A matrix resident on the backend: n_out rows of n_in values of dtype
 * (SQ_DTYPE_F32 / F16 / Q8_0, GGUF layout, or a layout of the backend's
 * own that weight_init chose: the CPU backend's packed SQ_DTYPE_Q8_0X16).
 * A vector is n_out = 1. */
typedef struct {
    int dtype;
    int64_t n_out, n_in;
    const void *data;           /* backend memory */
    void *owned;                /* what weight_release frees (NULL: borrowed) */
} sq_weight_t;

/* KV-cache positions per page: the cache is a pool of pages, each holding
 * SQ_KV_PAGE consecutive positions of one sequence (every KV head), and a
 * page table maps a sequence's positions to pages, so a sequence holds
 * memory for the positions it has reached, not for the whole context (as
 * vLLM's paged attention). Both backends' attention reads keys in strips
 * of 32 aligned positions: a strip is always inside one page. */
enum { SQ_KV_PAGE = 32 };

/* One attention step over a layer's KV cache for a batch of tokens.
 * Each cache holds n_pages pages of SQ_KV_PAGE * n_kv * head_dim values of
 * kv_dtype (K and V): SQ_DTYPE_F32; SQ_DTYPE_F16, the k and v rows
 * rounded to nearest even as they are stored; or SQ_DTYPE_Q8_0 (head_dim
 * a multiple of 32: sq_cpu_row_bytes(SQ_DTYPE_Q8_0, n) bytes for n
 * values), each 32 values of a row quantized by sq_cpu_quantize_row_q8_0's
 * arithmetic (scale amax / 127 rounded to F16). So every backend stores
 * the same bits for the same rows, and widens them to F32 exactly as they
 * are read. The order is the backend's own (only this op reads or writes
 * it; the CPU keeps Q8_0 rows as blocks of 34 bytes, the CUDA backend all
 * the int8 values first, then the scales): one
 * head's positions of a page are contiguous rows; the CPU backend keeps
 * chunks of 16 pages, each head's pages of a chunk together, (n_pages / 16,
 * n_kv, 16, SQ_KV_PAGE, head_dim) with a narrower last chunk, so
 * consecutive pages stream; the CUDA backend keeps (n_pages, n_kv,
 * SQ_KV_PAGE, head_dim). Position p of sequence slot s is in page
 * pages[s * max_pages + p / SQ_KV_PAGE], max_pages = sq_kv_pages_for(n_ctx)
 * (the page table: n_slots rows, host memory; pages_epoch
 * changes whenever it does, so a backend that copies it can tell when its
 * copy is current).
 * Token t belongs to sequence slot[t] at position pos[t]; its k/v rows are
 * stored at (slot[t], pos[t]) first, then its query attends causally to
 * positions 0..pos[t] of its slot, whose pages the table must give.
 * Local query head h reads local KV head (q_head0 + h) / group - kv_head0
 * (grouped-query attention; with tensor parallelism the heads are this
 * rank's share). */
typedef struct {
    void *k_cache, *v_cache;
    int kv_dtype;
    int n_slots, n_ctx, n_pages;
    const int32_t *pages;       /* (n_slots, max_pages), host */
    uint64_t pages_epoch;
    int n_heads, n_kv, head_dim;
    int q_head0, kv_head0, group;
    int n_tok;
    const int32_t *slot, *pos;  /* host arrays of n_tok, already validated */
    const float *q;             /* (n_tok, n_heads * head_dim) */
    const float *k, *v;         /* (n_tok, n_kv * head_dim) */
    float *out;                 /* (n_tok, n_heads * head_dim) */
} sq_attn_args_t;

/* pages positions 0 .. n - 1 take (max_pages: of n_ctx) */
static inline int sq_kv_pages_for(int n)
{
    return n <= 0 ? 0 : (n - 1) / SQ_KV_PAGE + 1;
}

typedef struct {
    const char *name;
    void (*destroy)(sq_backend_t *be);

    /* memory: uninitialised (the model writes before it reads: KV-cache
     * positions are stored before attention reads them); NULL on failure */
    void *(*alloc)(sq_backend_t *be, size_t bytes);
    void (*free)(sq_backend_t *be, void *p);
    int (*upload)(sq_backend_t *be, void *dst, const void *host_src, size_t bytes);
    int (*download)(sq_backend_t *be, void *host_dst, const void *src, size_t bytes);
    int (*copy)(sq_backend_t *be, void *dst, const void *src, size_t bytes);

    /* Make host data (n_out rows of n_in dtype values) a weight. borrow:
     * the host data outlives the weight (e.g. a GGUF mapping), so a backend
     * that can read host memory may use it in place. */
    int (*weight_init)(sq_backend_t *be, sq_weight_t *w, int dtype, int64_t n_out, int64_t n_in,
                       const void *host, bool borrow);
    void (*weight_release)(sq_backend_t *be, sq_weight_t *w);

    /* out (n, n_in) = rows ids[0..n) of emb, as F32 */
    int (*embed)(sq_backend_t *be, const sq_weight_t *emb, const int32_t *ids, int n, float *out);
    /* out (n, dim) = x / rms(x) * w, w an F32 vector of dim */
    int (*rmsnorm)(sq_backend_t *be, const float *x, const sq_weight_t *w, float eps, int n,
                   float *out);
    /* y (n_tok, w->n_out) = x (n_tok, w->n_in) W^T */
    int (*matmul)(sq_backend_t *be, const sq_weight_t *w, const float *x, int n_tok, float *y);
    /* y[i] (n_tok, w[i]->n_out) = x (n_tok, n_in) W_i^T for n weights of
     * one n_in, each as matmul gives it, in one pass (a layer's q, k and v,
     * or its gate and up). Optional: NULL where the backend has none, and
     * the model calls matmul for each. */
    int (*matmul_n)(sq_backend_t *be, const sq_weight_t *const *w, int n, const float *x,
                    int n_tok, float *const *y);
    /* in place on x (n_tok, n_heads * head_dim): rotate adjacent pairs
     * (x[2i], x[2i+1]), i < n_rot/2, by pos[t] * base^(-2i/n_rot) */
    int (*rope)(sq_backend_t *be, float *x, int n_tok, int n_heads, int head_dim, int n_rot,
                const int32_t *pos, float freq_base);
    int (*attention)(sq_backend_t *be, const sq_attn_args_t *a);
    /* gate (n) = silu(gate) * up */
    int (*swiglu)(sq_backend_t *be, float *gate, const float *up, size_t n);
    /* x (n) += y */
    int (*add)(sq_backend_t *be, float *x, const float *y, size_t n);
    /* Rows of row_len floats picked by idx (a host array of n row numbers,
     * valid for the buffers): add false gathers, dst row k = src row
     * idx[k]; add true scatters and adds, dst row idx[k] += src row k (the
     * idx distinct). What LoRA uses to apply an adapter to its tokens of
     * a mixed batch in one op instead of one op a token. */
    int (*index_rows)(sq_backend_t *be, float *dst, const float *src, int64_t row_len,
                      const int32_t *idx, int n, bool add);
    /* host_out (n_rows) = the index of the largest value of each row of x
     * (n_rows, n_cols), with sq_sampler_argmax's rules (NaN never wins,
     * lowest index on ties; SQ_SAMPLER_NOT_FINITE for a row whose largest
     * value is not finite): the greedy choice. A sync point like
     * download, but one integer per row crosses to the host. */
    int (*argmax)(sq_backend_t *be, const float *x, int n_rows, int n_cols, int32_t *host_out);
    /* host_out (n_rows) = each row's token under sq_sampler's rules with
     * rows[r] (its parameters and uniform; temperature <= 0: the argmax;
     * SQ_SAMPLER_NOT_FINITE as argmax's).
     * The weights are expf((logit - max) / T) as exact integers of 40
     * fraction bits instead of sums in double, so a token rarer than
     * 2^-40 of the top one is never drawn and, very rarely, a draw on a
     * boundary picks the neighbour sq_sampler would not. NULL when the
     * backend has none: the host samples from the logits. */
    int (*sample)(sq_backend_t *be, const float *x, int n_rows, int n_cols,
                  const sq_sample_row_t *rows, int32_t *host_out);
    /* *bytes = memory alloc can still hand out: the device's free memory,
     * or the host's available memory (what sizes an automatic KV cache);
     * *pool names that memory (host name, and device): ranks whose pools
     * are equal share it */
    int (*mem_free)(sq_backend_t *be, size_t *bytes, uint64_t *pool);
    /* where the time went so far, as a text table (the caller's to free);
     * NULL when the backend has no profile (NULL op) or was not made with
     * profiling on (SHARDQ_PROFILE=1: the CUDA backend's own, the CPU
     * backend through sq_backend_prof) */
    char *(*profile)(sq_backend_t *be);
} sq_backend_ops_t;

struct sq_backend {
    const sq_backend_ops_t *ops;
    void *ctx;
};

/* The CPU backend with a pool of n_threads (>= 1, counting the caller). */
sq_backend_t *sq_backend_cpu_new(int n_threads);
/* By device name ("cpu"); NULL and SQ_EUNSUPPORTED for an unknown one. */
sq_backend_t *sq_backend_new(const char *device, int n_threads);
void sq_backend_destroy(sq_backend_t **self_p);

/* y[i] = x W_i^T for n weights, one matmul each: what matmul_n means,
 * for a backend without it or weights it cannot take in one pass. */
static inline int sq_backend_matmul_each(sq_backend_t *be, const sq_weight_t *const *w, int n,
                                         const float *x, int n_tok, float *const *y)
{
    for (int i = 0; i < n; i++) {
        int rc = be->ops->matmul(be, w[i], x, n_tok, y[i]);
        if (rc)
            return rc;
    }
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif
