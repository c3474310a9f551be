/*  shardq-bench-sched: figures for docs/bench/scheduler.md.
 *
 *  1. `simulate` summaries on three traces (steady noisy, bursts, trading
 *     day with a pre-open window), our policy against the plain HPA-style
 *     baseline with the same targets (sq_policy_hpa_baseline, 15 s sync);
 *     ratios policy/hpa for time under target, group-seconds, mean wait.
 *  2. Scheduler CPU per tick: the decision code for N pools, each with a
 *     schedule window (cron + time zone evaluated every tick), timed over
 *     many ticks of a virtual clock.
 *  usage: shardq-bench-sched [TRACES_DIR]
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_decide.h"
#include "sq_error.h"
#include "sq_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
s_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
s_simulate(const char *dir, const char *trace_name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/policy.yaml", dir);
    sq_policy_t *pol = sq_policy_load(path);
    snprintf(path, sizeof path, "%s/%s", dir, trace_name);
    sq_trace_t *tr = pol ? sq_trace_load(path) : NULL;
    sq_sim_opts_t o;
    sq_sim_opts_default(&o);
    sq_sim_summary_t *ours = NULL, *hpa = NULL;
    size_t n = 0;
    int rc = tr ? sq_sim_run(pol, tr, &o, NULL, NULL, &ours, &n) : -1;
    o.hpa_baseline = 1;
    if (!rc)
        rc = sq_sim_run(pol, tr, &o, NULL, NULL, &hpa, &n);
    if (!rc) {
        printf("\n## %s\n", trace_name);
        sq_sim_print_summary_header(stdout);
        sq_sim_print_summary(stdout, "policy", &ours[0]);
        sq_sim_print_summary(stdout, "hpa", &hpa[0]);
        printf("ratio policy/hpa: under_target %.2f, group_seconds %.3f, mean_wait %.2f\n",
               hpa[0].time_under_target_s > 0 ? ours[0].time_under_target_s / hpa[0].time_under_target_s : 0,
               ours[0].group_seconds / hpa[0].group_seconds,
               hpa[0].mean_wait_s > 0 ? ours[0].mean_wait_s / hpa[0].mean_wait_s : 0);
    } else {
        fprintf(stderr, "%s: %s\n", trace_name, sq_error_detail());
    }
    free(ours);
    free(hpa);
    sq_trace_destroy(&tr);
    sq_policy_destroy(&pol);
    return rc ? 1 : 0;
}

/* CPU per tick for n_pools pools with one window each. */
static void
s_tick_cpu(int n_pools)
{
    char *yaml = malloc((size_t)n_pools * 400 + 16);
    size_t len = (size_t)sprintf(yaml, "pools:\n");
    for (int i = 0; i < n_pools; i++)
        len += (size_t)sprintf(yaml + len,
                               "  - name: p%d\n    worker: {model: m%d}\n    max_groups: 16\n"
                               "    target_queued_per_group: 12\n    windows:\n"
                               "      - {name: open, cron: \"30 9 * * 1-5\", timezone: "
                               "Asia/Shanghai, duration: 45m, min_groups: 4}\n",
                               i, i);
    sq_policy_t *pol = sq_policy_parse(yaml, len, "bench");
    free(yaml);
    if (!pol) {
        fprintf(stderr, "bench policy: %s\n", sq_error_detail());
        return;
    }
    sq_decider_t **d = calloc((size_t)n_pools, sizeof *d);
    for (int i = 0; i < n_pools; i++)
        d[i] = sq_decider_new();
    int ticks = n_pools >= 100 ? 2000 : 20000;
    int64_t t0 = 1795996800LL * 1000; /* 2026-11-30T00:00Z */
    double cpu0 = s_cpu_s();
    for (int k = 0; k < ticks; k++)
        for (int i = 0; i < n_pools; i++) {
            sq_pool_metrics_t m = {.queued = (k * 7 + i * 13) % 200, .idle = 4};
            sq_decision_t out;
            sq_decide(d[i], &pol->pools[i], &m, t0 + (int64_t)k * 1000, &out);
        }
    double us = (s_cpu_s() - cpu0) / ticks * 1e6;
    printf("%8d %10d %14.1f %16.2f\n", n_pools, ticks, us, us / n_pools);
    for (int i = 0; i < n_pools; i++)
        sq_decider_destroy(&d[i]);
    free(d);
    sq_policy_destroy(&pol);
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : SQ_TRACES_DIR;
    printf("# shardq-bench-sched: simulate (startup 30 s, service 8 s, tick 1 s) and CPU per tick\n");
    int rc = s_simulate(dir, "steady_noisy.csv") | s_simulate(dir, "bursts.csv") |
             s_simulate(dir, "trading_day.csv");
    printf("\n## scheduler CPU per tick (decide for every pool, one cron window each)\n");
    printf("%8s %10s %14s %16s\n", "pools", "ticks", "cpu_us/tick", "cpu_us/pool");
    s_tick_cpu(1);
    s_tick_cpu(10);
    s_tick_cpu(100);
    return rc;
}
