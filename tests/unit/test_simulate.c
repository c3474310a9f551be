/*  Tests of sq_sim (`simulate`) on the traces in scheduler/traces:
 *  a noisy steady load (+-20 %) changes direction at most once per 10
 *  minutes; a step is answered within one tick (the HPA baseline within its
 *  15 s period, whatever the tick); the pre-open window has groups up
 *  before the open; bad traces are refused with file and (physical) line;
 *  docs/scheduler.md's trace example runs as it stands.
 *  argv[1]: the traces directory. */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_file.h"
#include "sq_sim.h"
#include "sq_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_dir = "scheduler/traces";

typedef struct {
    double t[4096];
    int from[4096], to[4096];
    int n;
} s_log_t;

static void
s_collect(void *arg, double t_s, const char *pool, const sq_decision_t *d)
{
    s_log_t *log = arg;
    if (log->n < 4096) {
        log->t[log->n] = t_s;
        log->from[log->n] = d->current;
        log->to[log->n++] = d->desired;
    }
}

/* Run trace `name` with the directory's policy and a tick of tick_ms;
 * fills *log and *sum. */
static int
s_run_tick(const char *name, int hpa, int64_t tick_ms, s_log_t *log, sq_sim_summary_t *sum)
{
    char path[512];
    snprintf(path, sizeof path, "%s/policy.yaml", s_dir);
    sq_policy_t *pol = sq_policy_load(path);
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    sq_trace_t *tr = sq_trace_load(path);
    sq_sim_opts_t o;
    sq_sim_opts_default(&o);
    o.hpa_baseline = hpa;
    o.tick_ms = tick_ms;
    sq_sim_summary_t *sums = NULL;
    size_t n = 0;
    memset(log, 0, sizeof *log);
    int rc = pol && tr ? sq_sim_run(pol, tr, &o, s_collect, log, &sums, &n) : -1;
    if (rc == 0 && n == 1)
        *sum = sums[0];
    else
        fprintf(stderr, "sim %s: %s\n", name, sq_error_detail());
    free(sums);
    sq_trace_destroy(&tr);
    sq_policy_destroy(&pol);
    return rc;
}

static int
s_run(const char *name, int hpa, s_log_t *log, sq_sim_summary_t *sum)
{
    return s_run_tick(name, hpa, 1000, log, sum);
}

static void
test_steady_noisy(void)
{
    s_log_t *log = calloc(1, sizeof *log);
    sq_sim_summary_t sum;
    SQ_REQUIRE(log && s_run("steady_noisy.csv", 0, log, &sum) == 0);
    /* After the first ramp (groups start from min_groups), every pair of
     * direction changes is at least 10 minutes apart. */
    double last_change = -1e9;
    int last_dir = 0, too_close = 0, changes = 0;
    for (int i = 0; i < log->n; i++) {
        int dir = log->to[i] > log->from[i] ? 1 : -1;
        if (last_dir && dir != last_dir) {
            changes++;
            too_close += log->t[i] - last_change < 600;
            last_change = log->t[i];
        }
        last_dir = dir;
    }
    SQ_CHECK(too_close == 0);
    SQ_CHECK(changes == sum.direction_changes);
    SQ_CHECK(sum.direction_changes_per_hour <= 6.0);
    SQ_CHECK(fabs(sum.arrived - 72000) < 72000 * 0.05); /* 10/s for 2 h */
    SQ_CHECK(sum.completed > sum.arrived * 0.95);
    SQ_CHECK(sum.duration_s == 7200);
    free(log);
}

static void
test_step_reaction(void)
{
    s_log_t *log = calloc(1, sizeof *log);
    sq_sim_summary_t sum;
    SQ_REQUIRE(log && s_run("step.csv", 0, log, &sum) == 0);
    int first_up = -1;
    for (int i = 0; i < log->n && first_up < 0; i++)
        if (log->t[i] > 1200 && log->to[i] > log->from[i])
            first_up = i;
    SQ_REQUIRE(first_up >= 0);
    SQ_CHECK(log->t[first_up] <= 1201.0); /* the step is at t = 1200; tick = 1 s */
    /* The HPA-style baseline decides every 15 s: it reacts later. */
    SQ_REQUIRE(s_run("step.csv", 1, log, &sum) == 0);
    for (int i = 0; i < log->n; i++)
        if (log->t[i] > 1200 && log->to[i] > log->from[i]) {
            SQ_CHECK(log->t[i] > 1201.0 && log->t[i] <= 1215.0);
            break;
        }
    free(log);
}

/* The HPA baseline decides every 15 s of trace time whatever the tick:
 * with 7 s ticks, at the first tick past each 15 s mark (it used to
 * decide only when a tick fell on a multiple of 15 s: every 105 s). */
static void
test_hpa_period_any_tick(void)
{
    s_log_t *log = calloc(1, sizeof *log);
    sq_sim_summary_t sum;
    SQ_REQUIRE(log && s_run_tick("step.csv", 1, 7000, log, &sum) == 0);
    int first_up = -1;
    for (int i = 0; i < log->n && first_up < 0; i++)
        if (log->t[i] > 1200 && log->to[i] > log->from[i])
            first_up = i;
    SQ_REQUIRE(first_up >= 0);
    SQ_CHECK(log->t[first_up] <= 1200.0 + 15 + 7);
    /* decisions are at least a period apart, less one tick */
    for (int i = 1; i < log->n; i++)
        SQ_CHECK(log->t[i] - log->t[i - 1] >= 15.0 - 7.0);
    free(log);
}

static void
test_trading_day_window(void)
{
    s_log_t *log = calloc(1, sizeof *log);
    sq_sim_summary_t ours, hpa;
    SQ_REQUIRE(log && s_run("trading_day.csv", 0, log, &ours) == 0);
    /* The open is at 09:30 Shanghai = t 34200 s; 6 groups are asked for
     * start-up p95 (30 s in the model) before it, and none earlier than
     * the 60 s estimate used before any measurement. */
    int at_open = 1;
    for (int i = 0; i < log->n && log->t[i] <= 34200; i++)
        at_open = log->to[i];
    SQ_CHECK(at_open >= 6);
    SQ_CHECK(ours.mean_wait_s >= 0);
    SQ_REQUIRE(s_run("trading_day.csv", 1, log, &hpa) == 0);
    SQ_CHECK(ours.mean_wait_s < hpa.mean_wait_s);
    free(log);
}

static sq_trace_t *
s_parse(const char *text)
{
    return sq_trace_parse(text, "t.csv");
}

static void
test_bad_traces(void)
{
    SQ_CHECK(s_parse("time,pool,n\n0,a,1\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:1: expected header") != NULL);
    SQ_CHECK(s_parse("t_s,pool,arrivals\n5,a,1\n4,a,1\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:3: t_s: rows must be in time order") != NULL);
    SQ_CHECK(s_parse("t_s,pool,arrivals\n0,a,-1\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:2: arrivals") != NULL);
    SQ_CHECK(s_parse("t_s,pool,arrivals\n0,a\n") == NULL);
    /* the time parser's reason once, after the line (it was garbled) */
    SQ_CHECK(s_parse("# start=yesterday\nt_s,pool,arrivals\n0,a,1\n") == NULL);
    SQ_CHECK(strcmp(sq_error_detail(), "t.csv:1: start=: time \"yesterday\": expected "
                                       "YYYY-MM-DD[THH:MM[:SS]][Z|+hh:mm]") == 0);
    /* line numbers count blank lines: the line an editor shows */
    SQ_CHECK(s_parse("# c\n\nt_s,pool,arrivals\n\n\n0,a,2\n\n10,a,x\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:8: arrivals") != NULL);
    SQ_CHECK(s_parse("t_s,pool,arrivals\r\n\r\n0,a,2\r\n5,a,-2\r\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:4: arrivals") != NULL);
    /* times past a year are refused: 1e10 ran for ever, 1e300 overflowed */
    SQ_CHECK(s_parse("t_s,pool,arrivals\n0,a,1\n1e10,a,1\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:3: t_s: 1e+10 is past one year") != NULL);
    SQ_CHECK(s_parse("t_s,pool,arrivals\n0,a,1\n1e300,a,1\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "t.csv:3: t_s:") != NULL);
    sq_trace_t *year = s_parse("t_s,pool,arrivals\n0,a,1\n31536000,a,1\n");
    SQ_CHECK(year != NULL);
    sq_trace_destroy(&year);
    SQ_CHECK(s_parse("t_s,pool,arrivals\n") == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "no data rows") != NULL);
    SQ_CHECK(sq_trace_load("/nonexistent.csv") == NULL);

    sq_trace_t *tr = s_parse("# start=2026-11-30T00:00:00Z\nt_s,pool,arrivals\n0,other,5\n");
    SQ_REQUIRE(tr);
    SQ_CHECK(sq_trace_start(tr) == 1795996800);
    const char *yaml = "pools:\n  - {name: p, worker: {model: m}, max_groups: 2, "
                       "target_queued_per_group: 4}\n";
    sq_policy_t *pol = sq_policy_parse(yaml, strlen(yaml), "p.yaml");
    SQ_REQUIRE(pol);
    sq_sim_opts_t o;
    sq_sim_opts_default(&o);
    sq_sim_summary_t *sums = NULL;
    size_t n = 0;
    SQ_CHECK(sq_sim_run(pol, tr, &o, NULL, NULL, &sums, &n) == SQ_EINVAL);
    /* with the file and the line, as every other refusal of a trace */
    SQ_CHECK(strcmp(sq_error_detail(), "t.csv:3: pool: \"other\" is not in the policy") == 0);
    sq_trace_destroy(&tr);
    tr = s_parse("t_s,pool,arrivals\n0,p,5\n\n5,p,1\n6,q,2\n7,q,1\n");
    SQ_REQUIRE(tr);
    SQ_CHECK(sq_sim_run(pol, tr, &o, NULL, NULL, &sums, &n) == SQ_EINVAL);
    SQ_CHECK(strcmp(sq_error_detail(), "t.csv:5: pool: \"q\" is not in the policy") == 0);
    sq_trace_destroy(&tr);
    /* A tiny run: 100 tasks over 10 s with max 2 groups, all served. */
    tr = s_parse("t_s,pool,arrivals\n0,p,50\n5,p,50\n");
    SQ_REQUIRE(tr);
    SQ_CHECK(sq_sim_run(pol, tr, &o, NULL, NULL, &sums, &n) == 0);
    SQ_CHECK(n == 1 && fabs(sums[0].arrived - 100) < 1e-6 && sums[0].peak_groups == 2);
    free(sums);
    sq_trace_destroy(&tr);
    sq_policy_destroy(&pol);
}

/* The fenced block that follows `after` in text, malloc'd (NULL when
 * there is none). */
static char *
s_block_after(const char *text, const char *after)
{
    const char *at = strstr(text, after), *open = at ? strstr(at, "```") : NULL;
    const char *body = open ? strchr(open, '\n') : NULL, *close = body ? strstr(body, "```") : NULL;
    if (!close)
        return NULL;
    return strndup(body + 1, (size_t)(close - body - 1));
}

/* docs/scheduler.md's trace example is a file simulate takes as it
 * stands, with the policy example of the same page: it carried notes
 * inside the block, and its start= line was refused when copied. */
static void
test_docs_example(void)
{
    char path[512], *doc = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/../../docs/scheduler.md", s_dir);
    SQ_REQUIRE(sq_file_read(path, 1 << 20, &doc, &len) == 0);
    char *yaml = s_block_after(doc, "## Policy file"), *csv = s_block_after(doc, "Trace format");
    sq_policy_t *pol = yaml ? sq_policy_parse(yaml, strlen(yaml), "docs policy") : NULL;
    sq_trace_t *tr = csv ? sq_trace_parse(csv, "docs trace") : NULL;
    if (!pol || !tr)
        fprintf(stderr, "  refused: %s\n", sq_error_detail());
    SQ_CHECK(pol && tr && sq_trace_start(tr) == 1795968000); /* 2026-11-29T16:00:00Z */
    sq_sim_opts_t o;
    sq_sim_opts_default(&o);
    sq_sim_summary_t *sums = NULL;
    size_t n = 0;
    SQ_CHECK(pol && tr && sq_sim_run(pol, tr, &o, NULL, NULL, &sums, &n) == 0 && n == 1);
    free(sums);
    sq_trace_destroy(&tr);
    sq_policy_destroy(&pol);
    free(csv);
    free(yaml);
    free(doc);
}

int
main(int argc, char **argv)
{
    if (argc > 1)
        s_dir = argv[1];
    SQ_RUN(test_steady_noisy);
    SQ_RUN(test_step_reaction);
    SQ_RUN(test_hpa_period_any_tick);
    SQ_RUN(test_trading_day_window);
    SQ_RUN(test_bad_traces);
    SQ_RUN(test_docs_example);
    return sq_test_summary("simulate");
}
