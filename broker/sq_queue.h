/*  sq_queue: the broker's in-memory ready queue and retry timer.
 *
 *  Shape:  pool (model) -> priority levels (highest first)
 *                       -> ring of tenant FIFOs served by deficit round robin
 *
 *  - Priorities are strict: a pool serves its highest non-empty level.
 *  - Within a level, tenants share by deficit round robin (DRR): each visit
 *    adds `quantum` to a tenant's deficit and it is served while its
 *    deficit covers the cost of its head task (cost ~ max_tokens). A tenant
 *    flooding the queue therefore cannot starve another one.
 *  - Within a tenant, FIFO.
 *  - Deferred items (retry backoff) sit in a binary min-heap on due time.
 *  Every operation is O(1) or O(log n) in the number of items (plus the
 *  number of priority levels, which is small). Items are intrusive
 *  (sq_qitem_t embedded in the caller's task), so nothing is allocated per
 *  item; the queue never owns items.
 */
#ifndef SQ_QUEUE_H
#define SQ_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sq_queue_t sq_queue_t;
typedef struct sq_tq_t sq_tq_t;

typedef struct sq_qitem_t {
    struct sq_qitem_t *prev, *next; /* tenant FIFO links */
    sq_tq_t *tq;                    /* FIFO it is queued in, NULL if none */
    int64_t enq_ms;                 /* when it entered the ready queue */
    int64_t due_ms;                 /* retry heap key */
    uint32_t heap_pos;              /* 1-based slot in the retry heap; 0 = not deferred */
    uint32_t cost;                  /* DRR cost, >= 1 */
} sq_qitem_t;

/* quantum: deficit added per DRR visit (e.g. 1024 tokens). */
sq_queue_t *sq_queue_new(uint32_t quantum);
void sq_queue_destroy(sq_queue_t **self_p);

/* Append item to the FIFO of (pool, priority, tenant). cost is clamped to
 * [1, 4 * quantum] so a pop takes at most a few DRR rounds. Strings are
 * copied on first use. 0 or SQ_ENOMEM. */
int sq_queue_push(sq_queue_t *self, sq_qitem_t *item, const char *pool, int priority,
                  const char *tenant, uint32_t cost, int64_t now_ms);
/* Take the next item of pool by priority then DRR, or NULL if empty. */
sq_qitem_t *sq_queue_pop(sq_queue_t *self, const char *pool);
/* Remove a queued item (no-op when it is not queued). */
void sq_queue_remove(sq_queue_t *self, sq_qitem_t *item);

/* Items ready in pool, and the oldest enqueue time among them (0 if empty). */
size_t sq_queue_ready(sq_queue_t *self, const char *pool);
int64_t sq_queue_oldest_ms(sq_queue_t *self, const char *pool);
size_t sq_queue_ready_total(sq_queue_t *self);
/* Ready items of one tenant across pools and levels. */
size_t sq_queue_ready_tenant(sq_queue_t *self, const char *tenant);
/* Call fn for each pool name with its ready count. */
void sq_queue_each_pool(sq_queue_t *self, void (*fn)(void *arg, const char *pool, size_t n),
                        void *arg);

/* Retry timer: park item until due_ms (it must not be queued). */
int sq_queue_defer(sq_queue_t *self, sq_qitem_t *item, int64_t due_ms);
/* Pop one deferred item whose due time is <= now_ms, or NULL. */
sq_qitem_t *sq_queue_take_due(sq_queue_t *self, int64_t now_ms);
void sq_queue_undefer(sq_queue_t *self, sq_qitem_t *item);
size_t sq_queue_deferred(sq_queue_t *self);
/* Due time of the earliest deferred item, or INT64_MAX. */
int64_t sq_queue_next_due(sq_queue_t *self);

/* Exponential backoff: base_ms * 2^(attempt-1), capped at cap_ms. */
int64_t sq_queue_backoff_ms(int64_t base_ms, int attempt, int64_t cap_ms);

#endif
