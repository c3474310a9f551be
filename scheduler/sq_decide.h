/*  sq_decide: the scaling decision for one pool, as a pure function of
 *  (policy, metrics, virtual clock, the decider's own history).
 *
 *  Semantics (Kubernetes HPA, plus schedule windows):
 *   - raw recommendation = max over the configured targets of
 *       ceil((queued + leased) / target_queued_per_group)
 *       ceil(current * utilization / target_utilization)
 *     clamped to [min_groups, max_groups]; with tasks waiting and no
 *     group at all it is at least 1 (scale from zero);
 *   - a change within `tolerance` of the current count is ignored;
 *   - scale-up is immediate, bounded by max_step_up (or the percentage;
 *     at least one group) and the up cooldown, and held (but for the
 *     floors) while the broker's commits are behind: it grants no lease
 *     then, so new groups would only wait;
 *   - the floors (min_groups, an active window's) are reached at once,
 *     past the step limits and the cooldown, as HPA applies minReplicas;
 *   - scale-down uses the HIGHEST recommendation seen during the last
 *     scale_down_stabilization_s, bounded by max_step_down and the down
 *     cooldown, so a brief dip never drops groups;
 *   - an active window raises the floor to its min_groups from
 *     (start - lead_time) until (start + duration); lead_time `auto` is
 *     the p95 of the measured group start-up times (policy
 *     startup_estimate_s until one has been measured).
 *  The decider owns only its history; it never reads a clock.
 */
#ifndef SQ_DECIDE_H
#define SQ_DECIDE_H

#include "sq_policy.h"

#include <stdint.h>

/* What the scheduler sees of one pool in one tick (broker STATS). */
typedef struct {
    int64_t queued;         /* tasks waiting */
    int64_t leased;         /* tasks held by groups */
    double oldest_age_s;    /* age of the oldest queued task */
    int busy, idle, starting, draining; /* groups by state */
    double throughput;      /* tasks/s recently completed */
    int commit_bound;       /* the broker grants no lease: its commits are behind
                               (STATS dispatch_paused); more groups would wait too */
} sq_pool_metrics_t;

typedef struct {
    int current;            /* busy + idle + starting */
    int desired;            /* what the actuator should run */
    int recommendation;     /* raw, before stabilisation and steps */
    int floor;              /* min_groups raised by active windows */
    const char *window;     /* name of the window setting the floor, or NULL */
    char reason[256];       /* one line: why desired is what it is */
} sq_decision_t;

typedef struct sq_decider_t sq_decider_t;

sq_decider_t *sq_decider_new(void);
void sq_decider_destroy(sq_decider_t **self_p);

/* Decide for time now_ms (any monotonic-with-wall-meaning clock: the
 * windows read it as Unix milliseconds). Fills *out (OUT). Returns 0, or
 * SQ_EINVAL for a policy without any target. */
int sq_decide(sq_decider_t *self, const sq_pool_policy_t *policy, const sq_pool_metrics_t *m,
              int64_t now_ms, sq_decision_t *out);

/* Tell the decider that the actuator acted: counts of this kind move the
 * cooldown clocks. Call after the actuator accepted desired != current. */
void sq_decider_applied(sq_decider_t *self, int from, int to, int64_t now_ms);

/* Record a measured group start-up (spawn -> ready), seconds. */
void sq_decider_note_startup(sq_decider_t *self, double seconds);
/* p95 of the recorded start-ups; fallback when none yet. */
double sq_decider_startup_p95(const sq_decider_t *self, double fallback);

/* The floor at now (min_groups or the highest active window's), with the
 * window's name (OUT, may be NULL). Exposed for tests and `simulate`. */
int sq_decider_floor(sq_decider_t *self, const sq_pool_policy_t *policy, int64_t now_s,
                     const char **window);

#endif
