/*  Tests of the fixture worker (sq-test-worker) against a ROUTER socket
 *  played by this test, so that the e2e tests can trust what the worker
 *  does: READY with its capabilities, RESULT echoing lease and token with
 *  the output, injected FAILs, CANCEL-LEASE, heartbeats, reconnect after
 *  broker silence, DISCONNECT and exit 0 on SIGTERM, and silence on --stall.
 *  Needs no database.
 */
#define _GNU_SOURCE
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_proc.h"
#include "sq_test.h"
#include "sq_wire.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static zsock_t *router;
static char endpoint[64];
static char log_dir[256];
static int n_workers;

/* Start a worker with extra flags (NULL-terminated), talking to a fresh
 * ROUTER so that nothing an earlier worker sent can be mistaken for its. */
static sq_proc_t *
s_worker(const char *const extra[])
{
    zsock_destroy(&router);
    int port = sq_harness_free_port(0);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    router = zsock_new(ZMQ_ROUTER);
    if (port < 0 || !router || zsock_bind(router, "%s", endpoint) < 0) {
        fprintf(stderr, "cannot bind %s\n", endpoint);
        return NULL;
    }
    const char *argv[32] = {getenv("SHARDQ_TEST_WORKER_BIN"), "--broker", endpoint, "--group",
                            "g1"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char log[320];
    snprintf(log, sizeof log, "%s/worker-%d.log", log_dir, ++n_workers);
    return sq_proc_new("worker", argv, log);
}

/* Receive the next message other than HEARTBEAT (unless want is
 * HEARTBEAT) within timeout_ms; NULL on timeout. */
static sq_wire_msg_t *
s_recv(int want, int timeout_ms)
{
    int64_t deadline = sq_test_now_ms() + timeout_ms;
    while (sq_test_now_ms() < deadline) {
        zsock_set_rcvtimeo(router, (int)(deadline - sq_test_now_ms()) + 1);
        sq_wire_msg_t *m = NULL;
        if (sq_wire_recv(zsock_resolve(router), true, SQ_WIRE_MAX_BODY, &m, NULL) != 0)
            continue;
        if (m->cmd == want)
            return m;
        sq_wire_msg_destroy(&m);
    }
    return NULL;
}

static void
s_send_tasks(zframe_t *id, int n, uint64_t first_lease, const char *prompt)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 1);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        sq_wire_map(e, 5);
        sq_wire_kv_u64(e, "lease", first_lease + (uint64_t)i);
        sq_wire_kv_u64(e, "token", 1000 + first_lease + (uint64_t)i);
        sq_wire_kv_u64(e, "attempt", 2);
        sq_wire_kv_str(e, "custom_id", "c");
        sq_wire_kv_str(e, "prompt", prompt);
    }
    sq_wire_send(router, id, SQ_WIRE_TASKS, e);
    sq_wire_enc_destroy(&e);
}

/* READY from a fresh worker; returns its identity (caller destroys). */
static zframe_t *
s_expect_ready(void)
{
    sq_wire_msg_t *m = s_recv(SQ_WIRE_READY, 10000);
    if (!m)
        return NULL;
    char *group = NULL;
    uint64_t batch = 0;
    sq_wire_get_strdup(m->body, "group_id", true, 256, &group);
    sq_wire_get_u64(m->body, "max_batch", true, 4096, &batch);
    SQ_CHECK(group && strcmp(group, "g1") == 0);
    SQ_CHECK(batch == 4);
    free(group);
    zframe_t *id = zframe_dup(m->identity);
    sq_wire_msg_destroy(&m);
    return id;
}

static void
test_results_echo_lease_and_text(void)
{
    const char *extra[] = {"--batch", "4", "--reverse", NULL};
    sq_proc_t *w = s_worker(extra);
    SQ_REQUIRE(w);
    zframe_t *id = s_expect_ready();
    SQ_REQUIRE(id);
    s_send_tasks(id, 3, 10, "h\xc3\xa9llo \"'; DROP");
    int seen = 0;
    while (seen < 3) {
        sq_wire_msg_t *m = s_recv(SQ_WIRE_RESULT, 5000);
        SQ_REQUIRE(m);
        sq_wire_val_t arr, r;
        SQ_REQUIRE(sq_wire_get_array(m->body, "results", true, 4096, &arr) == 0);
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, arr);
        while (sq_wire_iter_next(&it, &r)) {
            uint64_t lease = 0, token = 0;
            char *text = NULL;
            SQ_CHECK(sq_wire_get_u64(r, "lease", true, UINT64_MAX, &lease) == 0);
            SQ_CHECK(sq_wire_get_u64(r, "token", true, UINT64_MAX, &token) == 0);
            SQ_CHECK(sq_wire_get_strdup(r, "text", true, 1 << 20, &text) == 0);
            SQ_CHECK(lease >= 10 && lease < 13 && token == 1000 + lease);
            SQ_CHECK(text && strcmp(text, "PORD ;'\" oll\xc3\xa9h") == 0);
            free(text);
            seen++;
        }
        sq_wire_msg_destroy(&m);
    }
    /* SIGTERM: DISCONNECT, then exit 0. */
    SQ_CHECK(sq_proc_signal(w, SIGTERM) == 0);
    sq_wire_msg_t *bye = s_recv(SQ_WIRE_DISCONNECT, 5000);
    SQ_CHECK(bye != NULL);
    sq_wire_msg_destroy(&bye);
    SQ_CHECK(sq_proc_wait(w, 5000) == 0 && sq_proc_exit_code(w) == 0);
    zframe_destroy(&id);
    sq_proc_destroy(&w);
}

static void
test_failures_and_cancel(void)
{
    const char *extra[] = {"--batch", "4", "--fail-permanent-rate", "1", NULL};
    sq_proc_t *w = s_worker(extra);
    SQ_REQUIRE(w);
    zframe_t *id = s_expect_ready();
    SQ_REQUIRE(id);
    s_send_tasks(id, 1, 20, "x");
    sq_wire_msg_t *m = s_recv(SQ_WIRE_FAIL, 5000);
    SQ_REQUIRE(m);
    sq_wire_val_t arr, f;
    SQ_REQUIRE(sq_wire_get_array(m->body, "failures", true, 4096, &arr) == 0);
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, arr);
    SQ_REQUIRE(sq_wire_iter_next(&it, &f));
    bool retryable = true;
    char *err = NULL;
    SQ_CHECK(sq_wire_get_bool(f, "retryable", true, &retryable) == 0 && !retryable);
    SQ_CHECK(sq_wire_get_strdup(f, "error", true, 4096, &err) == 0);
    SQ_CHECK(err && strstr(err, "permanent failure on attempt 2"));
    free(err);
    sq_wire_msg_destroy(&m);
    sq_proc_destroy(&w);
    zframe_destroy(&id);

    /* A slow task cancelled before it is due never gets an answer; the
     * worker keeps heartbeating meanwhile. */
    const char *slow[] = {"--batch", "4", "--delay-ms", "1500", NULL};
    w = s_worker(slow);
    SQ_REQUIRE(w);
    id = s_expect_ready();
    SQ_REQUIRE(id);
    s_send_tasks(id, 2, 30, "y");
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 1);
    sq_wire_key(e, "leases");
    sq_wire_array(e, 1);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "lease", 30);
    sq_wire_kv_u64(e, "token", 1030);
    sq_wire_send(router, id, SQ_WIRE_CANCEL_LEASE, e);
    sq_wire_enc_destroy(&e);
    m = s_recv(SQ_WIRE_HEARTBEAT, 2000);
    SQ_CHECK(m != NULL);
    sq_wire_msg_destroy(&m);
    m = s_recv(SQ_WIRE_RESULT, 5000);
    SQ_REQUIRE(m);
    SQ_REQUIRE(sq_wire_get_array(m->body, "results", true, 4096, &arr) == 0);
    SQ_CHECK(sq_wire_count(arr) == 1);
    sq_wire_iter_init(&it, arr);
    uint64_t lease = 0;
    SQ_CHECK(sq_wire_iter_next(&it, &f) && sq_wire_get_u64(f, "lease", true, 99, &lease) == 0);
    SQ_CHECK(lease == 31);
    sq_wire_msg_destroy(&m);
    sq_proc_destroy(&w);
    zframe_destroy(&id);
}

static void
test_silent_broker_and_stall(void)
{
    /* We never answer: after 3 beats the worker sends READY again. */
    const char *extra[] = {"--batch", "4", "--heartbeat-ms", "100", NULL};
    sq_proc_t *w = s_worker(extra);
    SQ_REQUIRE(w);
    zframe_t *id = s_expect_ready();
    SQ_REQUIRE(id);
    zframe_destroy(&id);
    id = s_expect_ready();
    SQ_CHECK(id != NULL);
    zframe_destroy(&id);
    sq_proc_destroy(&w);

    /* --stall: after its first TASKS it says nothing at all. */
    const char *stall[] = {"--batch", "4", "--heartbeat-ms", "100", "--stall", NULL};
    w = s_worker(stall);
    SQ_REQUIRE(w);
    id = s_expect_ready();
    SQ_REQUIRE(id);
    /* Five tasks for a --batch 4 worker: it says so in its log (the e2e
     * tests check that the broker never makes it). */
    s_send_tasks(id, 5, 40, "z");
    /* Drop the beats it sent before it saw the tasks, then expect silence
     * for ten heartbeat intervals. */
    sq_wire_msg_t *m = s_recv(SQ_WIRE_RESULT, 300);
    SQ_CHECK(m == NULL);
    sq_wire_msg_destroy(&m);
    zsock_set_rcvtimeo(router, 1000);
    zmsg_t *any = zmsg_recv(router);
    SQ_CHECK(any == NULL);
    zmsg_destroy(&any);
    SQ_CHECK(sq_proc_running(w));
    SQ_CHECK(sq_proc_log_count(w, "more leases than max_batch") == 1);
    sq_proc_destroy(&w);
    zframe_destroy(&id);
}

int
main(void)
{
    if (!getenv("SHARDQ_TEST_WORKER_BIN")) {
        printf("SHARDQ_TEST_WORKER_BIN is not set\n0 passed, 1 failed\n");
        return 1;
    }
    mkdir("e2e-logs", 0755);
    snprintf(log_dir, sizeof log_dir, "e2e-logs/worker_fixture-%d", (int)getpid());
    mkdir(log_dir, 0755);
    zsys_init();
    zsys_handler_set(NULL);
    SQ_RUN(test_results_echo_lease_and_text);
    SQ_RUN(test_failures_and_cancel);
    SQ_RUN(test_silent_broker_and_stall);
    zsock_destroy(&router);
    /* Keep the workers' logs only when something failed. */
    for (int i = 1; i <= n_workers && sq_test_n_failed_checks == 0; i++) {
        char log[320];
        snprintf(log, sizeof log, "%s/worker-%d.log", log_dir, i);
        unlink(log);
    }
    if (sq_test_n_failed_checks == 0)
        rmdir(log_dir);
    else
        fprintf(stderr, "worker logs kept in %s\n", log_dir);
    return sq_test_summary("e2e.worker_fixture");
}
