/*  End-to-end tests of the queue's normal life: shardq-broker, fixture
 *  workers and PostgreSQL as real processes over real sockets.
 *
 *    ten_thousand  10,000 tasks through four workers (one failing 5% of
 *                  its tasks), each recorded once
 *    cancel        CANCEL of a job with leased and queued tasks
 *    retries_dead  retryable failures retried with backoff, then dead with
 *                  the last error; permanent failures dead at once
 *    fairness      a 90/10 flood: the small tenant gets its fair share
 *    duplicate_delivery  every RESULT arrives twice: recorded once, the
 *                  copy refused as stale and audited
 *    priority      a later high-priority job overtakes a queued backlog
 *
 *  Usage: test_e2e_flow CASE (CTest runs each case as its own test).
 *  What a test asserts is read back from PostgreSQL, the record of truth.
 */
#define _GNU_SOURCE
#include "sq_e2e_case.h"
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_DONE_SQL "select count(*) from task_results"

static sq_harness_t *h;
static sq_e2e_client_t *client;

/* Run sql/queries/<file> with psql as an operator would, with psql
 * variables (-v name=value pairs, NULL-terminated); the exited process
 * (its output is its log) or NULL. */
static sq_proc_t *
s_audit_query(const char *file, const char *const vars[])
{
    const char *dir = getenv("SHARDQ_SQL_DIR");
    if (!dir)
        return NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/queries/%s", dir, file);
    const char *args[16];
    int n = 0;
    for (int i = 0; vars[i] && n < 12; i++) {
        args[n++] = "-v";
        args[n++] = vars[i];
    }
    args[n++] = "-f";
    args[n++] = path;
    args[n] = NULL;
    sq_proc_t *p = sq_harness_psql(h, file, args);
    SQ_CHECK(p && sq_proc_exit_code(p) == 0);
    return p;
}

static const char *const s_all_time[] = {"from='-infinity'", "to='infinity'", NULL};

/* The canned audit queries answer for this run: the job's history shows
 * its retries and dead-letters in order, and the time-range query finds
 * all 15. */
static void
s_check_audit_queries(uint64_t job)
{
    char job_var[64];
    snprintf(job_var, sizeof job_var, "job_id=%llu", (unsigned long long)job);
    const char *vars[] = {job_var, NULL};
    sq_proc_t *p = s_audit_query("job_history.sql", vars);
    SQ_REQUIRE(p);
    SQ_CHECK(sq_proc_log_count(p, "|audit|retry|") == 10);
    SQ_CHECK(sq_proc_log_count(p, "|audit|dead|") == 5);
    SQ_CHECK(sq_proc_log_count(p, "|attempt|attempt_failed|") == 15);
    SQ_CHECK(sq_proc_log_count(p, "|result|dead|") == 5);
    p = s_audit_query("retries_dead.sql", s_all_time);
    SQ_REQUIRE(p);
    SQ_CHECK(sq_proc_log_count(p, "|retry|") == 10);
    SQ_CHECK(sq_proc_log_count(p, "|dead|") == 5);
}

static void
ten_thousand(void)
{
    SQ_REQUIRE(sq_e2e_up("ten_thousand", sq_e2e_quick_retry, &h, &client));
    /* Four jobs from two tenants, submitted before and while workers run.
     * One worker fails 5% of its tasks (retryably), so retries are part of
     * the run; 10 attempts make a task dying of bad luck negligible. */
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 2500, "a", 10, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_submit_n(client, "bank", "test", 2500, "b", 10, &job, NULL) == 0);
    sq_proc_t *workers[4];
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        const char *flags[] = {"--batch", "64", "--fail-rate", i == 0 ? "0.05" : "0", NULL};
        workers[i] = sq_harness_worker_start(h, name, flags);
        SQ_REQUIRE(workers[i]);
    }
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 2500, "c", 10, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_submit_n(client, "bank", "test", 2500, "d", 10, &job, NULL) == 0);

    int rc = sq_harness_wait_i64(h, S_DONE_SQL, 10000, 180000);
    if (rc != 0)
        fprintf(stderr, "%s\n", sq_error_detail());
    SQ_REQUIRE(rc == 0);
    int64_t n = -1;
    /* Every task succeeded once, with its own prompt echoed back. */
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results r join tasks t "
                                   "using (job_id, idx) where r.state = 'succeeded' "
                                   "and r.text = t.prompt", &n) == 0);
    SQ_CHECK(n == 10000);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from tasks", &n) == 0 && n == 10000);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_queue", &n) == 0 && n == 0);
    /* The work was spread: every worker recorded some of it. */
    SQ_CHECK(sq_harness_sql_i64(h, "select count(distinct group_id) from task_attempts "
                                   "where outcome = 'succeeded'", &n) == 0);
    SQ_CHECK(n == 4);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where outcome = "
                                   "'failed' and group_id = 'w0'", &n) == 0);
    fprintf(stderr, "%lld retried attempts\n", (long long)n);
    SQ_CHECK(n > 0);
    /* No worker ever held more leases than the max_batch it announced. */
    for (int i = 0; i < 4; i++)
        SQ_CHECK(sq_proc_log_count(workers[i], "more leases than max_batch") == 0);
    /* The per-tenant daily report adds up: 5,000 submitted and succeeded
     * each (one UTC day, unless the run straddles midnight). */
    sq_proc_t *p = s_audit_query("tenant_daily.sql", s_all_time);
    SQ_CHECK(p && sq_proc_log_count(p, "|5000|5000|0|0") == 2);
    sq_e2e_check_no_duplicates(h);
}

static void
cancel(void)
{
    SQ_REQUIRE(sq_e2e_up("cancel", sq_e2e_quick_retry, &h, &client));
    /* A worker that holds two leases and never finishes them. */
    const char *slow[] = {"--batch", "2", "--delay-ms", "600000", NULL};
    sq_proc_t *w = sq_harness_worker_start(h, "slow", slow);
    SQ_REQUIRE(w);
    uint64_t job = 0, other = 0, n_cancelled = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 10, "c", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", 2, 15000) == 0);
    /* A second job stays untouched by the cancel. */
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 3, "o", 0, &other, NULL) == 0);

    SQ_REQUIRE(sq_e2e_cancel(client, job, &n_cancelled) == 0);
    SQ_CHECK(n_cancelled == 10);
    char sql[256];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu "
             "and state = 'cancelled'", (unsigned long long)job);
    SQ_CHECK(sq_harness_wait_i64(h, sql, 10, 15000) == 0);
    /* The worker was told to abort both of its leases. */
    int64_t deadline = sq_test_now_ms() + 10000;
    while (sq_proc_log_count(w, "lease cancelled") < 2 && sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_CHECK(sq_proc_log_count(w, "lease cancelled") == 2);
    int64_t n = -1;
    snprintf(sql, sizeof sql, "select count(*) from task_attempts where job_id = %llu "
             "and outcome = 'cancelled'", (unsigned long long)job);
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n) == 0 && n == 2);
    snprintf(sql, sizeof sql, "select count(*) from audit_log where job_id = %llu "
             "and action like 'cancel%%'", (unsigned long long)job);
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n) == 0 && n >= 1);

    /* The other job still runs to the end (on a fast worker; the slow one
     * goes, its leases come back). Cancelling a finished job is no error. */
    sq_proc_signal(w, SIGKILL);
    SQ_REQUIRE(sq_harness_worker_start(h, "fast", NULL));
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu "
             "and state = 'succeeded'", (unsigned long long)other);
    SQ_CHECK(sq_harness_wait_i64(h, sql, 3, 30000) == 0);
    SQ_CHECK(sq_e2e_cancel(client, other, &n_cancelled) == 0 && n_cancelled == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where state = "
                                   "'succeeded'", &n) == 0 && n == 3);
}

static void
retries_dead(void)
{
    SQ_REQUIRE(sq_e2e_up("retries_dead", sq_e2e_quick_retry, &h, &client));
    const char *flaky[] = {"--batch", "4", "--fail-rate", "1", NULL};
    sq_proc_t *w = sq_harness_worker_start(h, "flaky", flaky);
    SQ_REQUIRE(w);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 5, "r", 3, &job, NULL) == 0);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = 'dead'", 5,
                                 60000) == 0);
    int64_t n = -1;
    /* Dead with the LAST error (the worker names the attempt in it). */
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where state = 'dead' "
                                   "and attempts = 3 and error like "
                                   "'%retryable failure on attempt 3%'", &n) == 0);
    SQ_CHECK(n == 5);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where outcome = 'failed'",
                                &n) == 0 && n == 15);
    /* Exponential backoff, visible in the attempts: the wait before attempt
     * k+1 is at least retry_base * 2^(k-1) (200 ms, then 400 ms). */
    SQ_CHECK(sq_harness_sql_i64(h,
        "select count(*) from task_attempts a join task_attempts b "
        "on b.job_id = a.job_id and b.idx = a.idx and b.attempt = a.attempt + 1 "
        "where b.started_at - a.ended_at >= "
        "  make_interval(secs => 0.2 * power(2, a.attempt - 1) * 0.95)", &n) == 0);
    SQ_CHECK(n == 10);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from audit_log where action = 'dead'",
                                &n) == 0 && n == 5);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from audit_log where action = 'retry'",
                                &n) == 0 && n == 10);
    s_check_audit_queries(job);

    /* A permanent failure is dead after one attempt. */
    sq_proc_stop(w, 5000);
    const char *broken[] = {"--batch", "4", "--fail-permanent-rate", "1", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "broken", broken));
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 2, "p", 3, &job, NULL) == 0);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = 'dead'", 7,
                                 30000) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where state = 'dead' "
                                   "and attempts = 1 and error like '%permanent failure%'",
                                &n) == 0 && n == 2);
    sq_e2e_check_no_duplicates(h);
}

static void
duplicate_delivery(void)
{
    SQ_REQUIRE(sq_e2e_up("duplicate_delivery", sq_e2e_quick_retry, &h, &client));
    const char *twice[] = {"--batch", "16", "--send-twice", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", twice));
    SQ_REQUIRE(sq_harness_worker_start(h, "w2", twice));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 1000, "d", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_i64(h, S_DONE_SQL, 1000, 60000) == 0);
    /* Every second copy is refused as stale (its lease already ended) and
     * audited; each task is recorded once. */
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from audit_log where action = "
                                    "'result_rejected_stale'", 1000, 30000) == 0);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where state = "
                                   "'succeeded'", &n) == 0 && n == 1000);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts", &n) == 0 && n == 1000);
    sq_e2e_check_no_duplicates(h);
}

static void
priority(void)
{
    SQ_REQUIRE(sq_e2e_up("priority", sq_e2e_quick_retry, &h, &client));
    /* One tenant (fair share plays no part): 300 tasks at priority 0, then
     * 50 at priority 900, queued before the only worker comes. */
    const char *ids[50], *prompts[50];
    char buf[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(buf[i], sizeof buf[i], "hi-%d", i);
        ids[i] = prompts[i] = buf[i];
    }
    uint64_t low = 0, high = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 300, "lo", 0, &low, NULL) == 0);
    sq_e2e_job_t job = {.tenant = "acme", .model = "test", .priority = 900, .n_tasks = 50,
                        .custom_ids = ids, .prompts = prompts};
    SQ_REQUIRE(sq_e2e_submit(client, &job, 30000, &high, NULL) == 0);
    const char *flags[] = {"--batch", "1", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w", flags));
    SQ_REQUIRE(sq_harness_wait_i64(h, S_DONE_SQL, 350, 60000) == 0);
    /* The first 50 dispatches (lease order) are the high-priority job. */
    char sql[256];
    snprintf(sql, sizeof sql, "select count(*) from (select job_id from task_attempts "
             "order by lease_id limit 50) f where job_id = %llu", (unsigned long long)high);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n) == 0);
    fprintf(stderr, "high priority: %lld of the first 50 dispatches\n", (long long)n);
    SQ_CHECK(n == 50);
}

static void
fairness(void)
{
    SQ_REQUIRE(sq_e2e_up("fairness", sq_e2e_quick_retry, &h, &client));
    /* Both backlogs exist before any worker: the big tenant first, so a
     * FIFO queue would serve none of the small tenant's tasks for a while. */
    uint64_t big = 0, small = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "big", "test", 1800, "b", 0, &big, NULL) == 0);
    SQ_REQUIRE(sq_e2e_submit_n(client, "small", "test", 200, "s", 0, &small, NULL) == 0);
    const char *flags[] = {"--batch", "4", "--delay-ms", "2", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w", flags));
    SQ_REQUIRE(sq_harness_wait_i64(h, S_DONE_SQL, 2000, 120000) == 0);
    /* Dispatch order is lease order. While both tenants had backlog (the
     * first 300 leases: small runs out after ~400 at a 1:1 share), the
     * small tenant's share is near its fair share of 1/2. */
    int64_t n_small = -1;
    char sql[512];
    snprintf(sql, sizeof sql,
             "select count(*) from (select job_id from task_attempts order by lease_id "
             "limit 300) f where job_id = %llu", (unsigned long long)small);
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n_small) == 0);
    fprintf(stderr, "small tenant: %lld of the first 300 dispatches\n", (long long)n_small);
    SQ_CHECK(n_small >= 105 && n_small <= 195);
    sq_e2e_check_no_duplicates(h);
}

int
main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"ten_thousand", ten_thousand},
        {"cancel", cancel},
        {"retries_dead", retries_dead},
        {"fairness", fairness},
        {"duplicate_delivery", duplicate_delivery},
        {"priority", priority},
        {NULL, NULL}};
    return sq_e2e_main(argc, argv, cases, &h, &client);
}
