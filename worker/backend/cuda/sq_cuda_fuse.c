/*  sq_cuda_fuse: the fusion plan of a recorded op list (see sq_cuda_fuse.h).
 *  Pure host code.
 */
#include "sq_cuda_fuse.h"

#include <stdlib.h>

#include "sq_cuda_layout.h"
#include "sq_error.h"

sq_cuda_path_t sq_cuda_matmul_path(int dtype, int64_t n_in, int n_tok, const void *x, bool mma)
{
    if (n_tok > SQ_CUDA_GEMV_MAX)
        return dtype == SQ_CU_Q8_0 && mma ? SQ_CUDA_PATH_MMA_Q8 : SQ_CUDA_PATH_BLAS;
    if (dtype == SQ_CU_Q8_0)
        return SQ_CUDA_PATH_GEMV_Q8;
    if (dtype == SQ_CU_F16 && n_in % 32 == 0 && (uintptr_t)x % 16 == 0)
        return SQ_CUDA_PATH_GEMV_F16;
    return SQ_CUDA_PATH_BLAS;
}

/* byte ranges [a, a + na) and [b, b + nb) share a byte */
static bool s_overlap(const void *a, int64_t na, const void *b, int64_t nb)
{
    const char *pa = a, *pb = b;
    return pa < pb + nb && pb < pa + na;
}

static int64_t s_x_bytes(const sq_cuda_op_t *mm)    /* a MATMUL's input */
{
    return mm->i[3] * mm->i[2] * 4;
}

static int64_t s_y_bytes(const sq_cuda_op_t *mm)    /* a MATMUL's output */
{
    return mm->i[3] * mm->i[1] * 4;
}

bool sq_cuda_path_q8(sq_cuda_path_t path)
{
    return path == SQ_CUDA_PATH_GEMV_Q8 || path == SQ_CUDA_PATH_MMA_Q8;
}

static sq_cuda_path_t s_path(const sq_cuda_op_t *mm)
{
    return (sq_cuda_path_t)mm->i[SQ_CUDA_MM_PATH];
}

/* the product at ops[k] (k < n) reads norm's output quantised */
static bool s_feeds_q8(const sq_cuda_op_t *norm, const sq_cuda_op_t *ops, int k, int n)
{
    if (k >= n || ops[k].kind != SQ_CUDA_OP_MATMUL)
        return false;
    const sq_cuda_op_t *mm = &ops[k];
    return mm->p[1] == norm->p[2] && mm->i[3] == norm->i[0] && mm->i[2] == norm->i[1] &&
           sq_cuda_path_q8(s_path(mm));
}

/* ops[k] is an RMSNORM, or an ADD into the x an RMSNORM right after it
 * reads (the norm's output not overlapping what the add reads) */
static int s_norm(const sq_cuda_op_t *ops, int k, int n, bool fuse, sq_cuda_step_t *st)
{
    const sq_cuda_op_t *a = &ops[k];
    if (a->kind == SQ_CUDA_OP_RMSNORM) {
        *st = (sq_cuda_step_t){SQ_CUDA_STEP_NORM, k, 1, false, fuse && s_feeds_q8(a, ops, k + 1, n)};
        return 1;
    }
    if (!fuse || a->kind != SQ_CUDA_OP_ADD || k + 1 >= n || ops[k + 1].kind != SQ_CUDA_OP_RMSNORM)
        return 0;
    const sq_cuda_op_t *r = &ops[k + 1];
    const int64_t bytes = r->i[0] * r->i[1] * 4;
    if (r->p[0] != a->p[0] || a->i[0] != r->i[0] * r->i[1] || s_overlap(r->p[2], bytes, a->p[1], bytes))
        return 0;
    *st = (sq_cuda_step_t){SQ_CUDA_STEP_NORM, k, 2, true, s_feeds_q8(r, ops, k + 2, n)};
    return 2;
}

/* products after ops[k] that share its input, shape and path, up to
 * SQ_CUDA_GEMV_MATS in all, no output overlapping the input or another */
static int s_gemv_run(const sq_cuda_op_t *ops, int k, int n)
{
    const sq_cuda_op_t *m0 = &ops[k];
    int run = 1;
    while (run < SQ_CUDA_GEMV_MATS && k + run < n) {
        const sq_cuda_op_t *m = &ops[k + run];
        if (m->kind != SQ_CUDA_OP_MATMUL || m->p[1] != m0->p[1] || m->i[0] != m0->i[0] ||
            m->i[2] != m0->i[2] || m->i[3] != m0->i[3] || s_path(m) != s_path(m0))
            break;
        bool clash = s_overlap(m->p[2], s_y_bytes(m), m0->p[1], s_x_bytes(m0));
        for (int j = 0; j < run; j++)
            clash |= s_overlap(m->p[2], s_y_bytes(m), ops[k + j].p[2], s_y_bytes(&ops[k + j]));
        if (clash)
            break;
        run++;
    }
    return run;
}

static int s_gemv(const sq_cuda_op_t *ops, int k, int n, sq_cuda_step_t *st)
{
    const sq_cuda_op_t *m0 = &ops[k];
    if (m0->kind != SQ_CUDA_OP_MATMUL || s_path(m0) == SQ_CUDA_PATH_BLAS ||
        s_overlap(m0->p[2], s_y_bytes(m0), m0->p[1], s_x_bytes(m0)))
        return 0;   /* in place: op by op */
    const int run = s_gemv_run(ops, k, n);
    if (run == 2 && k + 2 < n && ops[k + 2].kind == SQ_CUDA_OP_SWIGLU) {
        const sq_cuda_op_t *g = m0, *u = &ops[k + 1], *s = &ops[k + 2];
        if (g->i[1] == u->i[1] && s->p[0] == g->p[2] && s->p[1] == u->p[2] &&
            s->i[0] == g->i[3] * g->i[1]) {
            *st = (sq_cuda_step_t){SQ_CUDA_STEP_GEMV_SWIGLU, k, 3, false, false};
            return 3;
        }
    }
    *st = (sq_cuda_step_t){SQ_CUDA_STEP_GEMV, k, run, false, false};
    return run;
}

/* ROPE q, ROPE k, ATTN of the same tokens, positions and head size */
static int s_rope_attn(const sq_cuda_op_t *ops, int k, int n, sq_cuda_step_t *st)
{
    if (k + 2 >= n || ops[k].kind != SQ_CUDA_OP_ROPE || ops[k + 1].kind != SQ_CUDA_OP_ROPE ||
        ops[k + 2].kind != SQ_CUDA_OP_ATTN)
        return 0;
    const sq_cuda_op_t *rq = &ops[k], *rk = &ops[k + 1], *at = &ops[k + 2];
    const int64_t n_tok = at->i[8], hd = at->i[4];
    const bool same = rq->p[0] == at->p[2] && rk->p[0] == at->p[3] &&
                      rq->arg[0] == at->arg[1] && rk->arg[0] == at->arg[1] &&
                      rq->i[0] == n_tok && rk->i[0] == n_tok && rq->i[2] == hd && rk->i[2] == hd &&
                      rq->i[1] == at->i[2] && rk->i[1] == at->i[3] && rq->i[3] == rk->i[3] &&
                      rq->f[0] == rk->f[0];
    if (!same)
        return 0;
    /* the output projection reads the attention's output quantised: the
     * attention kernel quantises it (a warp per 32 values of a head) */
    bool quantize = false;
    if (k + 3 < n && hd % 32 == 0) {
        const sq_cuda_op_t *mm = &ops[k + 3];
        quantize = mm->kind == SQ_CUDA_OP_MATMUL && mm->p[1] == at->p[5] && mm->i[3] == n_tok &&
                   mm->i[2] == at->i[2] * hd && sq_cuda_path_q8(s_path(mm));
    }
    *st = (sq_cuda_step_t){SQ_CUDA_STEP_ROPE_ATTN, k, 3, false, quantize};
    return 3;
}

int sq_cuda_fuse(const sq_cuda_op_t *ops, int n, bool fuse, sq_cuda_step_t **steps, int *cap)
{
    int n_steps = 0;
    for (int k = 0; k < n;) {
        if (n_steps == *cap) {
            int c = *cap ? 2 * *cap : 256;
            sq_cuda_step_t *s = realloc(*steps, (size_t)c * sizeof *s);
            if (!s)
                return SQ_FAIL(SQ_ENOMEM, "cuda: planning %d steps", c);
            *steps = s;
            *cap = c;
        }
        sq_cuda_step_t *st = &(*steps)[n_steps++];
        int used = s_norm(ops, k, n, fuse, st);
        if (!used && fuse)
            used = s_gemv(ops, k, n, st);
        if (!used && fuse)
            used = s_rope_attn(ops, k, n, st);
        if (!used) {
            *st = (sq_cuda_step_t){SQ_CUDA_STEP_OP, k, 1, false, false};
            used = 1;
        }
        k += used;
    }
    return n_steps;
}
