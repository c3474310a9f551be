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
 *    idempotent_submit  a SUBMIT sent again with its idempotency key (in
 *                  turn, pipelined, after the job finished) gives the
 *                  first job and stores nothing new; the key is the
 *                  tenant's; another job under a used key (other tasks,
 *                  or as many with other prompts) is refused
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

/* Send a SUBMIT of n tasks "<key>-<i>" for tenant with idempotency_key key
 * (NULL: none) without waiting; its rid. The prompts are the ids, or
 * other text when s_other_prompts is set. */
static bool s_other_prompts;

static uint64_t
s_send_keyed(const char *tenant, const char *key, int n)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 3 + (key != NULL));
    sq_wire_kv_str(e, "tenant", tenant);
    sq_wire_kv_str(e, "model", "test");
    if (key)
        sq_wire_kv_str(e, "idempotency_key", key);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", key ? key : "nokey", i + 1);
        sq_wire_map(e, 2);
        sq_wire_kv_str(e, "custom_id", id);
        sq_wire_kv_str(e, "prompt", s_other_prompts ? "something else" : id);
    }
    return sq_e2e_send(client, SQ_WIRE_SUBMIT);
}

typedef struct {
    uint64_t job_id;
    bool repeated;
    int error;      /* the wire error code, 0: none */
    char message[300];
} s_answer_t;

/* The answer to the SUBMIT with rid (other messages are dropped). */
static s_answer_t
s_answer(uint64_t rid)
{
    s_answer_t a = {0, false, -1, ""};
    int64_t deadline = sq_test_now_ms() + 30000;
    while (sq_test_now_ms() < deadline) {
        sq_wire_msg_t *m = sq_e2e_recv_any(client, 1000);
        uint64_t r = 0;
        if (!m || sq_wire_get_u64(m->body, "rid", true, UINT64_MAX, &r) != 0 || r != rid) {
            sq_wire_msg_destroy(&m);
            continue;
        }
        uint64_t code = 0;
        if (m->cmd == SQ_WIRE_ERROR) {
            sq_wire_get_u64(m->body, "code", true, UINT64_MAX, &code);
            a.error = (int)code;
            const char *msg = NULL;
            size_t len = 0;
            if (sq_wire_get_str(m->body, "message", false, SQ_WIRE_MAX_TEXT, &msg, &len) == 0 &&
                msg)
                snprintf(a.message, sizeof a.message, "%.*s", (int)len, msg);
        } else {
            a.error = 0;
            sq_wire_get_u64(m->body, "job_id", true, UINT64_MAX, &a.job_id);
            sq_wire_get_bool(m->body, "repeated", false, &a.repeated);
        }
        sq_wire_msg_destroy(&m);
        break;
    }
    return a;
}

static s_answer_t
s_submit_keyed(const char *tenant, const char *key, int n)
{
    return s_answer(s_send_keyed(tenant, key, n));
}

static int64_t
s_jobs_with_key(const char *key)
{
    int64_t n = -1;
    const char *p[1] = {key};
    PGresult *r = sq_harness_sql(h, "select count(*) from jobs where idempotency_key = $1", 1, p);
    if (r && PQntuples(r) == 1)
        n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

static void
idempotent_submit(void)
{
    SQ_REQUIRE(sq_e2e_up("idempotent_submit", NULL, &h, &client));
    /* in turn: the second answer names the first job, nothing new stored */
    s_answer_t a = s_submit_keyed("acme", "batch-2026-11-30", 3);
    SQ_REQUIRE(a.error == 0 && a.job_id > 0 && !a.repeated);
    s_answer_t b = s_submit_keyed("acme", "batch-2026-11-30", 3);
    SQ_CHECK(b.error == 0 && b.job_id == a.job_id && b.repeated);
    SQ_CHECK(s_jobs_with_key("batch-2026-11-30") == 1);
    /* pipelined: both in one batch or two, one job */
    uint64_t r1 = s_send_keyed("acme", "pipelined", 4), r2 = s_send_keyed("acme", "pipelined", 4);
    s_answer_t p1 = s_answer(r1), p2 = s_answer(r2);
    SQ_CHECK(p1.error == 0 && p2.error == 0 && p1.job_id == p2.job_id &&
             p1.repeated != p2.repeated);
    SQ_CHECK(s_jobs_with_key("pipelined") == 1);
    /* the key is the tenant's: another tenant's same key is its own job */
    s_answer_t other = s_submit_keyed("globex", "batch-2026-11-30", 3);
    SQ_CHECK(other.error == 0 && other.job_id != a.job_id && !other.repeated);
    /* another job under a used key: refused, naming the job */
    s_answer_t differs = s_submit_keyed("acme", "batch-2026-11-30", 5);
    char want[64];
    snprintf(want, sizeof want, "already names job %llu", (unsigned long long)a.job_id);
    SQ_CHECK(differs.error == SQ_WIRE_E_INVALID && strstr(differs.message, want) != NULL);
    s_other_prompts = true;   /* as many tasks, other prompts: refused too */
    s_answer_t other_text = s_submit_keyed("acme", "batch-2026-11-30", 3);
    s_other_prompts = false;
    SQ_CHECK(other_text.error == SQ_WIRE_E_INVALID && strstr(other_text.message, want) != NULL);
    s_answer_t empty = s_submit_keyed("acme", "", 1);
    SQ_CHECK(empty.error == SQ_WIRE_E_INVALID);
    /* after the job has finished (the broker no longer holds it) */
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", NULL));
    SQ_CHECK(sq_harness_wait_i64(h, S_DONE_SQL, 3 + 4 + 3, 60000) == 0);
    s_answer_t later = s_submit_keyed("acme", "batch-2026-11-30", 3);
    SQ_CHECK(later.error == 0 && later.job_id == a.job_id && later.repeated);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from tasks", &n) == 0 && n == 3 + 4 + 3);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from audit_log where action = 'submitted'",
                                &n) == 0 && n == 3);
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
        {"idempotent_submit", idempotent_submit},
        {NULL, NULL}};
    return sq_e2e_main(argc, argv, cases, &h, &client);
}
