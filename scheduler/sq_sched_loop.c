/*  sq_sched_loop: one tick = observe (broker STATS/WORKERS, actuator
 *  counts), decide (sq_decide per pool), act (actuator), record
 *  (scaling_events + audit_log). Records that cannot be written while the
 *  database is down wait in a bounded in-memory queue and are written, in
 *  order, once it is back.
 *  Main-program code: it logs (sq_log), libraries below it do not.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_loop.h"

#include "sq_client.h"
#include "sq_decide.h"
#include "sq_error.h"
#include "sq_log.h"
#include "sq_sched_db.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_PENDING_MAX 1024

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
} s_pending_t;

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
};

/* The current error detail quoted for a logfmt value (messages from the
 * API server or PostgreSQL carry quotes of their own). */
static const char *
s_err_q(char *buf, unsigned size)
{
    return sq_log_quote(sq_error_detail(), buf, size);
}

int64_t
sq_loop_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static sq_actuator_t *
s_actuator_new(sq_loop_opts_t *o)
{
    if (strcmp(o->actuator, "kubernetes") == 0)
        return sq_actuator_kube_new(&o->kube);
    o->local.mpirun_args = o->mpirun_args;
    return sq_actuator_local_new(&o->local);
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
             sq_db_connect(o->db, 10000, &self->db) == 0 &&
             sq_sched_db_store_policy(self->db, self->policy, o->policy_path,
                                      &self->policy_version) == 0 &&
             (self->client = sq_client_new(o->broker, &self->client_opts)) != NULL &&
             (self->act = s_actuator_new(&self->o)) != NULL;
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
    free(self);
    *self_p = NULL;
}

int
sq_loop_reload(sq_loop_t *self)
{
    sq_policy_t *next = sq_policy_load(self->o.policy_path);
    int64_t version = 0;
    if (!next) {
        self->reloads_refused++;
        char q[512];
        SQ_WARN("policy refused, keeping the running one", "version=%lld error=%s",
                (long long)self->policy_version, sq_log_quote(sq_error_detail(), q, sizeof q));
        return SQ_EINVAL;
    }
    /* Store first: a policy that is not recorded is not auditable, so it
     * does not run. */
    int rc = sq_sched_db_store_policy(self->db, next, self->o.policy_path, &version);
    s_pool_t *pools = rc ? NULL : s_pools_for(next, self->pools, self->policy->n_pools);
    if (!pools) {
        self->reloads_refused++;
        char q[512];
        SQ_WARN("policy not stored, keeping the running one", "error=%s", s_err_q(q, sizeof q));
        sq_policy_destroy(&next);
        if (rc == SQ_EDBDOWN)
            sq_db_reconnect(self->db);
        return rc ? rc : SQ_ENOMEM;
    }
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

/* Write queued events oldest first; stop at the first failure. */
static void
s_flush(sq_loop_t *self)
{
    while (self->n_pend) {
        s_pending_t *ev = &self->pending[self->pend_head];
        sq_scaling_event_t row = {ev->pool, &ev->d, &ev->m, ev->version, self->act->ops->name,
                                  ev->applied, ev->applied ? NULL : ev->error};
        int rc = sq_sched_db_record(self->db, &row, NULL);
        if (rc) {
            self->db_errors++;
            char q[512];
            SQ_WARN("scaling event not recorded yet", "queued=%zu error=%s", self->n_pend,
                    s_err_q(q, sizeof q));
            if (rc == SQ_EDBDOWN)
                sq_db_reconnect(self->db);
            return;
        }
        self->pend_head = (self->pend_head + 1) % S_PENDING_MAX;
        self->n_pend--;
    }
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

static void
s_apply(sq_loop_t *self, s_pool_t *ps, const sq_pool_policy_t *p, int64_t now)
{
    const sq_decision_t *d = &ps->d;
    s_pending_t ev = {.d = *d, .m = ps->m, .version = self->policy_version};
    snprintf(ev.pool, sizeof ev.pool, "%s", p->name);
    int rc = sq_actuator_set(self->act, p, d->desired, now);
    char q[320];
    sq_log_quote(d->reason, q, sizeof q);
    if (rc == 0) {
        ev.applied = 1;
        ps->backoff_ms = 0;
        sq_decider_applied(ps->decider, d->current, d->desired, now);
        *(d->desired > d->current ? &ps->ups : &ps->downs) += 1;
        SQ_INFO("scaled", "pool=%s from=%d to=%d reason=%s", p->name, d->current, d->desired, q);
    } else {
        /* Retry with backoff (1 s doubling to 60 s), so that a launcher
         * that cannot start does not write an event every tick. */
        ps->failures++;
        ps->backoff_ms = ps->backoff_ms ? ps->backoff_ms * 2 : 1000;
        ps->backoff_ms = ps->backoff_ms > 60000 ? 60000 : ps->backoff_ms;
        ps->retry_at_ms = now + ps->backoff_ms;
        snprintf(ev.error, sizeof ev.error, "%s", sq_error_detail());
        char eq[512];
        SQ_WARN("actuator failed", "pool=%s from=%d to=%d error=%s reason=%s", p->name,
                d->current, d->desired, s_err_q(eq, sizeof eq), q);
    }
    s_pending_push(self, &ev);
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
    sq_actuator_poll(self->act, now);
    s_flush(self);
    self->ticks++;
    self->tick_cpu_s += s_cpu_s() - cpu0;
}

/* --- metrics ----------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t size, len;
} s_out_t;

static void
s_put(s_out_t *o, const char *fmt, ...)
{
    if (o->len >= o->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    o->len = n < 0 ? o->len : o->len + (size_t)n > o->size ? o->size : o->len + (size_t)n;
}

static void
s_family(s_out_t *o, const char *name, const char *type, const char *help)
{
    s_put(o, "# HELP shardq_scheduler_%s %s\n# TYPE shardq_scheduler_%s %s\n", name, help, name,
          type);
}

static void
s_pool_metrics(const sq_loop_t *self, s_out_t *o)
{
    size_t n = self->policy->n_pools;
    s_family(o, "pool_queued", "gauge", "Tasks queued in the pool (broker STATS).");
    for (size_t i = 0; i < n; i++)
        s_put(o, "shardq_scheduler_pool_queued{pool=\"%s\"} %lld\n", self->pools[i].name,
              (long long)self->pools[i].m.queued);
    s_family(o, "pool_oldest_queued_age_seconds", "gauge", "Age of the oldest queued task.");
    for (size_t i = 0; i < n; i++)
        s_put(o, "shardq_scheduler_pool_oldest_queued_age_seconds{pool=\"%s\"} %.3f\n",
              self->pools[i].name, self->pools[i].m.oldest_age_s);
    s_family(o, "pool_groups", "gauge", "Worker groups by state.");
    for (size_t i = 0; i < n; i++) {
        const sq_pool_metrics_t *m = &self->pools[i].m;
        const char *nm = self->pools[i].name;
        s_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"busy\"} %d\n", nm, m->busy);
        s_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"idle\"} %d\n", nm, m->idle);
        s_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"starting\"} %d\n", nm,
              m->starting);
        s_put(o, "shardq_scheduler_pool_groups{pool=\"%s\",state=\"draining\"} %d\n", nm,
              m->draining);
    }
    s_family(o, "pool_desired_groups", "gauge", "Groups the last decision asked for.");
    for (size_t i = 0; i < n; i++)
        s_put(o, "shardq_scheduler_pool_desired_groups{pool=\"%s\"} %d\n", self->pools[i].name,
              self->pools[i].d.desired);
    s_family(o, "decisions_total", "counter", "Applied decisions that changed a count.");
    for (size_t i = 0; i < n; i++) {
        s_put(o, "shardq_scheduler_decisions_total{pool=\"%s\",direction=\"up\"} %llu\n",
              self->pools[i].name, (unsigned long long)self->pools[i].ups);
        s_put(o, "shardq_scheduler_decisions_total{pool=\"%s\",direction=\"down\"} %llu\n",
              self->pools[i].name, (unsigned long long)self->pools[i].downs);
    }
    s_family(o, "actuator_failures_total", "counter", "Actuator calls that failed.");
    for (size_t i = 0; i < n; i++)
        s_put(o, "shardq_scheduler_actuator_failures_total{pool=\"%s\"} %llu\n",
              self->pools[i].name, (unsigned long long)self->pools[i].failures);
}

size_t
sq_loop_render_metrics(void *arg, char *buf, size_t size)
{
    const sq_loop_t *self = arg;
    s_out_t o = {buf, size, 0};
    s_pool_metrics(self, &o);
    s_family(&o, "ticks_total", "counter", "Control-loop ticks.");
    s_put(&o, "shardq_scheduler_ticks_total %llu\n", (unsigned long long)self->ticks);
    s_family(&o, "tick_cpu_seconds_total", "counter", "CPU time spent in ticks.");
    s_put(&o, "shardq_scheduler_tick_cpu_seconds_total %.6f\n", self->tick_cpu_s);
    s_family(&o, "stats_errors_total", "counter", "Ticks without broker STATS.");
    s_put(&o, "shardq_scheduler_stats_errors_total %llu\n", (unsigned long long)self->stats_errors);
    s_family(&o, "db_errors_total", "counter", "Failed scaling_events writes (retried).");
    s_put(&o, "shardq_scheduler_db_errors_total %llu\n", (unsigned long long)self->db_errors);
    s_family(&o, "events_pending", "gauge", "Scaling events waiting for the database.");
    s_put(&o, "shardq_scheduler_events_pending %zu\n", self->n_pend);
    s_family(&o, "events_dropped_total", "counter", "Events lost: queue full while the database was down.");
    s_put(&o, "shardq_scheduler_events_dropped_total %llu\n", (unsigned long long)self->dropped);
    s_family(&o, "policy_version", "gauge", "Version (policies.version) of the running policy.");
    s_put(&o, "shardq_scheduler_policy_version %lld\n", (long long)self->policy_version);
    s_family(&o, "policy_reloads_total", "counter", "SIGHUP reloads by result.");
    s_put(&o, "shardq_scheduler_policy_reloads_total{result=\"ok\"} %llu\n",
          (unsigned long long)self->reloads_ok);
    s_put(&o, "shardq_scheduler_policy_reloads_total{result=\"refused\"} %llu\n",
          (unsigned long long)self->reloads_refused);
    return o.len;
}
