/*  sq_kv_pages: the KV cache's page table (host code, one per rank).
 *
 *  The cache is a pool of n_pages pages of SQ_KV_PAGE positions
 *  (sq_backend.h). Slot s holds pages table[s * max_pages + 0 .. held-1]
 *  for its positions 0 .. held * SQ_KV_PAGE - 1; the rest of its row is
 *  -1. A forward pass first grows or trims each slot it writes to the
 *  pages its last position needs (sq_kv_pages_fit): pages past that hold
 *  positions the pass rewrites or that no longer count, so they go back to
 *  the pool. Every rank of a tensor-parallel group runs the same passes,
 *  so its counts (not necessarily its page numbers) are the same on all.
 *
 *  Ownership: the caller owns the allocator; the table it returns is
 *  borrowed and valid until the next call that changes it (the epoch
 *  changes with it).
 */
#ifndef SQ_KV_PAGES_H
#define SQ_KV_PAGES_H

#include <stdint.h>

#include "sq_backend.h"   /* SQ_KV_PAGE, sq_kv_pages_for */

typedef struct sq_kv_pages sq_kv_pages_t;

/* NULL (SQ_ENOMEM or SQ_EINVAL reported) when the sizes are not positive */
sq_kv_pages_t *sq_kv_pages_new(int n_slots, int max_pages, int n_pages);
void sq_kv_pages_destroy(sq_kv_pages_t **self_p);

/* A pass writes positions first[i] .. last[i] of slot slots[i] (n
 * distinct slots) and reads positions 0 .. last[i]: positions below
 * first[i] must already be stored (by earlier passes, not trimmed since),
 * else SQ_EINVAL naming the slot. Each
 * slot then holds the pages up to last[i]'s: the pages it lacks are taken
 * from the pool, the ones past it go back. SQ_ENOMEM (naming what is
 * needed and free) when the pool is short, and then nothing changes. */
int sq_kv_pages_fit(sq_kv_pages_t *self, const int32_t *slots, const int32_t *first,
                    const int32_t *last, int n);
/* slot keeps its first keep positions (and their pages); the rest go back */
void sq_kv_pages_trim(sq_kv_pages_t *self, int slot, int keep);

const int32_t *sq_kv_pages_table(const sq_kv_pages_t *self);
uint64_t sq_kv_pages_epoch(const sq_kv_pages_t *self);
int sq_kv_pages_total(const sq_kv_pages_t *self);
int sq_kv_pages_free(const sq_kv_pages_t *self);
int sq_kv_pages_held(const sq_kv_pages_t *self, int slot);

#endif
