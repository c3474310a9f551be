/*  sq_policy: the scheduler's policy file (YAML, read with libyaml).
 *
 *    pools:
 *      - name: fin-research
 *        worker: {model: models/stories260K.gguf, tp: 2, device: cpu, max_batch: 16}
 *        min_groups: 1
 *        max_groups: 8
 *        target_queued_per_group: 32
 *        scale_down_stabilization_s: 300
 *        windows:
 *          - {name: pre-open, cron: "30 9 * * 1-5", timezone: Asia/Shanghai,
 *             duration: 45m, min_groups: 6, lead_time: auto}
 *
 *  docs/scheduler.md lists every key, its default and its meaning. A file
 *  is checked whole: unknown keys, wrong types, out-of-range values, bad
 *  cron expressions and unknown time zones are refused with the line and
 *  the key ("policy.yaml:7: pools[0].max_groups: must be >= min_groups").
 *  A loaded policy is immutable; reloading builds a new one.
 */
#ifndef SQ_POLICY_H
#define SQ_POLICY_H

#include "sq_cron.h"
#include "sq_tz.h"

#include <stddef.h>
#include <stdint.h>

/* At most this many pools, and windows in a pool: far above any real
 * policy, and a bound on what a small file can ask for (YAML aliases
 * repeat a window or a list without repeating its text). */
#define SQ_POLICY_MAX_POOLS 256
#define SQ_POLICY_MAX_WINDOWS 256
/* worker.flags: its size and how many flags (words) it may hold. */
#define SQ_POLICY_FLAGS_BYTES 256
#define SQ_POLICY_MAX_WORKER_FLAGS 32
/* shardq-worker's bounds: --max-batch 1..4096, and max_batch + --prefetch
 * at most 4096 leases (SQ_WIRE_MAX_BATCH). A policy outside them would
 * start groups that exit at once, again at every decision. */
#define SQ_POLICY_MAX_LEASES 4096

typedef struct {
    char name[64];
    char cron_text[128];
    sq_cron_t cron;
    sq_tz_t *tz;            /* owned */
    int64_t duration_s;
    int min_groups;
    int lead_auto;          /* lead_time: auto (measured p95 start-up) */
    int64_t lead_time_s;    /* when not auto */
} sq_window_t;

typedef struct {
    char model[256];
    int tp;                 /* ranks per group (mpirun -np) */
    char device[16];        /* cpu | cuda */
    int max_batch;
    char flags[SQ_POLICY_FLAGS_BYTES]; /* extra worker flags, split on spaces and tabs */
    int flags_line;         /* where flags is in the file (for sq_policy_check_flags) */
} sq_worker_spec_t;

typedef struct {
    char name[64];
    sq_worker_spec_t worker;
    int min_groups, max_groups;
    double target_queued_per_group;     /* 0: not used */
    double target_utilization;          /* 0: not used; else (0, 1] */
    double tolerance;                   /* skip changes within this ratio */
    int max_step_up, max_step_down;     /* groups per tick; 0: unbounded */
    double max_step_up_percent;         /* also allow this % of current; 0: off */
    int64_t scale_down_stabilization_s; /* default 300 */
    int64_t scale_up_cooldown_s, scale_down_cooldown_s;
    int64_t startup_estimate_s;         /* lead time before any measurement */
    char statefulset[128];              /* kubernetes.statefulset (default: name) */
    sq_window_t *windows;
    size_t n_windows;
} sq_pool_policy_t;

typedef struct {
    sq_pool_policy_t *pools;
    size_t n_pools;
    char *text;             /* the file as read (stored with each version) */
    char *origin;           /* its name in refusals (sq_policy_parse's origin) */
    char digest[17];        /* FNV-1a 64 of text, hex */
} sq_policy_t;

/* Parse YAML text; `origin` names it in errors (a path). NULL on error,
 * with the SQ_FAIL detail "origin:line: key.path: problem". */
sq_policy_t *sq_policy_parse(const char *text, size_t len, const char *origin);
/* Read and parse a file. */
sq_policy_t *sq_policy_load(const char *path);
void sq_policy_destroy(sq_policy_t **self_p);

const sq_pool_policy_t *sq_policy_pool(const sq_policy_t *self, const char *name);

/* The plain HPA-style comparison for `src`: same targets, bounds and
 * stabilisation, but no windows, no cooldowns, a 10 % tolerance and HPA's
 * default scale-up limit (the larger of 4 groups and 100 % per decision),
 * as a Kubernetes HorizontalPodAutoscaler with default behaviour would
 * act. The copy shares nothing with src. */
void sq_policy_hpa_baseline(const sq_pool_policy_t *src, sq_pool_policy_t *out);

/* Whether shardq-worker takes pool's worker.flags: 0, or a negative SQ_E*
 * with the reason as the error detail (sq_actuator_local_check_flags asks
 * the worker itself). */
typedef int (*sq_policy_flags_fn)(void *arg, const sq_pool_policy_t *pool);
/* Ask check about every pool that has worker.flags: the parser checks only
 * what the scheduler owns (its own flags, the leases), the worker's parse
 * is the authority on the rest. 0, or the first refusal with the detail
 * "origin:line: pools[i].worker.flags: reason". */
int sq_policy_check_flags(const sq_policy_t *self, sq_policy_flags_fn check, void *arg);

/* Split worker flags as the local actuator passes them, on spaces and
 * tabs: a copy goes into buf (size bytes), argv (OUT) gets up to max
 * pointers into it. Returns how many words flags has (more than max when
 * argv could not take them all). */
int sq_worker_flags_split(const char *flags, char *buf, size_t size, char **argv, int max);

/* Parse "45m", "300s", "1h30m", "2h", "90" (seconds). 0 or SQ_EINVAL. */
int sq_duration_parse(const char *text, int64_t *seconds);

#endif
