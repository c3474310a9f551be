/*  End-to-end crash tests: things die at bad moments and nothing
 *  acknowledged is lost, nothing is recorded twice.
 *
 *    worker_kill   kill -9 of a worker holding a lease: re-dispatched
 *                  within 3 s, one recorded result
 *    worker_term   SIGTERM of such a worker: it says DISCONNECT, the same
 *    worker_stall  a worker that stops heartbeating with its socket open:
 *                  the same, through the heartbeat deadline
 *    stale_result  a lease timed out (the task dead); the late RESULT of
 *                  the worker is fenced off: audited, never stored
 *    lease_suspect a group that heartbeats but does not answer: its timed
 *                  out leases retry on a group that works, never on it
 *                  (its freed slots took them back, an attempt each
 *                  time); once it answers, late, it takes leases again
 *    lease_probe   such a group alone for its model, honouring the
 *                  CANCEL-LEASEs (so it never answers them): it is not
 *                  starved, but takes one lease at a time
 *    broker_kill   kill -9 of the broker during a storm of pipelined
 *                  SUBMITs: after a restart every ACKNOWLEDGED job
 *                  completes, no task twice, no job half stored
 *    broker_term   the same with SIGTERM: exit 0 after in-flight commits
 *    pg_restart    PostgreSQL killed mid-run: SUBMIT gets a retryable
 *                  error meanwhile, the broker recovers by itself, no
 *                  acknowledged task lost or doubled (needs SHARDQ_PG_CTL)
 *    cancel_db_down  CANCEL while PostgreSQL is down: refused as
 *                  retryable, saying the job is cancelled; its leases are
 *                  aborted at once, nothing of it runs on, and once the
 *                  database is back the retried CANCEL confirms it and
 *                  the job is recorded cancelled, once
 *    term_db_down  SIGTERM while PostgreSQL is down, a CANCEL waiting to be
 *                  recorded: the database back within the broker's 10 s,
 *                  the cancellation is committed and the exit is 0 (it
 *                  gave up at the first failure, exited 0 and the job ran
 *                  on after a restart); never back, the exit is 3 and the
 *                  log names the cancelled job whose row is lost
 *    cancel_refused  the database up but refusing the batch that carries
 *                  a CANCEL (a trigger): once the broker drops that batch,
 *                  the job's tasks do not run again; the cancellation is
 *                  recorded when the database takes it
 *
 *  Usage: test_e2e_crash CASE.
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
#include <sys/wait.h>
#include <unistd.h>

#define S_MAX_JOBS 512
/* Bound on re-dispatch after a worker group dies (issue 2), plus the time
 * one loop tick of the broker and one dispatch may take on a busy box. */
#define S_REDISPATCH_MS 3000
#define S_REDISPATCH_SLACK_MS 500

static sq_harness_t *h;
static sq_e2e_client_t *client;

/* The one bigint `sql` answers with `param` as $1; -1 on error. */
static int64_t
s_sql_i64(const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *r = sq_harness_sql(h, sql, 1, params);
    int64_t v = r && PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

/* Milliseconds between `t0` (an SQL timestamp literal) and the start of
 * attempt 2 of the only task. */
static int64_t
s_redispatch_ms(const char *t0)
{
    return s_sql_i64("select (extract(epoch from started_at - $1::timestamptz) * 1000)::bigint"
                     " from task_attempts where attempt = 2", t0);
}

/* One task leased by a worker that will never finish it; `sig` (0: none,
 * the worker stalls by itself) makes the worker go away; a second worker
 * must get the task within the re-dispatch bound. */
static void
s_lost_lease(const char *name, const char *const slow_flags[], int sig)
{
    SQ_REQUIRE(sq_e2e_up(name, sq_e2e_quick_retry, &h, &client));
    sq_proc_t *slow = sq_harness_worker_start(h, "slow", slow_flags);
    SQ_REQUIRE(slow);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 1, "k", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", 1, 15000) == 0);
    SQ_REQUIRE(sq_harness_worker_start(h, "rescuer", NULL));

    /* t0 in the database's clock, the one task_attempts uses, cut to the
     * millisecond as the broker's started_at is (else a re-dispatch in
     * the same millisecond reads as -1 ms). For a stalling worker the
     * clock starts when it stalled, i.e. now. */
    PGresult *r = sq_harness_sql(h, "select date_trunc('milliseconds', clock_timestamp())::text",
                                 0, NULL);
    SQ_REQUIRE(r);
    char t0[64];
    snprintf(t0, sizeof t0, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    if (sig)
        SQ_CHECK(sq_proc_signal(slow, sig) == 0);
    if (sig == SIGTERM)    /* it says DISCONNECT and leaves cleanly */
        SQ_CHECK(sq_proc_wait(slow, 5000) == 0 && sq_proc_exit_code(slow) == 0);

    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                    "'succeeded'", 1, 20000) == 0);
    int64_t ms = s_redispatch_ms(t0);
    fprintf(stderr, "%s: re-dispatched %lld ms after the worker was lost\n", name,
            (long long)ms);
    SQ_CHECK(ms >= 0 && ms <= S_REDISPATCH_MS + S_REDISPATCH_SLACK_MS);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where attempt = 1 "
                                   "and group_id = 'slow' and outcome = 'worker_lost'",
                                &n) == 0 && n == 1);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where attempt = 2 "
                                   "and group_id = 'rescuer' and outcome = 'succeeded'",
                                &n) == 0 && n == 1);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results", &n) == 0 && n == 1);
    sq_e2e_check_no_duplicates(h);
}

static void
worker_kill(void)
{
    const char *flags[] = {"--batch", "1", "--delay-ms", "600000", NULL};
    s_lost_lease("worker_kill", flags, SIGKILL);
}

static void
worker_term(void)
{
    const char *flags[] = {"--batch", "1", "--delay-ms", "600000", NULL};
    s_lost_lease("worker_term", flags, SIGTERM);
}

static void
worker_stall(void)
{
    const char *flags[] = {"--batch", "1", "--stall", NULL};
    s_lost_lease("worker_stall", flags, 0);
}

/* The state and leases WORKERS gives for group `id`; false when it is
 * not listed (or WORKERS failed). */
static bool
s_worker_state(const char *id, char state[16], uint64_t *leases)
{
    sq_e2e_begin(client, 0);
    sq_wire_msg_t *reply = NULL;
    sq_wire_val_t arr, w;
    bool found = false;
    if (sq_e2e_call(client, SQ_WIRE_WORKERS, 5000, &reply, NULL) == 0 &&
        sq_wire_get_array(reply->body, "workers", true, UINT32_MAX, &arr) == 0) {
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, arr);
        while (!found && sq_wire_iter_next(&it, &w)) {
            const char *g, *st;
            size_t n, n_st;
            if (sq_wire_get_str(w, "group_id", true, 256, &g, &n) != 0 || n != strlen(id) ||
                memcmp(g, id, n) != 0 || sq_wire_get_str(w, "state", true, 15, &st, &n_st) != 0)
                continue;
            snprintf(state, 16, "%.*s", (int)n_st, st);
            found = sq_wire_get_u64(w, "leases", true, UINT64_MAX, leases) == 0;
        }
    }
    sq_wire_msg_destroy(&reply);
    return found;
}

static void
lease_suspect(void)
{
    const char *broker[] = {"--lease-timeout-ms", "1000", "--retry-base-ms", "100", NULL};
    SQ_REQUIRE(sq_e2e_up("lease_suspect", broker, &h, &client));
    /* "hung": it answers, but only after 4 s, far past the lease timeout
     * (and whatever CANCEL-LEASE says) */
    const char *slow[] = {"--batch", "4", "--delay-ms", "4000", "--ignore-cancel", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "hung", slow));
    uint64_t job = 0;
    char state[16] = "";
    uint64_t leases = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 8, "p", 3, &job, NULL) == 0);
    for (int64_t end = sq_test_now_ms() + 10000; sq_test_now_ms() < end && leases < 4;
         sq_harness_poll_pause())
        s_worker_state("hung", state, &leases);
    SQ_REQUIRE(leases == 4);
    const char *fast[] = {"--batch", "4", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "ok", fast));
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)job);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                    "'succeeded'", 8, 20000) == 0);
    /* hung's 4 leases timed out, once each; nothing went back to it */
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where group_id = 'hung'",
                                &n) == 0 && n == 4);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where group_id = 'hung' "
                                   "and error like '%lease timed out%'", &n) == 0 && n == 4);
    /* its late answers (fenced off as stale) show it works: leases again */
    SQ_CHECK(sq_harness_wait_at_least(h, "select count(*) from audit_log where action = "
                                         "'result_rejected_stale'", 1, 20000, NULL) == 0);
    bool back = false;
    for (int64_t end = sq_test_now_ms() + 10000; sq_test_now_ms() < end && !back;
         sq_harness_poll_pause())
        back = s_worker_state("hung", state, &leases) && strcmp(state, "idle") == 0;
    SQ_CHECK(back);
    sq_e2e_check_no_duplicates(h);
}

static void
lease_probe(void)
{
    const char *broker[] = {"--lease-timeout-ms", "1000", "--retry-base-ms", "100", NULL};
    SQ_REQUIRE(sq_e2e_up("lease_probe", broker, &h, &client));
    /* 4 s a task: past the timeout whenever the broker's once-a-second
     * scan comes (a probe that finished in time would clear it) */
    const char *slow[] = {"--batch", "4", "--delay-ms", "4000", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "slow", slow));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 8, "p", 20, &job, NULL) == 0);
    char state[16] = "";
    uint64_t leases = 0, most = 0, least = UINT64_MAX;
    bool suspect = false;
    for (int64_t end = sq_test_now_ms() + 10000; sq_test_now_ms() < end && !suspect;
         sq_harness_poll_pause())
        suspect = s_worker_state("slow", state, &leases) && strcmp(state, "suspect") == 0;
    SQ_REQUIRE(suspect);
    /* for the next 3 s: one lease at a time, and one it gets (a probe
     * whose answer would clear it); at least one probe timed out */
    for (int64_t end = sq_test_now_ms() + 3000; sq_test_now_ms() < end;
         sq_harness_poll_pause()) {
        if (!s_worker_state("slow", state, &leases) || strcmp(state, "suspect") != 0)
            continue;
        most = leases > most ? leases : most;
        least = leases < least ? leases : least;
    }
    SQ_CHECK(most == 1);
    int64_t n = -1;
    SQ_CHECK(sq_harness_wait_at_least(h, "select count(*) from task_attempts where error like "
                                         "'%lease timed out%'", 5, 5000, &n) == 0);
    fprintf(stderr, "timed out attempts: %lld (least leases while suspect %llu)\n",
            (long long)n, (unsigned long long)least);
}

/* Fencing: a lease taken back from a live worker (--lease-timeout-ms)
 * ends the only attempt (max_attempts 1: the task is dead). The worker
 * ignores CANCEL-LEASE and answers anyway: its RESULT carries a stale
 * token, so it is rejected and audited and the dead task stays dead. */
static void
stale_result(void)
{
    const char *broker[] = {"--lease-timeout-ms", "1000", NULL};
    SQ_REQUIRE(sq_e2e_up("stale_result", broker, &h, &client));
    const char *late[] = {"--batch", "1", "--delay-ms", "3000", "--ignore-cancel", NULL};
    sq_proc_t *slow = sq_harness_worker_start(h, "late", late);
    SQ_REQUIRE(slow);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 1, "f", 1, &job, NULL) == 0);

    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = 'dead' "
                                    "and error like '%lease timed out%'", 1, 20000) == 0);
    SQ_CHECK(sq_harness_wait_at_least(h, "select count(*) from audit_log where action = "
                                         "'result_rejected_stale'", 1, 20000, NULL) == 0);
    SQ_CHECK(sq_proc_log_count(slow, "ignoring CANCEL-LEASE") >= 1);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where state = 'dead' "
                                   "and text is null", &n) == 0 && n == 1);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where outcome = "
                                   "'succeeded'", &n) == 0 && n == 0);
    sq_e2e_check_no_duplicates(h);
}

/* The test's own ledger of pipelined SUBMITs: what it sent and what the
 * broker answered. Acknowledged job ids come from here, never from the
 * database under test. Submit k's tasks are "s<k>-<t>". */
typedef struct {
    uint64_t rid;
    uint64_t job;   /* acknowledged job id; 0 when not acknowledged */
    int error;      /* ERROR code received; 0 when none */
} s_submit_t;

#define S_STORM_TASKS 20
static s_submit_t s_sent[S_MAX_JOBS];
static int s_n_sent, s_n_acked, s_n_refused;

/* Collect SUBMIT replies for up to timeout_ms, or until n_wanted more. */
static void
s_collect(int n_wanted, int timeout_ms)
{
    int64_t deadline = sq_test_now_ms() + timeout_ms;
    int got = 0;
    while (got < n_wanted && sq_test_now_ms() < deadline) {
        sq_wire_msg_t *m = sq_e2e_recv_any(client, (int)(deadline - sq_test_now_ms()));
        if (!m)
            break;
        uint64_t rid = 0, value = 0;
        sq_wire_get_u64(m->body, "rid", false, UINT64_MAX, &rid);
        s_submit_t *sub = NULL;
        for (int i = 0; i < s_n_sent && !sub; i++)
            sub = s_sent[i].rid == rid ? &s_sent[i] : NULL;
        if (sub && !sub->job && !sub->error) {
            if (m->cmd == (SQ_WIRE_SUBMIT | SQ_WIRE_REPLY)
                && sq_wire_get_u64(m->body, "job_id", true, UINT64_MAX, &value) == 0) {
                sub->job = value;
                s_n_acked++;
                got++;
            } else if (m->cmd == SQ_WIRE_ERROR
                       && sq_wire_get_u64(m->body, "code", true, 255, &value) == 0) {
                sub->error = (int)value;
                s_n_refused++;
                got++;
            }
        }
        sq_wire_msg_destroy(&m);
    }
}

/* Pipeline n SUBMITs of S_STORM_TASKS tasks each without waiting. */
static void
s_storm(int n)
{
    for (int i = 0; i < n && s_n_sent < S_MAX_JOBS; i++) {
        sq_wire_enc_t *e = sq_e2e_begin(client, 3);
        sq_wire_kv_str(e, "tenant", i % 2 ? "acme" : "bank");
        sq_wire_kv_str(e, "model", "test");
        sq_wire_key(e, "tasks");
        sq_wire_array(e, S_STORM_TASKS);
        for (int t = 0; t < S_STORM_TASKS; t++) {
            char id[32];
            snprintf(id, sizeof id, "s%d-%d", s_n_sent, t);
            sq_wire_map(e, 2);
            sq_wire_kv_str(e, "custom_id", id);
            sq_wire_kv_str(e, "prompt", id);
        }
        s_sent[s_n_sent++].rid = sq_e2e_send(client, SQ_WIRE_SUBMIT);
    }
}

/* Every acknowledged job completes; every refused submit left no row;
 * jobs committed but never acknowledged (possible) are whole; nothing is
 * left queued or recorded twice. One deadline for all the waiting, and
 * the first miss ends the check, so a stuck broker fails the case fast. */
static bool
s_check_ledger(void)
{
    int64_t deadline = sq_test_now_ms() + 90000;
    char sql[256];
    for (int i = 0; i < s_n_sent; i++) {
        int left = (int)(deadline - sq_test_now_ms());
        int rc = 0;
        if (s_sent[i].job) {
            snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu "
                     "and state = 'succeeded'", (unsigned long long)s_sent[i].job);
            rc = sq_harness_wait_i64(h, sql, S_STORM_TASKS, left > 0 ? left : 0);
        } else if (s_sent[i].error) {
            snprintf(sql, sizeof sql, "select count(*) from tasks where custom_id like 's%d-%%'",
                     i);
            rc = sq_harness_wait_i64(h, sql, 0, 0);
        }
        if (rc != 0) {
            fprintf(stderr, "submit %d (job %llu, error %d): %s\n", i,
                    (unsigned long long)s_sent[i].job, s_sent[i].error, sq_error_detail());
            SQ_CHECK(!"every acknowledged job completes, no refused one is stored");
            return false;
        }
    }
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from jobs j where n_tasks <> "
                                   "(select count(*) from tasks t where t.job_id = j.id)",
                                &n) == 0 && n == 0);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_queue", 0, 60000) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results r join tasks t "
                                   "using (job_id, idx) where r.state <> 'succeeded' "
                                   "or r.text <> t.prompt", &n) == 0 && n == 0);
    sq_e2e_check_no_duplicates(h);
    return true;
}

/* A storm of SUBMITs, the broker stopped by `sig` in the middle of it,
 * restarted on the same database and ports: every acknowledged job
 * completes, nothing is half stored or recorded twice. */
static void
s_broker_stop_in_storm(const char *name, int sig)
{
    SQ_REQUIRE(sq_e2e_up(name, sq_e2e_quick_retry, &h, &client));
    const char *flags[] = {"--batch", "32", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", flags));
    SQ_REQUIRE(sq_harness_worker_start(h, "w2", flags));
    /* A storm: SUBMITs keep going out, up to 100 unanswered at a time,
     * while acks come back; once 30 are acknowledged 50 more are sent
     * without waiting and the broker is stopped with those commits, acks
     * and results under way. */
    int64_t deadline = sq_test_now_ms() + 60000;
    while (s_n_acked < 30 && sq_test_now_ms() < deadline) {
        if (s_n_sent - s_n_acked < 100)
            s_storm(10);
        s_collect(S_MAX_JOBS, 5);
    }
    SQ_REQUIRE(s_n_acked >= 30);
    s_storm(50);
    int64_t t_signal = sq_test_now_ms();
    SQ_CHECK(sq_proc_signal(sq_harness_broker(h), sig) == 0);
    if (sig == SIGTERM) {
        /* A clean stop finishes its in-flight commits (and acks them):
         * take acks until it has exited. */
        while (sq_proc_running(sq_harness_broker(h)) && sq_test_now_ms() - t_signal < 30000)
            s_collect(S_MAX_JOBS, 20);
        s_collect(S_MAX_JOBS, 100);
        SQ_CHECK(sq_proc_wait(sq_harness_broker(h), 0) == 0);
        SQ_CHECK(sq_proc_exit_code(sq_harness_broker(h)) == 0);
        fprintf(stderr, "broker exited within %lld ms of SIGTERM\n",
                (long long)(sq_test_now_ms() - t_signal));
    } else {
        SQ_CHECK(sq_proc_wait(sq_harness_broker(h), 5000) == 0);
        s_collect(S_MAX_JOBS, 200);    /* acks that were already on the wire */
    }
    fprintf(stderr, "broker stopped (signal %d) with %d of %d submits acknowledged\n", sig,
            s_n_acked, s_n_sent);

    /* Same database, same ports: workers find it again by themselves. */
    SQ_REQUIRE(sq_harness_broker_start(h, sq_e2e_quick_retry));
    s_check_ledger();
}

static void
broker_kill(void)
{
    s_broker_stop_in_storm("broker_kill", SIGKILL);
}

static void
broker_term(void)
{
    s_broker_stop_in_storm("broker_term", SIGTERM);
}

/* Submit once; 0, or the wire error code (5 = UNAVAILABLE), or -1 when
 * the broker did not answer. */
static int
s_submit_once(const char *prefix, uint64_t *job_out)
{
    int code = 0;
    int rc = sq_e2e_submit_n(client, "acme", "test", 10, prefix, 0, job_out, &code);
    return rc == 0 ? 0 : rc == SQ_EPROTO ? code : -1;
}

/* Cases that stop and start PostgreSQL: skipped (77) without SHARDQ_PG_CTL. */
static void
s_need_pg_ctl(void)
{
    if (!sq_harness_has_pg_ctl()) {
        printf("skipped: SHARDQ_PG_CTL is not set\n");
        exit(77);
    }
}

static void
pg_restart(void)
{
    s_need_pg_ctl();
    SQ_REQUIRE(sq_e2e_up("pg_restart", sq_e2e_quick_retry, &h, &client));
    const char *flags[] = {"--batch", "16", "--delay-ms", "5", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", flags));
    SQ_REQUIRE(sq_harness_worker_start(h, "w2", flags));
    uint64_t big = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 3000, "a", 0, &big, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_at_least(h, "select count(*) from task_results", 200, 60000,
                                        NULL) == 0);
    /* PostgreSQL dies under 30 SUBMITs in flight, and 20 more come while
     * it is down: each is answered, acknowledged (committed before) or
     * refused as retryable (UNAVAILABLE) — and all of the later 20 are
     * refused. Never an ack without a commit, never silence. */
    s_storm(30);
    SQ_REQUIRE(sq_harness_pg_ctl(h, "kill") == 0);
    s_storm(20);
    s_collect(50, 60000);
    fprintf(stderr, "PostgreSQL killed under a storm: %d acknowledged, %d refused, %d sent\n",
            s_n_acked, s_n_refused, s_n_sent);
    SQ_CHECK(s_n_acked + s_n_refused == s_n_sent);
    for (int i = 0; i < s_n_sent; i++) {
        SQ_CHECK(s_sent[i].error == 0 || s_sent[i].error == SQ_WIRE_E_UNAVAILABLE);
        SQ_CHECK(i < 30 || s_sent[i].error == SQ_WIRE_E_UNAVAILABLE);
    }

    SQ_REQUIRE(sq_harness_pg_ctl(h, "start") == 0);
    /* The broker reconnects by itself; submits succeed again. */
    int code = -1;
    int64_t deadline = sq_test_now_ms() + 60000;
    uint64_t after = 0;
    while ((code = s_submit_once("after", &after)) != 0 && sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_REQUIRE(code == 0);
    SQ_REQUIRE(s_check_ledger());
    char sql[128];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id in (%llu, %llu) "
             "and state = 'succeeded'", (unsigned long long)big, (unsigned long long)after);
    SQ_CHECK(sq_harness_wait_i64(h, sql, 3010, 60000) == 0);
}

/* s_sql_i64 with the job id as $1. */
static int64_t
s_job_i64(const char *sql, uint64_t job)
{
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)job);
    return s_sql_i64(sql, id);
}

/* CANCEL of job; its reply's "state" in state (size bytes), or the
 * ERROR's code in *code and its message in the error detail. */
static int
s_cancel(uint64_t job, int *code, char *state, size_t size)
{
    sq_wire_kv_u64(sq_e2e_begin(client, 1), "job_id", job);
    sq_wire_msg_t *reply = NULL;
    int rc = sq_e2e_call(client, SQ_WIRE_CANCEL, 10000, &reply, code);
    char *s = NULL;
    if (rc == 0)
        rc = sq_wire_get_strdup(reply->body, "state", true, 64, &s);
    if (rc == 0)
        snprintf(state, size, "%s", s);
    free(s);
    sq_wire_msg_destroy(&reply);
    return rc;
}

/* The job is recorded cancelled: its n tasks' results, cancelled_at and
 * one audit row. */
static void
s_check_cancelled(uint64_t job, int64_t n)
{
    SQ_CHECK(s_job_i64("select count(*) from task_results where job_id = $1::bigint"
                       " and state = 'cancelled'", job) == n);
    SQ_CHECK(s_job_i64("select count(*) from jobs where id = $1::bigint"
                       " and cancelled_at is not null", job) == 1);
    SQ_CHECK(s_job_i64("select count(*) from audit_log where job_id = $1::bigint"
                       " and action = 'cancelled'", job) == 1);
}

static void
cancel_db_down(void)
{
    s_need_pg_ctl();
    SQ_REQUIRE(sq_e2e_up("cancel_db_down", sq_e2e_quick_retry, &h, &client));
    const char *slow[] = {"--batch", "2", "--delay-ms", "600000", NULL};
    sq_proc_t *w = sq_harness_worker_start(h, "slow", slow);
    SQ_REQUIRE(w);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 10, "c", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", 2, 15000) == 0);
    SQ_REQUIRE(sq_harness_pg_ctl(h, "kill") == 0);

    /* refused, retryable, and the reply says what did happen */
    int code = 0;
    char state[64] = "";
    SQ_CHECK(s_cancel(job, &code, state, sizeof state) == SQ_EPROTO);
    fprintf(stderr, "CANCEL with PostgreSQL down: %s\n", sq_error_detail());
    SQ_CHECK(code == SQ_WIRE_E_UNAVAILABLE);
    SQ_CHECK(strstr(sq_error_detail(), "the job is cancelled here") != NULL);
    /* the worker was told to stop both leases without waiting for it */
    int64_t deadline = sq_test_now_ms() + 10000;
    while (sq_proc_log_count(w, "lease cancelled") < 2 && sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_CHECK(sq_proc_log_count(w, "lease cancelled") == 2);
    /* asked again while still down: the same answer */
    SQ_CHECK(s_cancel(job, &code, state, sizeof state) == SQ_EPROTO);
    SQ_CHECK(code == SQ_WIRE_E_UNAVAILABLE);
    SQ_CHECK(strstr(sq_error_detail(), "the job is cancelled here") != NULL);

    /* back up: the first CANCEL that is answered finds it recorded */
    SQ_REQUIRE(sq_harness_pg_ctl(h, "start") == 0);
    int rc = -1;
    deadline = sq_test_now_ms() + 60000;
    while ((rc = s_cancel(job, &code, state, sizeof state)) != 0 &&
           sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_REQUIRE(rc == 0);
    SQ_CHECK(strcmp(state, "cancelled") == 0);
    s_check_cancelled(job, 10);
    SQ_CHECK(s_job_i64("select count(*) from task_attempts where job_id = $1::bigint"
                       " and outcome = 'cancelled'", job) == 2);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_queue", &n) == 0 && n == 0);
}

/* Up to the SIGTERM with CANCELs the database has not taken: n jobs of
 * 10 tasks, 2 of the first leased, PostgreSQL killed, each job's CANCEL
 * answered "the job is cancelled here". False when a step failed
 * (checked). */
static bool
s_term_with_cancel_pending(const char *name, int n, uint64_t jobs[])
{
    const char *slow[] = {"--batch", "2", "--delay-ms", "600000", NULL};
    bool ok = sq_e2e_up(name, sq_e2e_quick_retry, &h, &client) &&
              sq_harness_worker_start(h, "slow", slow);
    for (int i = 0; ok && i < n; i++)
        ok = sq_e2e_submit_n(client, "acme", "test", 10, "c", 0, &jobs[i], NULL) == 0;
    ok = ok && sq_e2e_wait_count(client, jobs[0], "leased", 2, 15000) == 0 &&
         sq_harness_pg_ctl(h, "kill") == 0;
    for (int i = 0; ok && i < n; i++) {
        int code = 0;
        char state[64] = "";
        ok = s_cancel(jobs[i], &code, state, sizeof state) == SQ_EPROTO &&
             code == SQ_WIRE_E_UNAVAILABLE;
    }
    ok = ok && sq_proc_signal(sq_harness_broker(h), SIGTERM) == 0;
    SQ_CHECK(ok);
    return ok;
}

static void
term_db_down(void)
{
    s_need_pg_ctl();
    uint64_t job = 0;
    SQ_REQUIRE(s_term_with_cancel_pending("term_db_down", 1, &job));
    /* back while the broker drains (its first try failed at once) */
    SQ_REQUIRE(sq_harness_pg_ctl(h, "start") == 0);
    sq_proc_t *b = sq_harness_broker(h);
    SQ_CHECK(sq_proc_wait(b, 20000) == 0 && WIFEXITED(sq_proc_status(b)) &&
             WEXITSTATUS(sq_proc_status(b)) == 0);
    s_check_cancelled(job, 10);
}

static void
term_db_lost(void)
{
    s_need_pg_ctl();
    /* two: the second CANCEL waits behind the batch to retry (its job was
     * left out of the log when only that batch was named) */
    uint64_t jobs[2] = {0, 0};
    SQ_REQUIRE(s_term_with_cancel_pending("term_db_lost", 2, jobs));
    sq_proc_t *b = sq_harness_broker(h);
    SQ_CHECK(sq_proc_wait(b, 20000) == 0 && WIFEXITED(sq_proc_status(b)) &&
             WEXITSTATUS(sq_proc_status(b)) == 3);
    char says[96];
    snprintf(says, sizeof says, "cancellations=2 cancelled_jobs=%llu,%llu ",
             (unsigned long long)jobs[0], (unsigned long long)jobs[1]);
    SQ_CHECK(sq_proc_log_count(b, "shutting down with rows not committed") == 1);
    SQ_CHECK(sq_proc_log_count(b, says) == 1);
    SQ_REQUIRE(sq_harness_pg_ctl(h, "start") == 0);
}

static void
cancel_refused(void)
{
    SQ_REQUIRE(sq_e2e_up("cancel_refused", sq_e2e_quick_retry, &h, &client));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 5, "r", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "queued", 5, 15000) == 0);
    /* a constraint the broker did not foresee: no job may be cancelled */
    PGresult *r = sq_harness_sql(h,
        "create function test_refuse_cancel() returns trigger language plpgsql as $$"
        " begin if new.cancelled_at is not null then"
        "   raise exception 'this test refuses cancellations'; end if;"
        " return new; end $$", 0, NULL);
    SQ_REQUIRE(r);
    PQclear(r);
    r = sq_harness_sql(h, "create trigger test_refuse_cancel before update on jobs for each row"
                          " execute function test_refuse_cancel()", 0, NULL);
    SQ_REQUIRE(r);
    PQclear(r);

    int code = 0;
    char state[64] = "";
    SQ_CHECK(s_cancel(job, &code, state, sizeof state) == SQ_EPROTO);
    fprintf(stderr, "CANCEL the database refuses: %s\n", sq_error_detail());
    /* the broker gives up on that batch (after 5 tries, ~1.5 s) ... */
    int64_t deadline = sq_test_now_ms() + 20000;
    while (sq_proc_log_count(sq_harness_broker(h), "dropping a batch the database keeps "
                                                   "refusing") < 1 &&
           sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_REQUIRE(sq_proc_log_count(sq_harness_broker(h), "dropping a batch the database keeps "
                                                       "refusing") >= 1);
    /* ... and a worker that comes now gets none of the job's tasks */
    sq_proc_t *w = sq_harness_worker_start(h, "w", NULL);
    SQ_REQUIRE(w);
    for (int i = 0; i < 20; i++)    /* time to lease and run them, were they queued */
        sq_harness_poll_pause();
    r = sq_harness_sql(h, "drop trigger test_refuse_cancel on jobs", 0, NULL);
    SQ_REQUIRE(r);
    PQclear(r);
    /* the cancellation, recorded again, commits once the trigger is gone */
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results", 5, 30000) == 0);
    s_check_cancelled(job, 5);
    SQ_CHECK(sq_proc_log_count(w, "first tasks") == 0);
    int64_t n = -1;
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_queue", 0, 10000) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts", &n) == 0 && n == 0);
}

/* The harness's conninfo with host and port replaced by 127.0.0.1:port
 * (and no encryption, so that the proxy can read the protocol); the
 * server's unix socket path in *socket_path. 0 or -1. */
static int
s_via_proxy(int port, char *conninfo, size_t size, char *socket_path, size_t path_size)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(sq_harness_conninfo(h), &err);
    if (!opts) {
        PQfreemem(err);
        return -1;
    }
    const char *host = NULL, *pgport = "5432", *db = NULL, *user = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            pgport = o->val;
        else if (strcmp(o->keyword, "dbname") == 0)
            db = o->val;
        else if (strcmp(o->keyword, "user") == 0)
            user = o->val;
    }
    int ok = host && host[0] == '/' && db;
    if (ok) {
        snprintf(socket_path, path_size, "%s/.s.PGSQL.%s", host, pgport);
        snprintf(conninfo, size, "host=127.0.0.1 port=%d dbname=%s%s%s sslmode=disable "
                 "gssencmode=disable", port, db, user ? " user=" : "", user ? user : "");
    }
    PQconninfoFree(opts);
    return ok ? 0 : -1;
}

static void
commit_reply_lost(void)
{
    const char *proxy_bin = getenv("SHARDQ_TEST_PG_PROXY");
    const char *admin = getenv("SHARDQ_TEST_DB");
    if (!proxy_bin || !admin || !*admin) {
        printf("skipped: SHARDQ_TEST_DB or SHARDQ_TEST_PG_PROXY is not set\n");
        exit(77);
    }
    /* the harness makes the database; the broker then talks to it
     * through the proxy (the last --db wins) */
    const int port = sq_e2e_free_port();
    SQ_REQUIRE(port > 0);
    h = sq_harness_new("commit_reply_lost");
    SQ_REQUIRE(h && sq_harness_migrate(h) == 0);
    char conninfo[512], sock[300], trigger[400], dropped[400], port_s[16];
    SQ_REQUIRE(s_via_proxy(port, conninfo, sizeof conninfo, sock, sizeof sock) == 0);
    snprintf(trigger, sizeof trigger, "%s/drop-next-jobs-commit", sq_harness_log_dir(h));
    snprintf(dropped, sizeof dropped, "%s/dropped", sq_harness_log_dir(h));
    snprintf(port_s, sizeof port_s, "%d", port);
    const char *pargv[] = {proxy_bin, port_s, sock, trigger, dropped, NULL};
    SQ_REQUIRE(sq_harness_spawn(h, "pg-proxy", pargv));
    const char *bflags[] = {"--db", conninfo, "--retry-base-ms", "200", NULL};
    SQ_REQUIRE(sq_harness_broker_start(h, bflags));
    client = sq_e2e_client_new(sq_harness_client_endpoint(h));
    SQ_REQUIRE(client);
    const char *wflags[] = {"--batch", "4", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", wflags));
    uint64_t first = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 5, "before", 0, &first, NULL) == 0);

    FILE *f = fopen(trigger, "w");
    SQ_REQUIRE(f && fclose(f) == 0);
    int code = 0;
    uint64_t lost = 0;
    int rc = sq_e2e_submit_n(client, "acme", "test", 10, "lost", 0, &lost, &code);
    fprintf(stderr, "SUBMIT whose COMMIT answer was lost: rc %d, wire code %d\n", rc, code);
    SQ_CHECK(rc == SQ_EPROTO && code == SQ_WIRE_E_UNAVAILABLE);
    SQ_REQUIRE(access(dropped, F_OK) == 0);   /* the proxy did drop a COMMIT's answer */

    /* The client retries, as told; the broker serves again by itself. */
    uint64_t retry = 0;
    int64_t deadline = sq_test_now_ms() + 60000;
    while (sq_e2e_submit_n(client, "acme", "test", 10, "lost", 0, &retry, &code) != 0 &&
           sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_REQUIRE(retry != 0);
    char sql[256];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id in (%llu, %llu) "
             "and state = 'succeeded'", (unsigned long long)first, (unsigned long long)retry);
    SQ_CHECK(sq_harness_wait_i64(h, sql, 15, 60000) == 0);
    /* one copy of the lost SUBMIT's tasks, the retry's; nothing left queued;
     * the withdrawn job audited */
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from tasks where custom_id like 'lost-%'",
                                &n) == 0 && n == 10);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_queue", 0, 30000) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from audit_log a where action = "
                                   "'submit_withdrawn' and not exists (select 1 from jobs j "
                                   "where j.id = a.job_id) and exists (select 1 from audit_log "
                                   "s where s.action = 'submitted' and s.job_id = a.job_id)",
                                &n) == 0 && n == 1);
    sq_e2e_check_no_duplicates(h);
}

/* STATS's dispatch_paused; *uncommitted its count (UINT64_MAX when a
 * field is missing or STATS failed). */
static bool
s_stats_paused(uint64_t *uncommitted)
{
    sq_e2e_begin(client, 0);
    sq_wire_msg_t *reply = NULL;
    bool paused = false;
    *uncommitted = UINT64_MAX;
    if (sq_e2e_call(client, SQ_WIRE_STATS, 5000, &reply, NULL) == 0 &&
        (sq_wire_get_bool(reply->body, "dispatch_paused", true, &paused) != 0 ||
         sq_wire_get_u64(reply->body, "uncommitted", true, UINT64_MAX, uncommitted) != 0))
        *uncommitted = UINT64_MAX;
    sq_wire_msg_destroy(&reply);
    return paused;
}

/* A metric's value in a scraped page ("NAME VALUE\n" or
 * "NAME{labels} VALUE\n"), or -1 when it is not there. */
static double
s_metric(const char *page, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(page, name); p; p = strstr(p + 1, name))
        if ((p == page || p[-1] == '\n') && (p[n] == ' ' || p[n] == '{')) {
            const char *v = strchr(p, ' ');
            return v ? strtod(v + 1, NULL) : -1;
        }
    return -1;
}

static void
commit_backpressure(void)
{
    s_need_pg_ctl();
    enum { CAP = 20, BATCH = 16, N_TASKS = 3000 };
    char mflag[32];
    const int mport = sq_e2e_free_port();
    SQ_REQUIRE(mport > 0);
    snprintf(mflag, sizeof mflag, "--metrics-port=%d", mport);
    const char *bflags[] = {"--retry-base-ms", "200", "--max-uncommitted", "20", mflag, NULL};
    SQ_REQUIRE(sq_e2e_up("commit_backpressure", bflags, &h, &client));
    const char *flags[] = {"--batch", "16", "--delay-ms", "5", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w1", flags));
    SQ_REQUIRE(sq_harness_worker_start(h, "w2", flags));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", N_TASKS, "a", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_at_least(h, "select count(*) from task_results", 100, 60000,
                                        NULL) == 0);
    SQ_REQUIRE(sq_harness_pg_ctl(h, "kill") == 0);
    /* Two workers at 16 tasks a 5 ms step would finish the whole job in
     * well under a second; 1.5 s later the broker must have stopped at
     * CAP results awaiting commit, plus what was leased when it stopped. */
    usleep(1500 * 1000);
    static char page[65536];
    SQ_REQUIRE(sq_e2e_scrape(mport, page, sizeof page) == 0);
    const double waiting = s_metric(page, "shardq_broker_uncommitted_tasks");
    const double queued = s_metric(page, "shardq_broker_queued_tasks");
    fprintf(stderr, "PostgreSQL down: %.0f results wait for their commit, %.0f tasks queued, "
            "paused %.0f\n", waiting, queued, s_metric(page, "shardq_broker_dispatch_paused"));
    SQ_CHECK(s_metric(page, "shardq_broker_dispatch_paused") == 1);
    SQ_CHECK(waiting >= CAP && waiting <= CAP + 2 * BATCH);
    uint64_t uncommitted = 0;
    SQ_CHECK(s_stats_paused(&uncommitted) && uncommitted == (uint64_t)waiting);
    SQ_CHECK(queued >= N_TASKS - 1000);
    /* and it stays stopped: nothing more is leased while the commit fails */
    usleep(1000 * 1000);
    SQ_REQUIRE(sq_e2e_scrape(mport, page, sizeof page) == 0);
    SQ_CHECK(s_metric(page, "shardq_broker_queued_tasks") == queued);
    SQ_CHECK(s_metric(page, "shardq_broker_uncommitted_tasks") == waiting);

    SQ_REQUIRE(sq_harness_pg_ctl(h, "start") == 0);
    char sql[128];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu "
             "and state = 'succeeded'", (unsigned long long)job);
    SQ_CHECK(sq_harness_wait_i64(h, sql, N_TASKS, 60000) == 0);
    sq_e2e_check_no_duplicates(h);
    /* the broker hears of the last commit just after PostgreSQL has it */
    int64_t deadline = sq_test_now_ms() + 5000;
    while ((sq_e2e_scrape(mport, page, sizeof page) != 0 ||
            s_metric(page, "shardq_broker_uncommitted_tasks") != 0) &&
           sq_test_now_ms() < deadline)
        sq_harness_poll_pause();
    SQ_CHECK(s_metric(page, "shardq_broker_uncommitted_tasks") == 0);
    SQ_CHECK(s_metric(page, "shardq_broker_dispatch_paused") == 0);
    SQ_CHECK(!s_stats_paused(&uncommitted) && uncommitted == 0);
}

int
main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"worker_kill", worker_kill},
        {"worker_term", worker_term},
        {"stale_result", stale_result},
        {"lease_suspect", lease_suspect},
        {"lease_probe", lease_probe},
        {"broker_term", broker_term},
        {"worker_stall", worker_stall},
        {"broker_kill", broker_kill},
        {"pg_restart", pg_restart},
        {"commit_backpressure", commit_backpressure},
        {"commit_reply_lost", commit_reply_lost},
        {"cancel_db_down", cancel_db_down},
        {"cancel_refused", cancel_refused},
        {"term_db_down", term_db_down},
        {"term_db_lost", term_db_lost},
        {NULL, NULL}};
    return sq_e2e_main(argc, argv, cases, &h, &client);
}
