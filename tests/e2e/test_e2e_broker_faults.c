/*  End-to-end tests of the broker under load it must not mistake for
 *  faults, and of the bounds on what it sends.
 *
 *    loop_stall       a burst of 100,000-task SUBMITs keeps the broker busy
 *                     for seconds: a worker group that heartbeats all along
 *                     is not declared lost, keeps its leases and does not
 *                     give the broker up
 *    lost_together    four groups, each holding a lease, fall silent at
 *                     once: no task is leased to one of them while they are
 *                     removed, so each task costs one attempt and then runs
 *                     on a live group (max_attempts 2)
 *    tasks_params_cap 20 tasks of a job whose params are 4 MiB, to a group
 *                     taking 20: every TASKS body stays under the 64 MiB
 *                     cap, all 20 arrive and succeed
 *    results_page_cap 20 results of 4 MiB: RESULTS pages stay under the
 *                     cap (fewer rows than the limit, not done, `next` the
 *                     last index given), and the walk returns all 20
 *    stale_audit      a RESULT for a lease that ended (its job cancelled)
 *                     is audited under its job and task, and the job's
 *                     history (sql/queries/job_history.sql) shows it
 *    audit_once       batches whose outcomes committed while their jobs
 *                     were refused at COMMIT are retried: each audit row
 *                     is written once
 *
 *  Usage: test_e2e_broker_faults CASE.
 */
#define _GNU_SOURCE
#include "sq_e2e_case.h"
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static sq_harness_t *h;
static sq_e2e_client_t *client;

/* --- a worker group played by the test ---------------------------------- */

/* A DEALER on the broker's worker socket that sent READY for group_id with
 * max_batch, model "test"; NULL on failure. */
static zsock_t *
s_raw_worker(const char *group_id, uint64_t max_batch)
{
    zsock_t *s = zsock_new(ZMQ_DEALER);
    if (!s)
        return NULL;
    zsock_set_linger(s, 0);
    sq_wire_enc_t *e = sq_wire_enc_new();
    int rc = e && zsock_connect(s, "%s", sq_harness_worker_endpoint(h)) == 0 ? 0 : -1;
    if (rc == 0) {
        sq_wire_map(e, 3);
        sq_wire_kv_str(e, "group_id", group_id);
        sq_wire_kv_str(e, "model", "test");
        sq_wire_kv_u64(e, "max_batch", max_batch);
        rc = sq_wire_send(zsock_resolve(s), NULL, SQ_WIRE_READY, e);
    }
    sq_wire_enc_destroy(&e);
    if (rc)
        zsock_destroy(&s);
    return s;
}

/* The next message with command cmd within timeout_ms (others dropped).
 * No body cap: an oversized message is returned, for the test to see. */
static sq_wire_msg_t *
s_raw_recv(zsock_t *s, uint8_t cmd, int timeout_ms)
{
    int64_t deadline = sq_test_now_ms() + timeout_ms;
    for (int64_t left; (left = deadline - sq_test_now_ms()) > 0;) {
        zsock_set_rcvtimeo(s, (int)left);
        zmsg_t *z = zmsg_recv(s);
        if (!z)
            return NULL;
        sq_wire_msg_t *m = NULL;
        if (sq_wire_parse(&z, false, SIZE_MAX, &m, NULL) == 0 && m->cmd == cmd)
            return m;
        sq_wire_msg_destroy(&m);
    }
    return NULL;
}

/* RESULT for every task of a TASKS message, each with text (n bytes);
 * the number of tasks answered, or -1. */
static int
s_raw_answer(zsock_t *s, const sq_wire_msg_t *tasks_msg, const char *text, size_t n)
{
    sq_wire_val_t tasks, t;
    if (sq_wire_get_array(tasks_msg->body, "tasks", true, SQ_WIRE_MAX_BATCH, &tasks) != 0)
        return -1;
    sq_wire_enc_t *e = sq_wire_enc_new();
    if (!e)
        return -1;
    sq_wire_map(e, 1);
    sq_wire_key(e, "results");
    sq_wire_array(e, sq_wire_count(tasks));
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, tasks);
    int rc = 0;
    while (sq_wire_iter_next(&it, &t)) {
        uint64_t lease = 0, token = 0;
        rc |= sq_wire_get_u64(t, "lease", true, UINT64_MAX, &lease);
        rc |= sq_wire_get_u64(t, "token", true, UINT64_MAX, &token);
        sq_wire_map(e, 3);
        sq_wire_kv_u64(e, "lease", lease);
        sq_wire_kv_u64(e, "token", token);
        sq_wire_kv_strn(e, "text", text, n);
    }
    if (rc == 0)
        rc = sq_wire_send(zsock_resolve(s), NULL, SQ_WIRE_RESULT, e);
    sq_wire_enc_destroy(&e);
    return rc ? -1 : (int)sq_wire_count(tasks);
}

static int64_t
s_count(const char *sql)
{
    int64_t n = -1;
    return sq_harness_sql_i64(h, sql, &n) == 0 ? n : -1;
}

/* --- loop_stall ---------------------------------------------------------- */

/* A SUBMIT of 100,000 tasks the broker reads to the end and refuses (the
 * last custom_id repeats the first): as long to parse as a good one, and
 * nothing is stored. The body of a message on the client socket. */
static sq_wire_enc_t *
s_heavy_submit(void)
{
    enum { N = SQ_WIRE_MAX_TASKS };
    sq_wire_enc_t *e = sq_wire_enc_new();
    if (!e)
        return NULL;
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "rid", 1);
    sq_wire_kv_str(e, "tenant", "bulk");
    sq_wire_kv_str(e, "model", "other");
    sq_wire_key(e, "tasks");
    sq_wire_array(e, N);
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "c%d", i == N - 1 ? 0 : i);
        sq_wire_map(e, 3);
        sq_wire_kv_str(e, "custom_id", id);
        sq_wire_kv_str(e, "prompt", "p");
        sq_wire_kv_u64(e, "max_tokens", 1);
    }
    return e;
}

static void
loop_stall(void)
{
    /* liveness 3 x 500 ms: the burst below lasts several times that */
    const char *broker[] = {"--heartbeat-ms", "500", NULL};
    SQ_REQUIRE(sq_e2e_up("loop_stall", broker, &h, &client));
    const char *flags[] = {"--group", "live", "--batch", "4", "--delay-ms", "600000",
                           "--heartbeat-ms", "500", NULL};
    sq_proc_t *live = sq_harness_worker_start(h, "live", flags);
    SQ_REQUIRE(live);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 4, "k", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", 4, 15000) == 0);

    /* Pipelined rounds of heavy SUBMITs until the broker has been busy with
     * them for 6 s (4 liveness periods), however fast this machine is. */
    sq_wire_enc_t *body = s_heavy_submit();
    SQ_REQUIRE(body);
    sq_e2e_client_t *bulk = sq_e2e_client_new(sq_harness_client_endpoint(h));
    SQ_REQUIRE(bulk);
    uint8_t cmd = SQ_WIRE_SUBMIT;
    const void *frames[] = {SQ_WIRE_HEADER, &cmd, sq_wire_enc_data(body)};
    const size_t sizes[] = {SQ_WIRE_HEADER_LEN, 1, sq_wire_enc_size(body)};
    int64_t t0 = sq_test_now_ms(), busy_ms = 0;
    int n_sent = 0, n_refused = 0;
    for (int round = 0; round < 20 && busy_ms < 6000; round++) {
        for (int i = 0; i < 8; i++)
            n_sent += sq_e2e_send_frames(bulk, frames, sizes, 3) == 0;
        while (n_refused < n_sent) {
            sq_wire_msg_t *m = sq_e2e_recv_any(bulk, 60000);
            if (!m)
                break;
            n_refused += m->cmd == SQ_WIRE_ERROR;
            sq_wire_msg_destroy(&m);
        }
        busy_ms = sq_test_now_ms() - t0;
    }
    fprintf(stderr, "loop_stall: %d heavy SUBMITs refused over %lld ms\n", n_refused,
            (long long)busy_ms);
    SQ_REQUIRE(n_refused == n_sent && busy_ms >= 6000);
    sq_e2e_client_destroy(&bulk);
    sq_wire_enc_destroy(&body);

    /* the group lived through it: same leases, no attempt ended */
    uint64_t leased = 0;
    SQ_CHECK(sq_e2e_status_count(client, job, "leased", &leased) == 0 && leased == 4);
    SQ_CHECK(s_count("select count(*) from audit_log where action in "
                     "('worker_lost', 'lease_lost')") == 0);
    SQ_CHECK(s_count("select count(*) from task_attempts") == 0);
    SQ_CHECK(sq_proc_log_count(live, "reconnecting") == 0);
    SQ_CHECK(sq_proc_running(live));
}

/* --- lost_together --------------------------------------------------------- */

static void
lost_together(void)
{
    enum { N = 4 };
    SQ_REQUIRE(sq_e2e_up("lost_together", NULL, &h, &client));
    zsock_t *groups[N];
    for (int i = 0; i < N; i++) {
        char id[8];
        snprintf(id, sizeof id, "dying%d", i);
        SQ_REQUIRE((groups[i] = s_raw_worker(id, 2)) != NULL);
    }
    /* all four known before the job comes: one lease each */
    int64_t deadline = sq_test_now_ms() + 10000;
    uint32_t n_groups = 0;
    while (n_groups < N && sq_test_now_ms() < deadline) {
        sq_e2e_begin(client, 0);
        sq_wire_msg_t *reply = NULL;
        sq_wire_val_t workers;
        if (sq_e2e_call(client, SQ_WIRE_WORKERS, 5000, &reply, NULL) == 0 &&
            sq_wire_get_array(reply->body, "workers", true, 1000, &workers) == 0)
            n_groups = sq_wire_count(workers);
        sq_wire_msg_destroy(&reply);
        if (n_groups < N)
            sq_harness_poll_pause();
    }
    SQ_REQUIRE(n_groups == N);
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", N, "t", 2, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", N, 10000) == 0);
    /* one last beat from each, back to back, then silence: the broker
     * finds them dead at the same tick, each with a free slot */
    for (int i = 0; i < N; i++)
        SQ_CHECK(sq_wire_send(zsock_resolve(groups[i]), NULL, SQ_WIRE_HEARTBEAT, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_i64(h, "select count(*) from audit_log where action = "
                                      "'worker_lost'", N, 15000) == 0);
    SQ_REQUIRE(sq_harness_worker_start(h, "rescuer", NULL));
    char sql[160];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu",
             (unsigned long long)job);
    SQ_CHECK(sq_harness_wait_i64(h, sql, N, 20000) == 0);
    /* each task: attempt 1 lost with its first group, attempt 2 succeeded
     * on the rescuer; no task passed through another dying group */
    SQ_CHECK(s_count("select count(*) from task_results where state = 'succeeded'") == N);
    SQ_CHECK(s_count("select count(*) from task_attempts where attempt = 1 and outcome = "
                     "'worker_lost' and group_id like 'dying%'") == N);
    SQ_CHECK(s_count("select count(*) from task_attempts where attempt = 2 and outcome = "
                     "'succeeded' and group_id = 'rescuer'") == N);
    SQ_CHECK(s_count("select count(*) from task_attempts") == 2 * N);
    SQ_CHECK(s_count("select count(*) from audit_log where action = 'worker_lost' and "
                     "(details->>'leases_requeued')::int = 1") == N);
    for (int i = 0; i < N; i++)
        zsock_destroy(&groups[i]);
    sq_e2e_check_no_duplicates(h);
}

/* --- tasks_params_cap ------------------------------------------------------ */

static void
tasks_params_cap(void)
{
    enum { N = 20 };
    SQ_REQUIRE(sq_e2e_up("tasks_params_cap", NULL, &h, &client));
    /* params at the cap: a JSON object of 4 MiB, encoded into every task */
    size_t n_params = SQ_WIRE_MAX_TEXT;
    char *params = malloc(n_params + 1);
    SQ_REQUIRE(params);
    memset(params, 'a', n_params);
    memcpy(params, "{\"x\":\"", 6);
    memcpy(params + n_params - 2, "\"}", 2);
    params[n_params] = '\0';
    sq_wire_enc_t *e = sq_e2e_begin(client, 4);
    sq_wire_kv_str(e, "tenant", "acme");
    sq_wire_kv_str(e, "model", "test");
    sq_wire_kv_str(e, "params", params);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, N);
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%d", i);
        sq_wire_map(e, 2);
        sq_wire_kv_str(e, "custom_id", id);
        sq_wire_kv_str(e, "prompt", id);
    }
    free(params);
    sq_wire_msg_t *reply = NULL;
    SQ_REQUIRE(sq_e2e_call(client, SQ_WIRE_SUBMIT, 30000, &reply, NULL) == 0);
    sq_wire_msg_destroy(&reply);

    zsock_t *w = s_raw_worker("wide", N);
    SQ_REQUIRE(w);
    int got = 0, n_msgs = 0;
    size_t largest = 0;
    while (got < N) {
        sq_wire_msg_t *m = s_raw_recv(w, SQ_WIRE_TASKS, 20000);
        if (!m)
            break;
        n_msgs++;
        largest = m->body.n > largest ? m->body.n : largest;
        SQ_CHECK(m->body.n <= SQ_WIRE_MAX_BODY);
        int k = s_raw_answer(w, m, "ok", 2);
        SQ_CHECK(k > 0);
        got += k > 0 ? k : N;
        sq_wire_msg_destroy(&m);
    }
    fprintf(stderr, "tasks_params_cap: %d tasks in %d TASKS, the largest %zu bytes\n", got,
            n_msgs, largest);
    SQ_CHECK(got == N && n_msgs > 1);
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                    "'succeeded'", N, 30000) == 0);
    SQ_CHECK(s_count("select count(*) from task_attempts where outcome <> 'succeeded'") == 0);
    zsock_destroy(&w);
}

/* --- results_page_cap ------------------------------------------------------ */

static void
results_page_cap(void)
{
    enum { N = 20 };
    const size_t n_text = SQ_WIRE_MAX_TEXT - 64;
    SQ_REQUIRE(sq_e2e_up("results_page_cap", NULL, &h, &client));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", N, "r", 0, &job, NULL) == 0);
    char *text = malloc(n_text);
    SQ_REQUIRE(text);
    memset(text, 'x', n_text);
    zsock_t *w = s_raw_worker("verbose", 4);
    SQ_REQUIRE(w);
    for (int done = 0; done < N;) {
        sq_wire_msg_t *m = s_raw_recv(w, SQ_WIRE_TASKS, 20000);
        SQ_REQUIRE(m);
        int k = s_raw_answer(w, m, text, n_text);
        sq_wire_msg_destroy(&m);
        SQ_REQUIRE(k > 0);
        done += k;
    }
    free(text);
    char sql[160];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu and "
             "state = 'succeeded'", (unsigned long long)job);
    SQ_REQUIRE(sq_harness_wait_i64(h, sql, N, 60000) == 0);

    /* The walk as a client does it, default limit (1000): every reply
     * within the body cap (sq_wire_recv drops any over it, and the call
     * would time out), pages cut short by size say not done. */
    uint64_t after = 0, expect = 1;
    int n_pages = 0;
    bool done = false;
    while (!done && n_pages < 2 * N) {
        sq_wire_enc_t *e = sq_e2e_begin(client, 2);
        sq_wire_kv_u64(e, "job_id", job);
        sq_wire_kv_u64(e, "after", after);
        sq_wire_msg_t *reply = NULL;
        int rc = sq_e2e_call(client, SQ_WIRE_RESULTS, 20000, &reply, NULL);
        SQ_CHECK(rc == 0);
        if (rc)
            break;
        n_pages++;
        sq_wire_val_t results, r;
        uint64_t next = 0;
        SQ_CHECK(sq_wire_get_array(reply->body, "results", true, SQ_WIRE_MAX_PAGE, &results) ==
                 0);
        SQ_CHECK(sq_wire_get_u64(reply->body, "next", true, UINT64_MAX, &next) == 0);
        SQ_CHECK(sq_wire_get_bool(reply->body, "done", true, &done) == 0);
        SQ_CHECK(sq_wire_count(results) >= 1 || done);
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, results);
        while (sq_wire_iter_next(&it, &r)) {
            uint64_t index = 0;
            const char *s = NULL;
            size_t n = 0;
            SQ_CHECK(sq_wire_get_u64(r, "index", true, UINT32_MAX, &index) == 0 &&
                     index == expect);
            SQ_CHECK(sq_wire_get_str(r, "text", true, SQ_WIRE_MAX_TEXT, &s, &n) == 0 &&
                     n == n_text);
            expect++;
        }
        SQ_CHECK(next == expect - 1);
        after = next;
        sq_wire_msg_destroy(&reply);
    }
    fprintf(stderr, "results_page_cap: %llu results in %d pages\n",
            (unsigned long long)(expect - 1), n_pages);
    SQ_CHECK(done && expect - 1 == N && n_pages > 1);
    zsock_destroy(&w);
}

/* --- stale_audit ----------------------------------------------------------- */

static void
stale_audit(void)
{
    SQ_REQUIRE(sq_e2e_up("stale_audit", NULL, &h, &client));
    const char *flags[] = {"--batch", "1", "--delay-ms", "3000", "--ignore-cancel", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "late", flags));
    uint64_t job = 0, n_cancelled = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 1, "s", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_e2e_wait_count(client, job, "leased", 1, 10000) == 0);
    SQ_REQUIRE(sq_e2e_cancel(client, job, &n_cancelled) == 0 && n_cancelled == 1);
    /* the worker answers its ended lease anyway */
    SQ_REQUIRE(sq_harness_wait_i64(h, "select count(*) from audit_log where action = "
                                      "'result_rejected_stale'", 1, 15000) == 0);
    char job_s[24], sql[200];
    snprintf(job_s, sizeof job_s, "%llu", (unsigned long long)job);
    snprintf(sql, sizeof sql, "select count(*) from audit_log where action = "
             "'result_rejected_stale' and job_id = %s and idx = 1", job_s);
    SQ_CHECK(s_count(sql) == 1);
    SQ_CHECK(s_count("select count(*) from task_results where state = 'cancelled' and "
                     "text is null") == 1);
    /* the operator's view of the job shows it */
    const char *dir = getenv("SHARDQ_SQL_DIR");
    SQ_REQUIRE(dir);
    char path[512], var[64];
    snprintf(path, sizeof path, "%s/queries/job_history.sql", dir);
    snprintf(var, sizeof var, "job_id=%s", job_s);
    const char *args[] = {"-v", var, "-f", path, NULL};
    sq_proc_t *p = sq_harness_psql(h, "job_history", args);
    SQ_REQUIRE(p);
    SQ_CHECK(sq_proc_exit_code(p) == 0);
    SQ_CHECK(sq_proc_log_count(p, "|audit|result_rejected_stale|1|") == 1);
}

static void
s_sql_ok(const char *sql)
{
    PGresult *r = sq_harness_sql(h, sql, 0, NULL);
    SQ_REQUIRE(r);
    PQclear(r);
}

static void
audit_once(void)
{
    SQ_REQUIRE(sq_e2e_up("audit_once", sq_e2e_quick_retry, &h, &client));
    /* the database refuses jobs of tenant "poison" at COMMIT: a batch's
     * outcomes commit on their connection, its jobs then fail on theirs */
    s_sql_ok("create function test_poison() returns trigger language plpgsql as $$"
             " begin raise exception 'this test refuses the job at commit'; end $$");
    s_sql_ok("create constraint trigger test_poison after insert on jobs deferrable initially"
             " deferred for each row when (new.tenant = 'poison') execute function test_poison()");
    const char *wflags[] = {"--fail-rate", "1", "--batch", "256", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w", wflags));
    enum { N = 1000, ATTEMPTS = 5 };
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", N, "a", ATTEMPTS, &job, NULL) == 0);
    /* poison SUBMITs while retries flow, so that they share batches; each
     * after the broker's pause for the last refusal (it refuses SUBMITs at
     * once for a moment after a failed commit) */
    char sql[256];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu",
             (unsigned long long)job);
    int64_t done = 0;
    for (int i = 0; i < 60 && sq_harness_sql_i64(h, sql, &done) == 0 && done < N; i++) {
        uint64_t none = 0;
        SQ_CHECK(sq_e2e_submit_n(client, "poison", "test", 1, "p", 0, &none, NULL) != 0);
        usleep(150 * 1000);
    }
    SQ_REQUIRE(sq_harness_wait_i64(h, sql, N, 120000) == 0);
    const int failed = sq_proc_log_count(sq_harness_broker(h), "commit failed");
    printf("commits refused: %d\n", failed);
    SQ_CHECK(failed >= 5);
    /* one audit row per event: no two alike to the millisecond, and as
     * many retries as attempts that failed before the last */
    int64_t dup = -1, retries = -1, attempts = -2;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from (select 1 from audit_log group by at,"
                                   " actor, action, job_id, idx, subject, details"
                                   " having count(*) > 1) d", &dup) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from audit_log where action = 'retry'",
                                &retries) == 0);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_attempts where outcome = 'failed'"
                                   " and attempt < 5", &attempts) == 0);
    printf("audit rows written twice: %lld; retry rows %lld for %lld retried attempts\n",
           (long long)dup, (long long)retries, (long long)attempts);
    SQ_CHECK(dup == 0 && retries == attempts && attempts == (int64_t)N * (ATTEMPTS - 1));
}

int
main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"loop_stall", loop_stall},
        {"lost_together", lost_together},
        {"tasks_params_cap", tasks_params_cap},
        {"results_page_cap", results_page_cap},
        {"stale_audit", stale_audit},
        {"audit_once", audit_once},
        {NULL, NULL}};
    return sq_e2e_main(argc, argv, cases, &h, &client);
}
