/*  sq_server: event loop, group commit, leases, dispatch and timers.
 *
 *  Group commit: writes collect in `pending`; when the writer is idle the
 *  loop hands `pending` over and starts a new one. So while one transaction
 *  commits, the next batch grows, and the batch size follows the load: one
 *  fsync serves every message that arrived during the previous one. Nothing
 *  that depends on a write (a SUBMIT ack, a task becoming visible, a
 *  terminal state) happens before the writer reports the commit.
 */
#include "sq_server.h"
#include "sq_lora.h"
#include "sq_metrics_http.h"

#include "sq_error.h"
#include "sq_log.h"
#include "sq_migrate.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t sq_now_ms(void) { return zclock_mono(); }
int64_t sq_wall_ms(void) { return zclock_time(); }

/* splitmix64: fencing tokens need to be unguessable by a confused worker,
 * not cryptographic; the seed comes from the kernel. */
static uint64_t s_rand(sq_server_t *self)
{
    uint64_t z = (self->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

sq_server_t *sq_server_new(const sq_server_opts_t *opts)
{
    sq_server_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->opts = *opts;
    self->queue = sq_queue_new(opts->drr_quantum);
    self->jobs = sq_u64_hash_new();
    self->leases = sq_u64_hash_new();
    self->groups = zhashx_new();
    self->pstats = zhashx_new();
    self->pending = sq_batch_new();
    self->enc = sq_wire_enc_new();
    if (!self->queue || !self->jobs || !self->leases || !self->groups || !self->pstats ||
        !self->pending || !self->enc) {
        sq_server_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->pstats, (zhashx_destructor_fn *)zstr_free);
    if (getrandom(&self->rng, sizeof self->rng, 0) != sizeof self->rng)
        self->rng = (uint64_t)sq_wall_ms() ^ (uint64_t)getpid();
    /* lease ids stay unique across restarts: start from the clock */
    self->next_lease = (uint64_t)sq_wall_ms() * 1000;
    return self;
}

static void s_group_destroy(sq_group_t **gp)
{
    sq_group_t *g = *gp;
    if (!g)
        return;
    zframe_destroy(&g->identity);
    free(g->group_id);
    free(g->model);
    free(g->sha);
    free(g->device);
    free(g->kv_type);
    free(g);
    *gp = NULL;
}

void sq_server_destroy(sq_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_server_t *self = *self_p;
    sq_store_destroy(&self->store); /* joins the threads first */
    sq_lora_destroy(&self->lora);
    sq_metrics_http_destroy(&self->metrics);
    if (self->groups)
        for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups))
            s_group_destroy(&g);
    if (self->jobs)
        for (sq_job_t *j = zhashx_first(self->jobs); j; j = zhashx_next(self->jobs))
            sq_job_destroy(&j);
    zhashx_destroy(&self->groups);
    zhashx_destroy(&self->jobs);
    zhashx_destroy(&self->leases);
    zhashx_destroy(&self->pstats);
    sq_queue_destroy(&self->queue);
    if (self->pending)
        for (size_t i = 0; i < self->pending->n_jobs; i++)
            sq_job_destroy(&self->pending->jobs[i]);
    sq_batch_destroy(&self->pending);
    sq_batch_destroy(&self->retry);
    sq_wire_enc_destroy(&self->enc);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->clients);
    zsock_destroy(&self->workers);
    free(self);
    *self_p = NULL;
}

/* ---- task state ---- */

sq_pstat_t *sq_server_pstat(sq_server_t *self, const char *model)
{
    sq_pstat_t *p = zhashx_lookup(self->pstats, model);
    if (!p && (p = calloc(1, sizeof *p)) != NULL)
        zhashx_insert(self->pstats, model, p);
    return p;
}

void sq_server_set_state(sq_server_t *self, sq_task_t *t, uint8_t state)
{
    sq_job_t *job = t->job;
    if (t->state != SQ_T_DONE && job->counts[t->state] > 0)
        job->counts[t->state]--;
    job->counts[state]++;
    if (t->state == SQ_T_COMPLETING && self->n_completing > 0)
        self->n_completing--;
    if (state == SQ_T_COMPLETING)
        self->n_completing++;
    sq_pstat_t *p = sq_server_pstat(self, job->model);
    if (p && t->state == SQ_T_RETRYING && p->retrying)
        p->retrying--;
    if (p && state == SQ_T_RETRYING)
        p->retrying++;
    t->state = state;
}

void sq_server_enqueue(sq_server_t *self, sq_task_t *t)
{
    sq_job_t *job = t->job;
    if (sq_queue_push(self->queue, &t->q, job->model, job->priority, job->tenant, t->max_tokens,
                      sq_now_ms()) != 0) {
        SQ_ERROR("queue push failed", "job=%" PRIu64 " idx=%u", job->id, t->idx);
        return;
    }
    sq_server_set_state(self, t, SQ_T_QUEUED);
}

void sq_server_audit(sq_server_t *self, const char *actor, const char *action, sq_task_t *t,
                     uint64_t job_id, const char *details_json)
{
    char subject[64];
    if (t)
        snprintf(subject, sizeof subject, "task:%" PRIu64 "/%u", t->job->id, t->idx);
    else
        snprintf(subject, sizeof subject, "job:%" PRIu64, job_id);
    sq_batch_audit(self->pending, actor, action, t ? t->job->id : job_id, t ? t->idx : 0,
                   subject, details_json, sq_wall_ms());
}

void sq_server_audit_cancelled(sq_server_t *self, const sq_job_t *job, const char *details_json)
{
    char actor[160];
    snprintf(actor, sizeof actor, "client:%s", job->tenant);
    sq_server_audit(self, actor, "cancelled", NULL, job->id, details_json);
}

/* {"attempt": n, "error": "...", "delay_ms": d}: jansson escapes the text. */
static char *s_details(sq_task_t *t, const char *error, int64_t delay_ms)
{
    json_t *o = json_pack("{s:i}", "attempt", (int)t->attempts);
    if (error)
        json_object_set_new(o, "error", json_string(error) ? json_string(error)
                                                           : json_string("(invalid text)"));
    if (delay_ms >= 0)
        json_object_set_new(o, "delay_ms", json_integer(delay_ms));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- leases ---- */

static void s_lease(sq_server_t *self, sq_group_t *g, sq_task_t *t)
{
    t->attempts++;
    t->lease_id = self->next_lease++;
    t->token = s_rand(self);
    t->group = g;
    t->leased_wall_ms = sq_wall_ms();
    t->lprev = NULL;
    t->lnext = g->leases;
    if (g->leases)
        g->leases->lprev = t;
    g->leases = t;
    g->n_leases++;
    zhashx_insert(self->leases, &t->lease_id, t);
    sq_server_set_state(self, t, SQ_T_LEASED);
    sq_pstat_t *p = sq_server_pstat(self, t->job->model);
    if (p)
        p->leased++;
}

void sq_server_cancel_lease(sq_server_t *self, sq_task_t *t)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 1);
    sq_wire_key(e, "leases");
    sq_wire_array(e, 1);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "lease", t->lease_id);
    sq_wire_kv_u64(e, "token", t->token);
    sq_wire_send(zsock_resolve(self->workers), t->group->identity, SQ_WIRE_CANCEL_LEASE, e);
}

void sq_server_unlease(sq_server_t *self, sq_task_t *t)
{
    sq_group_t *g = t->group;
    zhashx_delete(self->leases, &t->lease_id);
    size_t slot = t->lease_id & (SQ_SERVER_ENDED_LEASES - 1);
    self->ended[slot].lease = t->lease_id;
    self->ended[slot].task_id = sq_task_id(t);
    if (t->lprev)
        t->lprev->lnext = t->lnext;
    else if (g)
        g->leases = t->lnext;
    if (t->lnext)
        t->lnext->lprev = t->lprev;
    t->lprev = t->lnext = NULL;
    if (g)
        g->n_leases--;
    sq_pstat_t *p = sq_server_pstat(self, t->job->model);
    if (p && p->leased)
        p->leased--;
}

uint64_t sq_server_ended_lease(const sq_server_t *self, uint64_t lease)
{
    size_t slot = lease & (SQ_SERVER_ENDED_LEASES - 1);
    return lease && self->ended[slot].lease == lease ? self->ended[slot].task_id : 0;
}

void sq_server_task_terminal(sq_server_t *self, sq_task_t *t, uint8_t state, const char *error)
{
    const char *name = state == SQ_T_DEAD ? "dead" : "cancelled";
    sq_batch_result(self->pending, t, name, NULL, 0, NULL, NULL, error, NULL, sq_wall_ms());
    sq_batch_add_done(self->pending, t, state);
    sq_server_set_state(self, t, SQ_T_COMPLETING);
}

void sq_server_task_failed(sq_server_t *self, sq_task_t *t, const char *outcome, bool retryable,
                           const char *error)
{
    sq_job_t *job = t->job;
    sq_batch_attempt(self->pending, t, outcome, error, sq_wall_ms());
    sq_server_unlease(self, t);
    t->group = NULL;
    char *details;
    if (retryable && t->attempts < job->max_attempts && !job->cancelled) {
        if (strcmp(outcome, "worker_lost") == 0) {
            /* the task did nothing wrong: back in line at once */
            details = s_details(t, error, 0);
            sq_server_audit(self, "broker", "lease_lost", t, 0, details);
            sq_server_enqueue(self, t);
        } else {
            int64_t delay = sq_queue_backoff_ms(self->opts.retry_base_ms, t->attempts,
                                                self->opts.retry_cap_ms);
            details = s_details(t, error, delay);
            sq_server_audit(self, "broker", "retry", t, 0, details);
            sq_queue_defer(self->queue, &t->q, sq_now_ms() + delay);
            sq_server_set_state(self, t, SQ_T_RETRYING);
        }
    } else {
        details = s_details(t, error, -1);
        sq_server_audit(self, "broker", "dead", t, 0, details);
        sq_server_task_terminal(self, t, SQ_T_DEAD, error);
    }
    free(details);
}

/* ---- dispatch ---- */

static void s_encode_task(sq_server_t *self, sq_wire_enc_t *e, sq_task_t *t)
{
    sq_job_t *j = t->job;
    sq_wire_map(e, 17);
    sq_wire_kv_u64(e, "lease", t->lease_id);
    sq_wire_kv_u64(e, "token", t->token);
    sq_wire_kv_u64(e, "task_id", sq_task_id(t));
    sq_wire_kv_u64(e, "job_id", j->id);
    sq_wire_kv_u64(e, "index", t->idx);
    sq_wire_kv_str(e, "custom_id", sq_task_custom_id(t));
    sq_wire_kv_u64(e, "attempt", t->attempts);
    sq_wire_kv_str(e, "model", j->model);
    /* the task's own adapter, else the job's; the version is the task's
     * pin, else fixed per task here (canary by task id), so retries and
     * the recorded lineage agree with what ran */
    const char *adapter = sq_task_adapter(t) ? sq_task_adapter(t) : j->adapter;
    const char *version = sq_task_adapter_version(t);
    sq_wire_kv_str(e, "adapter", adapter);
    sq_wire_kv_str(e, "adapter_version",
                   version ? version : sq_lora_resolve(self->lora, adapter, sq_task_id(t)));
    sq_wire_kv_str(e, "prompt", sq_task_prompt(t));
    sq_wire_kv_u64(e, "max_tokens", t->max_tokens);
    sq_wire_kv_double(e, "temperature", t->temperature);
    sq_wire_kv_double(e, "top_p", t->top_p);
    if (t->has_seed)
        sq_wire_kv_u64(e, "seed", t->seed);
    else
        sq_wire_kv_nil(e, "seed");
    sq_wire_kv_str(e, "body", sq_task_body(t));
    sq_wire_kv_str(e, "params", j->params);
}

/* What s_encode_task writes for t, at most: its strings (the job's params
 * go into every task), two names the lease resolves (adapter, version) and
 * the 17 keys with their numbers and headers. */
#define S_TASK_FIXED_BYTES 512
#define S_TASK_MAX_BYTES                                                                      \
    (S_TASK_FIXED_BYTES + SQ_WIRE_MAX_ID + 3 * SQ_WIRE_MAX_NAME + SQ_WIRE_MAX_PROMPT +       \
     2 * SQ_WIRE_MAX_TEXT)
/* A TASKS body is closed once it holds this much; the task that passes the
 * mark is the last, so a body never outgrows the cap and one task always
 * fits. */
#define S_TASKS_FULL_BYTES (SQ_WIRE_MAX_BODY / 2)
_Static_assert(S_TASKS_FULL_BYTES + S_TASK_MAX_BYTES + 16 < SQ_WIRE_MAX_BODY,
               "a TASKS body stays under the body cap");

static size_t s_task_wire_bytes(const sq_task_t *t)
{
    sq_job_t *job = t->job;
    if (!job->shared_bytes) /* params may be MiBs: measured once, not for every task */
        job->shared_bytes = strlen(job->model) + (job->params ? strlen(job->params) : 0) + 1;
    const char *body = sq_task_body(t);
    return S_TASK_FIXED_BYTES + strlen(sq_task_custom_id(t)) + strlen(sq_task_prompt(t)) +
           (body ? strlen(body) : 0) + job->shared_bytes + 2 * SQ_WIRE_MAX_NAME;
}

/* Fill one group's free slots, in one TASKS under the body cap. */
static void s_dispatch_group(sq_server_t *self, sq_group_t *g, uint32_t cap)
{
    enum { MAX_TASKS = SQ_WIRE_MAX_BATCH };
    static sq_task_t *picked[MAX_TASKS];
    uint32_t free_slots = g->suspect ? 1 : g->max_batch - g->n_leases, n = 0;
    if (free_slots > cap)
        free_slots = cap;
    size_t bytes = 0;
    while (n < free_slots && n < MAX_TASKS && bytes < S_TASKS_FULL_BYTES) {
        sq_qitem_t *it = sq_queue_pop(self->queue, g->model);
        if (!it)
            break;
        sq_task_t *t = (sq_task_t *)it;
        picked[n++] = t;
        bytes += s_task_wire_bytes(t);
    }
    if (n == 0)
        return;
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 1);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, n);
    for (uint32_t i = 0; i < n; i++) {
        s_lease(self, g, picked[i]);
        s_encode_task(self, e, picked[i]);
    }
    if (sq_wire_send(zsock_resolve(self->workers), g->identity, SQ_WIRE_TASKS, e) != 0)
        SQ_WARN("send TASKS failed", "group=%s err=%s", sq_q(g->group_id), sq_q(sq_error_detail()));
    g->last_send_ms = sq_now_ms();
    self->n_dispatched += n;
}

static bool s_can_take(sq_server_t *self, sq_group_t *g)
{
    bool room = g->suspect ? g->probe && g->n_leases == 0 : g->n_leases < g->max_batch;
    return !g->draining && room && sq_queue_ready(self->queue, g->model);
}

/* Which suspect groups may take a probe lease now: those with no group of
 * their model that is not suspect (and not draining). Groups are walked
 * from an array, as czmq's tables have one cursor each. */
static void s_mark_probes(sq_server_t *self)
{
    size_t n = 0, n_suspect = 0;
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups))
        n_suspect += g->suspect;
    if (n_suspect == 0)
        return;
    sq_group_t **all = malloc(zhashx_size(self->groups) * sizeof *all);
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        g->probe = false; /* and so it stays when out of memory */
        if (all)
            all[n++] = g;
    }
    for (size_t i = 0; i < n; i++) {
        all[i]->probe = all[i]->suspect;
        for (size_t j = 0; j < n && all[i]->probe; j++)
            all[i]->probe = all[j]->suspect || all[j]->draining ||
                            strcmp(all[j]->model, all[i]->model) != 0;
    }
    free(all);
}

/* Backpressure from the commit path: workers can finish tasks faster than
 * PostgreSQL takes their rows (or while it is down). Without a bound the
 * finished tasks pile up in memory and in ever larger batches, and a result
 * waits seconds to become durable while new leases keep going out. So no
 * lease is granted while max_uncommitted finished tasks wait for their
 * commit; each commit (sq_server.c, s_on_committed) dispatches again. */
bool sq_server_dispatch_paused(const sq_server_t *self)
{
    return self->opts.max_uncommitted && self->n_completing >= self->opts.max_uncommitted;
}

/* Two passes: first every group with room gets an equal share of what is
 * ready (so groups that happen to come first in the table do not take
 * everything when little is queued), then the rest fills free slots. */
void sq_server_dispatch(sq_server_t *self)
{
    size_t ready = sq_queue_ready_total(self->queue), n_open = 0;
    if (ready == 0 || sq_server_dispatch_paused(self))
        return;
    s_mark_probes(self);
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups))
        n_open += s_can_take(self, g);
    if (n_open == 0)
        return;
    uint32_t share = (uint32_t)((ready + n_open - 1) / n_open);
    for (int pass = 0; pass < 2; pass++)
        for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups))
            if (s_can_take(self, g))
                s_dispatch_group(self, g, pass == 0 ? share : UINT32_MAX);
}

/* Forget g and put its leases back in the queue, without dispatching: a
 * caller removing several groups dispatches once they are all gone, so no
 * task goes to a group about to be removed (each such hop would cost the
 * task an attempt). */
static void s_group_remove(sq_server_t *self, sq_group_t *g, const char *reason)
{
    uint32_t n = g->n_leases;
    while (g->leases)
        sq_server_task_failed(self, g->leases, "worker_lost", true, reason);
    json_t *o = json_pack("{s:s,s:i}", "reason", reason, "leases_requeued", (int)n);
    char *details = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char subject[300];
    snprintf(subject, sizeof subject, "group:%s", g->group_id);
    sq_batch_audit(self->pending, "broker", "worker_lost", 0, 0, subject, details, sq_wall_ms());
    free(details);
    SQ_INFO("worker group lost", "group=%s reason=%s leases=%u", sq_q(g->group_id), sq_q(reason), n);
    zhashx_delete(self->groups, g->key);
    s_group_destroy(&g);
}

void sq_server_group_lost(sq_server_t *self, sq_group_t *g, const char *reason)
{
    s_group_remove(self, g, reason);
    sq_server_kick(self);
    sq_server_dispatch(self);
}

/* ---- group commit ---- */

void sq_server_kick(sq_server_t *self)
{
    if (self->writer_busy || !self->store)
        return;
    if (self->db_down && sq_now_ms() < self->db_retry_at_ms)
        return;
    sq_batch_t *b = NULL;
    if (self->retry) {
        b = self->retry;
        self->retry = NULL;
    } else if (!sq_batch_empty(self->pending) || self->db_down) {
        /* while down, an empty batch is the reconnect probe */
        b = self->pending;
        self->pending = sq_batch_new();
        if (!self->pending) { /* keep going with the old one */
            self->pending = b;
            return;
        }
    }
    if (b && sq_store_commit(self->store, b) == 0) {
        self->writer_busy = true;
        self->inflight_dones = b->n_dones;
        self->inflight_cancels = b->n_cancel;
        for (size_t i = 0; i < b->n_cancel && i < SQ_SERVER_INFLIGHT_IDS; i++)
            self->inflight_cancel_ids[i] = b->cancel_ids[i];
    }
}

/* SUBMIT's reply: {rid, job_id, n_tasks} (+ repeated: true). */
static void s_submit_reply(sq_server_t *self, sq_ack_t *a, uint64_t job_id, uint32_t n_tasks,
                           bool repeated)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, repeated ? 4 : 3);
    sq_wire_kv_u64(e, "rid", a->rid);
    sq_wire_kv_u64(e, "job_id", job_id);
    sq_wire_kv_u64(e, "n_tasks", n_tasks);
    if (repeated)
        sq_wire_kv_bool(e, "repeated", true);
    sq_server_reply(self, a->to, SQ_WIRE_SUBMIT | SQ_WIRE_REPLY, e);
}

/* A keyed SUBMIT whose key the tenant used before: the first job's id,
 * nothing new stored; refused when it differs from that job. */
static void s_ack_repeated(sq_server_t *self, sq_ack_t *a)
{
    sq_job_t *job = a->job;
    if (job->same_as_differs) {
        char detail[400];
        snprintf(detail, sizeof detail, "field \"idempotency_key\": already names job %" PRIu64
                 " of tenant %.128s, which was submitted with other contents", job->same_as,
                 job->tenant);
        sq_server_error(self, self->clients, a->to, a->rid, SQ_EINVAL, detail);
    } else {
        s_submit_reply(self, a, job->same_as, job->n_tasks, true);
    }
    sq_job_destroy(&job);
}

static void s_ack_submit(sq_server_t *self, sq_ack_t *a)
{
    sq_job_t *job = a->job;
    if (job->same_as) {
        s_ack_repeated(self, a);
        return;
    }
    zhashx_insert(self->jobs, &job->id, job);
    for (uint32_t i = 0; i < job->n_tasks; i++)
        sq_server_enqueue(self, &job->tasks[i]);
    s_submit_reply(self, a, job->id, job->n_tasks, false);
}

static void s_ack_cancel(sq_server_t *self, sq_ack_t *a)
{
    sq_job_t *job = zhashx_lookup(self->jobs, &a->job_id);
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "rid", a->rid);
    sq_wire_kv_u64(e, "job_id", a->job_id);
    sq_wire_kv_u64(e, "cancelled", a->n);
    sq_wire_kv_str(e, "state", job ? sq_job_state_name(job->counts, job->n_tasks, true)
                                   : "cancelled");
    sq_server_reply(self, a->to, SQ_WIRE_CANCEL | SQ_WIRE_REPLY, e);
}

static void s_apply_done(sq_server_t *self, sq_done_t *d)
{
    sq_task_t *t = d->task;
    sq_job_t *job = t->job;
    sq_server_set_state(self, t, d->state);
    free(t->data);
    t->data = NULL;
    if (d->state == SQ_T_SUCCEEDED) {
        sq_pstat_t *p = sq_server_pstat(self, job->model);
        int64_t sec = sq_now_ms() / 1000;
        if (p) {
            if (sec != p->ring_sec) {
                for (int64_t s = p->ring_sec + 1; s <= sec && s <= p->ring_sec + 16; s++)
                    p->done_per_s[s % 16] = 0;
                p->ring_sec = sec;
            }
            p->done_per_s[sec % 16]++;
        }
    }
    uint32_t term = job->counts[SQ_T_SUCCEEDED] + job->counts[SQ_T_DEAD] +
                    job->counts[SQ_T_CANCELLED];
    if (term == job->n_tasks) { /* finished: PostgreSQL answers for it now */
        zhashx_delete(self->jobs, &job->id);
        sq_job_destroy(&job);
    }
}

/* Answer a batch's SUBMITs and CANCELs with a retryable error and drop its
 * jobs (nothing of them was stored); the other rows stay, a CANCEL's
 * among them: its tasks stopped when it came, and what it wrote is
 * committed with the retried batch, which its reply says. */
static void s_refuse(sq_server_t *self, sq_batch_t *b, int code)
{
    for (size_t i = 0; i < b->n_acks; i++)
        sq_server_error(self, self->clients, b->acks[i].to, b->acks[i].rid, code,
                        b->acks[i].kind == SQ_ACK_SUBMIT
                            ? "database unavailable, nothing was stored; retry"
                            : "database unavailable: the job is cancelled here and is recorded"
                              " as cancelled when the database is back; retry to confirm");
    for (size_t i = 0; i < b->n_acks; i++)
        zframe_destroy(&b->acks[i].to);
    b->n_acks = 0;
    for (size_t i = 0; i < b->n_jobs; i++)
        sq_job_destroy(&b->jobs[i]);
    b->n_jobs = 0;
}

/* A job's cancellation again, in the pending batch, after the batch that
 * carried it was dropped: jobs.cancelled_at and an audit row. */
static void s_cancel_again(sq_server_t *self, uint64_t job_id)
{
    sq_job_t *job = zhashx_lookup(self->jobs, &job_id);
    if (!job)
        return;
    sq_server_audit_cancelled(self, job, "{\"recorded_again\": \"the batch first carrying"
                                         " it was refused\"}");
    sq_batch_add_cancel(self->pending, job_id);
}

/* A failed commit: SUBMIT/CANCEL callers get a retryable error now; the
 * rest (outcomes, audit) is kept and retried first, in order. */
static void s_commit_failed(sq_server_t *self, sq_batch_t *b)
{
    int code = b->rc == SQ_EDBDOWN ? SQ_EDBDOWN : SQ_EAGAIN;
    SQ_WARN("commit failed", "rc=%d err=%s jobs=%zu", b->rc, sq_q(b->error), b->n_jobs);
    /* With the connection lost, the COMMIT may have landed although no
     * answer came. The SUBMITs are refused all the same ("nothing was
     * stored"), and the retried batch makes that true: it removes their
     * jobs if they are there, before anything else is written, so that a
     * client's retry is the only copy (sq_store.c, s_withdraw). */
    for (size_t i = 0; b->rc == SQ_EDBDOWN && i < b->n_jobs; i++)
        if (sq_batch_add_withdraw(b, b->jobs[i]->id) != 0)
            SQ_ERROR("out of memory: a refused job may stay stored", "job=%" PRIu64,
                     b->jobs[i]->id);
    s_refuse(self, b, code);
    /* SUBMITs that arrived during this commit would otherwise wait behind
     * the retried batch until the database is back: answer them now */
    s_refuse(self, self->pending, code);
    self->db_down = true;
    self->db_backoff_ms = self->db_backoff_ms ? self->db_backoff_ms * 2 : 50;
    if (self->db_backoff_ms > 2000)
        self->db_backoff_ms = 2000;
    self->db_retry_at_ms = sq_now_ms() + self->db_backoff_ms;
    b->retried = true;
    if (b->rc != SQ_EDBDOWN && ++b->n_failures >= 5) {
        /* The database is up but refuses this batch (a bug, or a constraint
         * we did not foresee): do not wedge the queue behind it. Its tasks
         * run again, but for those of cancelled jobs: the cancellation
         * stands (its client was told it would be recorded) and goes
         * into the next batch again. The other rows it carried are lost,
         * and the log says so. */
        SQ_ERROR("dropping a batch the database keeps refusing", "err=%s results=%zu",
                 sq_q(b->error), b->n_dones);
        for (size_t i = 0; i < b->n_dones; i++) {
            sq_task_t *t = b->dones[i].task;
            if (t->job->cancelled)
                sq_server_task_terminal(self, t, SQ_T_CANCELLED, "cancelled by request");
            else
                sq_server_enqueue(self, t);
        }
        for (size_t i = 0; i < b->n_cancel; i++)
            s_cancel_again(self, b->cancel_ids[i]);
        sq_batch_destroy(&b);
        self->db_down = false;
        return;
    }
    if (sq_batch_empty(b))
        sq_batch_destroy(&b);
    else
        self->retry = b;
}

static int s_on_committed(zloop_t *loop, zsock_t *reader, void *arg)
{
    sq_server_t *self = arg;
    sq_batch_t *b = sq_store_committed(self->store);
    self->writer_busy = false;
    if (!b)
        return 0;
    if (b->rc) {
        s_commit_failed(self, b);
        return 0;
    }
    if (self->db_down)
        SQ_INFO("database reachable again", "after_backoff_ms=%d", self->db_backoff_ms);
    self->db_down = false;
    self->db_backoff_ms = 0;
    self->n_committed_batches++;
    /* outcomes first, so a CANCEL reply reports the job's final state; no
     * outcome ever belongs to a job submitted in the same batch */
    for (size_t i = 0; i < b->n_dones; i++)
        s_apply_done(self, &b->dones[i]);
    for (size_t i = 0; i < b->n_acks; i++) {
        if (b->acks[i].kind == SQ_ACK_SUBMIT)
            s_ack_submit(self, &b->acks[i]);
        else
            s_ack_cancel(self, &b->acks[i]);
    }
    b->n_jobs = 0; /* now owned by self->jobs */
    sq_batch_destroy(&b);
    sq_server_kick(self);
    sq_server_dispatch(self);
    return 0;
}

/* ---- timers ---- */

static bool s_any_silent(sq_server_t *self, int64_t now, int64_t dead_after)
{
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups))
        if (now - g->last_recv_ms > dead_after)
            return true;
    return false;
}

/* Read what waits on the worker socket; false when messages still wait
 * after a bounded number of rounds. zloop runs due timers before readers,
 * so after the loop was busy elsewhere (a burst of large SUBMITs) the
 * heartbeats of live groups can wait unread here while their last_recv_ms
 * says they are silent. */
static bool s_read_workers(sq_server_t *self)
{
    for (int i = 0; i < 16 && (zsock_events(self->workers) & ZMQ_POLLIN); i++)
        sq_server_on_worker(self->loop, self->workers, self);
    return !(zsock_events(self->workers) & ZMQ_POLLIN);
}

/* How often the broker beats to each group: --heartbeat-ms, but at least
 * as often as the workers do (they take a broker silent for 3 of their
 * beats for gone, whatever --heartbeat-ms says). */
static int64_t s_beat_ms(const sq_server_t *self)
{
    return self->opts.heartbeat_ms < SQ_WIRE_HEARTBEAT_MS ? self->opts.heartbeat_ms
                                                          : SQ_WIRE_HEARTBEAT_MS;
}

/* A group silent for `liveness` beats is dead, judged only once nothing it
 * sent can be waiting unread. All the dead go before anything is
 * dispatched again (the tick dispatches after this). */
static void s_heartbeats(sq_server_t *self, int64_t now)
{
    int64_t dead_after = (int64_t)self->opts.heartbeat_ms * self->opts.liveness;
    bool judge = !s_any_silent(self, now, dead_after) || s_read_workers(self);
    zlistx_t *lost = zlistx_new();
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        if (judge && now - g->last_recv_ms > dead_after) {
            zlistx_add_end(lost, g);
        } else if (now - g->last_send_ms >= s_beat_ms(self)) {
            sq_wire_send(zsock_resolve(self->workers), g->identity, SQ_WIRE_HEARTBEAT, NULL);
            g->last_send_ms = now;
        }
    }
    for (sq_group_t *g = zlistx_first(lost); g; g = zlistx_next(lost))
        s_group_remove(self, g, "missed heartbeats");
    zlistx_destroy(&lost);
}

/* Leases older than --lease-timeout-ms are taken back (a stuck worker that
 * still heartbeats), and their group gets no more until it shows it works
 * (a RESULT or FAIL): else the freed slots would take the same tasks back
 * at once, and a hung group burn every attempt of them. Scanned once a
 * second: O(leases). */
static void s_expire_leases(sq_server_t *self, int64_t now)
{
    if (self->opts.lease_timeout_ms <= 0 || now - self->last_lease_scan_ms < 1000)
        return;
    self->last_lease_scan_ms = now;
    int64_t wall = sq_wall_ms();
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        sq_task_t *t = g->leases;
        while (t) {
            sq_task_t *next = t->lnext;
            if (wall - t->leased_wall_ms > self->opts.lease_timeout_ms) {
                if (!g->suspect)
                    SQ_WARN("worker group suspect: a lease timed out, no new leases until it "
                            "answers", "group=%s task=%" PRIu64 ".%u held_ms=%" PRId64,
                            sq_q(g->group_id), t->job->id, t->idx, wall - t->leased_wall_ms);
                g->suspect = true;
                sq_server_cancel_lease(self, t);
                sq_server_task_failed(self, t, "failed", true, "lease timed out");
            }
            t = next;
        }
    }
}

static int s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    sq_server_t *self = arg;
    int64_t now = sq_now_ms();
    s_heartbeats(self, now);
    s_expire_leases(self, now);
    sq_qitem_t *it;
    while ((it = sq_queue_take_due(self->queue, now)) != NULL)
        sq_server_enqueue(self, (sq_task_t *)it);
    sq_server_kick(self);
    sq_server_dispatch(self);
    return 0;
}

/* ---- replies ---- */

void sq_server_reply(sq_server_t *self, zframe_t *to, uint8_t cmd, sq_wire_enc_t *enc)
{
    if (sq_wire_send(zsock_resolve(self->clients), to, cmd, enc) != 0)
        SQ_WARN("reply failed", "cmd=%s err=%s", sq_wire_cmd_name(cmd), sq_q(sq_error_detail()));
}

void sq_server_error(sq_server_t *self, zsock_t *sock, zframe_t *to, uint64_t rid, int rc,
                     const char *detail)
{
    int code = sq_wire_errcode_from(rc);
    sq_wire_send_error(zsock_resolve(sock), to, rid, code, detail);
}

int sq_server_on_read(zloop_t *loop, zsock_t *reader, void *arg)
{
    sq_server_t *self = arg;
    sq_read_t *op = sq_store_read_done(self->store);
    if (!op)
        return 0;
    static const uint8_t cmds[] = {SQ_WIRE_STATUS, SQ_WIRE_RESULTS, SQ_WIRE_LIST, SQ_WIRE_CANCEL,
                                   SQ_WIRE_SCALING};
    if (op->rc)
        sq_server_error(self, self->clients, op->to, op->rid, op->rc, op->error);
    else
        sq_server_reply(self, op->to, cmds[op->kind] | SQ_WIRE_REPLY, op->reply);
    sq_read_destroy(&op);
    return 0;
}

/* A Prometheus scrape: answer from the loop's own state (no database). */
static int s_on_scrape(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    sq_server_t *self = arg;
    sq_metrics_http_serve(self->metrics, sq_server_metrics, self);
    return 0;
}

/* A LORA request finished on its thread: answer the client. */
static int s_on_lora(zloop_t *loop, zsock_t *reader, void *arg)
{
    sq_server_t *self = arg;
    sq_lora_done_t d;
    if (sq_lora_take_done(self->lora, &d) != 0)
        return 0;
    if (d.rc)
        sq_server_error(self, self->clients, d.to, d.rid, d.rc, d.error);
    else
        sq_server_reply(self, d.to, SQ_WIRE_LORA | SQ_WIRE_REPLY, d.reply);
    zframe_destroy(&d.to);
    sq_wire_enc_destroy(&d.reply);
    return 0;
}

/* ---- start, run, stop ---- */

static void s_add_loaded(void *arg, sq_job_t *job)
{
    sq_server_t *self = arg;
    zhashx_insert(self->jobs, &job->id, job);
    for (uint32_t i = 0; i < job->n_tasks; i++) {
        sq_task_t *t = &job->tasks[i];
        if (t->state != SQ_T_SUBMITTING)
            continue;
        job->counts[SQ_T_SUBMITTING]++;
        if (job->cancelled) /* cancel was committed but not all rows: finish it */
            sq_server_task_terminal(self, t, SQ_T_CANCELLED, "cancelled by request");
        else
            sq_server_enqueue(self, t);
    }
}

static int s_rebuild(sq_server_t *self)
{
    sq_db_t *db = NULL;
    int rc = sq_db_connect(self->opts.db, 30000, &db);
    size_t n_jobs = 0, n_tasks = 0;
    if (rc == 0)
        rc = sq_migrate_check(db);
    if (rc == 0)
        rc = sq_store_load(db, s_add_loaded, self, &n_jobs, &n_tasks);
    sq_db_destroy(&db);
    if (rc == 0)
        SQ_INFO("queue rebuilt", "jobs=%zu tasks=%zu", n_jobs, n_tasks);
    return rc;
}

/* a ROUTER socket bound to endpoint; NULL with the flag that named the
 * endpoint, the endpoint and the reason (errno taken before the socket's
 * teardown can change it) */
static zsock_t *s_bind(const char *flag, const char *endpoint)
{
    zsock_t *s = zsock_new(ZMQ_ROUTER);
    if (!s) {
        SQ_FAIL(SQ_ENOMEM, "%s %s: no socket", flag, endpoint);
        return NULL;
    }
    zsock_set_maxmsgsize(s, (int64_t)SQ_WIRE_MAX_BODY + 64);
    zsock_set_sndhwm(s, 100000);
    zsock_set_rcvhwm(s, 100000);
    zsock_set_linger(s, 1000);
    if (zsock_bind(s, "%s", endpoint) < 0) {
        const int err = zmq_errno();
        zsock_destroy(&s);
        SQ_FAIL(SQ_EIO, "%s %s: cannot bind: %s", flag, endpoint, zmq_strerror(err));
        return NULL;
    }
    return s;
}

/* Rows not yet committed: a batch to retry, or one still being built. */
static bool s_unwritten(sq_server_t *self)
{
    return self->retry || !sq_batch_empty(self->pending);
}

/* Append b's cancelled jobs to the list in jobs (len bytes so far). */
static size_t s_list_cancels(const uint64_t *ids, size_t n, char *jobs, size_t size, size_t len)
{
    for (size_t i = 0; i < n && len + 24 < size; i++)
        len += (size_t)snprintf(jobs + len, size - len, "%s%" PRIu64, len ? "," : "", ids[i]);
    return len;
}

/* SIGTERM: stop taking requests, let the writer commit what is pending
 * (for up to 10 s, trying again with the usual backoff while the database
 * is away), tell workers to let go of their leases. 0, or SQ_EDBDOWN when
 * rows were left uncommitted (logged, with the cancellations among them:
 * their clients were told they would be recorded). writer_busy still set
 * after it: the writer waits on a database that does not answer (its
 * thread cannot be joined). */
static int s_drain(sq_server_t *self)
{
    zpoller_t *poller = zpoller_new(sq_store_writer(self->store), NULL);
    int64_t deadline = sq_now_ms() + 10000;
    self->db_retry_at_ms = 0; /* try at once, even if it was down */
    sq_server_kick(self);
    while ((self->writer_busy || s_unwritten(self)) && sq_now_ms() < deadline) {
        if (self->writer_busy ? zpoller_wait(poller, 200) != NULL
                              : (zclock_sleep(50), false))
            s_on_committed(NULL, NULL, self);
        if (self->db_down && self->db_retry_at_ms > deadline - 100)
            self->db_retry_at_ms = deadline - 100; /* a last try before the end */
        sq_server_kick(self);                      /* the retry, once its backoff has passed */
    }
    zpoller_destroy(&poller);
    int rc = 0;
    if (self->writer_busy || s_unwritten(self)) {
        char jobs[256] = "";
        size_t len = 0, dones = 0, cancels = 0;
        const sq_batch_t *left[2] = {self->retry, self->pending};
        if (self->writer_busy) {
            size_t n = self->inflight_cancels;
            len = s_list_cancels(self->inflight_cancel_ids,
                                 n < SQ_SERVER_INFLIGHT_IDS ? n : SQ_SERVER_INFLIGHT_IDS, jobs,
                                 sizeof jobs, len);
            dones += self->inflight_dones;
            cancels += self->inflight_cancels;
        }
        for (int i = 0; i < 2; i++)
            if (left[i]) {
                len = s_list_cancels(left[i]->cancel_ids, left[i]->n_cancel, jobs, sizeof jobs,
                                     len);
                dones += left[i]->n_dones;
                cancels += left[i]->n_cancel;
            }
        SQ_ERROR("shutting down with rows not committed: they are lost", "in_flight=%d "
                 "results=%zu cancellations=%zu cancelled_jobs=%s last_error=%s",
                 self->writer_busy, dones, cancels, jobs[0] ? jobs : "-",
                 sq_q(self->retry ? self->retry->error : "none"));
        rc = SQ_FAIL(SQ_EDBDOWN, "shut down with rows not committed (the database was away)");
    }
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        sq_wire_enc_t *e = self->enc;
        sq_wire_enc_reset(e);
        sq_wire_map(e, 1);
        sq_wire_kv_str(e, "reason", "broker shutting down");
        sq_wire_send(zsock_resolve(self->workers), g->identity, SQ_WIRE_DISCONNECT, e);
    }
    return rc;
}

int sq_server_run(sq_server_t *self)
{
    /* the sockets first: a taken port or a bad endpoint fails at once,
     * before the database is read (what connects meanwhile waits in the
     * sockets until the loop runs) */
    if (!(self->clients = s_bind("--listen", self->opts.listen)) ||
        !(self->workers = s_bind("--workers", self->opts.workers)))
        return sq_error_code();
    int rc = s_rebuild(self);
    if (rc)
        return rc;
    self->store = sq_store_new(self->opts.db);
    self->loop = zloop_new();
    if (!self->store || !self->loop)
        return SQ_FAIL(SQ_ENOMEM, "start: out of memory");
    if (!(self->lora = sq_lora_new(self->opts.db, self->opts.adapters_dir)))
        return sq_error_code();
    if (self->opts.metrics_port > 0 &&
        !(self->metrics = sq_metrics_http_new(NULL, self->opts.metrics_port)))
        return sq_error_code() ? sq_error_code() : SQ_EIO;
    zloop_reader(self->loop, self->clients, sq_server_on_client, self);
    zloop_reader(self->loop, self->workers, sq_server_on_worker, self);
    zloop_reader(self->loop, zactor_sock(sq_store_writer(self->store)), s_on_committed, self);
    zloop_reader(self->loop, zactor_sock(sq_store_reader(self->store)), sq_server_on_read, self);
    zloop_reader(self->loop, sq_lora_sock(self->lora), s_on_lora, self);
    if (self->metrics) {
        zmq_pollitem_t item = {NULL, sq_metrics_http_fd(self->metrics), ZMQ_POLLIN, 0};
        zloop_poller(self->loop, &item, s_on_scrape, self);
    }
    int tick = self->opts.heartbeat_ms / 4;
    zloop_timer(self->loop, (size_t)(tick < 10 ? 10 : tick > 100 ? 100 : tick), 0, s_on_tick,
                self);
    SQ_INFO("broker ready", "clients=%s workers=%s", self->opts.listen, self->opts.workers);
    sq_server_kick(self); /* rows from the rebuild (finished cancels) */
    zloop_start(self->loop);
    SQ_INFO("shutting down", "pending_writes=%d", !sq_batch_empty(self->pending));
    self->stopping = true;
    /* czmq's poll helpers give up at once while the interrupt flag is set;
     * the drain below must still hear from the writer */
    zsys_interrupted = 0;
    zloop_reader_end(self->loop, self->clients);
    zloop_reader_end(self->loop, self->workers);
    return s_drain(self);
}
