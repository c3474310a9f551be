/*  sq_kv_pages: the KV cache's page table (host code, one per rank).
 *
 *  The cache is a pool of n_pages pages of SQ_KV_PAGE positions
 *  (sq_backend.h). Slot s holds pages table[s * max_pages + 0 .. held-1]
 *  for its positions 0 .. held * SQ_KV_PAGE - 1; the rest of its row is
 *  -1. A forward pass first grows or trims each slot it writes to the
 *  pages its last position needs (sq_kv_pages_fit): pages past that hold
 *  positions the pass rewrites or that no longer count, so they go back to
 *  the pool. Slots can share pages (a prompt prefix another slot stored:
 *  sq_kv_pages_share); a shared page goes back when its last holder lets
 *  it go, and no pass may write into one. Every rank of a tensor-parallel
 *  group runs the same passes,
 *  so its counts (not necessarily its page numbers) are the same on all.
 *
 *  Ownership: the caller owns the allocator; the table it returns is
 *  borrowed and valid until the next call that changes it (the epoch
 *  changes with it).
 */
#ifndef SQ_KV_PAGES_H
#define SQ_KV_PAGES_H

#include <stdbool.h>
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
 * needed and free) when the pool is short, SQ_ESTATE when the pass would
 * write into a page another slot shares; then nothing changes. */
int sq_kv_pages_fit(sq_kv_pages_t *self, const int32_t *slots, const int32_t *first,
                    const int32_t *last, int n);
/* slot keeps its first keep positions (and their pages); the rest go back */
void sq_kv_pages_trim(sq_kv_pages_t *self, int slot, int keep);
/* Slot dst, holding nothing, takes src's first n pages as they are
 * (positions 0 .. n * SQ_KV_PAGE - 1, which src must have stored): both
 * hold them until they let go. SQ_EINVAL naming the slots otherwise. */
int sq_kv_pages_share(sq_kv_pages_t *self, int dst, int src, int n);
/* page k of slot's row is held by another slot too */
bool sq_kv_pages_shared(const sq_kv_pages_t *self, int slot, int k);

const int32_t *sq_kv_pages_table(const sq_kv_pages_t *self);
uint64_t sq_kv_pages_epoch(const sq_kv_pages_t *self);
int sq_kv_pages_total(const sq_kv_pages_t *self);
int sq_kv_pages_free(const sq_kv_pages_t *self);
int sq_kv_pages_held(const sq_kv_pages_t *self, int slot);
/* Distinct pages the slots marked in `in` (n_slots flags) hold between
 * them; a page two of them share counts once. */
int sq_kv_pages_held_by(sq_kv_pages_t *self, const bool *in);

#endif
