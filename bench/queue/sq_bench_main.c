/*  shardq-bench-queue: throughput and latency of the durable queue.
 *
 *  Drives shardq-broker (started here after --migrate, or one already
 *  running with --connect) with one pipelining client and no-op worker
 *  groups (threads in this process), on the PostgreSQL the broker uses,
 *  and prints one table. Phases, in order:
 *
 *    submit   N tasks in SUBMITs of --batch, --window in flight, no worker
 *             connected: tasks/s until every SUBMIT is acknowledged
 *    process  the groups connect and drain that pre-filled queue: tasks/s
 *             until PostgreSQL holds a result row for every task
 *    e2e      groups running, N more tasks submitted: tasks/s from the first
 *             SUBMIT to the last result row committed (submit committed →
 *             dispatched → result committed)
 *    latency  one-task SUBMITs at --rate for --latency-s: submit latency is
 *             send → ack (commit); dispatch latency is ack → the worker
 *             holding the task (0 when the task arrives before the ack);
 *             also send → worker, which includes the commit
 *    backlog  (--backlog) for each B: B + M tasks queued, groups connect,
 *             tasks/s over the first M results, i.e. with at least B queued
 *
 *  "Committed" is checked in PostgreSQL itself (task_results), never
 *  inferred from the broker's word. Each phase starts after a CHECKPOINT
 *  (backlog points after VACUUM (ANALYZE) too), outside the timed window. Exit codes: 0 done, 1 a phase failed,
 *  2 usage error.
 */
#define _GNU_SOURCE
#include "sq_bench.h"
#include "sq_db.h"
#include "sq_error.h"
#include "sq_version.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MAX_BACKLOG 8
#define S_POLL_US 5000

typedef struct {
    const char *db, *broker_bin, *client_ep, *worker_ep, *broker_log, *json;
    bool connect, keyed;
    size_t tasks, batch, payload, backlog[S_MAX_BACKLOG], backlog_measure;
    int n_backlog, window, groups, max_batch;
    double rate, latency_s;
    bool phase_submit, phase_process, phase_e2e, phase_latency;
} s_opts_t;

typedef struct {
    double submit_per_s, submit_batch_p50_ms, submit_batch_p99_ms;
    double process_per_s, e2e_per_s;
    double submit_p50_ms, submit_p99_ms, dispatch_p50_ms, dispatch_p99_ms;
    double whole_p50_ms, whole_p99_ms; /* submit sent -> worker holds the task */
    size_t latency_n;
    double backlog_per_s[S_MAX_BACKLOG];
} s_results_t;

typedef struct {
    s_opts_t opt;
    sq_db_t *db;
    sq_bench_client_t *client;
    sq_bench_workers_t *workers;
    s_results_t res;
} s_bench_t;

static const char *s_usage =
    "usage: shardq-bench-queue [options]\n"
    "  --db CONNINFO        PostgreSQL of the broker (default $SHARDQ_DB); results are\n"
    "                       counted there\n"
    "  --broker PATH        shardq-broker to run (default $SHARDQ_BROKER_BIN); it is\n"
    "                       migrated, started and stopped by the benchmark\n"
    "  --connect            use a broker already running at --client/--worker instead\n"
    "  --client EP          client endpoint (default tcp://127.0.0.1:18001)\n"
    "  --worker EP          worker endpoint (default tcp://127.0.0.1:18002)\n"
    "  --broker-log FILE    broker output (default /tmp/shardq-bench-broker.log)\n"
    "  --tasks N            tasks per throughput phase (default 200000)\n"
    "  --batch N            tasks per SUBMIT (default 1000)\n"
    "  --window N           SUBMITs in flight (default 4)\n"
    "  --payload BYTES      prompt size (default 256)\n"
    "  --keyed              every SUBMIT carries an idempotency key of its own\n"
    "  --groups N           no-op worker groups (default 4)\n"
    "  --max-batch N        leases each group holds at once (default 512)\n"
    "  --rate R             one-task SUBMITs per second in the latency phase (default 200)\n"
    "  --latency-s S        length of the latency phase (default 10)\n"
    "  --phases LIST        comma list of submit,process,e2e,latency (default all;\n"
    "                       process needs submit)\n"
    "  --backlog LIST       backlog sweep, e.g. 10000,100000,1000000 (default off)\n"
    "  --backlog-measure M  results timed per backlog point (default 50000)\n"
    "  --json FILE          also write the figures as JSON\n"
    "  --help, --version\n"
    "exit codes: 0 done, 1 a phase failed, 2 usage error\n";

static void
s_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "shardq-bench-queue: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(shardq-bench-queue --help shows the usage)\n");
    exit(2);
}

static size_t
s_count(const char *flag, const char *v, size_t max)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || end == v || n == 0 || n > max || v[0] == '-')
        s_usage_error("%s: expected a positive integer in range", flag);
    return (size_t)n;
}

static double
s_positive(const char *flag, const char *v)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || !(d > 0) || !isfinite(d))
        s_usage_error("%s: expected a positive number", flag);
    return d;
}

static void
s_parse_phases(s_opts_t *o, const char *list)
{
    o->phase_submit = o->phase_process = o->phase_e2e = o->phase_latency = false;
    char *copy = strdup(list), *save = NULL;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (!strcmp(p, "submit"))
            o->phase_submit = true;
        else if (!strcmp(p, "process"))
            o->phase_process = true;
        else if (!strcmp(p, "e2e"))
            o->phase_e2e = true;
        else if (!strcmp(p, "latency"))
            o->phase_latency = true;
        else
            s_usage_error("--phases: unknown phase '%s'", p);
    }
    free(copy);
    if (o->phase_process && !o->phase_submit)
        s_usage_error("%s", "--phases: process needs submit (it drains what submit queued)");
}

static void
s_parse_backlog(s_opts_t *o, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    o->n_backlog = 0;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (o->n_backlog == S_MAX_BACKLOG)
            s_usage_error("--backlog: at most 8 points (%s)", list);
        o->backlog[o->n_backlog++] = s_count("--backlog", p, 100000000);
    }
    free(copy);
}

static void
s_parse(s_opts_t *o, int argc, char **argv)
{
    *o = (s_opts_t){.db = getenv("SHARDQ_DB"), .broker_bin = getenv("SHARDQ_BROKER_BIN"),
                    .client_ep = "tcp://127.0.0.1:18001", .worker_ep = "tcp://127.0.0.1:18002",
                    .broker_log = "/tmp/shardq-bench-broker.log", .tasks = 200000,
                    .batch = 1000, .window = 4, .payload = 256, .groups = 4, .max_batch = 512,
                    .rate = 200, .latency_s = 10, .backlog_measure = 50000};
    s_parse_phases(o, "submit,process,e2e,latency");
    static const struct option longs[] = {
        {"db", 1, 0, 'd'},        {"broker", 1, 0, 'b'},     {"connect", 0, 0, 'C'},
        {"client", 1, 0, 'c'},    {"worker", 1, 0, 'w'},     {"broker-log", 1, 0, 'L'},
        {"tasks", 1, 0, 'n'},     {"batch", 1, 0, 'B'},      {"window", 1, 0, 'W'},
        {"payload", 1, 0, 'p'},   {"groups", 1, 0, 'g'},     {"max-batch", 1, 0, 'm'},
        {"rate", 1, 0, 'r'},      {"latency-s", 1, 0, 's'},  {"phases", 1, 0, 'P'},
        {"backlog", 1, 0, 'k'},   {"backlog-measure", 1, 0, 'M'}, {"json", 1, 0, 'j'},
        {"keyed", 0, 0, 'K'},
        {"help", 0, 0, 'h'},      {"version", 0, 0, 'V'},    {0, 0, 0, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->db = optarg; break;
        case 'b': o->broker_bin = optarg; break;
        case 'C': o->connect = true; break;
        case 'c': o->client_ep = optarg; break;
        case 'w': o->worker_ep = optarg; break;
        case 'L': o->broker_log = optarg; break;
        case 'n': o->tasks = s_count("--tasks", optarg, 100000000); break;
        case 'B': o->batch = s_count("--batch", optarg, 100000); break;
        case 'W': o->window = (int)s_count("--window", optarg, 1024); break;
        case 'p': o->payload = s_count("--payload", optarg, 1u << 20); break;
        case 'g': o->groups = (int)s_count("--groups", optarg, 256); break;
        case 'm': o->max_batch = (int)s_count("--max-batch", optarg, 4096); break;
        case 'r': o->rate = s_positive("--rate", optarg); break;
        case 's': o->latency_s = s_positive("--latency-s", optarg); break;
        case 'P': s_parse_phases(o, optarg); break;
        case 'k': s_parse_backlog(o, optarg); break;
        case 'M': o->backlog_measure = s_count("--backlog-measure", optarg, 100000000); break;
        case 'j': o->json = optarg; break;
        case 'K': o->keyed = true; break;
        case 'h': fputs(s_usage, stdout); exit(0);
        case 'V': printf("shardq-bench-queue %s\n", SQ_VERSION); exit(0);
        default: s_usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        s_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->db)
        s_usage_error("%s", "--db: no conninfo (pass --db or set SHARDQ_DB)");
    if (!o->connect && !o->broker_bin)
        s_usage_error("%s", "--broker: no broker (pass --broker, set SHARDQ_BROKER_BIN, or --connect)");
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double
sq_bench_quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, s_cmp_double);
    double pos = ceil(q * (double)n);
    size_t idx = pos < 1 ? 0 : (size_t)pos - 1;
    return v[idx < n ? idx : n - 1];
}

static int
s_timeout_ms(size_t n_tasks)
{
    return 60000 + (int)(n_tasks < 10000000 ? n_tasks : 10000000); /* >= 1000 tasks/s */
}

static const char *
s_u64(char *buf, size_t cap, uint64_t v)
{
    snprintf(buf, cap, "%" PRIu64, v);
    return buf;
}

/* Counting committed results without slowing what is measured: jobs
 * complete roughly in order (one tenant, FIFO), so the jobs before
 * `cursor` are known complete (`done` results) and each poll counts only
 * the rows of the jobs from the cursor on (the ones in flight), not every
 * result of the phase again. A full count(*) of a growing phase cost up to
 * ~50 ms a poll, most of a core on a small machine, and grew with it. */
typedef struct {
    uint64_t cursor, last;
    int64_t done;
} s_counter_t;

/* Result rows committed for the counter's jobs: *out. */
static int
s_count_results(s_bench_t *b, s_counter_t *c, int64_t *out)
{
    char first[24], last[24];
    const char *params[] = {s_u64(first, sizeof first, c->cursor),
                            s_u64(last, sizeof last, c->last)};
    PGresult *res = NULL;
    int rc = sq_db_exec(b->db, "SELECT r.job_id, count(*), j.n_tasks FROM task_results r"
                               " JOIN jobs j ON j.id = r.job_id"
                               " WHERE r.job_id BETWEEN $1 AND $2"
                               " GROUP BY r.job_id, j.n_tasks ORDER BY r.job_id",
                        2, params, &res);
    int64_t partial = 0;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        uint64_t job = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        int64_t n = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        if (job == c->cursor && n == strtoll(PQgetvalue(res, i, 2), NULL, 10)) {
            c->done += n;
            c->cursor++;
        } else {
            partial += n;
        }
    }
    *out = c->done + partial;
    PQclear(res);
    return rc;
}

/* Wait until PostgreSQL holds >= want result rows for `jobs`. The database
 * is queried only once the groups have answered that many leases since
 * answered_base: before that the rows cannot all be there, and polling a
 * growing table would only slow the system under test. */
static int
s_wait_results(s_bench_t *b, sq_bench_jobs_t jobs, uint64_t want, uint64_t answered_base)
{
    int timeout_ms = s_timeout_ms(want);
    double deadline = sq_bench_now_ms() + timeout_ms;
    uint64_t answered;
    while ((answered = sq_bench_workers_answered(b->workers) - answered_base) < want) {
        if (sq_bench_now_ms() > deadline)
            return SQ_FAIL(SQ_ETIMEDOUT, "workers answered %" PRIu64 " of %" PRIu64
                           " tasks in %d ms (broker log: %s)", answered, want, timeout_ms,
                           b->opt.broker_log);
        usleep(S_POLL_US);
    }
    s_counter_t counter = {jobs.first, jobs.last, 0};
    for (;;) {
        int64_t n = 0;
        int rc = s_count_results(b, &counter, &n);
        if (rc != 0 || n >= (int64_t)want)
            return rc;
        if (sq_bench_now_ms() > deadline)
            return SQ_FAIL(SQ_ETIMEDOUT, "%" PRId64 " of %" PRIu64 " results committed after %d ms"
                           " (broker log: %s)", n, want, timeout_ms, b->opt.broker_log);
        usleep(S_POLL_US);
    }
}

static int
s_workers_start(s_bench_t *b)
{
    if (b->workers)
        return 0;
    b->workers = sq_bench_workers_new(b->opt.worker_ep, b->opt.groups, b->opt.max_batch);
    return b->workers ? 0 : SQ_FAIL(SQ_EIO, "cannot start workers: %s", sq_error_detail());
}

/* Start each measured window from the same database state, as the anchors
 * do: CHECKPOINT flushes what the previous phase dirtied, so no phase pays
 * for its predecessor's writes. Before a backlog point, VACUUM (ANALYZE)
 * first, so the drain does not race autovacuum over the rows just queued:
 * a standing backlog in production has long been vacuumed. */
static int
s_settle(s_bench_t *b, bool vacuum)
{
    int rc = vacuum ? sq_db_exec(b->db, "VACUUM (ANALYZE)", 0, NULL, NULL) : 0;
    return rc == 0 ? sq_db_exec(b->db, "CHECKPOINT", 0, NULL, NULL) : rc;
}

/* Submit n tasks pipelined; *secs the time until the last ack. */
static int
s_submit(s_bench_t *b, const char *prefix, size_t n, sq_bench_jobs_t *jobs, double *submit_ms,
         double *secs)
{
    double t0 = sq_bench_now_ms();
    int rc = sq_bench_client_submit(b->client, prefix, n, b->opt.batch, b->opt.window,
                                    s_timeout_ms(n), jobs, submit_ms);
    *secs = (sq_bench_now_ms() - t0) / 1e3;
    return rc;
}

/* submit + process: queue N tasks with no worker connected, then drain. */
static int
s_phase_submit_process(s_bench_t *b)
{
    const s_opts_t *o = &b->opt;
    size_t n_req = (o->tasks + o->batch - 1) / o->batch;
    double *submit_ms = calloc(n_req, sizeof *submit_ms), secs = 0;
    if (!submit_ms)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    sq_bench_jobs_t jobs;
    int rc = s_settle(b, false);
    if (rc == 0)
        rc = s_submit(b, "proc", o->tasks, &jobs, submit_ms, &secs);
    if (rc == 0) {
        b->res.submit_per_s = o->tasks / secs;
        b->res.submit_batch_p50_ms = sq_bench_quantile(submit_ms, n_req, 0.50);
        b->res.submit_batch_p99_ms = sq_bench_quantile(submit_ms, n_req, 0.99);
    }
    free(submit_ms);
    if (rc != 0 || !o->phase_process || (rc = s_settle(b, false)) != 0)
        return rc;
    double t0 = sq_bench_now_ms();
    rc = s_workers_start(b);
    if (rc == 0)
        rc = s_wait_results(b, jobs, o->tasks, 0);
    if (rc == 0)
        b->res.process_per_s = o->tasks / ((sq_bench_now_ms() - t0) / 1e3);
    return rc;
}

static int
s_phase_e2e(s_bench_t *b)
{
    int rc = s_settle(b, false);
    if (rc == 0)
        rc = s_workers_start(b);
    if (rc != 0)
        return rc;
    uint64_t base = sq_bench_workers_answered(b->workers);
    sq_bench_jobs_t jobs;
    double t0 = sq_bench_now_ms(), secs;
    rc = s_submit(b, "e2e", b->opt.tasks, &jobs, NULL, &secs);
    if (rc == 0)
        rc = s_wait_results(b, jobs, b->opt.tasks, base);
    if (rc == 0)
        b->res.e2e_per_s = b->opt.tasks / ((sq_bench_now_ms() - t0) / 1e3);
    return rc;
}

/* Turn the stamps into latencies (each array is overwritten):
 *   submit   = ack - send
 *   dispatch = arrival - ack, or 0 when the task reached its worker before
 *              the ack reached the client
 *   whole    = arrival - send (commit included) */
static int
s_latency_figures(s_bench_t *b, size_t n, double *sent, double *acked, double *arrived)
{
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        if (arrived[i] < 0) {
            missing++;
            continue;
        }
        double submit = acked[i] - sent[i], dispatch = arrived[i] - acked[i];
        sent[i] = arrived[i] - sent[i];
        acked[i] = submit;
        arrived[i] = dispatch > 0 ? dispatch : 0;
    }
    if (missing)
        return SQ_FAIL(SQ_EPROTO, "%zu of %zu latency tasks never reached a worker", missing, n);
    s_results_t *r = &b->res;
    r->latency_n = n;
    r->submit_p50_ms = sq_bench_quantile(acked, n, 0.50);
    r->submit_p99_ms = sq_bench_quantile(acked, n, 0.99);
    r->dispatch_p50_ms = sq_bench_quantile(arrived, n, 0.50);
    r->dispatch_p99_ms = sq_bench_quantile(arrived, n, 0.99);
    r->whole_p50_ms = sq_bench_quantile(sent, n, 0.50);
    r->whole_p99_ms = sq_bench_quantile(sent, n, 0.99);
    return 0;
}

static int
s_phase_latency(s_bench_t *b)
{
    size_t n = (size_t)llround(b->opt.rate * b->opt.latency_s);
    n = n ? n : 1;
    double *sent = calloc(n, sizeof *sent), *acked = calloc(n, sizeof *acked),
           *arrived = malloc(n * sizeof *arrived);
    int rc = (sent && acked && arrived) ? s_settle(b, false) : SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (rc == 0)
        rc = s_workers_start(b);
    for (size_t i = 0; rc == 0 && i < n; i++)
        arrived[i] = -1;
    if (rc == 0) {
        uint64_t base = sq_bench_workers_answered(b->workers);
        sq_bench_jobs_t jobs;
        sq_bench_workers_stamp_into(b->workers, arrived, n);
        rc = sq_bench_client_paced(b->client, n, b->opt.rate, s_timeout_ms(n), sent, acked, &jobs);
        if (rc == 0)
            rc = s_wait_results(b, jobs, n, base);
        sq_bench_workers_stamp_into(b->workers, NULL, 0);
    }
    if (rc == 0)
        rc = s_latency_figures(b, n, sent, acked, arrived);
    free(sent);
    free(acked);
    free(arrived);
    return rc;
}

/* Backlog point k: queue B + M with no worker, connect fresh groups, time
 * the first M results (at least B stay queued meanwhile), then drain the
 * rest so the next point starts from an empty queue. */
static int
s_phase_backlog(s_bench_t *b, int k)
{
    size_t queued = b->opt.backlog[k], m = b->opt.backlog_measure;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "bl%d", k);
    sq_bench_workers_destroy(&b->workers);
    sq_bench_jobs_t jobs;
    double secs;
    int rc = s_submit(b, prefix, queued + m, &jobs, NULL, &secs);
    if (rc == 0)
        rc = s_settle(b, true);
    double t0 = sq_bench_now_ms();
    if (rc == 0)
        rc = s_workers_start(b);
    if (rc == 0)
        rc = s_wait_results(b, jobs, m, 0);
    if (rc == 0)
        b->res.backlog_per_s[k] = m / ((sq_bench_now_ms() - t0) / 1e3);
    if (rc == 0)
        rc = s_wait_results(b, jobs, queued + m, 0);
    return rc;
}

static int
s_run_phases(s_bench_t *b)
{
    const s_opts_t *o = &b->opt;
    int rc = 0;
    if (o->phase_submit)
        rc = s_phase_submit_process(b);
    if (rc == 0 && o->phase_e2e)
        rc = s_phase_e2e(b);
    if (rc == 0 && o->phase_latency)
        rc = s_phase_latency(b);
    for (int k = 0; rc == 0 && k < o->n_backlog; k++)
        rc = s_phase_backlog(b, k);
    if (rc == 0 && b->workers && sq_bench_workers_complaints(b->workers) > 0)
        fprintf(stderr, "shardq-bench-queue: note: the broker sent the workers %" PRIu64
                " ERROR/DISCONNECT messages\n", sq_bench_workers_complaints(b->workers));
    return rc;
}

static void
s_row_rate(const char *name, double v)
{
    if (v > 0)
        printf("%-30s %12.0f tasks/s\n", name, v);
}

static void
s_row_ms(const char *name, double p50, double p99)
{
    if (!isnan(p50) && (p50 > 0 || p99 > 0))
        printf("%-30s p50 %8.2f ms   p99 %8.2f ms\n", name, p50, p99);
}

static void
s_print_table(const s_bench_t *b)
{
    const s_opts_t *o = &b->opt;
    const s_results_t *r = &b->res;
    char name[64];
    printf("shardq-bench-queue %s: %zu tasks x %zu B, SUBMIT of %zu (%d in flight), "
           "%d groups x %d leases\n", SQ_VERSION, o->tasks, o->payload, o->batch, o->window,
           o->groups, o->max_batch);
    s_row_rate("batch submit", r->submit_per_s);
    snprintf(name, sizeof name, "  one SUBMIT of %zu tasks", o->batch);
    s_row_ms(name, r->submit_batch_p50_ms, r->submit_batch_p99_ms);
    s_row_rate("process (pre-filled queue)", r->process_per_s);
    s_row_rate("end-to-end (durable)", r->e2e_per_s);
    snprintf(name, sizeof name, "submit latency @%g/s", o->rate);
    s_row_ms(name, r->submit_p50_ms, r->submit_p99_ms);
    snprintf(name, sizeof name, "dispatch latency @%g/s", o->rate);
    s_row_ms(name, r->dispatch_p50_ms, r->dispatch_p99_ms);
    s_row_ms("  submit sent -> worker", r->whole_p50_ms, r->whole_p99_ms);
    for (int k = 0; k < o->n_backlog; k++) {
        snprintf(name, sizeof name, "process, %zu queued", o->backlog[k]);
        s_row_rate(name, r->backlog_per_s[k]);
    }
}

static void
s_json_num(FILE *f, const char *key, double v)
{
    if (v > 0 && isfinite(v))
        fprintf(f, ",\n  \"%s\": %.3f", key, v);
    else
        fprintf(f, ",\n  \"%s\": null", key);
}

static int
s_write_json(const s_bench_t *b)
{
    const s_opts_t *o = &b->opt;
    const s_results_t *r = &b->res;
    FILE *f = fopen(o->json, "w");
    if (!f)
        return SQ_FAIL(-errno, "cannot write %s: %s", o->json, strerror(errno));
    fprintf(f, "{\n  \"queue\": \"shardq %s\",\n  \"tasks\": %zu,\n  \"batch\": %zu,\n"
               "  \"payload_bytes\": %zu,\n  \"rate\": %g,\n  \"groups\": %d,\n"
               "  \"max_batch\": %d", SQ_VERSION, o->tasks, o->batch, o->payload, o->rate,
            o->groups, o->max_batch);
    s_json_num(f, "submit_per_s", r->submit_per_s);
    s_json_num(f, "submit_batch_p50_ms", r->submit_batch_p50_ms);
    s_json_num(f, "submit_batch_p99_ms", r->submit_batch_p99_ms);
    s_json_num(f, "process_per_s", r->process_per_s);
    s_json_num(f, "e2e_per_s", r->e2e_per_s);
    s_json_num(f, "submit_p50_ms", r->submit_p50_ms);
    s_json_num(f, "submit_p99_ms", r->submit_p99_ms);
    s_json_num(f, "dispatch_p50_ms", r->dispatch_p50_ms);
    s_json_num(f, "dispatch_p99_ms", r->dispatch_p99_ms);
    s_json_num(f, "send_to_start_p50_ms", r->whole_p50_ms);
    s_json_num(f, "send_to_start_p99_ms", r->whole_p99_ms);
    fprintf(f, ",\n  \"backlog\": [");
    for (int k = 0; k < o->n_backlog; k++)
        fprintf(f, "%s{\"queued\": %zu, \"per_s\": %.3f}", k ? ", " : "", o->backlog[k],
                r->backlog_per_s[k]);
    fprintf(f, "]\n}\n");
    return fclose(f) == 0 ? 0 : SQ_FAIL(SQ_EIO, "cannot write %s", o->json);
}

int
main(int argc, char **argv)
{
    s_bench_t b = {0};
    s_parse(&b.opt, argc, argv);
    zsys_handler_set(NULL); /* Ctrl-C ends the run at once */
    pid_t broker = 0;
    const s_opts_t *o = &b.opt;
    int rc = sq_db_connect(o->db, 10000, &b.db);
    if (rc == 0 && !o->connect) {
        rc = sq_bench_broker_migrate(o->broker_bin, o->db, o->broker_log);
        if (rc == 0)
            rc = sq_bench_broker_start(o->broker_bin, o->db, o->client_ep, o->worker_ep,
                                       o->broker_log, &broker);
    }
    if (rc == 0) {
        b.client = sq_bench_client_new(o->client_ep, o->payload);
        if (b.client)
            sq_bench_client_set_keyed(b.client, o->keyed);
        rc = b.client ? 0 : SQ_FAIL(SQ_EIO, "cannot create the client: %s", sq_error_detail());
    }
    if (rc == 0)
        rc = s_run_phases(&b);
    if (rc != 0)
        fprintf(stderr, "shardq-bench-queue: %s: %s\n", sq_strerror(rc), sq_error_detail());
    sq_bench_workers_destroy(&b.workers);
    sq_bench_client_destroy(&b.client);
    if (broker > 0 && sq_bench_broker_stop(broker) != 0)
        fprintf(stderr, "shardq-bench-queue: %s\n", sq_error_detail());
    sq_db_destroy(&b.db);
    s_print_table(&b);
    if (o->json && s_write_json(&b) != 0) {
        fprintf(stderr, "shardq-bench-queue: %s\n", sq_error_detail());
        rc = rc ? rc : SQ_EIO;
    }
    return rc == 0 ? 0 : 1;
}
