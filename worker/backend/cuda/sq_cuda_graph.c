/*  sq_cuda_graph: op recording, list keys and the graph cache policy
 *  (see sq_cuda_graph.h). Pure host code.
 */
#include "sq_cuda_graph.h"

#include <stdlib.h>
#include <string.h>

#include "sq_error.h"
#include "sq_hash.h"

int sq_cuda_rec_push(sq_cuda_rec_t *rec, const sq_cuda_op_t *op, int n_tok)
{
    if (rec->n_ops == rec->cap_ops) {
        int cap = rec->cap_ops ? 2 * rec->cap_ops : 256;
        sq_cuda_op_t *ops = realloc(rec->ops, (size_t)cap * sizeof *ops);
        if (!ops)
            return SQ_FAIL(SQ_ENOMEM, "cuda: recording %d ops", cap);
        rec->ops = ops;
        rec->cap_ops = cap;
    }
    rec->ops[rec->n_ops++] = *op;
    rec->max_tok = n_tok > rec->max_tok ? n_tok : rec->max_tok;
    return 0;
}

int sq_cuda_rec_args(sq_cuda_rec_t *rec, const int32_t *v, int n, int64_t *off)
{
    for (int i = 0; i < rec->n_staged; i++)
        if (rec->staged_n[i] == n &&
            memcmp(rec->arena + rec->staged_off[i], v, (size_t)n * sizeof *v) == 0) {
            *off = rec->staged_off[i];
            return 0;
        }
    if ((size_t)n > rec->arena_cap - rec->arena_n)
        return SQ_ETOOBIG;   /* not an error to report: the caller makes room */
    *off = (int64_t)rec->arena_n;
    memcpy(rec->arena + rec->arena_n, v, (size_t)n * sizeof *v);
    rec->arena_n += (size_t)n;
    /* remember the last four, the oldest dropped */
    if (rec->n_staged == 4) {
        memmove(rec->staged_off, rec->staged_off + 1, 3 * sizeof rec->staged_off[0]);
        memmove(rec->staged_n, rec->staged_n + 1, 3 * sizeof rec->staged_n[0]);
        rec->n_staged = 3;
    }
    rec->staged_off[rec->n_staged] = *off;
    rec->staged_n[rec->n_staged++] = n;
    return 0;
}

int sq_cuda_rec_table(sq_cuda_rec_t *rec, const int32_t *src, int width, const int32_t *slots,
                      int k, uint64_t epoch, int64_t *off)
{
    if (rec->table_k > 0 && rec->table_k == k && rec->table_src == src &&
        rec->table_epoch == epoch && rec->table_width == width &&
        memcmp(rec->table_slots, slots, (size_t)k * sizeof *slots) == 0) {
        *off = rec->table_off;
        return 0;
    }
    const size_t n = (size_t)k * (size_t)width;
    if (n > rec->arena_cap - rec->arena_n)
        return SQ_ETOOBIG;
    if (k > rec->table_slots_cap) {
        int32_t *p = realloc(rec->table_slots, (size_t)k * sizeof *p);
        if (!p)
            return SQ_FAIL(SQ_ENOMEM, "cuda: page table rows of %d slots", k);
        rec->table_slots = p;
        rec->table_slots_cap = k;
    }
    *off = (int64_t)rec->arena_n;
    for (int i = 0; i < k; i++)
        memcpy(rec->arena + rec->arena_n + (size_t)i * (size_t)width,
               src + (size_t)slots[i] * (size_t)width, (size_t)width * sizeof *src);
    rec->arena_n += n;
    memcpy(rec->table_slots, slots, (size_t)k * sizeof *slots);
    rec->table_src = src;
    rec->table_epoch = epoch;
    rec->table_k = k;
    rec->table_width = width;
    rec->table_off = *off;
    return 0;
}

/* FNV-1a over the fields one by one, so struct padding never enters the
 * key */
uint64_t sq_cuda_rec_key(const sq_cuda_rec_t *rec)
{
    uint64_t h = SQ_FNV1A_INIT;
    for (int k = 0; k < rec->n_ops; k++) {
        const sq_cuda_op_t *op = &rec->ops[k];
        h = sq_fnv1a(h, &op->kind, sizeof op->kind);
        h = sq_fnv1a(h, op->p, sizeof op->p);
        h = sq_fnv1a(h, op->i, sizeof op->i);
        h = sq_fnv1a(h, op->f, sizeof op->f);
        h = sq_fnv1a(h, op->arg, sizeof op->arg);
    }
    return sq_fnv1a(h, &rec->arena_n, sizeof rec->arena_n);
}

void sq_cuda_rec_reset(sq_cuda_rec_t *rec)
{
    rec->n_ops = 0;
    rec->arena_n = 0;
    rec->max_tok = 0;
    rec->n_staged = 0;
    rec->table_k = 0;
}

void sq_cuda_rec_free(sq_cuda_rec_t *rec)
{
    free(rec->ops);
    rec->ops = NULL;
    rec->cap_ops = 0;
    free(rec->table_slots);
    rec->table_slots = NULL;
    rec->table_slots_cap = 0;
    sq_cuda_rec_reset(rec);
}

sq_cuda_run_t sq_cuda_graph_decide(sq_cuda_graph_cache_t *c, uint64_t key, int n_ops, int max_tok,
                                   void **exec)
{
    c->clock++;
    if (n_ops < SQ_CUDA_GRAPH_MIN_OPS || max_tok > SQ_CUDA_GRAPH_MAX_TOK) {
        c->eagers++;
        return SQ_CUDA_RUN_EAGER;
    }
    for (int i = 0; i < c->n_refused; i++)
        if (c->refused[i] == key) {
            c->eagers++;
            return SQ_CUDA_RUN_EAGER;
        }
    for (int i = 0; i < c->n; i++)
        if (c->e[i].key == key) {
            c->e[i].used = c->clock;
            *exec = c->e[i].exec;
            c->replays++;
            return SQ_CUDA_RUN_REPLAY;
        }
    for (int i = 0; i < c->n_seen; i++)
        if (c->seen[i] == key) {
            /* a repeat: worth a graph */
            c->seen[i] = c->seen[--c->n_seen];
            c->seen_next = c->n_seen < SQ_CUDA_GRAPH_SEEN ? c->n_seen : c->seen_next;
            return SQ_CUDA_RUN_CAPTURE;
        }
    /* first sighting (a one-off prompt chunk stays op by op) */
    if (c->n_seen < SQ_CUDA_GRAPH_SEEN) {
        c->seen[c->n_seen++] = key;
    } else {
        c->seen[c->seen_next] = key;
        c->seen_next = (c->seen_next + 1) % SQ_CUDA_GRAPH_SEEN;
    }
    c->eagers++;
    return SQ_CUDA_RUN_EAGER;
}

void sq_cuda_graph_store(sq_cuda_graph_cache_t *c, uint64_t key, void *exec)
{
    int at = c->n;
    if (c->n == SQ_CUDA_GRAPH_SLOTS) {
        at = 0;
        for (int i = 1; i < c->n; i++)
            if (c->e[i].used < c->e[at].used)
                at = i;
        if (c->drop)
            c->drop(c->e[at].exec);
    } else {
        c->n++;
    }
    c->e[at] = (sq_cuda_graph_entry_t){key, exec, ++c->clock};
    c->captures++;
}

bool sq_cuda_graph_refuse(sq_cuda_graph_cache_t *c, uint64_t key)
{
    c->refusals++;
    if (c->n_refused == SQ_CUDA_GRAPH_REFUSED)
        return false;
    c->refused[c->n_refused++] = key;
    return true;
}

void sq_cuda_graph_clear(sq_cuda_graph_cache_t *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->drop)
            c->drop(c->e[i].exec);
    c->n = 0;
    c->n_seen = 0;
    c->seen_next = 0;
    c->n_refused = 0;
}
