/*  cuda_test_util: what the CUDA tests share (header-only, static).
 *
 *  ct_compare runs an 8-token prompt in one batched step (the GEMM paths)
 *  and then greedy decoding one token at a time (the GEMV paths) through a
 *  model under test and a reference (both fed the reference's tokens),
 *  and reports the worst logit difference relative to the largest |logit|
 *  and whether the greedy tokens agreed: where they differ, the reference
 *  must have had a near tie, its logits for the two tokens within tol of
 *  each other (relative to the largest |logit|), or the tokens count as
 *  differing. Under MPI every rank of the model under test makes the
 *  same calls; the reference lives on rank 0 only and rank 0 broadcasts
 *  each token.
 */
#ifndef CUDA_TEST_UTIL_H
#define CUDA_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "sq_backend.h"
#include "sq_gguf.h"
#include "sq_model.h"
#include "sq_sampler.h"
#include "sq_test.h"
#include "sq_tp_comm.h"
#include "test_model_util.h"

enum { CT_PROMPT = 8 };

/* one side of a comparison: a model and what it was built from */
typedef struct {
    sq_gguf_t *gguf;
    sq_backend_t *be;
    sq_tp_comm_t *comm;
    sq_model_t *model;
} ct_side_t;

/* free a side (the communicator before the backend it may borrow) */
static inline void ct_unload(ct_side_t *s)
{
    sq_model_destroy(&s->model);
    sq_tp_comm_destroy(&s->comm);
    sq_backend_destroy(&s->be);
    sq_gguf_destroy(&s->gguf);
}

typedef struct {
    float worst;                /* max relative logit difference, any step */
    bool same_tokens;           /* every step agreed, or differed on a near tie */
    int near_ties;              /* steps that differed on a near tie */
    int steps_run;
} ct_result_t;

/* logits give tokens a and b values within tol of each other, relative
 * to the largest |logit|: a choice either way is within rounding */
static inline bool ct_near_tie(const float *logits, int n, int32_t a, int32_t b, float tol)
{
    float max_abs = 0.0f;
    for (int i = 0; i < n; i++)
        max_abs = fmaxf(max_abs, fabsf(logits[i]));
    return fabsf(logits[a] - logits[b]) <= tol * max_abs;
}

/* run: the model under test (every rank); ref: rank 0's reference;
 * comm: the group of run (NULL: a single process); adapter: the LoRA
 * adapter id every token uses on both (0: the base model). 0 or an SQ_E*
 * code. */
static inline int ct_compare(sq_model_t *run, sq_model_t *ref, sq_tp_comm_t *comm, int steps,
                             int adapter, float tol, ct_result_t *res)
{
    const int rank = comm ? comm->rank(comm) : 0;
    const int n_vocab = sq_model_hparams(run)->n_vocab;
    float *a = malloc((size_t)CT_PROMPT * n_vocab * sizeof(float));
    float *b = malloc((size_t)CT_PROMPT * n_vocab * sizeof(float));
    sq_batch_entry_t prompt[CT_PROMPT];
    for (int i = 0; i < CT_PROMPT; i++) {
        prompt[i] = tm_entry(0, i == 0 ? 1 : (int32_t)((i * 37) % n_vocab), i, true);
        prompt[i].adapter = adapter;
    }
    *res = (ct_result_t){0.0f, true, 0, 0};
    int rc = a && b ? 0 : -1, n = CT_PROMPT;
    int32_t tok = 0;
    for (int pos = CT_PROMPT; rc == 0 && pos < CT_PROMPT + steps; pos++) {
        sq_batch_entry_t e = tm_entry(0, tok, pos - 1, true);
        e.adapter = adapter;
        const sq_batch_entry_t *batch = pos == CT_PROMPT ? prompt : &e;
        if ((rc = sq_model_forward(run, batch, n, rank == 0 ? a : NULL)))
            break;
        if (rank == 0) {
            if ((rc = sq_model_forward(ref, batch, n, b)))
                break;
            res->worst = fmaxf(res->worst, tm_max_rel_diff(a, b, n * n_vocab));
            const float *la = a + (size_t)(n - 1) * n_vocab, *lb = b + (size_t)(n - 1) * n_vocab;
            tok = sq_sampler_argmax(lb, n_vocab);
            const int32_t got = sq_sampler_argmax(la, n_vocab);
            if (got != tok) {
                const bool tie = ct_near_tie(lb, n_vocab, tok, got, tol);
                res->near_ties += tie;
                res->same_tokens &= tie;
            }
        }
        if (comm && (rc = comm->bcast(comm, &tok, sizeof tok, 0)))
            break;
        n = 1;
        res->steps_run++;
    }
    free(a);
    free(b);
    return rc;
}

#endif
