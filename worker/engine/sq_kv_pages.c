/*  sq_kv_pages: page table, free pool and the per-pass fit (see
 *  sq_kv_pages.h). Pure host code.
 */
#include "sq_kv_pages.h"

#include <stdlib.h>
#include <string.h>

#include "sq_error.h"

struct sq_kv_pages {
    int n_slots, max_pages, n_pages;
    int32_t *table;             /* (n_slots, max_pages), -1 past held */
    int32_t *held;              /* n_slots */
    int32_t *n_pos;             /* n_slots: positions 0 .. n_pos - 1 are stored */
    int32_t *refs;              /* n_pages: the slots holding each page */
    int32_t *pool;              /* the free pages, a stack of n_free */
    uint8_t *mark;              /* n_pages: sq_kv_pages_held_by's scratch */
    int n_free;
    uint64_t epoch;
};

sq_kv_pages_t *sq_kv_pages_new(int n_slots, int max_pages, int n_pages)
{
    if (n_slots < 1 || max_pages < 1 || n_pages < 1) {
        SQ_FAIL(SQ_EINVAL, "KV pages: %d slots of %d pages, %d pages in all", n_slots, max_pages,
                n_pages);
        return NULL;
    }
    sq_kv_pages_t *self = calloc(1, sizeof *self);
    const size_t cells = (size_t)n_slots * (size_t)max_pages;
    if (!self || !(self->table = malloc(cells * sizeof *self->table)) ||
        !(self->held = calloc((size_t)n_slots, sizeof *self->held)) ||
        !(self->n_pos = calloc((size_t)n_slots, sizeof *self->n_pos)) ||
        !(self->refs = calloc((size_t)n_pages, sizeof *self->refs)) ||
        !(self->pool = malloc((size_t)n_pages * sizeof *self->pool)) ||
        !(self->mark = malloc((size_t)n_pages))) {
        SQ_FAIL(SQ_ENOMEM, "KV page table of %d slots and %d pages", n_slots, n_pages);
        sq_kv_pages_destroy(&self);
        return NULL;
    }
    self->n_slots = n_slots;
    self->max_pages = max_pages;
    self->n_pages = n_pages;
    for (size_t i = 0; i < cells; i++)
        self->table[i] = -1;
    /* page 0 on top: a lone sequence's pages come in order */
    for (int i = 0; i < n_pages; i++)
        self->pool[i] = n_pages - 1 - i;
    self->n_free = n_pages;
    return self;
}

void sq_kv_pages_destroy(sq_kv_pages_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_kv_pages_t *self = *self_p;
    free(self->table);
    free(self->held);
    free(self->n_pos);
    free(self->refs);
    free(self->pool);
    free(self->mark);
    free(self);
    *self_p = NULL;
}

/* slot holds exactly n pages (n <= what the pool can give) */
static void s_resize(sq_kv_pages_t *self, int slot, int n)
{
    int32_t *row = self->table + (size_t)slot * (size_t)self->max_pages;
    while (self->held[slot] > n) {
        const int i = --self->held[slot];
        if (--self->refs[row[i]] == 0)
            self->pool[self->n_free++] = row[i];
        row[i] = -1;
    }
    while (self->held[slot] < n) {
        const int32_t p = self->pool[--self->n_free];
        self->refs[p] = 1;
        row[self->held[slot]++] = p;
    }
    self->epoch++;
}

int sq_kv_pages_fit(sq_kv_pages_t *self, const int32_t *slots, const int32_t *first,
                    const int32_t *last, int n)
{
    long need = 0, back = 0;
    for (int i = 0; i < n; i++) {
        const int s = slots[i];
        if (s < 0 || s >= self->n_slots || first[i] < 0 || last[i] < first[i] ||
            sq_kv_pages_for(last[i] + 1) > self->max_pages)
            return SQ_FAIL(SQ_EINVAL, "KV pages: slot %d, positions %d..%d out of range", s,
                           first[i], last[i]);
        if (first[i] > self->n_pos[s])
            return SQ_FAIL(SQ_EINVAL,
                           "slot %d starts at position %d, but only its positions 0..%d are in "
                           "the KV cache",
                           s, first[i], self->n_pos[s] - 1);
        const int want = sq_kv_pages_for(last[i] + 1);
        const int32_t *row = self->table + (size_t)s * (size_t)self->max_pages;
        for (int k = first[i] / SQ_KV_PAGE; k < want && k < self->held[s]; k++)
            if (self->refs[row[k]] > 1)
                return SQ_FAIL(SQ_ESTATE,
                               "slot %d would write position %d into page %d, which another "
                               "slot shares", s, k * SQ_KV_PAGE > first[i] ? k * SQ_KV_PAGE
                                                                           : first[i], row[k]);
        if (want > self->held[s])
            need += want - self->held[s];
        for (int k = want; k < self->held[s]; k++)
            back += self->refs[row[k]] == 1;   /* a shared page stays */
    }
    if (need > self->n_free + back)
        return SQ_FAIL(SQ_ENOMEM,
                       "KV cache full: this pass needs %ld more pages of %d positions, %ld are "
                       "free of %d",
                       need, SQ_KV_PAGE, self->n_free + back, self->n_pages);
    /* give back first, so the pages taken can come from them */
    for (int i = 0; i < n; i++)
        if (sq_kv_pages_for(last[i] + 1) < self->held[slots[i]])
            s_resize(self, slots[i], sq_kv_pages_for(last[i] + 1));
    for (int i = 0; i < n; i++) {
        if (sq_kv_pages_for(last[i] + 1) > self->held[slots[i]])
            s_resize(self, slots[i], sq_kv_pages_for(last[i] + 1));
        self->n_pos[slots[i]] = last[i] + 1;
    }
    return 0;
}

void sq_kv_pages_trim(sq_kv_pages_t *self, int slot, int keep)
{
    if (slot < 0 || slot >= self->n_slots)
        return;
    keep = keep < 0 ? 0 : keep;
    if (keep < self->n_pos[slot])
        self->n_pos[slot] = keep;
    if (sq_kv_pages_for(keep) < self->held[slot])
        s_resize(self, slot, sq_kv_pages_for(keep));
}

int sq_kv_pages_share(sq_kv_pages_t *self, int dst, int src, int n)
{
    if (dst < 0 || dst >= self->n_slots || src < 0 || src >= self->n_slots || dst == src ||
        n < 1 || n > self->held[src] || (long)n * SQ_KV_PAGE > self->n_pos[src] ||
        self->held[dst] != 0)
        return SQ_FAIL(SQ_EINVAL, "KV pages: slot %d cannot share %d pages of slot %d (it holds "
                       "%d; %d positions stored there)", dst, n, src,
                       dst >= 0 && dst < self->n_slots ? self->held[dst] : -1,
                       src >= 0 && src < self->n_slots ? self->n_pos[src] : -1);
    const int32_t *from = self->table + (size_t)src * (size_t)self->max_pages;
    int32_t *to = self->table + (size_t)dst * (size_t)self->max_pages;
    for (int k = 0; k < n; k++) {
        to[k] = from[k];
        self->refs[from[k]]++;
    }
    self->held[dst] = n;
    self->n_pos[dst] = n * SQ_KV_PAGE;
    self->epoch++;
    return 0;
}

bool sq_kv_pages_shared(const sq_kv_pages_t *self, int slot, int k)
{
    return slot >= 0 && slot < self->n_slots && k >= 0 && k < self->held[slot] &&
           self->refs[self->table[(size_t)slot * (size_t)self->max_pages + (size_t)k]] > 1;
}

const int32_t *sq_kv_pages_table(const sq_kv_pages_t *self) { return self->table; }
uint64_t sq_kv_pages_epoch(const sq_kv_pages_t *self) { return self->epoch; }
int sq_kv_pages_total(const sq_kv_pages_t *self) { return self->n_pages; }
int sq_kv_pages_free(const sq_kv_pages_t *self) { return self->n_free; }

int sq_kv_pages_held(const sq_kv_pages_t *self, int slot)
{
    return slot >= 0 && slot < self->n_slots ? self->held[slot] : 0;
}

int sq_kv_pages_held_by(sq_kv_pages_t *self, const bool *in)
{
    memset(self->mark, 0, (size_t)self->n_pages);
    int n = 0;
    for (int s = 0; s < self->n_slots; s++)
        for (int k = 0; in[s] && k < self->held[s]; k++) {
            const int32_t p = self->table[(size_t)s * (size_t)self->max_pages + (size_t)k];
            n += !self->mark[p];
            self->mark[p] = 1;
        }
    return n;
}
