/*  sq_sim: run the real decision code (sq_decide) on a load trace with a
 *  virtual clock and a simple model of worker groups. No processes.
 *
 *  Trace file (CSV, documented in docs/scheduler.md):
 *
 *    # start=2026-11-30T00:00:00Z
 *    t_s,pool,arrivals
 *    0,fin-research,120
 *    10,fin-research,95
 *
 *  "# start=" (optional, the time alone on its line) is the wall time of
 *  t_s = 0; the header is required.
 *  A row says `arrivals` tasks reach `pool` spread evenly from t_s until
 *  the pool's next row (the last row lasts as long as the one before it).
 *  Rows are in time order; every pool must exist in the policy.
 *
 *  Group model: a group is ready startup_s after it is asked for; a ready
 *  group runs up to worker.max_batch tasks at once and each task takes
 *  service_s on average (fluid model: a group completes max_batch /
 *  service_s tasks per second when full). Removing a group is instant;
 *  its tasks go back to the queue. Idle (ready) groups are removed before
 *  starting ones, as the local actuator does.
 */
#ifndef SQ_SIM_H
#define SQ_SIM_H

#include "sq_decide.h"
#include "sq_policy.h"

#include <stdint.h>
#include <stdio.h>

typedef struct sq_trace_t sq_trace_t;

/* Load a trace; errors name the file and line. */
sq_trace_t *sq_trace_load(const char *path);
sq_trace_t *sq_trace_parse(const char *text, const char *origin);
void sq_trace_destroy(sq_trace_t **self_p);
/* Unix time of t_s = 0 (the trace's start=, 0 when absent). */
int64_t sq_trace_start(const sq_trace_t *self);
/* Check that every pool in the trace exists in policy; a refusal names
 * the file and the line of the pool's first row. */
int sq_trace_check(const sq_trace_t *self, const sq_policy_t *policy);

/* The latest t_s a trace may have: one year (longer runs would take
 * hours, and times far beyond overflow the tick count). */
#define SQ_SIM_MAX_TRACE_S (365 * 86400)

/* kube-controller-manager's default --horizontal-pod-autoscaler-sync-period. */
#define SQ_SIM_HPA_PERIOD_MS 15000

typedef struct {
    double startup_s;       /* request -> ready (default 30) */
    double service_s;       /* mean time of one task (default 8) */
    int64_t tick_ms;        /* decision interval (default 1000) */
    int64_t start_utc;      /* overrides the trace's start= when nonzero */
    int hpa_baseline;       /* replace each pool by sq_policy_hpa_baseline
                               and decide every SQ_SIM_HPA_PERIOD_MS of trace
                               time only (at the first tick at or past each
                               mark) */
} sq_sim_opts_t;

void sq_sim_opts_default(sq_sim_opts_t *opts);

/* Per pool, over the whole run. */
typedef struct {
    char pool[64];
    double duration_s;
    int n_changes;              /* decisions that changed the count */
    int direction_changes;      /* up after down or down after up */
    double direction_changes_per_hour;
    double time_under_target_s; /* ready groups < what the target asks */
    double group_seconds;       /* starting + ready groups, integrated */
    double mean_wait_s;         /* mean time a task waited in the queue */
    double peak_queued;
    double arrived, completed;
    int peak_groups;
} sq_sim_summary_t;

/* Called for each decision that changes a pool's count. t_s is trace time. */
typedef void (*sq_sim_decision_fn)(void *arg, double t_s, const char *pool,
                                   const sq_decision_t *decision);

/* Run the trace. *summaries (OUT) gets one entry per policy pool (caller
 * frees); *n_summaries its length. 0 or a negative SQ_E*. */
int sq_sim_run(const sq_policy_t *policy, const sq_trace_t *trace, const sq_sim_opts_t *opts,
               sq_sim_decision_fn on_decision, void *arg, sq_sim_summary_t **summaries,
               size_t *n_summaries);

/* The summary table shared by `simulate` and bench/sched: a header line,
 * then one row per (pool, label). */
void sq_sim_print_summary_header(FILE *out);
void sq_sim_print_summary(FILE *out, const char *label, const sq_sim_summary_t *s);

#endif
