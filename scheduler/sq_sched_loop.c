/*  sq_sched_loop: one tick = observe (broker STATS/WORKERS, actuator
 *  counts), decide (sq_decide per pool), act (actuator), record
 *  (scaling_events + audit_log). Records that cannot be written while the
 *  database is down wait in a bounded in-memory queue and are written, in
 *  order, once it is back. Every wait on the database is bounded (a server
 *  that accepts connections and never answers must not stop the loop), and
 *  a row the database refuses is dropped after a few tries, so that it
 *  cannot hold back the rows behind it.
 *  Main-program code: it logs (sq_log), libraries below it do not.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_loop.h"

#include "sq_client.h"
#include "sq_clock.h"
#include "sq_decide.h"
#include "sq_error.h"
#include "sq_log.h"
#include "sq_metrics_http.h"
#include "sq_sched_db.h"
#include "sq_utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_PENDING_MAX 1024
/* Each wait on PostgreSQL (connect, one statement) at most this long. */
#define S_DB_WAIT_MS 2000
/* A row refused this many times while the database is up is dropped. */
#define S_REFUSALS_MAX 3

typedef struct {
    char name[64];
    sq_decider_t *decider;
    sq_pool_metrics_t m;
    sq_decision_t d;
    uint64_t ups, downs, failures;
    int64_t retry_at_ms, backoff_ms; /* after a failed actuator call */
    int counts_failing;              /* log the first failure and the recovery only */
} s_pool_t;

typedef struct {
    char pool[64], error[256];
    sq_decision_t d;
    sq_pool_metrics_t m;
    int64_t version;
    int applied;
    int refusals;               /* times the database refused this row */
    char key[96];               /* scaling_events.event_key: this scheduler, this event */
} s_pending_t;

/* A pool that a reload removed: its groups are scaled to 0, then it is
 * forgotten. */
typedef struct {
    sq_pool_policy_t policy;    /* a copy without windows: what the actuator reads */
    sq_pool_metrics_t m;        /* as last seen */
    int64_t retry_at_ms, backoff_ms;
} s_retiring_t;

struct sq_loop_t {
    sq_loop_opts_t o;
    sq_policy_t *policy;
    int64_t policy_version;
    s_pool_t *pools;            /* (policy->n_pools) */
    sq_actuator_t *act;
    sq_client_t *client;
    sq_client_opts_t client_opts;
    sq_db_t *db;
    int64_t clock_offset_ms;
    uint64_t ticks, stats_errors, db_errors, reloads_ok, reloads_refused, dropped;
    double tick_cpu_s;
    int stats_ok;
    s_pending_t *pending;       /* ring of unrecorded events */
    size_t pend_head, n_pend;
    uint64_t refused;           /* rows the database refused, dropped */
    int64_t db_retry_at_ms, db_backoff_ms; /* while the database is away (monotonic) */
    s_retiring_t *retiring;     /* (n_retiring) pools removed by a reload */
    size_t n_retiring;
    char instance[64];          /* host:pid:start (ms): the prefix of event keys */
    uint64_t n_events;
};

/* The current error detail quoted for a logfmt value (messages from the
 * API server or PostgreSQL carry quotes of their own). */
static const char *
s_err_q(char *buf, unsigned size)
{
    return sq_log_quote(sq_error_detail(), buf, size);
}

static int64_t
s_now_ms(const sq_loop_t *self)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + self->clock_offset_ms;
}

static double
s_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
sq_loop_opts_default(sq_loop_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->actuator = "local";
    o->tick_ms = 1000;
    o->local.grace_ms = -1; /* the actuator's default; 0 is "at once" */
}

/* Text for a database row: what is not UTF-8 replaced (PostgreSQL refuses
 * the whole row over one bad byte), cut to fit on a character boundary. */
static void
s_row_text(char *dst, size_t size, const char *src)
{
    size_t n;
    char *clean = sq_utf8_sanitize(src, strlen(src), &n);
    sq_utf8_fit(dst, size, snprintf(dst, size, "%s", clean ? clean : src));
    free(clean);
}

static void
s_backoff(int64_t *backoff_ms, int64_t *retry_at_ms, int64_t now, int64_t max_ms)
{
    *backoff_ms = *backoff_ms ? *backoff_ms * 2 : 1000;
    *backoff_ms = *backoff_ms > max_ms ? max_ms : *backoff_ms;
    *retry_at_ms = now + *backoff_ms;
}

/* New pool states for `policy`, moving deciders over from `old` by pool
 * name so a reload keeps each pool's stabilisation history. */
static s_pool_t *
s_pools_for(const sq_policy_t *policy, s_pool_t *old, size_t n_old)
{
    s_pool_t *pools = calloc(policy->n_pools, sizeof *pools);
    for (size_t i = 0; pools && i < policy->n_pools; i++) {
        snprintf(pools[i].name, sizeof pools[i].name, "%s", policy->pools[i].name);
        for (size_t j = 0; j < n_old && !pools[i].decider; j++)
            if (old[j].decider && strcmp(old[j].name, pools[i].name) == 0) {
                pools[i] = old[j];
                old[j].decider = NULL;
            }
        if (!pools[i].decider && !(pools[i].decider = sq_decider_new())) {
            for (size_t k = 0; k <= i; k++)
                sq_decider_destroy(&pools[k].decider);
            free(pools);
            return NULL;
        }
    }
    return pools;
}

static void
s_pools_free(s_pool_t *pools, size_t n)
{
    for (size_t i = 0; pools && i < n; i++)
        sq_decider_destroy(&pools[i].decider);
    free(pools);
}

/* A group that died on its own is replaced by the next decision; one that
 * dies at once (a worker refusing its flags) is replaced again and again,
 * and only this line shows it. */
static void
s_on_group_exit(void *arg, const sq_group_exit_t *ex)
{
    (void)arg;
    char how[32];
    if (ex->status >= 0 && WIFEXITED(ex->status))
        snprintf(how, sizeof how, "exit %d", WEXITSTATUS(ex->status));
    else if (ex->status >= 0 && WIFSIGNALED(ex->status))
        snprintf(how, sizeof how, "signal %d", WTERMSIG(ex->status));
    else
        snprintf(how, sizeof how, "unknown");
    SQ_WARN("group exited on its own", "group=%s pool=%s status=\"%s\" ran_s=%.1f was_ready=%d",
            ex->group_id, ex->pool, how, ex->ran_s, ex->was_ready);
}

static sq_actuator_t *
s_actuator_new(sq_loop_opts_t *o)
{
    if (strcmp(o->actuator, "kubernetes") == 0)
        return sq_actuator_kube_new(&o->kube);
    o->local.mpirun_args = o->mpirun_args;
    o->local.on_exit = s_on_group_exit;
    return sq_actuator_local_new(&o->local);
}

static int
s_check_flags(void *act, const sq_pool_policy_t *pool)
{
    return sq_actuator_local_check_flags(act, pool);
}

/* A policy whose worker.flags shardq-worker refuses would start groups
 * that exit at once, again at every decision: the worker's own parse
 * decides, before the policy is stored or used. Only the local actuator
 * runs workers with these flags (kubernetes pods take the chart's: a
 * policy that gives some is told it). */
static int
s_policy_check(const sq_loop_t *self, const sq_policy_t *policy)
{
    if (strcmp(self->o.actuator, "local") == 0)
        return sq_policy_check_flags(policy, s_check_flags, self->act);
    for (size_t i = 0; i < policy->n_pools; i++)
        if (policy->pools[i].worker.flags[0])
            SQ_WARN("worker.flags not applied", "pool=%s actuator=%s reason=\"the pods take "
                    "the Helm chart's worker flags\"", policy->pools[i].name, self->o.actuator);
    return 0;
}

sq_loop_t *
sq_loop_new(const sq_loop_opts_t *o)
{
    sq_loop_t *self = calloc(1, sizeof *self);
    if (!self || !(self->pending = calloc(S_PENDING_MAX, sizeof *self->pending))) {
        free(self);
        SQ_FAIL(SQ_ENOMEM, "scheduler loop");
        return NULL;
    }
    self->o = *o;
    char host[40] = "host";
    gethostname(host, sizeof host - 1);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    snprintf(self->instance, sizeof self->instance, "%s:%d:%lld", host, (int)getpid(),
             (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
    /* A tick must not hang on a broker that is away: short deadlines and
     * a single retry (the next tick asks again anyway). */
    int64_t budget = o->tick_ms < 500 ? 500 : o->tick_ms > 5000 ? 5000 : o->tick_ms;
    self->client_opts = (sq_client_opts_t){.timeout_ms = (int)budget, .connect_timeout_ms = 1000,
                                           .retries = 1, .backoff_ms = 50};
    if (o->clock_start_s) {
        self->clock_offset_ms = 0;
        self->clock_offset_ms = o->clock_start_s * 1000 - s_now_ms(self);
    }
    int ok = (self->policy = sq_policy_load(o->policy_path)) != NULL &&
             (self->pools = s_pools_for(self->policy, NULL, 0)) != NULL &&
             (self->act = s_actuator_new(&self->o)) != NULL &&
             s_policy_check(self, self->policy) == 0 &&
             sq_db_connect_bounded(o->db, 10000, S_DB_WAIT_MS, &self->db) == 0 &&
             sq_sched_db_store_policy(self->db, self->policy, o->policy_path,
                                      &self->policy_version) == 0 &&
             (self->client = sq_client_new(o->broker, &self->client_opts)) != NULL;
    if (!ok) {
        sq_loop_destroy(&self);
        return NULL;
    }
    SQ_INFO("policy loaded", "path=%s version=%lld digest=%s pools=%zu", o->policy_path,
            (long long)self->policy_version, self->policy->digest, self->policy->n_pools);
    return self;
}

void
sq_loop_destroy(sq_loop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_loop_t *self = *self_p;
    sq_actuator_destroy(&self->act);
    sq_client_destroy(&self->client);
    sq_db_destroy(&self->db);
    if (self->policy)
        s_pools_free(self->pools, self->policy->n_pools);
    sq_policy_destroy(&self->policy);
    free(self->pending);
    free(self->retiring);
    free(self);
    *self_p = NULL;
}

/* Room for every running pool in the retiring list, so that
 * s_retire_vanished cannot fail once the new pools are built. */
static int
s_retiring_reserve(sq_loop_t *self)
{
    size_t n = self->n_retiring + self->policy->n_pools;
    s_retiring_t *grown = realloc(self->retiring, n * sizeof *grown);
    if (!grown)
        return SQ_FAIL(SQ_ENOMEM, "retiring pools");
    self->retiring = grown;
    return 0;
}

/* Keep, for retirement, the pools of the running policy that `next` does
 * not have; stop retiring those it has again. */
static void
s_retire_vanished(sq_loop_t *self, const sq_policy_t *next)
{
    for (size_t i = 0; i < self->n_retiring;)
        if (sq_policy_pool(next, self->retiring[i].policy.name))
            self->retiring[i] = self->retiring[--self->n_retiring];
        else
            i++;
    for (size_t i = 0; i < self->policy->n_pools; i++) {
        const sq_pool_policy_t *p = &self->policy->pools[i];
        if (sq_policy_pool(next, p->name))
            continue;
        s_retiring_t *r = &self->retiring[self->n_retiring++];
        memset(r, 0, sizeof *r);
        r->policy = *p;
        r->policy.windows = NULL; /* owned by the policy about to go */
        r->policy.n_windows = 0;
        r->m = self->pools[i].m;
    }
}

int
sq_loop_reload(sq_loop_t *self)
{
    sq_policy_t *next = sq_policy_load(self->o.policy_path);
    int64_t version = 0;
    if (!next || s_policy_check(self, next) != 0) {
        self->reloads_refused++;
        char q[512];
        SQ_WARN("policy refused, keeping the running one", "version=%lld error=%s",
                (long long)self->policy_version, sq_log_quote(sq_error_detail(), q, sizeof q));
        sq_policy_destroy(&next);
        return SQ_EINVAL;
    }
    /* Store first: a policy that is not recorded is not auditable, so it
     * does not run. */
    int rc = sq_db_is_up(self->db) ? 0 : sq_db_reconnect(self->db);
    if (rc == 0)
        rc = sq_sched_db_store_policy(self->db, next, self->o.policy_path, &version);
    if (rc == 0)
        rc = s_retiring_reserve(self);
    s_pool_t *pools = rc ? NULL : s_pools_for(next, self->pools, self->policy->n_pools);
    if (!pools) {
        self->reloads_refused++;
        char q[512];
        SQ_WARN("policy not stored, keeping the running one", "error=%s", s_err_q(q, sizeof q));
        sq_policy_destroy(&next);
        return rc ? rc : SQ_ENOMEM;
    }
    s_retire_vanished(self, next);
    s_pools_free(self->pools, self->policy->n_pools);
    sq_policy_destroy(&self->policy);
    self->policy = next;
    self->pools = pools;
    self->policy_version = version;
    self->reloads_ok++;
    SQ_INFO("policy reloaded", "version=%lld digest=%s pools=%zu", (long long)version,
            next->digest, next->n_pools);
    return 0;
}

/* --- recording --------------------------------------------------------- */

static void
s_pending_push(sq_loop_t *self, const s_pending_t *ev)
{
    if (self->n_pend == S_PENDING_MAX) {
        self->pend_head = (self->pend_head + 1) % S_PENDING_MAX;
        self->n_pend--;
        self->dropped++;
    }
    self->pending[(self->pend_head + self->n_pend++) % S_PENDING_MAX] = *ev;
}

/* A statement the server gave up on for now (cancelled by the statement
 * timeout, a deadlock or serialisation failure, no resources): try the
 * row again later. Any other error is the server refusing the row. */
static int
s_transient(const char *state)
{
    static const char *const classes[] = {"40", "53", "55", "57", "58", NULL};
    for (int i = 0; classes[i]; i++)
        if (strncmp(state, classes[i], 2) == 0)
            return 1;
    return 0;
}

static void
s_db_away(sq_loop_t *self)
{
    s_backoff(&self->db_backoff_ms, &self->db_retry_at_ms, sq_mono_ms(), 15000);
}

/* Write queued events oldest first; stop at the first failure. While the
 * database is away, try again with backoff (1 s doubling to 15 s), not at
 * every tick: each try may wait S_DB_WAIT_MS. A row refused
 * S_REFUSALS_MAX times while the database answers is logged whole and
 * dropped, so that one bad row cannot hold back every later one. */
static void
s_flush(sq_loop_t *self)
{
    if (!self->n_pend || sq_mono_ms() < self->db_retry_at_ms)
        return;
    char q[512];
    if (!sq_db_is_up(self->db) && sq_db_reconnect(self->db) != 0) {
        self->db_errors++;
        SQ_WARN("scaling events not recorded yet", "queued=%zu error=%s", self->n_pend,
                s_err_q(q, sizeof q));
        s_db_away(self);
        return;
    }
    while (self->n_pend) {
        s_pending_t *ev = &self->pending[self->pend_head];
        sq_scaling_event_t row = {ev->pool, &ev->d, &ev->m, ev->version, self->act->ops->name,
                                  ev->applied, ev->applied ? NULL : ev->error, ev->key};
        int rc = sq_sched_db_record(self->db, &row, NULL);
        if (rc) {
            self->db_errors++;
            int refused = rc == SQ_EDB && !s_transient(sq_db_sqlstate(self->db)) &&
                          ++ev->refusals >= S_REFUSALS_MAX;
            if (!refused) {
                SQ_WARN("scaling event not recorded yet", "queued=%zu error=%s", self->n_pend,
                        s_err_q(q, sizeof q));
                if (rc == SQ_EDBDOWN)
                    s_db_away(self);
                return;
            }
            char reason[320], error[320], json[512], metrics[600];
            sq_sched_metrics_json(&ev->m, json, sizeof json);
            SQ_ERROR("scaling event refused by the database, dropped",
                     "pool=%s from=%d to=%d applied=%d reason=%s actuator_error=%s metrics=%s "
                     "policy_version=%lld tries=%d error=%s",
                     ev->pool, ev->d.current, ev->d.desired, ev->applied,
                     sq_log_quote(ev->d.reason, reason, sizeof reason),
                     sq_log_quote(ev->error, error, sizeof error),
                     sq_log_quote(json, metrics, sizeof metrics), (long long)ev->version,
                     ev->refusals, s_err_q(q, sizeof q));
            self->refused++;
        }
        self->pend_head = (self->pend_head + 1) % S_PENDING_MAX;
        self->n_pend--;
    }
    self->db_backoff_ms = 0;
}

/* --- one tick ---------------------------------------------------------- */

/* The broker names a pool by the model its workers announce, which
 * shardq-worker takes from the file name of --model; match the policy
 * pool's name, its worker.model, or that file name. */
static const sq_client_pool_t *
s_find_stats(const sq_client_stats_t *st, const sq_pool_policy_t *p)
{
    const char *slash = strrchr(p->worker.model, '/');
    const char *base = slash ? slash + 1 : p->worker.model;
    for (size_t i = 0; i < st->n_pools; i++)
        if (strcmp(st->pools[i].model, p->name) == 0 ||
            strcmp(st->pools[i].model, p->worker.model) == 0 ||
            strcmp(st->pools[i].model, base) == 0)
            return &st->pools[i];
    return NULL;
}

/* Tell the local actuator which of its groups the broker knows. */
static void
s_mark_workers(sq_loop_t *self, int64_t now)
{
    sq_client_worker_t *w = NULL;
    size_t n = 0;
    if (strcmp(self->act->ops->name, "local") != 0 || sq_client_workers(self->client, &w, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        double startup = -1;
        if (sq_actuator_local_mark(self->act, w[i].group_id, 1, w[i].leases == 0, now,
                                   &startup) != 0 || startup < 0)
            continue;
        for (size_t j = 0; j < self->policy->n_pools; j++) {
            size_t len = strlen(self->pools[j].name);
            if (strncmp(w[i].group_id, self->pools[j].name, len) == 0 && w[i].group_id[len] == '-')
                sq_decider_note_startup(self->pools[j].decider, startup);
        }
        SQ_INFO("group ready", "group=%s startup_s=%.1f", w[i].group_id, startup);
    }
    free(w);
}

/* Metrics for pool p. The actuator's count of groups asked for (and not
 * being removed) is authoritative for "current": groups it asked for that
 * the broker does not see yet are starting; groups the broker still sees
 * beyond that count are being drained (idle ones first). Without this a
 * drained group still reported idle would look like a group to remove
 * again on the next tick. */
static int
s_observe(sq_loop_t *self, const sq_client_stats_t *st, const sq_pool_policy_t *p,
          sq_pool_metrics_t *m)
{
    const sq_client_pool_t *b = s_find_stats(st, p);
    sq_actuator_counts_t c;
    memset(m, 0, sizeof *m);
    int rc = sq_actuator_counts(self->act, p, &c);
    if (rc)
        return rc;
    if (b) {
        m->queued = (int64_t)b->queued;
        m->leased = (int64_t)b->leased;
        m->oldest_age_s = (double)b->oldest_queued_age_ms / 1000.0;
        m->busy = (int)b->busy;
        m->idle = (int)b->idle;
        m->draining = (int)b->draining;
        m->throughput = b->throughput_per_s;
    }
    m->commit_bound = st->dispatch_paused;
    int surplus = m->busy + m->idle - c.requested;
    if (surplus > 0) {
        int from_idle = surplus < m->idle ? surplus : m->idle;
        m->idle -= from_idle;
        m->busy -= surplus - from_idle;
        m->draining += surplus;
    }
    m->starting = c.requested - m->busy - m->idle;
    m->draining = m->draining > c.draining ? m->draining : c.draining;
    return 0;
}

/* Queue the record of one actuator call (rc: what it returned) and log it. */
static void
s_event(sq_loop_t *self, const char *pool, const sq_decision_t *d, const sq_pool_metrics_t *m,
        int rc)
{
    s_pending_t ev = {.d = *d, .m = *m, .version = self->policy_version, .applied = rc == 0};
    snprintf(ev.pool, sizeof ev.pool, "%s", pool);
    /* retried after a lost answer, the row is found by its key, not doubled */
    snprintf(ev.key, sizeof ev.key, "%s:%llu", self->instance,
             (unsigned long long)++self->n_events);
    char q[320];
    sq_log_quote(d->reason, q, sizeof q);
    if (rc == 0) {
        SQ_INFO("scaled", "pool=%s from=%d to=%d reason=%s", pool, d->current, d->desired, q);
    } else {
        s_row_text(ev.error, sizeof ev.error, sq_error_detail());
        char eq[512];
        SQ_WARN("actuator failed", "pool=%s from=%d to=%d error=%s reason=%s", pool, d->current,
                d->desired, s_err_q(eq, sizeof eq), q);
    }
    s_pending_push(self, &ev);
}

static void
s_apply(sq_loop_t *self, s_pool_t *ps, const sq_pool_policy_t *p, int64_t now)
{
    const sq_decision_t *d = &ps->d;
    int rc = sq_actuator_set(self->act, p, d->desired, now);
    if (rc == 0) {
        ps->backoff_ms = 0;
        sq_decider_applied(ps->decider, d->current, d->desired, now);
        *(d->desired > d->current ? &ps->ups : &ps->downs) += 1;
    } else {
        /* Retry with backoff (1 s doubling to 60 s), so that a launcher
         * that cannot start does not write an event every tick. */
        ps->failures++;
        s_backoff(&ps->backoff_ms, &ps->retry_at_ms, now, 60000);
    }
    s_event(self, p->name, d, &ps->m, rc);
}

/* Scale the pools a reload removed to 0, as any scale-down (an event is
 * recorded), then forget them; a failed call is retried with backoff. */
static void
s_retire(sq_loop_t *self, int64_t now)
{
    for (size_t i = 0; i < self->n_retiring;) {
        s_retiring_t *r = &self->retiring[i];
        sq_actuator_counts_t c;
        if (now < r->retry_at_ms) {
            i++;
            continue;
        }
        int rc = sq_actuator_counts(self->act, &r->policy, &c);
        if (rc == SQ_ENOTFOUND) {   /* nothing left of it (its StatefulSet deleted, say) */
            rc = 0;
            c.requested = 0;
        }
        if (rc == 0 && c.requested > 0) {
            sq_decision_t d = {.current = c.requested, .desired = 0};
            snprintf(d.reason, sizeof d.reason, "down (pool no longer in the policy) -> 0");
            rc = sq_actuator_set(self->act, &r->policy, 0, now);
            if (rc == SQ_ENOTFOUND)   /* gone meanwhile: retired all the same */
                rc = 0;
            s_event(self, r->policy.name, &d, &r->m, rc);
        } else if (rc) {
            char q[512];
            SQ_WARN("actuator counts failed for a removed pool", "pool=%s error=%s",
                    r->policy.name, s_err_q(q, sizeof q));
        }
        if (rc) {
            s_backoff(&r->backoff_ms, &r->retry_at_ms, now, 60000);
            i++;
            continue;
        }
        self->retiring[i] = self->retiring[--self->n_retiring];
    }
}

static void
s_decide_all(sq_loop_t *self, const sq_client_stats_t *st, int64_t now)
{
    for (size_t i = 0; i < self->policy->n_pools; i++) {
        const sq_pool_policy_t *p = &self->policy->pools[i];
        s_pool_t *ps = &self->pools[i];
        if (s_observe(self, st, p, &ps->m) != 0) {
            ps->failures++;
            char q[512];
            if (!ps->counts_failing++)
                SQ_WARN("actuator counts failed, not deciding", "pool=%s error=%s", p->name,
                        s_err_q(q, sizeof q));
            continue;
        }
        if (ps->counts_failing) {
            SQ_INFO("actuator counts back", "pool=%s failed_ticks=%d", p->name, ps->counts_failing);
            ps->counts_failing = 0;
        }
        if (sq_decide(ps->decider, p, &ps->m, now, &ps->d) != 0)
            continue;
        if (ps->d.desired != ps->d.current && now >= ps->retry_at_ms)
            s_apply(self, ps, p, now);
    }
}

void
sq_loop_tick(sq_loop_t *self)
{
    double cpu0 = s_cpu_s();
    int64_t now = s_now_ms(self);
    sq_client_stats_t st;
    memset(&st, 0, sizeof st);
    int rc = sq_client_stats(self->client, &st);
    if (rc) {
        /* No data, no decision: never scale on a broker we cannot see. */
        self->stats_errors++;
        char q[512];
        if (self->stats_ok || self->ticks == 0)
            SQ_WARN("broker stats unavailable", "error=%s", s_err_q(q, sizeof q));
        self->stats_ok = 0;
    } else {
        if (!self->stats_ok && self->ticks > 0)
            SQ_INFO("broker stats back", NULL);
        self->stats_ok = 1;
        s_mark_workers(self, now);
        s_decide_all(self, &st, now);
        sq_client_stats_clear(&st);
    }
    s_retire(self, now); /* needs no broker data: the count to reach is 0 */
    sq_actuator_poll(self->act, now);
    s_flush(self);
    self->ticks++;
    self->tick_cpu_s += s_cpu_s() - cpu0;
}

/* --- metrics ----------------------------------------------------------- */

static void
s_family(sq_metrics_text_t *o, const char *name, const char *type, const char *help)
{
    sq_metrics_text_put(o, "# HELP shardq_scheduler_%s %s\n# TYPE shardq_scheduler_%s %s\n", name,
                        help, name, type);
}

static void
s_pool_metrics(const sq_loop_t *self, sq_metrics_text_t *o)
{
    size_t n = self->policy->n_pools;
    s_family(o, "pool_queued", "gauge", "Tasks queued in the pool (broker STATS).");
    for (size_t i = 0; i < n; i++)
        sq_metrics_text_put(o, "shardq_scheduler_pool_queued{pool=\"%s\"} %lld\n",
                            self->pools[i].name, (long long)self->pools[i].m.queued);
    s_family(o, "pool_oldest_queued_age_seconds", "gauge", "Age of the oldest queued task.");
    for (size_t i = 0; i < n; i++)
        sq_metrics_text_put(o,
                            "shardq_scheduler_pool_oldest_queued_age_seconds{pool=\"%s\"} %.3f\n",
                            self->pools[i].name, self->pools[i].m.oldest_age_s);
    s_family(o, "pool_groups", "gauge", "Worker groups by state.");
    for (size_t i = 0; i < n; i++) {
        const sq_pool_metrics_t *m = &self->pools[i].m;
        const char *nm = self->pools[i].name;
        sq_metrics_text_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"busy\"} %d\n", nm,
                            m->busy);
        sq_metrics_text_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"idle\"} %d\n", nm,
                            m->idle);
        sq_metrics_text_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"starting\"} %d\n",
                            nm, m->starting);
        sq_metrics_text_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"draining\"} %d\n",
                            nm, m->draining);
    }
    s_family(o, "pool_desired_groups", "gauge", "Groups the last decision asked for.");
    for (size_t i = 0; i < n; i++)
        sq_metrics_text_put(o, "shardq_scheduler_pool_desired_groups{pool=\"%s\"} %d\n",
                            self->pools[i].name, self->pools[i].d.desired);
    s_family(o, "decisions_total", "counter", "Applied decisions that changed a count.");
    for (size_t i = 0; i < n; i++) {
        sq_metrics_text_put(o,
                            "shardq_scheduler_decisions_total{pool=\"%s\",direction=\"up\"} %llu\n",
                            self->pools[i].name, (unsigned long long)self->pools[i].ups);
        sq_metrics_text_put(
            o, "shardq_scheduler_decisions_total{pool=\"%s\",direction=\"down\"} %llu\n",
            self->pools[i].name, (unsigned long long)self->pools[i].downs);
    }
    s_family(o, "actuator_failures_total", "counter", "Actuator calls that failed.");
    for (size_t i = 0; i < n; i++)
        sq_metrics_text_put(o, "shardq_scheduler_actuator_failures_total{pool=\"%s\"} %llu\n",
                            self->pools[i].name, (unsigned long long)self->pools[i].failures);
}

size_t
sq_loop_render_metrics(void *arg, char *buf, size_t size)
{
    const sq_loop_t *self = arg;
    sq_metrics_text_t o = {buf, size, 0};
    s_pool_metrics(self, &o);
    s_family(&o, "ticks_total", "counter", "Control-loop ticks.");
    sq_metrics_text_put(&o, "shardq_scheduler_ticks_total %llu\n", (unsigned long long)self->ticks);
    s_family(&o, "tick_cpu_seconds_total", "counter", "CPU time spent in ticks.");
    sq_metrics_text_put(&o, "shardq_scheduler_tick_cpu_seconds_total %.6f\n", self->tick_cpu_s);
    s_family(&o, "stats_errors_total", "counter", "Ticks without broker STATS.");
    sq_metrics_text_put(&o, "shardq_scheduler_stats_errors_total %llu\n",
                        (unsigned long long)self->stats_errors);
    s_family(&o, "db_errors_total", "counter", "Failed scaling_events writes (retried).");
    sq_metrics_text_put(&o, "shardq_scheduler_db_errors_total %llu\n",
                        (unsigned long long)self->db_errors);
    s_family(&o, "events_pending", "gauge", "Scaling events waiting for the database.");
    sq_metrics_text_put(&o, "shardq_scheduler_events_pending %zu\n", self->n_pend);
    s_family(&o, "events_dropped_total", "counter", "Events lost: queue full while the database was down.");
    sq_metrics_text_put(&o, "shardq_scheduler_events_dropped_total %llu\n",
                        (unsigned long long)self->dropped);
    s_family(&o, "events_refused_total", "counter",
             "Events the database refused 3 times (logged whole, then dropped).");
    sq_metrics_text_put(&o, "shardq_scheduler_events_refused_total %llu\n",
                        (unsigned long long)self->refused);
    s_family(&o, "policy_version", "gauge", "Version (policies.version) of the running policy.");
    sq_metrics_text_put(&o, "shardq_scheduler_policy_version %lld\n",
                        (long long)self->policy_version);
    s_family(&o, "policy_reloads_total", "counter", "SIGHUP reloads by result.");
    sq_metrics_text_put(&o, "shardq_scheduler_policy_reloads_total{result=\"ok\"} %llu\n",
                        (unsigned long long)self->reloads_ok);
    sq_metrics_text_put(&o, "shardq_scheduler_policy_reloads_total{result=\"refused\"} %llu\n",
                        (unsigned long long)self->reloads_refused);
    return o.len;
}
