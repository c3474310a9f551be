/*  End-to-end tests of bad and hostile input through real sockets.
 *
 *    bad_frames       truncated, oversized and garbage frames, unknown
 *                     commands, a wrong version, bad fields — on both the
 *                     client and the worker socket: each gets the ERROR or
 *                     DISCONNECT docs/protocol.md prescribes, and the broker
 *                     keeps serving everybody else
 *    hostile_strings  quotes, SQL, COPY/psql escapes, control bytes and any
 *                     Unicode in every text field are stored and returned
 *                     byte for byte; NUL and invalid UTF-8 are refused with
 *                     a message naming the field, and nothing is stored
 *
 *  Usage: test_e2e_input CASE.
 */
#define _GNU_SOURCE
#include "sq_e2e_case.h"
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sq_harness_t *h;
static sq_e2e_client_t *client;

static void s_submit_refused(const char *tenant, const char *model, const char *key,
                             const char *str, uint64_t u64, const char *body, const char *says);

/* --- bad frames ------------------------------------------------------ */

/* Send frames on `c` and return the ERROR code of the answer, -cmd for
 * another command (e.g. -SQ_WIRE_DISCONNECT), or 0 for no answer. */
static int
s_answer(sq_e2e_client_t *c, const void *const frames[], const size_t sizes[], int n)
{
    if (sq_e2e_send_frames(c, frames, sizes, n) != 0)
        return 0;
    sq_wire_msg_t *m = sq_e2e_recv_any(c, 5000);
    if (!m)
        return 0;
    int out = -(int)m->cmd;
    uint64_t code = 0;
    if (m->cmd == SQ_WIRE_ERROR && sq_wire_get_u64(m->body, "code", true, 255, &code) == 0)
        out = (int)code;
    sq_wire_msg_destroy(&m);
    return out;
}

/* A message "SQP1", cmd, body (n bytes) on the client socket. */
static int
s_client_msg(uint8_t cmd, const void *body, size_t n)
{
    const void *frames[] = {SQ_WIRE_HEADER, &cmd, body};
    const size_t sizes[] = {SQ_WIRE_HEADER_LEN, 1, n};
    return s_answer(client, frames, sizes, 3);
}

/* The broker still answers a well-formed request. */
static bool
s_still_serving(void)
{
    sq_e2e_client_t *fresh = sq_e2e_client_new(sq_harness_client_endpoint(h));
    uint64_t job = 0;
    bool ok = fresh && sq_e2e_submit_n(fresh, "acme", "test", 1, "ok", 0, &job, NULL) == 0;
    sq_e2e_client_destroy(&fresh);
    return ok && sq_proc_running(sq_harness_broker(h));
}

static void
s_bad_client_frames(void)
{
    static const uint8_t status_ok[] = {0x82, 0xa3, 'r', 'i', 'd', 0x07,
                                        0xa6, 'j', 'o', 'b', '_', 'i', 'd', 0x01};
    uint8_t cmd = SQ_WIRE_STATUS;
    /* Framing: garbage, one frame, five frames, a long command frame. */
    const void *garbage[] = {"\xde\xad\xbe\xef\x00", "zz", "\xc1\xc1\xc1"};
    const size_t garbage_n[] = {5, 2, 3};
    SQ_CHECK(s_answer(client, garbage, garbage_n, 3) == SQ_WIRE_E_BADMSG);
    SQ_CHECK(s_answer(client, garbage, garbage_n, 1) == SQ_WIRE_E_BADMSG);
    const void *five[] = {SQ_WIRE_HEADER, &cmd, status_ok, "x", "y"};
    const size_t five_n[] = {4, 1, sizeof status_ok, 1, 1};
    SQ_CHECK(s_answer(client, five, five_n, 5) == SQ_WIRE_E_BADMSG);
    const void *long_cmd[] = {SQ_WIRE_HEADER, "\x02\x02", status_ok};
    const size_t long_cmd_n[] = {4, 2, sizeof status_ok};
    SQ_CHECK(s_answer(client, long_cmd, long_cmd_n, 3) == SQ_WIRE_E_BADMSG);
    /* Another protocol version, an unknown command, a worker command. */
    const void *v9[] = {"SQP9", &cmd, status_ok};
    const size_t v9_n[] = {4, 1, sizeof status_ok};
    SQ_CHECK(s_answer(client, v9, v9_n, 3) == SQ_WIRE_E_VERSION);
    SQ_CHECK(s_client_msg(0x42, status_ok, sizeof status_ok) == SQ_WIRE_E_UNKNOWN);
    SQ_CHECK(s_client_msg(SQ_WIRE_READY, status_ok, sizeof status_ok) == SQ_WIRE_E_UNKNOWN);
    /* Bodies: truncated map, a string claiming 4 GiB, not a map, too deep,
     * trailing bytes. */
    SQ_CHECK(s_client_msg(cmd, "\x83\xa3rid", 5) == SQ_WIRE_E_BADMSG);
    SQ_CHECK(s_client_msg(cmd, "\x81\xdb\xff\xff\xff\xff", 6) == SQ_WIRE_E_BADMSG);
    SQ_CHECK(s_client_msg(cmd, "\x92\x01\x02", 3) == SQ_WIRE_E_BADMSG);
    uint8_t deep[64];
    for (int i = 0; i < 40; i++)
        deep[i] = 0x91;     /* array of 1, 40 levels deep */
    deep[40] = 0x01;
    SQ_CHECK(s_client_msg(cmd, deep, 41) == SQ_WIRE_E_BADMSG);
    uint8_t trailing[sizeof status_ok + 1];
    memcpy(trailing, status_ok, sizeof status_ok);
    trailing[sizeof status_ok] = 0xc0;
    SQ_CHECK(s_client_msg(cmd, trailing, sizeof trailing) == SQ_WIRE_E_BADMSG);
    /* Fields: rid missing, job_id of the wrong type, priority out of range. */
    SQ_CHECK(s_client_msg(cmd, "\x81\xa6job_id\x01", 9) == SQ_WIRE_E_INVALID);
    SQ_CHECK(s_client_msg(cmd, "\x82\xa3rid\x07\xa6job_id\xa1x", 15) == SQ_WIRE_E_INVALID);
    s_submit_refused("acme", "test", "priority", NULL, 5000, NULL, "priority");
    SQ_CHECK(sq_proc_running(sq_harness_broker(h)));
}

static void
s_oversized(void)
{
    /* Over the transport cap: libzmq drops the message and the connection;
     * the sender gets nothing back, everybody else carries on. */
    size_t n = SQ_WIRE_MAX_BODY + 1024;
    uint8_t *big = calloc(1, n);
    SQ_REQUIRE(big);
    big[0] = 0x80;
    uint8_t cmd = SQ_WIRE_STATUS;
    const void *frames[] = {SQ_WIRE_HEADER, &cmd, big};
    const size_t sizes[] = {4, 1, n};
    sq_e2e_client_t *c = sq_e2e_client_new(sq_harness_client_endpoint(h));
    SQ_REQUIRE(c);
    SQ_CHECK(s_answer(c, frames, sizes, 3) == 0);
    sq_e2e_client_destroy(&c);
    free(big);
    SQ_CHECK(s_still_serving());
}

static void
s_bad_worker_frames(void)
{
    sq_e2e_client_t *w = sq_e2e_client_new(sq_harness_worker_endpoint(h));
    SQ_REQUIRE(w);
    uint8_t hb = SQ_WIRE_HEARTBEAT, ready = SQ_WIRE_READY, result = SQ_WIRE_RESULT;
    /* Before READY: anything gets DISCONNECT. */
    const void *early[] = {SQ_WIRE_HEADER, &hb, "\x80"};
    const size_t early_n[] = {4, 1, 1};
    SQ_CHECK(s_answer(w, early, early_n, 3) == -SQ_WIRE_DISCONNECT);
    const void *junk[] = {"\x01\x02\x03"};
    const size_t junk_n[] = {3};
    SQ_CHECK(s_answer(w, junk, junk_n, 1) == -SQ_WIRE_DISCONNECT);
    /* A READY whose kv_pages is not a count is refused: DISCONNECT, and
     * the broker logs the field */
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 4);
    sq_wire_kv_str(e, "group_id", "raw");
    sq_wire_kv_str(e, "model", "nothing-submitted-for-this");
    sq_wire_kv_u64(e, "max_batch", 1);
    sq_wire_kv_str(e, "kv_pages", "lots");
    const void *bad_ready[] = {SQ_WIRE_HEADER, &ready, sq_wire_enc_data(e)};
    const size_t bad_ready_n[] = {4, 1, sq_wire_enc_size(e)};
    const int bad_ready_answer = s_answer(w, bad_ready, bad_ready_n, 3);
    SQ_CHECK(bad_ready_answer == -SQ_WIRE_DISCONNECT);
    /* READY (no reply expected), then a malformed RESULT gets ERROR. */
    sq_wire_enc_reset(e);
    sq_wire_map(e, 3);
    sq_wire_kv_str(e, "group_id", "raw");
    sq_wire_kv_str(e, "model", "nothing-submitted-for-this");
    sq_wire_kv_u64(e, "max_batch", 1);
    const void *ready_f[] = {SQ_WIRE_HEADER, &ready, sq_wire_enc_data(e)};
    const size_t ready_n[] = {4, 1, sq_wire_enc_size(e)};
    SQ_CHECK(sq_e2e_send_frames(w, ready_f, ready_n, 3) == 0);
    const void *bad_result[] = {SQ_WIRE_HEADER, &result, "\x81\xa7results\x05"};
    const size_t bad_result_n[] = {4, 1, 10};
    int answer = s_answer(w, bad_result, bad_result_n, 3);
    while (answer == -SQ_WIRE_HEARTBEAT)
        answer = s_answer(w, bad_result, bad_result_n, 3);
    SQ_CHECK(answer == SQ_WIRE_E_INVALID || answer == SQ_WIRE_E_BADMSG);
    /* A HEARTBEAT whose KV-cache counts are not counts gets ERROR INVALID */
    sq_wire_enc_reset(e);
    sq_wire_map(e, 2);
    sq_wire_kv_str(e, "kv_pages_in_use", "half");
    sq_wire_kv_u64(e, "preemptions", 1);
    const void *bad_hb[] = {SQ_WIRE_HEADER, &hb, sq_wire_enc_data(e)};
    const size_t bad_hb_n[] = {4, 1, sq_wire_enc_size(e)};
    answer = s_answer(w, bad_hb, bad_hb_n, 3);
    while (answer == -SQ_WIRE_HEARTBEAT)
        answer = s_answer(w, bad_hb, bad_hb_n, 3);
    SQ_CHECK(answer == SQ_WIRE_E_INVALID);
    /* A RESULT for a lease that does not exist is stale: refused and
     * audited, never stored. */
    sq_wire_enc_reset(e);
    sq_wire_map(e, 1);
    sq_wire_key(e, "results");
    sq_wire_array(e, 1);
    sq_wire_map(e, 3);
    sq_wire_kv_u64(e, "lease", 987654321);
    sq_wire_kv_u64(e, "token", 42);
    sq_wire_kv_str(e, "text", "forged");
    const void *forged[] = {SQ_WIRE_HEADER, &result, sq_wire_enc_data(e)};
    const size_t forged_n[] = {4, 1, sq_wire_enc_size(e)};
    SQ_CHECK(sq_e2e_send_frames(w, forged, forged_n, 3) == 0);
    SQ_CHECK(sq_harness_wait_at_least(h, "select count(*) from audit_log where action = "
                                         "'result_rejected_stale'", 1, 10000, NULL) == 0);
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from task_results where text = 'forged'",
                                &n) == 0 && n == 0);
    /* A DISCONNECT whose reason is not UTF-8: the group leaves all the
     * same, recorded with the default reason, not the bytes */
    uint8_t bye = SQ_WIRE_DISCONNECT;
    const void *bad_bye[] = {SQ_WIRE_HEADER, &bye, "\x81\xa6reason\xa2\xff\xfe"};
    const size_t bad_bye_n[] = {4, 1, 11};
    SQ_CHECK(sq_e2e_send_frames(w, bad_bye, bad_bye_n, 3) == 0);
    SQ_CHECK(sq_harness_wait_at_least(h, "select count(*) from audit_log where action = "
                                         "'worker_lost' and subject = 'group:raw' and "
                                         "details->>'reason' = 'worker disconnected'",
                                      1, 10000, NULL) == 0);
    sq_wire_enc_destroy(&e);
    sq_e2e_client_destroy(&w);
}

static void
bad_frames(void)
{
    SQ_REQUIRE(sq_e2e_up("bad_frames", NULL, &h, &client));
    SQ_REQUIRE(sq_harness_worker_start(h, "w", NULL));
    s_bad_client_frames();
    s_bad_worker_frames();
    s_oversized();
    /* After all that, the real worker still gets and finishes work. */
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                    "'succeeded'", 1, 30000) == 0);
    SQ_CHECK(s_still_serving());
    SQ_CHECK(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                    "'succeeded'", 2, 30000) == 0);
}

/* --- hostile strings ------------------------------------------------- */

/* Valid UTF-8 without NUL, each chosen to break something naive: SQL
 * quoting, COPY text escapes (\N, \., tabs, newlines), printf, psql
 * variables, JSON, bidi overrides, 4-byte code points, control bytes. */
static const char *const s_hostile[] = {
    "it's \"quoted\" \\ back\\slash",
    "'); DROP TABLE jobs; --",
    "\\N",
    "\\.\n\\.",
    "tab\there\nnewline\r\nend",
    "%s%n%x $1 :'var' :\"v\" {{x}}",
    "{\"json\": [1, \"two\"]}",
    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80 \342\200\256abc \xef\xb7\xbd",
    "\x01\x02\x1b[31mred\x7f",
    "",
};
#define S_N_HOSTILE (int)(sizeof s_hostile / sizeof s_hostile[0])
#define S_HOSTILE_TENANT "ten'ant\\N\t\"; DROP TABLE audit_log; --"
#define S_HOSTILE_MODEL "m\xc3\xb6""del's \\. %s"
#define S_HOSTILE_GROUP "g'; DELETE FROM workers; --\t\\N"
#define S_HOSTILE_ADAPTER "lora\\.\n'); --"
#define S_HOSTILE_PARAMS "{\"k\": \"'); DROP TABLE tasks; -- \\u0000 \\\\N\"}"
#define S_FAILING_GROUP "fail\"ing' \\N\x1b"

/* A task body (an OpenAI body is a JSON object) carrying hostile string i:
 * {"user":"..."} with the string JSON-escaped; static, one at a time. */
static const char *
s_body(int i)
{
    static char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"user\":\"");
    for (const unsigned char *p = (const unsigned char *)s_hostile[i]; *p && n < 1000; p++)
        n += (size_t)(*p == '"' || *p == '\\' ? snprintf(buf + n, 3, "\\%c", *p)
                      : *p < 0x20         ? snprintf(buf + n, 7, "\\u%04x", *p)
                                          : snprintf(buf + n, 2, "%c", *p));
    snprintf(buf + n, sizeof buf - n, "\"}");
    return buf;
}

/* custom_ids: the hostile strings themselves (the empty one made unique). */
static const char *
s_custom_id(int i)
{
    return *s_hostile[i] ? s_hostile[i] : "empty-prompt";
}

static int64_t
s_count_param(const char *sql, const char *a, const char *b)
{
    const char *params[] = {a, b};
    PGresult *r = sq_harness_sql(h, sql, b ? 2 : 1, params);
    int64_t n = r && PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

/* A SUBMIT of one task (custom_id "p", prompt "p") from tenant/model
 * with key (a u64 field when u64_key, else a string field of the job, or
 * NULL) and a task body (NULL: none), which the broker must refuse as
 * INVALID with a detail holding says; nothing of it is stored. */
static void
s_submit_refused(const char *tenant, const char *model, const char *key, const char *str,
                 uint64_t u64, const char *body, const char *says)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 3 + (key != NULL));
    sq_wire_kv_str(e, "tenant", tenant);
    sq_wire_kv_str(e, "model", model);
    if (key && str)
        sq_wire_kv_str(e, key, str);
    else if (key)
        sq_wire_kv_u64(e, key, u64);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, 1);
    sq_wire_map(e, 2 + (body != NULL));
    sq_wire_kv_str(e, "custom_id", "p");
    sq_wire_kv_str(e, "prompt", "p");
    if (body)
        sq_wire_kv_str(e, "body", body);
    sq_wire_msg_t *reply = NULL;
    int code = 0;
    SQ_CHECK(sq_e2e_call(client, SQ_WIRE_SUBMIT, 30000, &reply, &code) == SQ_EPROTO);
    SQ_CHECK(code == SQ_WIRE_E_INVALID && strstr(sq_error_detail(), says));
    sq_wire_msg_destroy(&reply);
    SQ_CHECK(s_count_param("select count(*) from jobs where tenant = $1", tenant, NULL) == 0);
}

/* A SUBMIT with one bad text field; the reply must be ERROR INVALID naming
 * `field`. `which` picks the field that carries bad (n bytes). */
static void
s_refused(const char *which, const char *bad, size_t n, const char *field)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 3);
    sq_wire_kv_strn(e, "tenant", strcmp(which, "tenant") ? "acme" : bad,
                    strcmp(which, "tenant") ? 4 : n);
    sq_wire_kv_str(e, "model", "test");
    sq_wire_key(e, "tasks");
    sq_wire_array(e, 2);
    sq_wire_map(e, 2);
    sq_wire_kv_str(e, "custom_id", "fine");
    sq_wire_kv_str(e, "prompt", "fine");
    sq_wire_map(e, 2);
    sq_wire_kv_strn(e, "custom_id", strcmp(which, "custom_id") ? "x" : bad,
                    strcmp(which, "custom_id") ? 1 : n);
    sq_wire_kv_strn(e, "prompt", strcmp(which, "prompt") ? "x" : bad,
                    strcmp(which, "prompt") ? 1 : n);
    sq_wire_msg_t *reply = NULL;
    int code = 0;
    SQ_CHECK(sq_e2e_call(client, SQ_WIRE_SUBMIT, 10000, &reply, &code) == SQ_EPROTO);
    SQ_CHECK(code == SQ_WIRE_E_INVALID);
    if (!strstr(sq_error_detail(), field)) {
        fprintf(stderr, "refusal of a bad %s does not name %s: %s\n", which, field,
                sq_error_detail());
        SQ_CHECK(!"the error names the field");
    }
    sq_wire_msg_destroy(&reply);
}

static void
s_check_results_reply(uint64_t job)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 2);
    sq_wire_kv_u64(e, "job_id", job);
    sq_wire_kv_u64(e, "limit", 100);
    sq_wire_msg_t *reply = NULL;
    SQ_REQUIRE(sq_e2e_call(client, SQ_WIRE_RESULTS, 10000, &reply, NULL) == 0);
    sq_wire_val_t results, r;
    SQ_REQUIRE(sq_wire_get_array(reply->body, "results", true, 1000, &results) == 0);
    SQ_CHECK(sq_wire_count(results) == S_N_HOSTILE);
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, results);
    int matched = 0;
    while (sq_wire_iter_next(&it, &r)) {
        uint64_t index = 0;
        const char *text = NULL, *cid = NULL;
        size_t text_n = 0, cid_n = 0;
        sq_wire_get_u64(r, "index", true, 1000, &index);
        sq_wire_get_str(r, "text", true, SQ_WIRE_MAX_TEXT, &text, &text_n);
        sq_wire_get_str(r, "custom_id", true, SQ_WIRE_MAX_ID, &cid, &cid_n);
        if (index < 1 || index > (uint64_t)S_N_HOSTILE || !text || !cid)
            continue;
        const char *want = s_hostile[index - 1];
        const char *want_id = s_custom_id((int)index - 1);
        matched += text_n == strlen(want) && memcmp(text, want, text_n) == 0
                   && cid_n == strlen(want_id) && memcmp(cid, want_id, cid_n) == 0;
    }
    SQ_CHECK(matched == S_N_HOSTILE);
    sq_wire_msg_destroy(&reply);
}

/* Error text from a worker (its FAIL message carries its hostile group
 * id) is stored intact as the dead task's error. */
static void
s_hostile_error(void)
{
    const char *argv[] = {getenv("SHARDQ_TEST_WORKER_BIN"), "--broker",
                          sq_harness_worker_endpoint(h), "--group", S_FAILING_GROUP,
                          "--model", "failing", "--fail-permanent-rate", "1", NULL};
    SQ_REQUIRE(sq_harness_spawn(h, "failing-worker", argv));
    uint64_t job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "failing", 1, "e", 1, &job, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_i64(h, "select count(*) from task_results where state = 'dead'",
                                   1, 30000) == 0);
    char want[256];
    snprintf(want, sizeof want, "test worker %s: injected permanent failure on attempt 1",
             S_FAILING_GROUP);
    SQ_CHECK(s_count_param("select count(*) from task_results where error = $1", want, NULL)
             == 1);
}

/* STATUS gives tenant and model back, WORKERS the group id, intact. */
static void
s_check_status_and_workers(uint64_t job)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 1);
    sq_wire_kv_u64(e, "job_id", job);
    sq_wire_msg_t *reply = NULL;
    SQ_REQUIRE(sq_e2e_call(client, SQ_WIRE_STATUS, 10000, &reply, NULL) == 0);
    char *tenant = NULL, *model = NULL;
    SQ_CHECK(sq_wire_get_strdup(reply->body, "tenant", true, 128, &tenant) == 0);
    SQ_CHECK(sq_wire_get_strdup(reply->body, "model", true, 128, &model) == 0);
    SQ_CHECK(tenant && strcmp(tenant, S_HOSTILE_TENANT) == 0);
    SQ_CHECK(model && strcmp(model, S_HOSTILE_MODEL) == 0);
    free(tenant);
    free(model);
    sq_wire_msg_destroy(&reply);

    sq_e2e_begin(client, 0);
    SQ_REQUIRE(sq_e2e_call(client, SQ_WIRE_WORKERS, 10000, &reply, NULL) == 0);
    sq_wire_val_t workers, w;
    SQ_REQUIRE(sq_wire_get_array(reply->body, "workers", true, 10000, &workers) == 0);
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, workers);
    int found = 0;
    while (sq_wire_iter_next(&it, &w)) {
        char *group = NULL;
        sq_wire_get_strdup(w, "group_id", true, SQ_WIRE_MAX_ID, &group);
        found += group && strcmp(group, S_HOSTILE_GROUP) == 0;
        free(group);
    }
    SQ_CHECK(found == 1);
    sq_wire_msg_destroy(&reply);
}

static void
hostile_strings(void)
{
    char mflag[32];
    const int mport = sq_e2e_free_port();
    SQ_REQUIRE(mport > 0);
    snprintf(mflag, sizeof mflag, "--metrics-port=%d", mport);
    const char *flags[] = {mflag, NULL};
    SQ_REQUIRE(sq_e2e_up("hostile_strings", flags, &h, &client));
    const char *argv[] = {getenv("SHARDQ_TEST_WORKER_BIN"), "--broker",
                          sq_harness_worker_endpoint(h), "--group", S_HOSTILE_GROUP,
                          "--model", S_HOSTILE_MODEL, "--kv-in-use", "3", NULL};
    SQ_REQUIRE(argv[0] && sq_harness_spawn(h, "hostile-worker", argv));

    /* A job's adapter names a file on the workers: a hostile one is
     * refused at SUBMIT, naming the field, and nothing is stored; so is a
     * body that is not a JSON object (the workers read its stop strings) */
    s_submit_refused(S_HOSTILE_TENANT, S_HOSTILE_MODEL, "adapter", S_HOSTILE_ADAPTER, 0, NULL,
                     "field \"adapter\"");
    s_submit_refused(S_HOSTILE_TENANT, S_HOSTILE_MODEL, NULL, NULL, 0, s_hostile[1],
                     "tasks[0].body: not a JSON object");

    /* Every other text field of a SUBMIT; each task's body (a JSON object)
     * holds the next task's hostile string, so that no two fields hold the
     * same value. */
    sq_wire_enc_t *e = sq_e2e_begin(client, 4);
    sq_wire_kv_str(e, "tenant", S_HOSTILE_TENANT);
    sq_wire_kv_str(e, "model", S_HOSTILE_MODEL);
    sq_wire_kv_str(e, "params", S_HOSTILE_PARAMS);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, S_N_HOSTILE);
    for (int i = 0; i < S_N_HOSTILE; i++) {
        sq_wire_map(e, 3);
        sq_wire_kv_str(e, "custom_id", s_custom_id(i));
        sq_wire_kv_str(e, "prompt", s_hostile[i]);
        sq_wire_kv_str(e, "body", s_body((i + 1) % S_N_HOSTILE));
    }
    sq_wire_msg_t *reply = NULL;
    uint64_t job_id = 0;
    SQ_REQUIRE(sq_e2e_call(client, SQ_WIRE_SUBMIT, 30000, &reply, NULL) == 0);
    SQ_REQUIRE(sq_wire_get_u64(reply->body, "job_id", true, UINT64_MAX, &job_id) == 0);
    sq_wire_msg_destroy(&reply);
    char sql[128];
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu "
             "and state = 'succeeded'", (unsigned long long)job_id);
    SQ_REQUIRE(sq_harness_wait_i64(h, sql, S_N_HOSTILE, 30000) == 0);

    /* Stored byte for byte: compared in SQL against bound parameters. */
    SQ_CHECK(s_count_param("select count(*) from jobs where tenant = $1 and model = $2",
                           S_HOSTILE_TENANT, S_HOSTILE_MODEL) == 1);
    SQ_CHECK(s_count_param("select count(*) from jobs where adapter is null and params = $1",
                           S_HOSTILE_PARAMS, NULL) == 1);
    SQ_CHECK(s_count_param("select count(*) from workers where group_id = $1",
                           S_HOSTILE_GROUP, NULL) == 1);
    for (int i = 0; i < S_N_HOSTILE; i++) {
        SQ_CHECK(s_count_param("select count(*) from tasks t join task_results r "
                               "using (job_id, idx) where t.custom_id = $1 and t.prompt = $2 "
                               "and r.text = $2", s_custom_id(i), s_hostile[i]) == 1);
        SQ_CHECK(s_count_param("select count(*) from tasks where custom_id = $1 and body = $2",
                               s_custom_id(i), s_body((i + 1) % S_N_HOSTILE)) == 1);
    }
    /* ...and returned byte for byte through the protocol. */
    s_check_results_reply(job_id);
    s_check_status_and_workers(job_id);
    /* The metrics name the model with its backslash escaped (Prometheus
     * label syntax); the quote needs none there. */
    static char page[65536];
    SQ_CHECK(sq_e2e_scrape(mport, page, sizeof page) == 0);
    SQ_CHECK(strstr(page, "shardq_broker_queued_tasks{model=\"m\xc3\xb6""del's \\\\. %s\"} 0\n")
             != NULL);
    /* and the group's, once a heartbeat (one a second when idle) said its
     * KV pages in use: the backslash escaped, the quote, semicolon and
     * tab as they are */
    static const char group_line[] =
        "shardq_broker_group_kv_pages_in_use{model=\"m\xc3\xb6""del's \\\\. %s\","
        "group=\"g'; DELETE FROM workers; --\t\\\\N\"} 3\n";
    for (int i = 0; i < 100 && !strstr(page, group_line); i++) {
        zclock_sleep(50);
        SQ_CHECK(sq_e2e_scrape(mport, page, sizeof page) == 0);
    }
    SQ_CHECK(strstr(page, group_line) != NULL);

    s_hostile_error();

    /* NUL inside a msgpack string and invalid UTF-8 (bad byte, overlong,
     * surrogate, truncated sequence) are refused, naming the field. */
    s_refused("prompt", "a\0b", 3, "prompt");
    s_refused("custom_id", "\xff\xfe", 2, "custom_id");
    s_refused("tenant", "\xc0\xaf", 2, "tenant");
    s_refused("prompt", "\xed\xa0\x80", 3, "prompt");
    s_refused("custom_id", "ab\xe2\x82", 4, "custom_id");
    int64_t n = -1;
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from jobs", &n) == 0 && n == 2);
    SQ_CHECK(sq_harness_sql_i64(h, "select count(*) from tasks where custom_id = 'fine'",
                                &n) == 0 && n == 0);
}

/* --- usage counts ---------------------------------------------------- */

/* The cached_tokens of job's results in the RESULTS reply: how many
 * entries carry want (-1: carry none, or nil) */
static int
s_results_cached(uint64_t job, int64_t want)
{
    sq_wire_enc_t *e = sq_e2e_begin(client, 2);
    sq_wire_kv_u64(e, "job_id", job);
    sq_wire_kv_u64(e, "limit", 100);
    sq_wire_msg_t *reply = NULL;
    if (sq_e2e_call(client, SQ_WIRE_RESULTS, 10000, &reply, NULL) != 0)
        return -1;
    sq_wire_val_t results, r;
    int n = 0;
    if (sq_wire_get_array(reply->body, "results", true, 1000, &results) == 0) {
        sq_wire_iter_t it;
        sq_wire_iter_init(&it, results);
        while (sq_wire_iter_next(&it, &r)) {
            uint64_t v = 0;
            const bool has = sq_wire_get_u64(r, "cached_tokens", true, INT64_MAX, &v) == 0;
            n += want < 0 ? !has : has && v == (uint64_t)want;
        }
    }
    sq_wire_msg_destroy(&reply);
    return n;
}

/* A worker's cached_tokens is stored with the result and comes back in
 * RESULTS. A count larger than the prompt's is stored as unknown (NULL):
 * the result itself is kept. */
static void
usage_counts(void)
{
    SQ_REQUIRE(sq_e2e_up("usage_counts", NULL, &h, &client));
    const char *two[] = {"--cached-tokens", "2", NULL};
    sq_proc_t *w = sq_harness_worker_start(h, "w-two", two);
    SQ_REQUIRE(w);
    uint64_t job = 0, bad_job = 0;
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 20, "usage", 0, &job, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                      "'succeeded'", 20, 30000) == 0);
    SQ_CHECK(sq_proc_stop(w, 10000) == 0);
    const char *huge[] = {"--cached-tokens", "1000000", NULL};
    SQ_REQUIRE(sq_harness_worker_start(h, "w-huge", huge));
    SQ_REQUIRE(sq_e2e_submit_n(client, "acme", "test", 20, "over", 0, &bad_job, NULL) == 0);
    SQ_REQUIRE(sq_harness_wait_i64(h, "select count(*) from task_results where state = "
                                      "'succeeded'", 40, 30000) == 0);
    char sql[300];
    int64_t n = -1;
    snprintf(sql, sizeof sql, "select count(*) from task_results r join tasks t using (job_id, idx)"
             " where r.job_id = %llu and r.cached_tokens = 2 and r.prompt_tokens = "
             "octet_length(t.prompt)", (unsigned long long)job);
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n) == 0 && n == 20);
    snprintf(sql, sizeof sql, "select count(*) from task_results where job_id = %llu and "
             "cached_tokens is null and prompt_tokens > 0 and length(text) > 0",
             (unsigned long long)bad_job);
    SQ_CHECK(sq_harness_sql_i64(h, sql, &n) == 0 && n == 20);
    SQ_CHECK(s_results_cached(job, 2) == 20);
    SQ_CHECK(s_results_cached(bad_job, -1) == 20);
}

int
main(int argc, char **argv)
{
    static const sq_e2e_case_t cases[] = {
        {"bad_frames", bad_frames},
        {"hostile_strings", hostile_strings},
        {"usage_counts", usage_counts},
        {NULL, NULL}};
    return sq_e2e_main(argc, argv, cases, &h, &client);
}
