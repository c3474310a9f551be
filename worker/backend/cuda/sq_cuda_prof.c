/*  sq_cuda_prof: the profile's rows and its table (see sq_cuda_prof.h).
 *  Rows are few (a model's distinct steps times a handful of batch
 *  buckets), so they are a plain array searched by label.
 */
#define _POSIX_C_SOURCE 200809L   /* open_memstream */
#include "sq_cuda_prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sq_cuda_layout.h"
#include "sq_error.h"

enum { S_LABEL = 64 };

typedef struct {
    char label[S_LABEL];
    long calls;
    double ms, bytes;
} s_row_t;

struct sq_cuda_prof {
    s_row_t *rows;
    int n_rows, cap;
    long lists, host_bound;
};

sq_cuda_prof_t *sq_cuda_prof_new(void)
{
    sq_cuda_prof_t *self = calloc(1, sizeof *self);
    if (!self)
        SQ_FAIL(SQ_ENOMEM, "cuda profile");
    return self;
}

void sq_cuda_prof_destroy(sq_cuda_prof_t **self_p)
{
    if (!*self_p)
        return;
    free((*self_p)->rows);
    free(*self_p);
    *self_p = NULL;
}

/* the step's batch: prefill chunks and each decode batch size apart */
static const char *s_bucket(int n_tok)
{
    return n_tok <= 1 ? "1" : n_tok <= 16 ? "2-16" : n_tok <= 64 ? "17-64"
         : n_tok <= 256 ? "65-256" : "257+";
}

static const char *s_dtype(int dtype)
{
    return dtype == SQ_CU_F32 ? "f32" : dtype == SQ_CU_F16 ? "f16" : dtype == SQ_CU_Q8_0 ? "q8_0"
                                                                                      : "?";
}

/* the kernel a product runs on */
static const char *s_path(const sq_cuda_op_t *mm)
{
    switch ((sq_cuda_path_t)mm->i[SQ_CUDA_MM_PATH]) {
    case SQ_CUDA_PATH_GEMV_Q8: return "gemv q8_0";
    case SQ_CUDA_PATH_GEMV_F16: return "gemv f16";
    case SQ_CUDA_PATH_MMA_Q8: return "mma q8_0";
    case SQ_CUDA_PATH_BLAS: break;
    }
    return mm->i[0] == SQ_CU_F32 ? "cublas f32" : mm->i[0] == SQ_CU_F16 ? "cublas f16"
                                                                        : "cublas q8_0>f16";
}

/* MATMUL ops[0..n) of one input (i: dtype, n_out, n_in): their label and
 * weight bytes */
static double s_products(const sq_cuda_op_t *ops, int n, bool swiglu, char *label, size_t size)
{
    int64_t n_out = 0;
    double bytes = 0.0;
    for (int m = 0; m < n; m++) {
        n_out += ops[m].i[1];
        bytes += (double)sq_cu_weight_bytes((int)ops[m].i[0], ops[m].i[1], ops[m].i[2]);
    }
    char what[16] = "";
    if (swiglu)
        snprintf(what, sizeof what, " gate+up+silu");
    else if (n > 1)
        snprintf(what, sizeof what, " x%d", n);
    snprintf(label, size, "%s%s %lldx%lld", s_path(ops), what, (long long)n_out,
             (long long)ops[0].i[2]);
    return bytes;
}

/* ATTN (i: n_slots, n_ctx, n_heads, n_kv, head_dim, .., n_tok, kv_dtype;
 * arg[1]: positions): the KV-cache rows its tokens attend to, each KV
 * head's once */
static double s_attention(const sq_cuda_op_t *at, const int32_t *arena)
{
    const double row = (double)sq_cu_row_bytes((int)at->i[9], at->i[4]);
    double keys = 0.0;
    for (int64_t t = 0; t < at->i[8]; t++)
        keys += (double)arena[at->arg[1] + t] + 1.0;
    return keys * (double)at->i[3] * row * 2.0;
}

double sq_cuda_prof_describe(const sq_cuda_step_t *st, const sq_cuda_op_t *ops,
                             const int32_t *arena, int n_tok, char *label, size_t size)
{
    static const char *const names[] = {"", "embed", "rmsnorm", "matmul", "rope", "attention",
                                        "swiglu", "add", "copy", "index_rows"};
    char what[S_LABEL];
    double bytes = 0.0;
    const sq_cuda_op_t *op = ops;
    switch (st->kind) {
    case SQ_CUDA_STEP_NORM:
        snprintf(what, sizeof what, "%srmsnorm%s", st->add ? "add+" : "",
                 st->quantize ? "+q8_0" : "");
        break;
    case SQ_CUDA_STEP_GEMV:
    case SQ_CUDA_STEP_GEMV_SWIGLU:
        bytes = s_products(ops, st->kind == SQ_CUDA_STEP_GEMV ? st->n_ops : 2,
                           st->kind == SQ_CUDA_STEP_GEMV_SWIGLU, what, sizeof what);
        break;
    case SQ_CUDA_STEP_ROPE_ATTN:
        op = &ops[2];   /* named as the attention, the rope first */
        /* fall through */
    case SQ_CUDA_STEP_OP:
        if (op->kind == SQ_CUDA_OP_MATMUL) {
            bytes = s_products(op, 1, false, what, sizeof what);
        } else if (op->kind == SQ_CUDA_OP_ATTN) {
            bytes = s_attention(op, arena);
            snprintf(what, sizeof what, "%sattention kv %s",
                     st->kind == SQ_CUDA_STEP_ROPE_ATTN ? "rope+store+" : "",
                     s_dtype((int)op->i[9]));
        } else {
            const int k = op->kind;
            snprintf(what, sizeof what, "%s",
                     k > 0 && k < (int)(sizeof names / sizeof names[0]) ? names[k] : "?");
        }
        break;
    }
    snprintf(label, size, "%s [%s]", what, s_bucket(n_tok));
    return bytes;
}

double sq_cuda_prof_describe_tokens(bool sample, int n_rows, int n_cols, char *label,
                                    size_t size)
{
    snprintf(label, size, "%s %d logits [%s]", sample ? "sample" : "argmax", n_cols,
             s_bucket(n_rows));
    return (double)n_rows * (double)n_cols * sizeof(float);
}

int sq_cuda_prof_add(sq_cuda_prof_t *self, const char *label, double ms, double bytes)
{
    s_row_t *r = NULL;
    for (int i = 0; i < self->n_rows && !r; i++)
        if (strncmp(self->rows[i].label, label, S_LABEL - 1) == 0)
            r = &self->rows[i];
    if (!r) {
        if (self->n_rows == self->cap) {
            const int cap = self->cap ? 2 * self->cap : 32;
            s_row_t *rows = realloc(self->rows, (size_t)cap * sizeof *rows);
            if (!rows)
                return SQ_FAIL(SQ_ENOMEM, "cuda profile of %d rows", cap);
            self->rows = rows;
            self->cap = cap;
        }
        r = &self->rows[self->n_rows++];
        *r = (s_row_t){0};
        snprintf(r->label, sizeof r->label, "%s", label);
    }
    r->calls++;
    r->ms += ms;
    r->bytes += bytes;
    return 0;
}

void sq_cuda_prof_list(sq_cuda_prof_t *self, bool host_bound)
{
    self->lists++;
    self->host_bound += host_bound;
}

static int s_by_time(const void *a, const void *b)
{
    const double x = ((const s_row_t *)a)->ms, y = ((const s_row_t *)b)->ms;
    return x < y ? 1 : x > y ? -1 : 0;
}

char *sq_cuda_prof_text(const sq_cuda_prof_t *self)
{
    if (self->n_rows == 0)
        return NULL;
    s_row_t *rows = malloc((size_t)self->n_rows * sizeof *rows);
    char *text = NULL;
    size_t len = 0;
    FILE *f = rows ? open_memstream(&text, &len) : NULL;
    if (!f) {
        free(rows);
        SQ_FAIL(SQ_ENOMEM, "cuda profile text");
        return NULL;
    }
    memcpy(rows, self->rows, (size_t)self->n_rows * sizeof *rows);
    qsort(rows, (size_t)self->n_rows, sizeof *rows, s_by_time);
    double total = 0.0;
    long calls = 0;
    for (int i = 0; i < self->n_rows; i++) {
        total += rows[i].ms;
        calls += rows[i].calls;
    }
    fprintf(f, "CUDA profile: %ld runs (recorded lists, token choices) step by step, no graphs, "
               "each step timed alone on the device; in %ld the GPU caught up with the host\n",
            self->lists, self->host_bound);
    fprintf(f, "%-48s %8s %10s %6s %9s %8s\n", "step [batch]", "calls", "total ms", "share",
            "us/call", "GB/s");
    for (int i = 0; i < self->n_rows; i++) {
        const s_row_t *r = &rows[i];
        fprintf(f, "%-48s %8ld %10.3f %5.1f%% %9.2f", r->label, r->calls, r->ms,
                total > 0.0 ? 100.0 * r->ms / total : 0.0, 1e3 * r->ms / (double)r->calls);
        if (r->bytes > 0.0 && r->ms > 0.0)
            fprintf(f, " %8.1f", r->bytes / (r->ms * 1e-3) / 1e9);
        fputc('\n', f);
    }
    fprintf(f, "%-48s %8ld %10.3f\n", "all steps", calls, total);
    free(rows);
    if (fclose(f) != 0) {
        free(text);
        SQ_FAIL(SQ_ENOMEM, "cuda profile text");
        return NULL;
    }
    return text;
}
