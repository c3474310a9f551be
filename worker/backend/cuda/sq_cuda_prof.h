/*  sq_cuda_prof: where a CUDA backend's device time goes (host code, no
 *  CUDA calls: CPU-only CI tests it).
 *
 *  With SHARDQ_CUDA_PROFILE=1 the backend runs every recorded list op by
 *  op (no graphs), times each step of its fusion plan between two events
 *  and adds the time here under a label that says what ran: the kernel,
 *  the product's shape and the step's batch (the list's largest token
 *  count, in buckets, so prefill and each decode batch size are apart). A
 *  label also carries the bytes the step must read from device memory
 *  (a product's weights, an attention's KV-cache rows), so the table
 *  shows how close each kernel comes to the memory's bandwidth.
 *
 *  Ownership: sq_cuda_prof_new / sq_cuda_prof_destroy; the text of
 *  sq_cuda_prof_text is the caller's to free.
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

typedef struct sq_cuda_prof sq_cuda_prof_t;

sq_cuda_prof_t *sq_cuda_prof_new(void);
void sq_cuda_prof_destroy(sq_cuda_prof_t **self_p);

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
/* one call of label that took ms and read bytes; 0 or SQ_ENOMEM */
int sq_cuda_prof_add(sq_cuda_prof_t *self, const char *label, double ms, double bytes);
/* one run timed (a recorded list, or a token choice); host_bound when
 * the GPU had run out of queued work before the host finished queueing
 * it (its short steps' times then include waits for their launch) */
void sq_cuda_prof_list(sq_cuda_prof_t *self, bool host_bound);
/* the table, rows by total time, largest first; NULL when nothing was
 * timed or out of memory */
char *sq_cuda_prof_text(const sq_cuda_prof_t *self);

#ifdef __cplusplus
}
#endif
#endif
