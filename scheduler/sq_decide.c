/*  sq_decide: HPA-style decisions with schedule windows.
 *
 *  The stabilisation window is a monotonic deque of (time, recommendation)
 *  with decreasing recommendations, so "highest recommendation in the last
 *  N seconds" costs O(1) amortised per tick however long N is.
 *  Start-up samples are a ring of the last 64 measurements.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_decide.h"

#include "sq_error.h"
#include "sq_utf8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_STARTUP_RING 64

typedef struct {
    int64_t t_ms;
    int rec;
} s_sample_t;

struct sq_decider_t {
    s_sample_t *dq;     /* deque storage (cap), live part [head, head+n) */
    size_t cap, head, n;
    int started;        /* first decision seen: history seeded */
    int64_t last_up_ms, last_down_ms;
    int have_up, have_down;
    double startup[S_STARTUP_RING];
    size_t n_startup;
};

sq_decider_t *
sq_decider_new(void)
{
    return calloc(1, sizeof(sq_decider_t));
}

void
sq_decider_destroy(sq_decider_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->dq);
    free(*self_p);
    *self_p = NULL;
}

static s_sample_t *
s_at(sq_decider_t *self, size_t i)
{
    return &self->dq[(self->head + i) % self->cap];
}

/* Push (t, rec), dropping dominated and expired samples; returns the max
 * over [t - window, t]. */
static int
s_window_max(sq_decider_t *self, int64_t t_ms, int rec, int64_t window_ms)
{
    while (self->n && s_at(self, self->n - 1)->rec <= rec)
        self->n--;
    while (self->n && s_at(self, 0)->t_ms < t_ms - window_ms) {
        self->head = (self->head + 1) % self->cap;
        self->n--;
    }
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        s_sample_t *dq = malloc(cap * sizeof *dq);
        if (!dq)
            return rec; /* degrade to no stabilisation rather than fail a tick */
        for (size_t i = 0; i < self->n; i++)
            dq[i] = *s_at(self, i);
        free(self->dq);
        self->dq = dq;
        self->cap = cap;
        self->head = 0;
    }
    *s_at(self, self->n++) = (s_sample_t){t_ms, rec};
    return s_at(self, 0)->rec;
}

void
sq_decider_note_startup(sq_decider_t *self, double seconds)
{
    self->startup[self->n_startup++ % S_STARTUP_RING] = seconds;
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double
sq_decider_startup_p95(const sq_decider_t *self, double fallback)
{
    size_t n = self->n_startup < S_STARTUP_RING ? self->n_startup : S_STARTUP_RING;
    if (n == 0)
        return fallback;
    double v[S_STARTUP_RING];
    memcpy(v, self->startup, n * sizeof *v);
    qsort(v, n, sizeof *v, s_cmp_double);
    size_t rank = (size_t)ceil(0.95 * (double)n); /* nearest-rank p95 */
    return v[rank ? rank - 1 : 0];
}

int
sq_decider_floor(sq_decider_t *self, const sq_pool_policy_t *p, int64_t now_s,
                 const char **window)
{
    int floor = p->min_groups;
    const char *name = NULL;
    for (size_t i = 0; i < p->n_windows; i++) {
        const sq_window_t *w = &p->windows[i];
        int64_t lead = w->lead_auto
                           ? (int64_t)ceil(sq_decider_startup_p95(self,
                                                                  (double)p->startup_estimate_s))
                           : w->lead_time_s;
        int64_t start;
        /* The occurrence that could cover now starts after now - duration. */
        if (sq_cron_next(&w->cron, w->tz, now_s - w->duration_s, &start) != 0)
            continue;
        if (start - lead <= now_s && w->min_groups > floor) {
            floor = w->min_groups;
            name = w->name;
        }
    }
    if (window)
        *window = name;
    return floor < p->max_groups ? floor : p->max_groups;
}

void
sq_decider_applied(sq_decider_t *self, int from, int to, int64_t now_ms)
{
    if (to > from) {
        self->last_up_ms = now_ms;
        self->have_up = 1;
    } else if (to < from) {
        self->last_down_ms = now_ms;
        self->have_down = 1;
    }
}

static int
s_ceil_div(double a, double b)
{
    double q = ceil(a / b - 1e-9);
    return q > 1e6 ? 1000000 : (int)q;
}

/* The raw recommendation and a short account of it. As in HPA, each
 * metric's usage ratio (observed / target at the current count) within
 * `tolerance` of 1 recommends the current count: that band is what keeps
 * a noisy but steady load from flapping between two counts. */
static int
s_recommend(const sq_pool_policy_t *p, const sq_pool_metrics_t *m, int current, char *why,
            size_t size)
{
    int rec = 0, n_metrics = 0, n_within = 0;
    int64_t outstanding = m->queued + m->leased;
    why[0] = '\0';
    if (p->target_queued_per_group > 0) {
        rec = s_ceil_div((double)outstanding, p->target_queued_per_group);
        double ratio = current ? outstanding / (current * p->target_queued_per_group) : 2;
        n_metrics++;
        n_within += fabs(ratio - 1.0) <= p->tolerance;
        snprintf(why, size, "%lld outstanding/%g per group=%d", (long long)outstanding,
                 p->target_queued_per_group, rec);
    }
    int ready = m->busy + m->idle;
    if (p->target_utilization > 0 && ready > 0) {
        double util = (double)m->busy / ready;
        int r = s_ceil_div(current * util, p->target_utilization);
        n_metrics++;
        n_within += fabs(util / p->target_utilization - 1.0) <= p->tolerance;
        size_t used = strlen(why);
        snprintf(why + used, size - used, "%sutil %.2f/%.2f=%d", used ? ", " : "", util,
                 p->target_utilization, r);
        rec = r > rec ? r : rec;
    }
    if (current > 0 && n_metrics > 0 && n_within == n_metrics) {
        size_t used = strlen(why);
        snprintf(why + used, size - used, " (within tolerance: %d)", current);
        rec = current;
    }
    if (outstanding > 0 && rec == 0)
        rec = 1; /* work waiting and nothing to run it: scale from zero */
    return rec;
}

int
sq_decide(sq_decider_t *self, const sq_pool_policy_t *p, const sq_pool_metrics_t *m,
          int64_t now_ms, sq_decision_t *out)
{
    if (p->target_queued_per_group <= 0 && p->target_utilization <= 0)
        return SQ_FAIL(SQ_EINVAL, "pool %s: no target", p->name);
    memset(out, 0, sizeof *out);
    int cur = m->busy + m->idle + m->starting;
    char why[160];
    int rec = s_recommend(p, m, cur, why, sizeof why);
    int by_min = rec < p->min_groups;
    rec = rec < p->min_groups ? p->min_groups : rec > p->max_groups ? p->max_groups : rec;
    /* The window floor joins the recommendation, so the end of a window
     * (or a shorter measured lead time) is stabilised like any drop. */
    out->floor = sq_decider_floor(self, p, now_ms / 1000, &out->window);
    int by_floor = out->floor > rec;
    rec = by_floor ? out->floor : rec;
    int64_t window_ms = p->scale_down_stabilization_s * 1000;
    if (!self->started) {
        /* A restarted scheduler has no history: count the groups it finds
         * as the recent recommendation so it never scales down at once. */
        s_window_max(self, now_ms, cur, window_ms);
        self->started = 1;
    }
    int stab = s_window_max(self, now_ms, rec, window_ms);
    stab = stab > p->max_groups ? p->max_groups : stab; /* a reload may lower max_groups */
    out->current = cur;
    out->recommendation = rec;

    const char *verdict = "hold";
    int desired = cur;
    if (rec > cur) {
        int cooling = self->have_up && now_ms - self->last_up_ms < p->scale_up_cooldown_s * 1000;
        /* The larger of the two limits, as HPA combines its policies; at
         * least one group, or a percentage of zero groups never starts. */
        int step = p->max_step_up;
        int pct = (int)ceil(cur * p->max_step_up_percent / 100.0);
        step = pct > step ? pct : step;
        step = step > 1 ? step : 1;
        int hi = p->max_step_up || p->max_step_up_percent > 0 ? cur + step : rec;
        desired = cooling ? cur : rec < hi ? rec : hi;
        /* The floors (min_groups, a window's) are not steps: as HPA applies
         * minReplicas, a count below them goes to them at once. */
        int lowest = out->floor > p->min_groups ? out->floor : p->min_groups;
        int raised = desired < lowest;
        desired = raised ? lowest : desired;
        verdict = raised ? (out->window ? "up (window floor)" : "up (min_groups)")
                  : cooling ? "hold (up cooldown)"
                  : by_floor ? "up (window floor)"
                  : by_min ? "up (min_groups)"
                  : desired < rec ? "up (step-limited)" : "up";
        int bound = lowest > cur ? lowest : cur;
        if (m->commit_bound && desired > bound) {
            desired = bound;
            verdict = desired > cur ? "up (floor; broker commits behind)"
                                    : "hold (broker commits behind)";
        }
    } else if (stab < cur) {
        int64_t last = self->last_up_ms > self->last_down_ms ? self->last_up_ms : self->last_down_ms;
        int cooling = (self->have_up || self->have_down) &&
                      now_ms - last < p->scale_down_cooldown_s * 1000;
        int lo = p->max_step_down ? cur - p->max_step_down : 0;
        desired = cooling ? cur : stab > lo ? stab : lo;
        verdict = cooling ? "hold (down cooldown)" : "down";
    } else if (rec < cur) {
        verdict = "hold (stabilising)";
    }
    out->desired = desired;
    int n = snprintf(out->reason, sizeof out->reason,
                     "%s: %s; rec %d, stabilised %d, floor %d%s%s -> %d", verdict,
                     why[0] ? why : "no load", rec, stab, out->floor, out->window ? " by " : "",
                     out->window ? out->window : "", desired);
    sq_utf8_fit(out->reason, sizeof out->reason, n); /* a window name may be UTF-8 */
    return 0;
}
