/*  sq_queue: priorities, tenant DRR and the retry heap. See sq_queue.h.
 *
 *  Ownership: the queue owns pools, levels and tenant FIFOs (created on
 *  first use and kept: there are few of them); it never owns items.
 */
#include "sq_queue.h"

#include "sq_error.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

struct sq_tq_t {
    char *tenant;
    sq_qitem_t *head, *tail;
    size_t n;
    int64_t deficit;
    sq_tq_t *ring_prev, *ring_next; /* active tenants of the level */
    bool in_ring;
    struct s_level_t *level;
};

typedef struct s_level_t {
    int priority;
    size_t n;         /* items queued at this level */
    sq_tq_t *cur;     /* DRR position in the ring of active tenants */
    zhashx_t *by_tenant; /* tenant -> sq_tq_t */
    struct s_pool_t *pool;
} s_level_t;

typedef struct s_pool_t {
    size_t n;
    s_level_t **levels; /* sorted by priority, highest first */
    size_t n_levels;
} s_pool_t;

struct sq_queue_t {
    uint32_t quantum;
    zhashx_t *pools; /* name -> s_pool_t */
    sq_qitem_t **heap;
    size_t heap_n, heap_cap;
    size_t total;
};

static void s_tq_free(void **p)
{
    sq_tq_t *tq = *p;
    if (tq) {
        free(tq->tenant);
        free(tq);
        *p = NULL;
    }
}

static void s_pool_free(void **p)
{
    s_pool_t *pool = *p;
    if (!pool)
        return;
    for (size_t i = 0; i < pool->n_levels; i++) {
        zhashx_destroy(&pool->levels[i]->by_tenant);
        free(pool->levels[i]);
    }
    free(pool->levels);
    free(pool);
    *p = NULL;
}

sq_queue_t *sq_queue_new(uint32_t quantum)
{
    sq_queue_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->quantum = quantum ? quantum : 1;
    self->pools = zhashx_new();
    if (!self->pools) {
        free(self);
        return NULL;
    }
    zhashx_set_destructor(self->pools, s_pool_free);
    return self;
}

void sq_queue_destroy(sq_queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_queue_t *self = *self_p;
    zhashx_destroy(&self->pools);
    free(self->heap);
    free(self);
    *self_p = NULL;
}

/* ---- lookup ---- */

static s_level_t *s_level(sq_queue_t *self, const char *pool_name, int priority)
{
    s_pool_t *pool = zhashx_lookup(self->pools, pool_name);
    if (!pool) {
        pool = calloc(1, sizeof *pool);
        if (!pool || zhashx_insert(self->pools, pool_name, pool) != 0) {
            free(pool);
            return NULL;
        }
    }
    size_t at = 0;
    while (at < pool->n_levels && pool->levels[at]->priority > priority)
        at++;
    if (at < pool->n_levels && pool->levels[at]->priority == priority)
        return pool->levels[at];
    s_level_t *level = calloc(1, sizeof *level);
    s_level_t **grown = realloc(pool->levels, (pool->n_levels + 1) * sizeof *grown);
    if (!level || !grown || !(level->by_tenant = zhashx_new())) {
        free(level);
        if (grown)
            pool->levels = grown;
        return NULL;
    }
    zhashx_set_destructor(level->by_tenant, s_tq_free);
    level->priority = priority;
    level->pool = pool;
    pool->levels = grown;
    memmove(grown + at + 1, grown + at, (pool->n_levels - at) * sizeof *grown);
    grown[at] = level;
    pool->n_levels++;
    return level;
}

static sq_tq_t *s_tq(s_level_t *level, const char *tenant)
{
    sq_tq_t *tq = zhashx_lookup(level->by_tenant, tenant);
    if (tq)
        return tq;
    tq = calloc(1, sizeof *tq);
    if (!tq || !(tq->tenant = strdup(tenant)) ||
        zhashx_insert(level->by_tenant, tenant, tq) != 0) {
        if (tq)
            free(tq->tenant);
        free(tq);
        return NULL;
    }
    tq->level = level;
    return tq;
}

/* ---- DRR ring ---- */

static void s_ring_add(s_level_t *level, sq_tq_t *tq)
{
    if (!level->cur) {
        tq->ring_prev = tq->ring_next = tq;
        level->cur = tq;
    } else { /* insert just before cur: visited last in this round */
        tq->ring_next = level->cur;
        tq->ring_prev = level->cur->ring_prev;
        tq->ring_prev->ring_next = tq;
        level->cur->ring_prev = tq;
    }
    tq->in_ring = true;
    tq->deficit = 0;
}

static void s_ring_del(s_level_t *level, sq_tq_t *tq)
{
    if (tq->ring_next == tq) {
        level->cur = NULL;
    } else {
        tq->ring_prev->ring_next = tq->ring_next;
        tq->ring_next->ring_prev = tq->ring_prev;
        if (level->cur == tq)
            level->cur = tq->ring_next;
    }
    tq->ring_prev = tq->ring_next = NULL;
    tq->in_ring = false;
    tq->deficit = 0;
}

/* ---- FIFO ---- */

static void s_unlink(sq_queue_t *self, sq_qitem_t *item)
{
    sq_tq_t *tq = item->tq;
    if (item->prev)
        item->prev->next = item->next;
    else
        tq->head = item->next;
    if (item->next)
        item->next->prev = item->prev;
    else
        tq->tail = item->prev;
    item->prev = item->next = NULL;
    item->tq = NULL;
    tq->n--;
    tq->level->n--;
    tq->level->pool->n--;
    self->total--;
    if (tq->n == 0)
        s_ring_del(tq->level, tq);
}

int sq_queue_push(sq_queue_t *self, sq_qitem_t *item, const char *pool, int priority,
                  const char *tenant, uint32_t cost, int64_t now_ms)
{
    s_level_t *level = s_level(self, pool, priority);
    sq_tq_t *tq = level ? s_tq(level, tenant) : NULL;
    if (!tq)
        return SQ_FAIL(SQ_ENOMEM, "queue: out of memory");
    uint32_t cap = 4 * self->quantum;
    item->cost = cost < 1 ? 1 : cost > cap ? cap : cost;
    item->enq_ms = now_ms;
    item->tq = tq;
    item->next = NULL;
    item->prev = tq->tail;
    if (tq->tail)
        tq->tail->next = item;
    else
        tq->head = item;
    tq->tail = item;
    if (tq->n++ == 0)
        s_ring_add(level, tq);
    level->n++;
    level->pool->n++;
    self->total++;
    return 0;
}

sq_qitem_t *sq_queue_pop(sq_queue_t *self, const char *pool_name)
{
    s_pool_t *pool = zhashx_lookup(self->pools, pool_name);
    if (!pool || pool->n == 0)
        return NULL;
    s_level_t *level = NULL;
    for (size_t i = 0; i < pool->n_levels && !level; i++)
        if (pool->levels[i]->n > 0)
            level = pool->levels[i];
    /* Costs are capped at 4 quanta, so this loop ends within 4 rounds. */
    for (;;) {
        sq_tq_t *tq = level->cur;
        if (tq->deficit >= (int64_t)tq->head->cost) {
            sq_qitem_t *item = tq->head;
            tq->deficit -= item->cost;
            s_unlink(self, item); /* may drop tq from the ring */
            return item;
        }
        tq->deficit += self->quantum;
        level->cur = tq->ring_next;
    }
}

void sq_queue_remove(sq_queue_t *self, sq_qitem_t *item)
{
    if (item->tq)
        s_unlink(self, item);
}

size_t sq_queue_ready(sq_queue_t *self, const char *pool_name)
{
    s_pool_t *pool = zhashx_lookup(self->pools, pool_name);
    return pool ? pool->n : 0;
}

size_t sq_queue_ready_total(sq_queue_t *self) { return self->total; }

int64_t sq_queue_oldest_ms(sq_queue_t *self, const char *pool_name)
{
    s_pool_t *pool = zhashx_lookup(self->pools, pool_name);
    int64_t oldest = 0;
    for (size_t i = 0; pool && i < pool->n_levels; i++) {
        sq_tq_t *first = pool->levels[i]->cur, *tq = first;
        while (tq) {
            if (tq->head && (oldest == 0 || tq->head->enq_ms < oldest))
                oldest = tq->head->enq_ms;
            tq = tq->ring_next == first ? NULL : tq->ring_next;
        }
    }
    return oldest;
}

size_t sq_queue_ready_tenant(sq_queue_t *self, const char *tenant)
{
    size_t n = 0;
    for (s_pool_t *pool = zhashx_first(self->pools); pool; pool = zhashx_next(self->pools))
        for (size_t i = 0; i < pool->n_levels; i++) {
            sq_tq_t *tq = zhashx_lookup(pool->levels[i]->by_tenant, tenant);
            n += tq ? tq->n : 0;
        }
    return n;
}

void sq_queue_each_pool(sq_queue_t *self, void (*fn)(void *arg, const char *pool, size_t n),
                        void *arg)
{
    for (s_pool_t *pool = zhashx_first(self->pools); pool; pool = zhashx_next(self->pools))
        fn(arg, zhashx_cursor(self->pools), pool->n);
}

/* ---- retry heap (1-based positions stored in the items) ---- */

static void s_heap_set(sq_queue_t *self, size_t i, sq_qitem_t *item)
{
    self->heap[i] = item;
    item->heap_pos = (uint32_t)i + 1;
}

static void s_sift_up(sq_queue_t *self, size_t i)
{
    sq_qitem_t *item = self->heap[i];
    while (i > 0 && self->heap[(i - 1) / 2]->due_ms > item->due_ms) {
        s_heap_set(self, i, self->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    s_heap_set(self, i, item);
}

static void s_sift_down(sq_queue_t *self, size_t i)
{
    sq_qitem_t *item = self->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= self->heap_n)
            break;
        if (c + 1 < self->heap_n && self->heap[c + 1]->due_ms < self->heap[c]->due_ms)
            c++;
        if (self->heap[c]->due_ms >= item->due_ms)
            break;
        s_heap_set(self, i, self->heap[c]);
        i = c;
    }
    s_heap_set(self, i, item);
}

int sq_queue_defer(sq_queue_t *self, sq_qitem_t *item, int64_t due_ms)
{
    if (self->heap_n == self->heap_cap) {
        size_t cap = self->heap_cap ? self->heap_cap * 2 : 1024;
        sq_qitem_t **grown = realloc(self->heap, cap * sizeof *grown);
        if (!grown)
            return SQ_FAIL(SQ_ENOMEM, "retry heap: out of memory");
        self->heap = grown;
        self->heap_cap = cap;
    }
    item->due_ms = due_ms;
    self->heap[self->heap_n++] = item;
    s_sift_up(self, self->heap_n - 1);
    return 0;
}

void sq_queue_undefer(sq_queue_t *self, sq_qitem_t *item)
{
    if (item->heap_pos == 0)
        return;
    size_t i = item->heap_pos - 1;
    item->heap_pos = 0;
    sq_qitem_t *last = self->heap[--self->heap_n];
    if (i == self->heap_n)
        return;
    s_heap_set(self, i, last);
    s_sift_up(self, i);
    s_sift_down(self, last->heap_pos - 1);
}

sq_qitem_t *sq_queue_take_due(sq_queue_t *self, int64_t now_ms)
{
    if (self->heap_n == 0 || self->heap[0]->due_ms > now_ms)
        return NULL;
    sq_qitem_t *item = self->heap[0];
    sq_queue_undefer(self, item);
    return item;
}

size_t sq_queue_deferred(sq_queue_t *self) { return self->heap_n; }

int64_t sq_queue_next_due(sq_queue_t *self)
{
    return self->heap_n ? self->heap[0]->due_ms : INT64_MAX;
}

int64_t sq_queue_backoff_ms(int64_t base_ms, int attempt, int64_t cap_ms)
{
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < cap_ms; i++)
        d *= 2;
    return d < cap_ms ? d : cap_ms;
}
