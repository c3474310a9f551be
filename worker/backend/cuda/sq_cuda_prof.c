/*  sq_cuda_prof: the CUDA profile's labels and bytes (see sq_cuda_prof.h). */
#include "sq_cuda_prof.h"

#include <stdio.h>

#include "sq_cuda_layout.h"
#include "sq_prof.h"

enum { S_LABEL = 64 };

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
                     sq_prof_dtype((int)op->i[9]));
        } else {
            const int k = op->kind;
            snprintf(what, sizeof what, "%s",
                     k > 0 && k < (int)(sizeof names / sizeof names[0]) ? names[k] : "?");
        }
        break;
    }
    snprintf(label, size, "%s [%s]", what, sq_prof_bucket(n_tok));
    return bytes;
}

double sq_cuda_prof_describe_tokens(bool sample, int n_rows, int n_cols, char *label,
                                    size_t size)
{
    snprintf(label, size, "%s %d logits [%s]", sample ? "sample" : "argmax", n_cols,
             sq_prof_bucket(n_rows));
    return (double)n_rows * (double)n_cols * sizeof(float);
}
