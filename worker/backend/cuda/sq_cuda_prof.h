/*  sq_cuda_prof: what the CUDA backend's profile (SHARDQ_PROFILE=1,
 *  sq_prof.h) calls each step it times, and the bytes the step must read
 *  (host code, no CUDA calls: CPU-only CI tests it).
 *
 *  The backend runs every recorded list op by op (no graphs), times each
 *  step of its fusion plan between two events and adds the time under a
 *  label that says what ran: the kernel, the product's shape and the
 *  step's batch (the list's largest token count, in sq_prof_bucket's
 *  buckets). The bytes are a product's weights, an attention's KV-cache
 *  rows, the logits of a token choice.
 */
#ifndef SQ_CUDA_PROF_H
#define SQ_CUDA_PROF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_cuda_fuse.h"

#ifdef __cplusplus
extern "C" {
#endif

/* label (size bytes, NUL-terminated) of the step st of a list whose
 * largest token count is n_tok, ops its ops, arena the list's host
 * arguments (an attention's positions); returns the bytes it must read:
 * weights, KV-cache rows, or 0 where no such figure means much */
double sq_cuda_prof_describe(const sq_cuda_step_t *st, const sq_cuda_op_t *ops,
                             const int32_t *arena, int n_tok, char *label, size_t size);
/* the same for the token choice after a list: argmax or sampling of
 * n_rows rows of n_cols logits */
double sq_cuda_prof_describe_tokens(bool sample, int n_rows, int n_cols, char *label,
                                    size_t size);

#ifdef __cplusplus
}
#endif
#endif
