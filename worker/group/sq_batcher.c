/*  sq_batcher: plan, broadcast, forward, sample.
 *  A plan is a header {n entries, command} then n sq_batch_entry_t; all
 *  ranks pass the same entries to sq_model_forward, which does the
 *  all-reduces, so the plan broadcast is the only extra traffic per step.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_batcher.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sq_cpu_kernels.h"
#include "sq_error.h"
#include "sq_gguf.h"

enum {
    S_CMD_FORWARD = 0, S_CMD_STOP = 1, S_CMD_LOAD = 2, S_CMD_UNLOAD = 3, S_CMD_TRIM = 4,
    S_CMD_SHARE = 5
};
#define S_MAX_PATH 4096

typedef struct {
    int32_t n;
    int32_t cmd;
    int32_t arg, arg2;          /* TRIM: n is the slot, arg the positions it keeps;
                                 * SHARE: n takes arg2 pages of slot arg */
} s_plan_hdr_t;

typedef struct {
    sq_seq_t *seq;              /* NULL: free slot */
    void *user;
    sq_seq_times_t times;
    /* rank 0: the tokens whose K/V rows the slot's cache holds, positions
     * 0..n_cached-1, computed with adapter cached_adapter */
    int32_t *cached;
    int n_cached;
    int32_t cached_adapter;
    uint64_t last_used;         /* when its last sequence left (cache eviction order) */
    uint64_t admitted;          /* admission order: preemption takes the latest */
    bool preempted;             /* its KV pages were taken back; it waits to resume */
    int replay, replayed;       /* a decoding sequence resumed: positions 0..replay-1
                                 * are run again (no logits) before it decodes on */
    /* a newcomer waiting for slot wait_src (its sequence admitted
     * wait_admitted) to store the first wait_n positions of the prompt
     * they share, to take those pages instead of prefilling them; 0: none */
    int wait_n, wait_src;
    uint64_t wait_admitted;
} s_slot_t;

struct sq_batcher {
    sq_model_t *model;
    MPI_Comm comm;
    int rank;
    int max_batch;
    int prefill_budget;
    int n_active;
    int next_prefill;           /* round-robin start among prefilling slots */
    s_slot_t *slots;            /* max_batch */
    sq_batch_entry_t *plan;     /* capacity: max_batch + prefill_budget */
    int *plan_slot;             /* slot of each want_logits row */
    float *logits;              /* (max_batch, n_vocab), rank 0 */
    int32_t *tokens;            /* (max_batch): each row's next token, rank 0 */
    sq_sample_row_t *draws;     /* (max_batch): rows' draws for a sampling device, rank 0 */
    int n_vocab;
    sq_threadpool_t *pool;      /* rank 0's sampling threads (NULL: the caller's) */
    bool prefix_reuse;          /* rank 0: admit reuses cached prompt prefixes */
    long reused_tokens;
    uint64_t clock, n_admitted;
    int n_preempted;            /* slots waiting to resume */
    long preemptions;
    bool *admitted_slot;        /* (model's slots): sq_batcher_kv_stats's flags */
};

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int s_mpi(int rc, const char *what)
{
    if (rc == MPI_SUCCESS)
        return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return SQ_FAIL(SQ_EMPI, "%s: %s", what, msg);
}

sq_batcher_t *sq_batcher_new(sq_model_t *model, MPI_Comm comm, int max_batch,
                             int prefill_budget)
{
    if (max_batch < 1 || max_batch > sq_model_n_slots(model) || prefill_budget < 1) {
        SQ_FAIL(SQ_EINVAL, "max batch %d must be in [1, %d] and prefill budget %d >= 1",
                max_batch, sq_model_n_slots(model), prefill_budget);
        return NULL;
    }
    sq_batcher_t *self = calloc(1, sizeof *self);
    if (!self)
        goto nomem;
    self->model = model;
    self->max_batch = max_batch;
    self->prefill_budget = prefill_budget;
    self->n_vocab = sq_model_hparams(model)->n_vocab;
    self->comm = MPI_COMM_NULL;
    if (s_mpi(MPI_Comm_dup(comm, &self->comm), "MPI_Comm_dup") ||
        s_mpi(MPI_Comm_rank(self->comm, &self->rank), "MPI_Comm_rank")) {
        sq_batcher_destroy(&self);
        return NULL;
    }
    self->slots = calloc((size_t)max_batch, sizeof *self->slots);
    self->plan = calloc((size_t)(max_batch + prefill_budget), sizeof *self->plan);
    self->plan_slot = calloc((size_t)max_batch, sizeof *self->plan_slot);
    self->admitted_slot = calloc((size_t)sq_model_n_slots(model), sizeof *self->admitted_slot);
    if (!self->slots || !self->plan || !self->plan_slot || !self->admitted_slot)
        goto nomem;
    if (self->rank == 0 &&
        (!(self->logits = malloc((size_t)max_batch * (size_t)self->n_vocab * sizeof(float))) ||
         !(self->tokens = malloc((size_t)max_batch * sizeof *self->tokens)) ||
         !(self->draws = malloc((size_t)max_batch * sizeof *self->draws))))
        goto nomem;
    for (int i = 0; self->rank == 0 && i < max_batch; i++)
        if (!(self->slots[i].cached = malloc((size_t)sq_model_n_ctx(model) * sizeof(int32_t))))
            goto nomem;
    self->prefix_reuse = true;
    return self;
nomem:
    SQ_FAIL(SQ_ENOMEM, "batcher for %d sequences", max_batch);
    sq_batcher_destroy(&self);
    return NULL;
}

void sq_batcher_destroy(sq_batcher_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_batcher_t *self = *self_p;
    for (int i = 0; self->slots && i < self->max_batch; i++) {
        sq_seq_destroy(&self->slots[i].seq);
        free(self->slots[i].cached);
    }
    if (self->comm != MPI_COMM_NULL)
        MPI_Comm_free(&self->comm);
    free(self->slots);
    free(self->plan);
    free(self->plan_slot);
    free(self->admitted_slot);
    free(self->logits);
    free(self->tokens);
    free(self->draws);
    sq_threadpool_destroy(&self->pool);
    free(self);
    *self_p = NULL;
}

int sq_batcher_set_sampling_threads(sq_batcher_t *self, int n_threads)
{
    sq_threadpool_destroy(&self->pool);
    if (n_threads > 1 && !(self->pool = sq_threadpool_new(n_threads)))
        return SQ_FAIL(SQ_ENOMEM, "sampling pool of %d threads", n_threads);
    return 0;
}

/* thread ith of nth: tokens of rows ith, ith + nth, ... from their logits */
typedef struct {
    sq_batcher_t *b;
    int n_rows;
} s_sample_job_t;

static void s_sample_rows(void *arg, int ith, int nth)
{
    const s_sample_job_t *j = arg;
    sq_batcher_t *b = j->b;
    for (int r = ith; r < j->n_rows; r += nth)
        b->tokens[r] = sq_seq_sample(b->slots[b->plan_slot[r]].seq,
                                     b->logits + (size_t)r * (size_t)b->n_vocab);
}

int sq_batcher_capacity(const sq_batcher_t *self) { return self->max_batch; }
int sq_batcher_n_active(const sq_batcher_t *self) { return self->n_active; }

void sq_batcher_set_prefix_reuse(sq_batcher_t *self, bool on)
{
    self->prefix_reuse = on;
}

long sq_batcher_reused_tokens(const sq_batcher_t *self)
{
    return self->reused_tokens;
}

/* prompt tokens of seq whose K/V rows slot sl holds: the common prefix of
 * its cached tokens and the prompt, under the same adapter, short of the
 * prompt's last token */
static int s_reusable(const s_slot_t *sl, const sq_seq_t *seq)
{
    if (sl->cached_adapter != sq_seq_adapter(seq))
        return 0;
    const int32_t *ids = sq_seq_prompt_ids(seq);
    const int most = (int)sq_seq_n_prompt(seq) - 1;
    int n = 0;
    while (n < most && n < sl->n_cached && sl->cached[n] == ids[n])
        n++;
    return n;
}

/* prompt tokens of seq that the running sequence in sl will store: the
 * common prefix of the two prompts, under the same adapter, short of
 * seq's last token */
static int s_will_store(const s_slot_t *sl, const sq_seq_t *seq)
{
    if (sq_seq_adapter(sl->seq) != sq_seq_adapter(seq))
        return 0;
    const int32_t *a = sq_seq_prompt_ids(seq), *b = sq_seq_prompt_ids(sl->seq);
    const size_t most = sq_seq_n_prompt(seq) - 1, other = sq_seq_n_prompt(sl->seq);
    size_t n = 0;
    while (n < most && n < other && a[n] == b[n])
        n++;
    return (int)n;
}

static int s_send_header(sq_batcher_t *self, s_plan_hdr_t *hdr);

/* All ranks: slot keeps its first keep positions in the KV cache (rank 0
 * sends the command, every rank applies it at the same point). */
static int s_trim(sq_batcher_t *self, int slot, int keep)
{
    s_plan_hdr_t hdr = {slot, S_CMD_TRIM, keep, 0};
    int rc = s_send_header(self, &hdr);
    if (rc == 0)
        sq_model_kv_trim(self->model, slot, keep);
    s_slot_t *sl = &self->slots[slot];
    sl->n_cached = keep < sl->n_cached ? keep : sl->n_cached;
    return rc;
}

/* All ranks: slot dst (trimmed to nothing) takes the first n pages of
 * slot src, a prompt prefix src stored; rank 0's mirror of the cached
 * tokens follows */
static int s_share(sq_batcher_t *self, int dst, int src, int n)
{
    s_plan_hdr_t hdr = {dst, S_CMD_SHARE, src, n};
    int rc = s_trim(self, dst, 0);
    if (rc || (rc = s_send_header(self, &hdr)) ||
        (rc = sq_model_kv_share(self->model, dst, src, n)))
        return rc;
    s_slot_t *d = &self->slots[dst];
    const s_slot_t *from = &self->slots[src];
    d->n_cached = n * SQ_KV_PAGE;
    memcpy(d->cached, from->cached, (size_t)d->n_cached * sizeof *d->cached);
    d->cached_adapter = from->cached_adapter;
    return 0;
}

void sq_batcher_kv_stats(sq_batcher_t *self, sq_batcher_kv_t *out)
{
    for (int i = 0; i < self->max_batch; i++)
        self->admitted_slot[i] = self->slots[i].seq != NULL;
    *out = (sq_batcher_kv_t){sq_model_kv_pages(self->model), sq_model_kv_pages_free(self->model),
                             sq_model_kv_pages_held_by(self->model, self->admitted_slot),
                             self->preemptions};
}

/* A slot's sequence has left: its pages stay as a cache, the oldest
 * evicted first */
static void s_vacate(sq_batcher_t *self, s_slot_t *sl)
{
    if (sl->preempted)
        self->n_preempted--;
    sl->seq = NULL;
    sl->user = NULL;
    sl->preempted = false;
    sl->replay = sl->replayed = 0;
    sl->wait_n = 0;
    sl->last_used = ++self->clock;
    self->n_active--;
}

/* Pages kept free for running sequences' next steps when one is admitted
 * or resumed (as vLLM's watermark), so a newcomer does not push the
 * running ones out at once; none when nothing runs */
static long s_watermark(const sq_batcher_t *self)
{
    const long pages = sq_model_kv_pages(self->model);
    return self->n_active > self->n_preempted ? (pages >= 100 ? pages / 100 : 1) : 0;
}

/* Free pages, plus those idle slots other than skip keep as a cache */
static long s_room_pages(const sq_batcher_t *self, int skip)
{
    long n = sq_model_kv_pages_free(self->model);
    for (int i = 0; i < self->max_batch; i++)
        if (!self->slots[i].seq && i != skip)
            n += sq_model_kv_pages_held(self->model, i);
    return n;
}

/* Drop idle caches (not skip's), least recently used first, until want
 * pages are free or none is left */
static int s_evict(sq_batcher_t *self, int skip, long want)
{
    int rc = 0;
    while (rc == 0 && sq_model_kv_pages_free(self->model) < want) {
        int lru = -1;
        for (int i = 0; i < self->max_batch; i++)
            if (!self->slots[i].seq && i != skip && sq_model_kv_pages_held(self->model, i) > 0 &&
                (lru < 0 || self->slots[i].last_used < self->slots[lru].last_used))
                lru = i;
        if (lru < 0)
            break;
        rc = s_trim(self, lru, 0);
    }
    return rc;
}

/* Whole pages of a prompt prefix another slot than dst stores (not a
 * waiting one's): the longest, *n positions from slot *src (-1: none) */
static void s_stored_prefix(const sq_batcher_t *self, const sq_seq_t *seq, int dst, int *src,
                            int *n)
{
    *src = -1;
    *n = 0;
    for (int j = 0; j < self->max_batch; j++) {
        if (j == dst || self->slots[j].wait_n)
            continue;
        /* a running sequence's cached tokens are stored up to n_cached */
        const int k = s_reusable(&self->slots[j], seq) / SQ_KV_PAGE * SQ_KV_PAGE;
        if (k > *n && k / SQ_KV_PAGE <= sq_model_kv_pages_held(self->model, j)) {
            *n = k;
            *src = j;
        }
    }
}

/* Where a newcomer starts: the free slot *best whose own cached rows give
 * the longest prefix (*best_n positions; restarted at a page boundary
 * when the page it would write into is shared), or, when longer, whole
 * pages of any other slot's stored prefix (*src >= 0, *best_n of them
 * shared into *best, the free slot with the fewest pages to lose). When a
 * running sequence's prompt will store at least a page more of the
 * prefix than that, *wait_src is its slot and *wait_n those whole pages'
 * positions: the newcomer takes *best and waits for them (-1, 0: not). */
static void s_start(const sq_batcher_t *self, const sq_seq_t *seq, int *best, int *best_n,
                    int *src, int *wait_src, int *wait_n)
{
    *best = -1;
    *best_n = -1;
    *src = *wait_src = -1;
    *wait_n = 0;
    int fewest = -1;
    for (int i = 0; i < self->max_batch; i++) {
        if (self->slots[i].seq)
            continue;
        int n = self->prefix_reuse ? s_reusable(&self->slots[i], seq) : 0;
        if (n % SQ_KV_PAGE && sq_model_kv_page_shared(self->model, i, n / SQ_KV_PAGE))
            n -= n % SQ_KV_PAGE;
        if (n > *best_n) {
            *best = i;
            *best_n = n;
        }
        if (fewest < 0 || sq_model_kv_pages_held(self->model, i) <
                              sq_model_kv_pages_held(self->model, fewest))
            fewest = i;
    }
    if (!self->prefix_reuse || fewest < 0)
        return;
    int from, n;
    s_stored_prefix(self, seq, fewest, &from, &n);
    if (n > *best_n) {
        *best = fewest;
        *best_n = n;
        *src = from;
    }
    for (int j = 0; j < self->max_batch; j++) {
        const s_slot_t *sl = &self->slots[j];
        if (!sl->seq || sl->preempted || sl->wait_n)
            continue;
        n = s_will_store(sl, seq) / SQ_KV_PAGE * SQ_KV_PAGE;
        if (n >= *best_n + SQ_KV_PAGE && n > *wait_n) {
            *wait_src = j;
            *wait_n = n;
        }
    }
    if (*wait_n) {
        *best = fewest;
        *best_n = 0;
        *src = -1;
    }
}

int sq_batcher_admit(sq_batcher_t *self, sq_seq_t *seq, void *user)
{
    int best, best_n, src, wait_src, wait_n;
    s_start(self, seq, &best, &best_n, &src, &wait_src, &wait_n);
    if (best < 0 || self->n_preempted > 0)
        return SQ_EAGAIN;   /* preempted sequences resume first */
    /* the prompt's pages past the prefix kept, shared or to be shared
     * (the running sequences take pages as they grow; when the pool runs
     * short the latest admitted is preempted, sq_batcher_step) */
    const long keep = src >= 0 || wait_n ? 0 : sq_kv_pages_for(best_n);
    const long held = sq_model_kv_pages_held(self->model, best);
    const long need = sq_kv_pages_for((int)sq_seq_n_prompt(seq)) -
                      sq_kv_pages_for(best_n + wait_n) + s_watermark(self);
    if (need > s_room_pages(self, best) + (held > keep ? held - keep : 0))
        return SQ_EAGAIN;
    int rc = src >= 0 ? s_share(self, best, src, best_n / SQ_KV_PAGE)
                      : held > keep ? s_trim(self, best, best_n) : 0;
    if (rc || (rc = s_evict(self, best, need)))
        return rc;
    s_slot_t *sl = &self->slots[best];
    sl->seq = seq;
    sl->user = user;
    sl->admitted = ++self->n_admitted;
    sl->times = (sq_seq_times_t){s_now_ns(), 0, 0};
    /* rows past the prefix get the newcomer's tokens as its prefill runs */
    sl->n_cached = best_n;
    sl->cached_adapter = sq_seq_adapter(seq);
    sl->wait_n = wait_n;
    sl->wait_src = wait_src;
    sl->wait_admitted = wait_n ? self->slots[wait_src].admitted : 0;
    sq_seq_mark_cached(seq, (size_t)best_n);
    self->reused_tokens += best_n;
    self->n_active++;
    return best;
}

/* Waiting newcomers whose prefix is now stored take its pages; those whose
 * source left, or was preempted, take what any slot stores of it and
 * prefill the rest */
static int s_unwait(sq_batcher_t *self)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < self->max_batch; i++) {
        s_slot_t *sl = &self->slots[i];
        if (!sl->seq || !sl->wait_n)
            continue;
        const s_slot_t *from = &self->slots[sl->wait_src];
        const bool same = from->seq && from->admitted == sl->wait_admitted && !from->preempted;
        int src = sl->wait_src, n = sl->wait_n;
        if (same && from->n_cached < n)
            continue;   /* not stored yet: it runs this step */
        sl->wait_n = 0;
        if (!same)
            s_stored_prefix(self, sl->seq, i, &src, &n);
        if (n > 0 && (rc = s_share(self, i, src, n / SQ_KV_PAGE)) == 0) {
            sq_seq_mark_cached(sl->seq, (size_t)n);
            self->reused_tokens += n;
        }
    }
    return rc;
}

int sq_batcher_remove(sq_batcher_t *self, void *user)
{
    for (int i = 0; i < self->max_batch; i++)
        if (self->slots[i].seq && self->slots[i].user == user) {
            sq_seq_destroy(&self->slots[i].seq);
            s_vacate(self, &self->slots[i]);
            return 0;
        }
    return SQ_ENOTFOUND;
}

/* Decoding sequences first (one token each), then chunks of prompts, and
 * of resumed sequences' contexts (run again without logits), from the
 * round-robin start until the prefill budget is spent; preempted slots
 * wait. Returns n entries, the logits rows in *n_rows and where the next
 * round-robin starts in *next. A slot's entries are one run of
 * consecutive positions. */
static int s_plan(sq_batcher_t *self, int *n_rows, int *next)
{
    int n = 0, rows = 0;
    for (int i = 0; i < self->max_batch; i++) {
        const s_slot_t *sl = &self->slots[i];
        sq_seq_t *s = sl->seq;
        if (s && !sl->preempted && sq_seq_decoding(s) && sl->replayed >= sl->replay) {
            self->plan[n++] = (sq_batch_entry_t){i, sq_seq_next_token(s), sq_seq_next_pos(s), true,
                                                 sq_seq_adapter(s)};
            self->plan_slot[rows++] = i;
        }
    }
    int budget = self->prefill_budget;
    const int start = self->next_prefill;
    *next = start;
    for (int k = 0; k < self->max_batch && budget > 0; k++) {
        const int i = (start + k) % self->max_batch;
        const s_slot_t *sl = &self->slots[i];
        sq_seq_t *s = sl->seq;
        if (!s || sl->preempted || sl->wait_n)
            continue;
        const bool replay = sq_seq_decoding(s);
        if (replay && sl->replayed >= sl->replay)
            continue;
        const size_t done = replay ? (size_t)sl->replayed : sq_seq_n_prefilled(s);
        const size_t total = replay ? (size_t)sl->replay : sq_seq_n_prompt(s);
        const size_t take = total - done < (size_t)budget ? total - done : (size_t)budget;
        for (size_t j = 0; j < take; j++) {
            const size_t pos = done + j;
            const bool last = !replay && pos + 1 == total;
            self->plan[n++] = (sq_batch_entry_t){i, sq_seq_token_at(s, pos), (int32_t)pos, last,
                                                 sq_seq_adapter(s)};
            if (last)
                self->plan_slot[rows++] = i;
        }
        budget -= (int)take;
        *next = (i + 1) % self->max_batch;
    }
    *n_rows = rows;
    return n;
}

/* KV pages the plan's n entries take that their slots do not hold yet */
static long s_demand(const sq_batcher_t *self, int n)
{
    long d = 0;
    for (int e = 0; e < n; e++) {
        const int slot = self->plan[e].slot;
        if (e + 1 < n && self->plan[e + 1].slot == slot)
            continue;   /* the run's last position counts */
        const long want = sq_kv_pages_for(self->plan[e].pos + 1) -
                          sq_model_kv_pages_held(self->model, slot);
        d += want > 0 ? want : 0;
    }
    return d;
}

/* Take slot i's pages back (on every rank): its sequence waits, in
 * admission order, to run its context again (recomputation, as vLLM's
 * preemption) and then goes on where it was: the same tokens follow, and
 * on the CPU backend the same bits (a prompt in one call equals it token
 * by token) */
static int s_preempt(sq_batcher_t *self, int i)
{
    s_slot_t *sl = &self->slots[i];
    const int rc = s_trim(self, i, 0);
    sl->preempted = true;
    self->n_preempted++;
    self->preemptions++;
    if (sq_seq_decoding(sl->seq))
        sl->replay = sq_seq_next_pos(sl->seq);   /* positions 0 .. next - 1 */
    else
        sq_seq_restart_prefill(sl->seq);
    sl->replayed = 0;
    return rc;
}

/* Preempted sequences come back, the earliest admitted first, while the
 * pages of their contexts (and the watermark) fit; each first shares the
 * whole pages of its prompt's prefix that another slot stores, and runs
 * again only the rest */
static int s_resume(sq_batcher_t *self)
{
    while (self->n_preempted > 0) {
        int o = -1;
        for (int i = 0; i < self->max_batch; i++)
            if (self->slots[i].seq && self->slots[i].preempted &&
                (o < 0 || self->slots[i].admitted < self->slots[o].admitted))
                o = i;
        s_slot_t *sl = &self->slots[o];
        const bool decoding = sq_seq_decoding(sl->seq);
        const size_t ctx = decoding ? (size_t)sl->replay + 1 : sq_seq_n_prompt(sl->seq);
        int src = -1, n = 0;
        if (self->prefix_reuse)
            s_stored_prefix(self, sl->seq, o, &src, &n);
        const long need = sq_kv_pages_for((int)ctx) - n / SQ_KV_PAGE + s_watermark(self);
        if (need > s_room_pages(self, -1))
            return 0;
        int rc = n > 0 ? s_share(self, o, src, n / SQ_KV_PAGE) : 0;
        if (rc || (rc = s_evict(self, -1, need)))
            return rc;
        if (decoding)
            sl->replayed = n;
        else
            sq_seq_mark_cached(sl->seq, (size_t)n);
        self->reused_tokens += n;
        sl->preempted = false;
        self->n_preempted--;
    }
    return 0;
}

/* The step's plan, with the pages it takes free: idle caches are dropped,
 * then running sequences preempted, the latest admitted first */
static int s_plan_fit(sq_batcher_t *self, int *n, int *n_rows)
{
    int rc = s_unwait(self), next = 0;
    if (rc == 0)
        rc = s_resume(self);
    while (rc == 0) {
        *n = s_plan(self, n_rows, &next);
        const long demand = s_demand(self, *n);
        if (demand <= sq_model_kv_pages_free(self->model) ||
            ((rc = s_evict(self, -1, demand)) == 0 &&
             demand <= sq_model_kv_pages_free(self->model)))
            break;
        int victim = -1, running = 0;
        for (int i = 0; rc == 0 && i < self->max_batch; i++) {
            const s_slot_t *sl = &self->slots[i];
            if (!sl->seq || sl->preempted || sl->wait_n)
                continue;   /* (a waiting newcomer holds no pages) */
            running++;
            if (victim < 0 || sl->admitted > self->slots[victim].admitted)
                victim = i;
        }
        if (rc == 0 && running < 2)
            rc = SQ_FAIL(SQ_ESTATE, "KV cache: a step needs %ld more pages, %d are free and "
                         "nothing is left to preempt", demand,
                         sq_model_kv_pages_free(self->model));
        if (rc == 0)
            rc = s_preempt(self, victim);
    }
    if (rc == 0)
        self->next_prefill = next;
    return rc;
}

/* Rank 0. The header goes out as a non-blocking broadcast because the
 * followers receive it with one (MPI does not match blocking with
 * non-blocking collectives). */
static int s_send_header(sq_batcher_t *self, s_plan_hdr_t *hdr)
{
    MPI_Request req;
    int rc = s_mpi(MPI_Ibcast(hdr, sizeof *hdr, MPI_BYTE, 0, self->comm, &req), "plan header");
    return rc ? rc : s_mpi(MPI_Wait(&req, MPI_STATUS_IGNORE), "plan header");
}

static int s_bcast_plan(sq_batcher_t *self, s_plan_hdr_t *hdr)
{
    int rc = s_send_header(self, hdr);
    if (rc == 0 && hdr->n > 0)
        rc = s_mpi(MPI_Bcast(self->plan, hdr->n * (int)sizeof(sq_batch_entry_t), MPI_BYTE, 0,
                             self->comm), "plan");
    return rc;
}

int sq_batcher_step(sq_batcher_t *self, sq_batcher_done_fn *done, void *arg)
{
    if (self->n_active == 0)
        return 0;
    int n = 0, n_rows = 0;
    int rc = s_plan_fit(self, &n, &n_rows);
    if (rc || n == 0)
        return rc;
    s_plan_hdr_t hdr = {n, S_CMD_FORWARD, 0, 0};
    rc = s_bcast_plan(self, &hdr);
    /* One integer a row comes back from the model, not n_vocab floats (a
     * GPU's batch of logits is tens of MB), when every row is greedy (the
     * argmax) or the model samples on its device (each row's draw goes
     * down with it); else the logits, sampled here on the pool. Other
     * ranks run the same layers either way and skip the output. */
    bool greedy = true;
    for (int r = 0; r < n_rows && greedy; r++)
        greedy = sq_seq_greedy(self->slots[self->plan_slot[r]].seq);
    const bool on_device = !greedy && sq_model_samples_on_device(self->model);
    for (int r = 0; on_device && r < n_rows; r++)
        self->draws[r] = sq_seq_draw(self->slots[self->plan_slot[r]].seq);
    if (rc == 0 && greedy)
        rc = sq_model_forward_argmax(self->model, self->plan, hdr.n, self->tokens);
    else if (rc == 0 && on_device)
        rc = sq_model_forward_sample(self->model, self->plan, hdr.n, self->draws, self->tokens);
    else if (rc == 0)
        rc = sq_model_forward(self->model, self->plan, hdr.n, self->logits);
    if (rc)
        return rc;
    if (!greedy && !on_device) {
        s_sample_job_t job = {self, n_rows};
        sq_threadpool_run(self->pool, s_sample_rows, &job);
    }
    int64_t now = s_now_ns();
    /* prompt progress: a chunk moves n_prefilled forward; the cache now
     * holds each entry's token at its position */
    for (int e = 0; e < hdr.n; e++) {
        s_slot_t *sl = &self->slots[self->plan[e].slot];
        sl->cached[self->plan[e].pos] = self->plan[e].token;
        sl->n_cached = self->plan[e].pos + 1;
        if (!sq_seq_decoding(sl->seq)) {
            sq_seq_mark_prefilled(sl->seq, 1);
            if (sq_seq_decoding(sl->seq))
                sl->times.prefilled_ns = now;
        } else if (sl->replayed < sl->replay) {
            sl->replayed++;
        }
    }
    for (int r = 0; r < n_rows; r++) {
        s_slot_t *sl = &self->slots[self->plan_slot[r]];
        if ((rc = sq_seq_accept_token(sl->seq, self->tokens[r])))
            return rc;
        if (sq_seq_done(sl->seq)) {
            /* a failed sequence's rows may be what broke: no one reuses them */
            if (sq_seq_error(sl->seq, NULL))
                sl->n_cached = 0;
            sl->times.finished_ns = now;
            sq_seq_t *seq = sl->seq;
            void *user = sl->user;
            sq_seq_times_t times = sl->times;
            s_vacate(self, sl);   /* the cache keeps its rows for a newcomer (admit) */
            done(arg, seq, user, &times);
        }
    }
    return 0;
}

/* All ranks: run an adapter command. hdr->n is the path length (LOAD) or
 * the id (UNLOAD); rank 0 passes path, followers receive it. The outcome
 * is agreed with an all-reduce so no rank keeps an adapter others lack. */
static int s_adapter_cmd(sq_batcher_t *self, const s_plan_hdr_t *hdr, const char *path, int *id)
{
    char buf[S_MAX_PATH + 1] = "";
    int rc = 0, local_id = 0;
    if (hdr->cmd == S_CMD_LOAD && (hdr->n <= 0 || hdr->n > S_MAX_PATH))
        return SQ_FAIL(SQ_EMPI, "adapter path of %d bytes from rank 0", hdr->n);
    if (hdr->cmd == S_CMD_LOAD) {
        if (self->rank == 0)
            memcpy(buf, path, (size_t)hdr->n);
        if ((rc = s_mpi(MPI_Bcast(buf, hdr->n, MPI_CHAR, 0, self->comm), "adapter path")))
            return rc;
        buf[hdr->n] = '\0';
        sq_gguf_t *g = sq_gguf_open(buf);
        rc = g ? sq_model_adapter_load(self->model, g, 0.0f, &local_id) : sq_error_code();
        if (!g && rc == 0)
            rc = SQ_EIO;
        sq_gguf_destroy(&g);
    } else {
        rc = sq_model_adapter_unload(self->model, hdr->n);
    }
    int worst = rc, mrc = s_mpi(MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MIN, self->comm),
                                "adapter agreement");
    if (mrc)
        return mrc;
    if (hdr->cmd == S_CMD_LOAD && worst != 0 && rc == 0)
        sq_model_adapter_unload(self->model, local_id);
    if (worst != 0 && rc == 0)
        rc = SQ_FAIL(worst, "adapter %s refused on another rank", hdr->cmd == S_CMD_LOAD ? buf : "");
    if (id)
        *id = local_id;
    return rc;
}

int sq_batcher_adapter_load(sq_batcher_t *self, const char *path, int *id)
{
    size_t len = strlen(path);
    if (len == 0 || len > S_MAX_PATH)
        return SQ_FAIL(SQ_EINVAL, "adapter path of %zu bytes", len);
    s_plan_hdr_t hdr = {(int32_t)len, S_CMD_LOAD, 0, 0};
    int rc = s_send_header(self, &hdr);
    return rc ? rc : s_adapter_cmd(self, &hdr, path, id);
}

int sq_batcher_adapter_unload(sq_batcher_t *self, int id)
{
    /* a later adapter may get this id: rows computed with this one go,
     * and their pages with them */
    int rc = 0;
    for (int i = 0; rc == 0 && i < self->max_batch; i++)
        if (self->slots[i].cached_adapter == id && !self->slots[i].seq)
            rc = s_trim(self, i, 0);
    s_plan_hdr_t hdr = {id, S_CMD_UNLOAD, 0, 0};
    if (rc == 0)
        rc = s_send_header(self, &hdr);
    return rc ? rc : s_adapter_cmd(self, &hdr, NULL, NULL);
}

int sq_batcher_stop_followers(sq_batcher_t *self)
{
    s_plan_hdr_t hdr = {0, S_CMD_STOP, 0, 0};
    return s_bcast_plan(self, &hdr);
}

/* Wait for the next plan header without pinning a core: spin briefly
 * (steps come back to back while busy), then sleep with backoff. */
static int s_wait_header(sq_batcher_t *self, s_plan_hdr_t *hdr)
{
    MPI_Request req;
    int rc = s_mpi(MPI_Ibcast(hdr, sizeof *hdr, MPI_BYTE, 0, self->comm, &req), "plan header");
    if (rc)
        return rc;
    int64_t spin_until = s_now_ns() + 2000000;
    long sleep_ns = 50000;
    for (;;) {
        int flag = 0;
        if ((rc = s_mpi(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "plan header")))
            return rc;
        if (flag)
            return 0;
        if (s_now_ns() > spin_until) {
            struct timespec ts = {0, sleep_ns};
            nanosleep(&ts, NULL);
            if (sleep_ns < 2000000)
                sleep_ns *= 2;
        }
    }
}

int sq_batcher_follow(sq_batcher_t *self)
{
    for (;;) {
        s_plan_hdr_t hdr;
        int rc = s_wait_header(self, &hdr);
        if (rc)
            return rc;
        if (hdr.cmd == S_CMD_STOP)
            return 0;
        if (hdr.cmd == S_CMD_TRIM) {
            sq_model_kv_trim(self->model, hdr.n, hdr.arg);
            continue;
        }
        if (hdr.cmd == S_CMD_SHARE) {
            if ((rc = sq_model_kv_share(self->model, hdr.n, hdr.arg, hdr.arg2)))
                return rc;   /* rank 0 did it: the ranks' caches would part */
            continue;
        }
        if (hdr.cmd == S_CMD_LOAD || hdr.cmd == S_CMD_UNLOAD) {
            if ((rc = s_adapter_cmd(self, &hdr, NULL, NULL)) && rc == SQ_EMPI)
                return rc;      /* a refused adapter is rank 0's to report */
            continue;
        }
        if (hdr.n < 0 || hdr.n > self->max_batch + self->prefill_budget)
            return SQ_FAIL(SQ_EPROTO, "plan of %d entries from rank 0", hdr.n);
        if (hdr.n > 0 &&
            (rc = s_mpi(MPI_Bcast(self->plan, hdr.n * (int)sizeof(sq_batch_entry_t), MPI_BYTE, 0,
                                  self->comm), "plan")))
            return rc;
        if ((rc = sq_model_forward(self->model, self->plan, hdr.n, NULL)))
            return rc;
    }
}
