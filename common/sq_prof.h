/*  sq_prof: a table of where a backend's time went, one row a label (the
 *  kernel or op, its shape, its batch bucket), with the bytes each row had
 *  to read, so the table shows how close each comes to the memory's
 *  bandwidth. The CUDA backend fills one from device events
 *  (sq_cuda_prof.h), the CPU backend's profiling wrapper from the host
 *  clock (sq_backend_prof.h); SHARDQ_PROFILE=1 turns both on.
 *
 *  Ownership: sq_prof_new / sq_prof_destroy; the text of sq_prof_text is
 *  the caller's to free.
 */
#ifndef SQ_PROF_H
#define SQ_PROF_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_prof sq_prof_t;

sq_prof_t *sq_prof_new(void);
void sq_prof_destroy(sq_prof_t **self_p);

/* SHARDQ_PROFILE is set, and not to 0 */
bool sq_prof_wanted(void);
/* the batch bucket of n_tok tokens, "1", "2-16", "17-64", "65-256" or
 * "257+": a label's last part, so prefill and each decode batch size
 * keep their own rows */
const char *sq_prof_bucket(int n_tok);
/* "f32", "f16", "q8_0" for GGUF's dtype codes 0, 1, 8; "?" else */
const char *sq_prof_dtype(int dtype);

/* one call of label that took ms and read bytes; 0 or SQ_ENOMEM */
int sq_prof_add(sq_prof_t *self, const char *label, double ms, double bytes);
/* header (a line, without its newline) and the table under it: rows by
 * total time, largest first, with calls, total ms, share, µs a call and
 * GB/s (where bytes were given), then the total. NULL when nothing was
 * added or out of memory. */
char *sq_prof_text(const sq_prof_t *self, const char *header);

#ifdef __cplusplus
}
#endif
#endif
