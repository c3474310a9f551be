/*  sq_backend_prof: a backend that times every op of another on the host
 *  clock and keeps the times in a profile table (sq_prof.h), its profile
 *  op. For backends whose ops have finished when they return (the CPU
 *  backend); the CUDA backend, whose ops are queued, keeps its own
 *  (sq_cuda_prof.h). sq_backend_new wraps the CPU backend in one when
 *  SHARDQ_PROFILE=1.
 *
 *  Rows: the op, a product's dtype and shape (all outputs x inputs), the
 *  attention's KV-cache type, and the batch bucket of the forward pass it
 *  belongs to (its token count; element-wise ops take the last token
 *  count seen). Bytes: a product's weights, the KV-cache rows an
 *  attention's tokens attend to, an argmax's logits.
 *
 *  Ownership: takes inner; destroying the wrapper destroys it.
 */
#ifndef SQ_BACKEND_PROF_H
#define SQ_BACKEND_PROF_H

#include "sq_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* inner wrapped (NULL in, NULL out: inner's failure stands) */
sq_backend_t *sq_backend_prof_new(sq_backend_t *inner);

#ifdef __cplusplus
}
#endif
#endif
