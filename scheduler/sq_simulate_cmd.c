/*  `shardq-scheduler simulate`: run a policy on a trace and print the
 *  decisions and a summary next to the plain HPA-style comparison.
 *  Exit codes: 0 done, 1 bad policy/trace, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_cmd.h"

#include "sq_error.h"
#include "sq_sim.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t start_utc;
} s_print_ctx_t;

static void
s_print_decision(void *arg, double t_s, const char *pool, const sq_decision_t *d)
{
    const s_print_ctx_t *cx = arg;
    char when[32];
    sq_time_format_iso(cx->start_utc + (int64_t)t_s, when, sizeof when);
    printf("%9.1f  %s  %-14s %3d -> %-3d %s\n", t_s, when, pool, d->current, d->desired,
           d->reason);
}

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: shardq-scheduler simulate --policy FILE --trace FILE [options]\n"
            "  --startup-s S    group start-up delay in the model (default 30)\n"
            "  --service-s S    mean seconds per task (default 8)\n"
            "  --tick-ms MS     decision interval (default 1000)\n"
            "  --start TIME     trace t=0 as ISO time (default: the trace's start=)\n"
            "  --quiet          print only the summary\n");
}

int
sq_cmd_simulate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, 0, 'p'}, {"trace", required_argument, 0, 't'},
        {"startup-s", required_argument, 0, 'u'}, {"service-s", required_argument, 0, 's'},
        {"tick-ms", required_argument, 0, 'k'}, {"start", required_argument, 0, 'S'},
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *policy_path = NULL, *trace_path = NULL;
    sq_sim_opts_t o;
    sq_sim_opts_default(&o);
    int quiet = 0, c, rc = 0;
    long long n;
    optind = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p': policy_path = optarg; break;
        case 't': trace_path = optarg; break;
        case 'u': rc = sq_cmd_num("--startup-s", optarg, 0.0, 86400.0, &o.startup_s); break;
        case 's': rc = sq_cmd_num("--service-s", optarg, 1e-3, 86400.0, &o.service_s); break;
        case 'k':
            if ((rc = sq_cmd_int("--tick-ms", optarg, 1, 3600000, &n)) == 0)
                o.tick_ms = n;
            break;
        case 'S':
            if (sq_time_parse_iso(optarg, &o.start_utc) != 0) {
                fprintf(stderr, "simulate: --start: %s\n", sq_error_detail());
                return 2;
            }
            break;
        case 'q': quiet = 1; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (rc)
        return rc;
    if (optind < argc)
        return sq_cmd_usage_error("simulate: unexpected argument '%s' (see --help)", argv[optind]);
    if (!policy_path || !trace_path)
        return sq_cmd_usage_error("simulate: --policy FILE and --trace FILE are required");
    sq_policy_t *policy = sq_policy_load(policy_path);
    sq_trace_t *trace = policy ? sq_trace_load(trace_path) : NULL;
    sq_sim_summary_t *ours = NULL, *hpa = NULL;
    size_t n_rows = 0;
    /* a trace pool the policy lacks is refused before any output */
    rc = policy && trace ? sq_trace_check(trace, policy) : 1;
    s_print_ctx_t cx = {0};
    if (!rc) {
        cx.start_utc = o.start_utc ? o.start_utc : sq_trace_start(trace);
        if (!quiet)
            printf("# decisions (t_s, time, pool, from -> to, reason)\n");
        rc = sq_sim_run(policy, trace, &o, quiet ? NULL : s_print_decision, &cx, &ours, &n_rows);
        o.hpa_baseline = 1;
        if (!rc)
            rc = sq_sim_run(policy, trace, &o, NULL, NULL, &hpa, &n_rows);
    }
    if (rc) {
        fprintf(stderr, "simulate: %s\n", sq_error_detail());
    } else {
        printf("# summary: policy %s, trace %s, startup %.0fs, service %.1fs, tick %lldms\n",
               policy_path, trace_path, o.startup_s, o.service_s, (long long)o.tick_ms);
        sq_sim_print_summary_header(stdout);
        for (size_t i = 0; i < n_rows; i++) {
            sq_sim_print_summary(stdout, "policy", &ours[i]);
            sq_sim_print_summary(stdout, "hpa", &hpa[i]);
        }
    }
    free(ours);
    free(hpa);
    sq_trace_destroy(&trace);
    sq_policy_destroy(&policy);
    return rc ? 1 : 0;
}
