/*  sq_sim: trace loading and the simulation loop for `shardq-scheduler
 *  simulate` and the scheduler benchmark. The loop owns one decider per
 *  pool, exactly as the control loop does, so what is simulated is the
 *  code that runs.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sim.h"

#include "sq_error.h"
#include "sq_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A load trace is a CSV of a few rows a minute; this bounds one read. */
#define S_MAX_TRACE_BYTES ((size_t)256 << 20)

typedef struct {
    char name[64];
    int lineno;             /* of its first row: a pool the policy lacks is refused there */
    double *t, *n, *end;    /* (n_rows) start, arrivals, end of each row */
    size_t n_rows, cap;
} s_series_t;

struct sq_trace_t {
    char *origin;           /* the file, for refusals after the parse (owned) */
    int64_t start_utc;
    s_series_t *series;
    size_t n_series;
    double end_s;
};

static s_series_t *
s_series(sq_trace_t *self, const char *name, int lineno)
{
    for (size_t i = 0; i < self->n_series; i++)
        if (strcmp(self->series[i].name, name) == 0)
            return &self->series[i];
    s_series_t *grown = realloc(self->series, (self->n_series + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    self->series = grown;
    s_series_t *s = &grown[self->n_series++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->lineno = lineno;
    return s;
}

static int
s_append(s_series_t *s, double t, double n)
{
    if (s->n_rows == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *a = realloc(s->t, cap * sizeof *a);
        if (a)
            s->t = a;
        double *b = a ? realloc(s->n, cap * sizeof *b) : NULL;
        if (b)
            s->n = b;
        double *c = b ? realloc(s->end, cap * sizeof *c) : NULL;
        if (!c)
            return SQ_FAIL(SQ_ENOMEM, "trace rows");
        s->end = c;
        s->cap = cap;
    }
    s->t[s->n_rows] = t;
    s->n[s->n_rows++] = n;
    return 0;
}

/* One data line "t_s,pool,arrivals". */
static int
s_line(sq_trace_t *self, const char *origin, int lineno, char *line, double *last_t)
{
    char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    if (!c2)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: expected t_s,pool,arrivals", origin, lineno);
    *c1 = *c2 = '\0';
    char *e1, *e2;
    double t = strtod(line, &e1), n = strtod(c2 + 1, &e2);
    while (*e2 == ' ' || *e2 == '\r')
        e2++;
    if (e1 == line || *e1 || !isfinite(t) || t < 0)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: t_s: not a non-negative number", origin, lineno);
    if (t > SQ_SIM_MAX_TRACE_S)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: t_s: %g is past one year (%d s), the longest trace",
                       origin, lineno, t, SQ_SIM_MAX_TRACE_S);
    if (e2 == c2 + 1 || *e2 || !isfinite(n) || n < 0)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: arrivals: not a non-negative number", origin, lineno);
    if (t < *last_t)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: t_s: rows must be in time order", origin, lineno);
    if (!c1[1] || strlen(c1 + 1) >= 64)
        return SQ_FAIL(SQ_EFORMAT, "%s:%d: pool: missing or too long", origin, lineno);
    *last_t = t;
    s_series_t *s = s_series(self, c1 + 1, lineno);
    if (!s)
        return SQ_FAIL(SQ_ENOMEM, "trace");
    return s_append(s, t, n);
}

/* Row ends: the next row of the pool, or the last interval repeated. */
static void
s_close(sq_trace_t *self)
{
    for (size_t i = 0; i < self->n_series; i++) {
        s_series_t *s = &self->series[i];
        for (size_t r = 0; r < s->n_rows; r++) {
            double len = r + 1 < s->n_rows ? s->t[r + 1] - s->t[r]
                         : r > 0            ? s->t[r] - s->t[r - 1]
                                            : 1.0;
            s->end[r] = s->t[r] + (len > 0 ? len : 1.0);
            self->end_s = s->end[r] > self->end_s ? s->end[r] : self->end_s;
        }
    }
}

/* A comment line: "# start=ISO" sets the wall time of t_s = 0. */
static int
s_comment(sq_trace_t *self, const char *origin, int lineno, const char *line)
{
    const char *st = strstr(line, "start=");
    if (!st || sq_time_parse_iso(st + 6, &self->start_utc) == 0)
        return 0;
    return SQ_FAIL(SQ_EFORMAT, "%s:%d: start=: %s", origin, lineno, sq_error_detail());
}

sq_trace_t *
sq_trace_parse(const char *text, const char *origin)
{
    sq_trace_t *self = calloc(1, sizeof *self);
    char *copy = strdup(text);
    if (self)
        self->origin = strdup(origin);
    int rc = self && self->origin && copy ? 0 : SQ_FAIL(SQ_ENOMEM, "trace"), lineno = 0,
        header = 0;
    double last_t = 0;
    /* Line by line, blank ones included: errors name the line an editor shows. */
    for (char *line = copy, *next; !rc && line && *line; line = next) {
        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[strspn(line, " \t\r")] == '\0')
            continue;
        if (line[0] == '#') {
            rc = s_comment(self, origin, lineno, line);
        } else if (!header) {
            header = 1;
            if (strncmp(line, "t_s,pool,arrivals", 17) != 0)
                rc = SQ_FAIL(SQ_EFORMAT, "%s:%d: expected header t_s,pool,arrivals", origin,
                             lineno);
        } else {
            rc = s_line(self, origin, lineno, line, &last_t);
        }
    }
    if (!rc && self->n_series == 0)
        rc = SQ_FAIL(SQ_EFORMAT, "%s: no data rows", origin);
    free(copy);
    if (rc) {
        sq_trace_destroy(&self);
        return NULL;
    }
    s_close(self);
    return self;
}

sq_trace_t *
sq_trace_load(const char *path)
{
    char *buf = NULL;
    size_t n = 0;
    sq_trace_t *self = NULL;
    if (sq_file_read(path, S_MAX_TRACE_BYTES, &buf, &n) == 0)
        self = sq_trace_parse(buf, path);
    free(buf);
    return self;
}

void
sq_trace_destroy(sq_trace_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_trace_t *self = *self_p;
    for (size_t i = 0; i < self->n_series; i++) {
        free(self->series[i].t);
        free(self->series[i].n);
        free(self->series[i].end);
    }
    free(self->series);
    free(self->origin);
    free(self);
    *self_p = NULL;
}

int64_t
sq_trace_start(const sq_trace_t *self)
{
    return self->start_utc;
}

int
sq_trace_check(const sq_trace_t *self, const sq_policy_t *policy)
{
    for (size_t i = 0; i < self->n_series; i++)
        if (!sq_policy_pool(policy, self->series[i].name))
            return SQ_FAIL(SQ_EINVAL, "%s:%d: pool: \"%s\" is not in the policy", self->origin,
                           self->series[i].lineno, self->series[i].name);
    return 0;
}

void
sq_sim_opts_default(sq_sim_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->startup_s = 30;
    opts->service_s = 8;
    opts->tick_ms = 1000;
}

/* --- the model ------------------------------------------------------- */

typedef struct {
    sq_pool_policy_t policy;    /* the pool's policy, or its HPA baseline */
    const s_series_t *series;   /* NULL: no load for this pool */
    size_t row;                 /* first row that may still overlap */
    sq_decider_t *decider;
    double *ready_at;           /* (n_groups) trace time each group is ready */
    int n_groups, cap_groups;
    double queued, in_flight;
    int last_dir;
    int64_t next_sync_ms;       /* HPA baseline: trace ms of the next decision */
    sq_sim_summary_t sum;
} s_pool_t;

/* Arrivals of the pool's series within [a, b). */
static double
s_arrivals(s_pool_t *p, double a, double b)
{
    const s_series_t *s = p->series;
    double total = 0;
    if (!s)
        return 0;
    while (p->row < s->n_rows && s->end[p->row] <= a)
        p->row++;
    for (size_t r = p->row; r < s->n_rows && s->t[r] < b; r++) {
        double lo = s->t[r] > a ? s->t[r] : a, hi = s->end[r] < b ? s->end[r] : b;
        if (hi > lo)
            total += s->n[r] * (hi - lo) / (s->end[r] - s->t[r]);
    }
    return total;
}

static int
s_resize(s_pool_t *p, int desired, double now, double startup_s)
{
    if (desired > p->cap_groups) {
        double *grown = realloc(p->ready_at, (size_t)desired * sizeof *grown);
        if (!grown)
            return SQ_FAIL(SQ_ENOMEM, "sim groups");
        p->ready_at = grown;
        p->cap_groups = desired;
    }
    while (p->n_groups < desired)
        p->ready_at[p->n_groups++] = now + startup_s;
    /* Shrink: drop ready groups first (lowest ready_at), starting ones last. */
    while (p->n_groups > desired) {
        int victim = 0;
        for (int i = 1; i < p->n_groups; i++)
            if (p->ready_at[i] < p->ready_at[victim])
                victim = i;
        p->ready_at[victim] = p->ready_at[--p->n_groups];
    }
    return 0;
}

/* Advance one pool by dt seconds ending at `now`; fills *m. */
static void
s_step(s_pool_t *p, const sq_sim_opts_t *o, double now, double dt, sq_pool_metrics_t *m)
{
    double arrived = s_arrivals(p, now - dt, now);
    int ready = 0;
    for (int i = 0; i < p->n_groups; i++)
        ready += p->ready_at[i] <= now;
    double slots = (double)ready * p->policy.worker.max_batch;
    double done = p->in_flight * (1.0 - exp(-dt / o->service_s));
    p->in_flight -= done;
    p->queued += arrived;
    if (p->in_flight > slots) { /* groups went away: their tasks return */
        p->queued += p->in_flight - slots;
        p->in_flight = slots;
    }
    double admit = fmin(p->queued, slots - p->in_flight);
    p->queued -= admit;
    p->in_flight += admit;

    memset(m, 0, sizeof *m);
    m->queued = (int64_t)ceil(p->queued - 1e-9);
    m->leased = (int64_t)ceil(p->in_flight - 1e-9);
    m->busy = (int)fmin(ready, ceil(p->in_flight / p->policy.worker.max_batch - 1e-9));
    m->idle = ready - m->busy;
    m->starting = p->n_groups - ready;
    m->throughput = done / dt;

    sq_sim_summary_t *s = &p->sum;
    s->arrived += arrived;
    s->completed += done;
    s->group_seconds += p->n_groups * dt;
    s->mean_wait_s += p->queued * dt; /* integral; divided by arrivals at the end */
    s->peak_queued = fmax(s->peak_queued, p->queued);
    double target = p->policy.target_queued_per_group > 0 ? p->policy.target_queued_per_group
                                                          : p->policy.worker.max_batch;
    int want = (int)ceil((p->queued + p->in_flight) / target - 1e-9);
    want = want < p->policy.min_groups ? p->policy.min_groups : want;
    want = want > p->policy.max_groups ? p->policy.max_groups : want;
    if (ready < want)
        s->time_under_target_s += dt;
}

static void
s_record(s_pool_t *p, const sq_decision_t *d)
{
    int dir = d->desired > d->current ? 1 : -1;
    p->sum.n_changes++;
    if (p->last_dir && dir != p->last_dir)
        p->sum.direction_changes++;
    p->last_dir = dir;
    if (d->desired > p->sum.peak_groups)
        p->sum.peak_groups = d->desired;
}

static void
s_pools_free(s_pool_t *pools, size_t n)
{
    for (size_t i = 0; pools && i < n; i++) {
        sq_decider_destroy(&pools[i].decider);
        free(pools[i].ready_at);
    }
    free(pools);
}

static int
s_pools_init(s_pool_t *pools, const sq_policy_t *policy, const sq_trace_t *trace,
             const sq_sim_opts_t *o)
{
    for (size_t i = 0; i < policy->n_pools; i++) {
        s_pool_t *p = &pools[i];
        if (o->hpa_baseline)
            sq_policy_hpa_baseline(&policy->pools[i], &p->policy);
        else
            p->policy = policy->pools[i];
        for (size_t j = 0; j < trace->n_series; j++)
            if (strcmp(trace->series[j].name, p->policy.name) == 0)
                p->series = &trace->series[j];
        snprintf(p->sum.pool, sizeof p->sum.pool, "%s", p->policy.name);
        if (!(p->decider = sq_decider_new()))
            return SQ_FAIL(SQ_ENOMEM, "sim decider");
        /* Groups present at t = 0 are ready (a warm start at min_groups). */
        int rc = s_resize(p, p->policy.min_groups, -o->startup_s, o->startup_s);
        if (rc)
            return rc;
        p->sum.peak_groups = p->n_groups;
        p->next_sync_ms = SQ_SIM_HPA_PERIOD_MS;
    }
    return 0;
}

int
sq_sim_run(const sq_policy_t *policy, const sq_trace_t *trace, const sq_sim_opts_t *o,
           sq_sim_decision_fn on_decision, void *arg, sq_sim_summary_t **summaries,
           size_t *n_summaries)
{
    int rc = sq_trace_check(trace, policy);
    if (rc)
        return rc;
    if (o->tick_ms <= 0 || o->service_s <= 0 || o->startup_s < 0)
        return SQ_FAIL(SQ_EINVAL, "simulate: tick, service time must be > 0");
    s_pool_t *pools = calloc(policy->n_pools, sizeof *pools);
    if (!pools)
        return SQ_FAIL(SQ_ENOMEM, "sim pools");
    if ((rc = s_pools_init(pools, policy, trace, o)) != 0)
        goto done;
    int64_t start_ms = (o->start_utc ? o->start_utc : trace->start_utc) * 1000;
    double dt = (double)o->tick_ms / 1000.0;
    int64_t n_ticks = (int64_t)ceil(trace->end_s / dt);
    for (int64_t k = 1; k <= n_ticks && !rc; k++) {
        double now = (double)k * dt;
        for (size_t i = 0; i < policy->n_pools && !rc; i++) {
            s_pool_t *p = &pools[i];
            sq_pool_metrics_t m;
            sq_decision_t d;
            s_step(p, o, now, dt, &m);
            if (o->hpa_baseline) {
                /* The HPA controller syncs every 15 s: decide at the first
                 * tick at or past each 15 s mark, whatever the tick. */
                if (k * o->tick_ms < p->next_sync_ms)
                    continue;
                p->next_sync_ms =
                    (k * o->tick_ms / SQ_SIM_HPA_PERIOD_MS + 1) * SQ_SIM_HPA_PERIOD_MS;
            }
            if ((rc = sq_decide(p->decider, &p->policy, &m, start_ms + k * o->tick_ms, &d)))
                break;
            if (d.desired == d.current)
                continue;
            if ((rc = s_resize(p, d.desired, now, o->startup_s)))
                break;
            sq_decider_applied(p->decider, d.current, d.desired, start_ms + k * o->tick_ms);
            /* The model knows the start-up time; feed it as a measurement. */
            if (d.desired > d.current)
                sq_decider_note_startup(p->decider, o->startup_s);
            s_record(p, &d);
            if (on_decision)
                on_decision(arg, now, p->policy.name, &d);
        }
    }
    if (rc)
        goto done;
    if (!(*summaries = calloc(policy->n_pools, sizeof **summaries))) {
        rc = SQ_FAIL(SQ_ENOMEM, "sim summary");
        goto done;
    }
    for (size_t i = 0; i < policy->n_pools; i++) {
        sq_sim_summary_t *s = &pools[i].sum;
        s->duration_s = (double)n_ticks * dt;
        s->direction_changes_per_hour = s->direction_changes * 3600.0 / s->duration_s;
        s->mean_wait_s = s->arrived > 0 ? s->mean_wait_s / s->arrived : 0;
        (*summaries)[i] = *s;
    }
    *n_summaries = policy->n_pools;
done:
    s_pools_free(pools, policy->n_pools);
    return rc;
}

void
sq_sim_print_summary_header(FILE *out)
{
    fprintf(out, "%-14s %-8s %10s %8s %10s %12s %12s %11s %6s\n", "pool", "policy",
             "duration_s", "changes", "dirchg/h", "under_tgt_s", "group_s", "mean_wait_s",
             "peak");
}

void
sq_sim_print_summary(FILE *out, const char *label, const sq_sim_summary_t *s)
{
    fprintf(out, "%-14s %-8s %10.0f %8d %10.2f %12.0f %12.0f %11.2f %6d\n", s->pool, label,
            s->duration_s, s->n_changes, s->direction_changes_per_hour, s->time_under_target_s,
            s->group_seconds, s->mean_wait_s, s->peak_groups);
}
