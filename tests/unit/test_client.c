/*  test_client: libshardq's request rules against a scripted peer.
 *
 *  The peer is a real ZeroMQ ROUTER on loopback speaking the real codec
 *  (sq_wire), run in a thread; each case scripts how it answers so that
 *  behaviour a healthy broker rarely shows can be provoked on demand:
 *  retryable ERRORs, silence, replies to the wrong request id, garbage.
 *  The end-to-end tests (tests/e2e/test_cli.c) cover the real broker.
 */
#define _GNU_SOURCE
#include "sq_client.h"
#include "sq_error.h"
#include "sq_test.h"
#include "sq_wire.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

typedef enum {
    S_OK,              /* answer every request properly */
    S_UNAVAILABLE_2,   /* ERROR 5 (retryable) twice, then answer */
    S_INVALID,         /* ERROR 3 */
    S_WRONG_RID_FIRST, /* a reply with another rid, then the real one */
    S_SILENT_FIRST,    /* ignore the first request, answer the rest */
    S_SILENT,          /* never answer */
    S_GARBAGE,         /* answer with frames that are not the protocol */
    S_TOOBIG_OVER_2,   /* RESULTS pages over 2 entries are "too big" */
    S_ERROR_RID0,      /* ERROR without a rid, as for an unparseable request */
    S_RESULTS_LATE     /* task 2 finishes only once late_finished is set */
} s_mode_t;

typedef struct {
    zsock_t *sock;
    atomic_int mode;
    atomic_int n_requests;
    atomic_bool stop;
    atomic_bool late_finished;  /* S_RESULTS_LATE: task 2 has finished */
    pthread_t thread;
    char endpoint[64];
    /* what the last SUBMIT carried, for the encoding check */
    char last_custom_id[64];
    size_t last_custom_id_len;
    char last_body[256];
    uint64_t last_max_tokens, last_n_tasks;
    char last_params[64];
} s_peer_t;

static void
s_reply_status(s_peer_t *p, zframe_t *id, uint64_t rid)
{
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 9);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "job_id", 42);
    sq_wire_kv_str(e, "tenant", "alice");
    sq_wire_kv_str(e, "model", "tiny");
    sq_wire_kv_u64(e, "priority", 7);
    sq_wire_kv_str(e, "state", "running");
    sq_wire_kv_u64(e, "n_tasks", 5);
    sq_wire_kv_str(e, "params", "{\"kind\":\"chat\"}");
    sq_wire_key(e, "counts");
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "succeeded", 3);
    sq_wire_kv_u64(e, "queued", 2);
    sq_wire_send(zsock_resolve(p->sock), id, SQ_WIRE_STATUS | SQ_WIRE_REPLY, e);
    sq_wire_enc_destroy(&e);
}

/* RESULTS: 5 tasks served as the broker does: the finished ones after
 * `after`, in index order, `limit` at most; done when every task has
 * finished and the page reached the last. */
static void
s_reply_results(s_peer_t *p, zframe_t *id, sq_wire_msg_t *m, uint64_t rid)
{
    uint64_t after = 0, limit = 1000;
    sq_wire_get_u64(m->body, "after", false, UINT64_MAX, &after);
    sq_wire_get_u64(m->body, "limit", false, UINT64_MAX, &limit);
    const bool all = atomic_load(&p->mode) != S_RESULTS_LATE || atomic_load(&p->late_finished);
    uint64_t page[5], last = after;
    uint32_t n = 0;
    for (uint64_t i = after + 1; i <= 5 && n < limit; i++)
        if (all || i != 2)
            last = page[n++] = i;
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 6);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "job_id", 42);
    sq_wire_kv_bool(e, "finished", all);
    sq_wire_key(e, "results");
    sq_wire_array(e, n);
    for (uint32_t k = 0; k < n; k++) {
        const uint64_t i = page[k];
        char cid[16], text[32];
        snprintf(cid, sizeof cid, "r-%llu", (unsigned long long)i);
        snprintf(text, sizeof text, "out \xE2\x82\xAC %llu", (unsigned long long)i);
        bool dead = i == 4;
        sq_wire_map(e, dead ? 5 : 6);
        sq_wire_kv_u64(e, "index", i);
        sq_wire_kv_str(e, "custom_id", cid);
        sq_wire_kv_str(e, "state", dead ? "dead" : "succeeded");
        sq_wire_kv_u64(e, "attempts", dead ? 3 : 1);
        if (dead) {
            sq_wire_kv_str(e, "error", "worker crashed");
        } else {
            sq_wire_kv_str(e, "text", text);
            sq_wire_kv_u64(e, "completion_tokens", i);
        }
    }
    sq_wire_kv_u64(e, "next", last);
    sq_wire_kv_bool(e, "done", all && (last == 5 || (n == 0 && after >= 5)));
    sq_wire_send(zsock_resolve(p->sock), id, SQ_WIRE_RESULTS | SQ_WIRE_REPLY, e);
    sq_wire_enc_destroy(&e);
}

static void
s_reply_submit(s_peer_t *p, zframe_t *id, sq_wire_msg_t *m, uint64_t rid)
{
    sq_wire_val_t tasks, t0;
    sq_wire_iter_t it;
    const char *s;
    size_t len;
    if (sq_wire_get_array(m->body, "tasks", true, 100000, &tasks) == 0) {
        p->last_n_tasks = sq_wire_count(tasks);
        sq_wire_iter_init(&it, tasks);
        if (sq_wire_iter_next(&it, &t0)) {
            if (sq_wire_get_str(t0, "custom_id", true, 63, &s, &len) == 0) {
                memcpy(p->last_custom_id, s, len);
                p->last_custom_id_len = len;
            }
            if (sq_wire_get_str(t0, "body", false, 255, &s, &len) == 0 && s)
                memcpy(p->last_body, s, len);
            sq_wire_get_u64(t0, "max_tokens", false, UINT64_MAX, &p->last_max_tokens);
        }
    }
    if (sq_wire_get_str(m->body, "params", false, 63, &s, &len) == 0 && s)
        memcpy(p->last_params, s, len);
    sq_wire_enc_t *e = sq_wire_enc_new();
    sq_wire_map(e, 3);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "job_id", 42);
    sq_wire_kv_u64(e, "n_tasks", p->last_n_tasks);
    sq_wire_send(zsock_resolve(p->sock), id, SQ_WIRE_SUBMIT | SQ_WIRE_REPLY, e);
    sq_wire_enc_destroy(&e);
}

static void
s_answer(s_peer_t *p, sq_wire_msg_t *m, int n)
{
    uint64_t rid = 0;
    sq_wire_get_u64(m->body, "rid", false, UINT64_MAX, &rid);
    int mode = atomic_load(&p->mode);
    if (mode == S_SILENT || (mode == S_SILENT_FIRST && n == 1))
        return;
    if (mode == S_UNAVAILABLE_2 && n <= 2) {
        sq_wire_send_error(zsock_resolve(p->sock), m->identity, rid, SQ_WIRE_E_UNAVAILABLE,
                           "database unreachable");
        return;
    }
    if (mode == S_ERROR_RID0) {
        sq_wire_send_error(zsock_resolve(p->sock), m->identity, 0, SQ_WIRE_E_BADMSG,
                           "body is not a msgpack map");
        return;
    }
    if (mode == S_INVALID) {
        sq_wire_send_error(zsock_resolve(p->sock), m->identity, rid, SQ_WIRE_E_INVALID,
                           "tasks[3].prompt: too long");
        return;
    }
    if (mode == S_GARBAGE) {
        zmsg_t *z = zmsg_new();
        zmsg_append(z, &(zframe_t *){zframe_dup(m->identity)});
        zmsg_addstr(z, "HTTP/1.1 200 OK");
        zmsg_send(&z, p->sock);
        return;
    }
    uint64_t limit = 0;
    sq_wire_get_u64(m->body, "limit", false, UINT64_MAX, &limit);
    if (mode == S_TOOBIG_OVER_2 && m->cmd == SQ_WIRE_RESULTS && limit > 2) {
        sq_wire_send_error(zsock_resolve(p->sock), m->identity, rid, SQ_WIRE_E_TOOBIG,
                           "page over the message cap");
        return;
    }
    if (mode == S_WRONG_RID_FIRST)
        s_reply_status(p, m->identity, rid + 1000);
    if (m->cmd == SQ_WIRE_SUBMIT)
        s_reply_submit(p, m->identity, m, rid);
    else if (m->cmd == SQ_WIRE_RESULTS)
        s_reply_results(p, m->identity, m, rid);
    else
        s_reply_status(p, m->identity, rid);
}

static void *
s_peer_run(void *arg)
{
    s_peer_t *p = arg;
    zsock_set_rcvtimeo(p->sock, 50);
    while (!atomic_load(&p->stop)) {
        sq_wire_msg_t *m = NULL;
        if (sq_wire_recv(zsock_resolve(p->sock), true, SQ_WIRE_MAX_BODY, &m, NULL) != 0)
            continue;
        int n = atomic_fetch_add(&p->n_requests, 1) + 1;
        s_answer(p, m, n);
        sq_wire_msg_destroy(&m);
    }
    return NULL;
}

static s_peer_t *
s_peer_start(s_mode_t mode)
{
    s_peer_t *p = calloc(1, sizeof *p);
    p->sock = zsock_new(ZMQ_ROUTER);
    zsock_set_linger(p->sock, 0);
    /* a port in the client area's range (17000-17999) */
    int port = -1;
    for (int i = 0; i < 200 && port < 0; i++) {
        int try_port = 17000 + (int)((getpid() * 7 + i) % 1000);
        if (zsock_bind(p->sock, "tcp://127.0.0.1:%d", try_port) == try_port)
            port = try_port;
    }
    snprintf(p->endpoint, sizeof p->endpoint, "tcp://127.0.0.1:%d", port);
    atomic_store(&p->mode, mode);
    pthread_create(&p->thread, NULL, s_peer_run, p);
    return p;
}

static void
s_peer_stop(s_peer_t **p_p)
{
    s_peer_t *p = *p_p;
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
    zsock_destroy(&p->sock);
    free(p);
    *p_p = NULL;
}

static sq_client_t *
s_client(const s_peer_t *p, int timeout_ms)
{
    sq_client_opts_t o = {.timeout_ms = timeout_ms, .submit_timeout_ms = timeout_ms,
                          .connect_timeout_ms = 2000, .retries = 3, .backoff_ms = 10};
    return sq_client_new(p->endpoint, &o);
}

static void
test_status_decoded(void)
{
    s_peer_t *p = s_peer_start(S_OK);
    sq_client_t *c = s_client(p, 2000);
    SQ_REQUIRE(c);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 42, &j) == 0);
    SQ_CHECK(j.job_id == 42 && strcmp(j.tenant, "alice") == 0 && strcmp(j.model, "tiny") == 0);
    SQ_CHECK(j.priority == 7 && strcmp(j.state, "running") == 0 && j.n_tasks == 5);
    SQ_CHECK(j.counts.succeeded == 3 && j.counts.queued == 2 && j.counts.dead == 0);
    SQ_CHECK(j.kind == SQ_JSONL_KIND_CHAT);
    SQ_CHECK(sq_client_counts_terminal(&j.counts) == 3 && !sq_client_state_terminal(j.state));
    sq_client_destroy(&c);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_retry_unavailable(void)
{
    s_peer_t *p = s_peer_start(S_UNAVAILABLE_2);
    sq_client_t *c = s_client(p, 2000);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 42, &j) == 0 && j.job_id == 42);
    SQ_CHECK(atomic_load(&p->n_requests) == 3);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_invalid_not_retried(void)
{
    s_peer_t *p = s_peer_start(S_INVALID);
    sq_client_t *c = s_client(p, 2000);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 42, &j) == SQ_EINVAL);
    SQ_CHECK(strstr(sq_error_detail(), "tasks[3].prompt: too long") != NULL);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

/* An ERROR the broker could not tie to a request id still ends the call
 * at once (not after the timeout). */
static void
test_error_without_rid(void)
{
    s_peer_t *p = s_peer_start(S_ERROR_RID0);
    sq_client_t *c = s_client(p, 5000);
    sq_client_job_t j;
    /* a timeout would be SQ_ETIMEDOUT after a second request */
    SQ_CHECK(sq_client_status(c, 42, &j) == SQ_EPROTO);
    SQ_CHECK(strstr(sq_error_detail(), "not a msgpack map") != NULL);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_stale_reply_dropped(void)
{
    s_peer_t *p = s_peer_start(S_WRONG_RID_FIRST);
    sq_client_t *c = s_client(p, 2000);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 42, &j) == 0 && j.job_id == 42);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_timeouts(void)
{
    /* idempotent: the unanswered first attempt is repeated on a new socket */
    s_peer_t *p = s_peer_start(S_SILENT_FIRST);
    sq_client_t *c = s_client(p, 300);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 42, &j) == 0 && j.job_id == 42);
    SQ_CHECK(atomic_load(&p->n_requests) == 2);
    sq_client_destroy(&c);
    s_peer_stop(&p);

    /* a broker that stays silent is asked twice in all, not `retries` times */
    p = s_peer_start(S_SILENT);
    c = s_client(p, 300);
    SQ_CHECK(sq_client_status(c, 42, &j) == SQ_ETIMEDOUT);
    SQ_CHECK(strstr(sq_error_detail(), "no reply to STATUS") != NULL);
    SQ_CHECK(atomic_load(&p->n_requests) == 2);
    sq_client_destroy(&c);
    s_peer_stop(&p);

    /* SUBMIT is never repeated after a timeout: it may have been committed */
    p = s_peer_start(S_SILENT);
    c = s_client(p, 300);
    sq_jsonl_task_t t = {.custom_id = "a", .custom_id_len = 1, .prompt = "p", .prompt_len = 1,
                         .max_tokens = -1, .seed = -1, .temperature = NAN, .top_p = NAN};
    sq_client_job_spec_t spec = {.tenant = "t", .model = "m", .priority = -1};
    uint64_t id = 0;
    SQ_CHECK(sq_client_submit(c, &spec, &t, 1, &id) == SQ_ETIMEDOUT);
    SQ_CHECK(strstr(sq_error_detail(), "may or may not") != NULL);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    sq_client_destroy(&c);
    s_peer_stop(&p);

    /* ...unless it carries an idempotency key: then the broker stores its
     * job once however often it arrives, and it is sent again */
    p = s_peer_start(S_SILENT_FIRST);
    c = s_client(p, 300);
    spec.idempotency_key = "k-1";
    bool repeated = true;
    SQ_CHECK(sq_client_submit_keyed(c, &spec, &t, 1, &id, &repeated) == 0 && id == 42);
    SQ_CHECK(!repeated);   /* the peer's reply has no "repeated" */
    SQ_CHECK(atomic_load(&p->n_requests) == 2);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_garbage_reply(void)
{
    s_peer_t *p = s_peer_start(S_GARBAGE);
    sq_client_t *c = s_client(p, 500);
    sq_client_job_t j;
    int rc = sq_client_status(c, 42, &j);
    SQ_CHECK(rc == SQ_EPROTO);
    SQ_CHECK(strstr(sq_error_detail(), "malformed reply") != NULL);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_submit_encoding(void)
{
    s_peer_t *p = s_peer_start(S_OK);
    sq_client_t *c = s_client(p, 2000);
    const char *text =
        "{\"custom_id\":\"q\\\"'; --\",\"method\":\"POST\",\"url\":\"/v1/completions\","
        "\"body\":{\"prompt\":\"hi\",\"max_tokens\":9,\"stop\":[\"END\"]}}\n"
        "{\"custom_id\":\"b\",\"prompt\":\"x\"}\n";
    sq_jsonl_limits_t lim;
    sq_client_job_limits(&lim);
    sq_jsonl_t *file = NULL;
    SQ_REQUIRE(sq_jsonl_parse(text, strlen(text), &lim, &file) == 0);
    sq_client_job_spec_t spec = {.tenant = "t", .model = "m", .priority = 5,
                                 .params_json = "{\"kind\":\"completion\"}"};
    uint64_t id = 0;
    SQ_CHECK(sq_client_submit(c, &spec, sq_jsonl_tasks(file), sq_jsonl_size(file), &id) == 0);
    SQ_CHECK(id == 42 && p->last_n_tasks == 2);
    SQ_CHECK(p->last_custom_id_len == 7 && memcmp(p->last_custom_id, "q\"'; --", 7) == 0);
    SQ_CHECK(p->last_max_tokens == 9);
    /* the prompt travels once, as the task's, not again in the body */
    SQ_CHECK(strcmp(p->last_body, "{\"max_tokens\":9,\"stop\":[\"END\"]}") == 0);
    SQ_CHECK(strcmp(p->last_params, "{\"kind\":\"completion\"}") == 0);
    /* a job needs tenant and model; empty jobs are refused before sending */
    sq_client_job_spec_t bad = {.tenant = "t", .priority = -1};
    SQ_CHECK(sq_client_submit(c, &bad, sq_jsonl_tasks(file), 1, &id) == SQ_EINVAL);
    SQ_CHECK(sq_client_submit(c, &spec, sq_jsonl_tasks(file), 0, &id) == SQ_EINVAL);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    sq_jsonl_destroy(&file);

    /* a job over the message cap is refused before sending, saying how
     * many tasks a job could hold: 80 tasks of 1 MiB, about 57 fit */
    enum { N_BIG = 80 };
    static sq_jsonl_task_t big[N_BIG];
    char *prompt = malloc(SQ_WIRE_MAX_PROMPT);
    SQ_REQUIRE(prompt);
    memset(prompt, 'x', SQ_WIRE_MAX_PROMPT);
    for (int i = 0; i < N_BIG; i++)
        big[i] = (sq_jsonl_task_t){.custom_id = "c", .custom_id_len = 1, .prompt = prompt,
                                   .prompt_len = SQ_WIRE_MAX_PROMPT, .max_tokens = -1,
                                   .temperature = NAN, .top_p = NAN, .seed = -1};
    SQ_CHECK(sq_client_submit(c, &spec, big, N_BIG, &id) == SQ_ETOOBIG);
    SQ_CHECK(strstr(sq_error_detail(), "split it into jobs of about 57 tasks") != NULL);
    SQ_CHECK(atomic_load(&p->n_requests) == 1);
    free(prompt);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_results_pages(void)
{
    s_peer_t *p = s_peer_start(S_OK);
    sq_client_t *c = s_client(p, 2000);
    sq_client_results_t *it = sq_client_results_new(c, 42, 2);
    SQ_REQUIRE(it);
    const sq_client_result_t *r;
    int n = 0, rc;
    while ((rc = sq_client_results_next(it, &r)) == 1) {
        n++;
        char want[16];
        snprintf(want, sizeof want, "r-%d", n);
        SQ_CHECK(r->index == (uint64_t)n && strcmp(r->custom_id, want) == 0);
        SQ_CHECK(r->prompt_tokens == -1);
        if (n == 4) {
            SQ_CHECK(strcmp(r->state, "dead") == 0 && r->text == NULL);
            SQ_CHECK(r->error && strcmp(r->error, "worker crashed") == 0 && r->attempts == 3);
        } else {
            SQ_CHECK(strcmp(r->state, "succeeded") == 0 && r->text &&
                     strstr(r->text, "\xE2\x82\xAC"));
            SQ_CHECK(r->completion_tokens == n && r->error == NULL);
        }
    }
    SQ_CHECK(rc == 0 && n == 5 && sq_client_results_done(it));
    SQ_CHECK(atomic_load(&p->n_requests) == 3); /* pages of 2: 2 + 2 + 1 */
    sq_client_results_destroy(&it);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

/* A task that finishes after the cursor passed its index (the pages come
 * while the job runs) is still returned, once, and no other twice. */
static void
test_results_late_task(void)
{
    s_peer_t *p = s_peer_start(S_RESULTS_LATE);
    sq_client_t *c = s_client(p, 2000);
    sq_client_results_t *it = sq_client_results_new(c, 42, 2);
    const sq_client_result_t *r;
    int rc, n = 0, times[6] = {0};
    while ((rc = sq_client_results_next(it, &r)) == 1 && r->index <= 5 && ++n)
        times[r->index]++;
    SQ_CHECK(rc == 0 && n == 4 && times[2] == 0 && !sq_client_results_done(it));
    atomic_store(&p->late_finished, true);   /* now the job is done */
    while ((rc = sq_client_results_next(it, &r)) == 1 && r->index <= 5 && ++n)
        times[r->index]++;
    SQ_CHECK(rc == 0 && n == 5 && sq_client_results_done(it));
    for (int i = 1; i <= 5; i++)
        SQ_CHECK(times[i] == 1);
    /* and a walk over a finished job reads each page once, no sweep */
    sq_client_results_destroy(&it);
    const int before = atomic_load(&p->n_requests);
    it = sq_client_results_new(c, 42, 5);
    for (n = 0; (rc = sq_client_results_next(it, &r)) == 1; n++)
        ;
    SQ_CHECK(rc == 0 && n == 5 && sq_client_results_done(it));
    SQ_CHECK(atomic_load(&p->n_requests) - before == 1);
    sq_client_results_destroy(&it);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

/* A page the broker cannot fit in one message is asked for again, halved. */
static void
test_results_page_halved(void)
{
    s_peer_t *p = s_peer_start(S_TOOBIG_OVER_2);
    sq_client_t *c = s_client(p, 2000);
    sq_client_results_t *it = sq_client_results_new(c, 42, 8);
    const sq_client_result_t *r;
    int n = 0, rc;
    while ((rc = sq_client_results_next(it, &r)) == 1)
        n++;
    SQ_CHECK(rc == 0 && n == 5 && sq_client_results_done(it));
    SQ_CHECK(atomic_load(&p->n_requests) == 5); /* 8 and 4 refused; 2 + 2 + 1 */
    sq_client_results_destroy(&it);
    sq_client_destroy(&c);
    s_peer_stop(&p);
}

static void
test_unreachable(void)
{
    sq_client_opts_t o = {.connect_timeout_ms = 300};
    sq_client_t *c = sq_client_new("tcp://127.0.0.1:17999", &o);
    SQ_REQUIRE(c);
    sq_client_job_t j;
    SQ_CHECK(sq_client_status(c, 1, &j) == -ECONNREFUSED);
    SQ_CHECK(strstr(sq_error_detail(), "unreachable") != NULL);
    sq_client_destroy(&c);
    /* no endpoint: $SHARDQ_BROKER, else the documented default */
    setenv("SHARDQ_BROKER", "tcp://127.0.0.1:17998", 1);
    c = sq_client_new(NULL, NULL);
    SQ_CHECK(c && strcmp(sq_client_endpoint(c), "tcp://127.0.0.1:17998") == 0);
    sq_client_destroy(&c);
    unsetenv("SHARDQ_BROKER");
    c = sq_client_new(NULL, NULL);
    SQ_CHECK(c && strcmp(sq_client_endpoint(c), SQ_CLIENT_DEFAULT_BROKER) == 0);
    sq_client_destroy(&c);
    SQ_CHECK(sq_client_new("bogus://x", NULL) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "bogus://x") != NULL);
}

int
main(void)
{
    zsys_handler_set(NULL);
    SQ_RUN(test_status_decoded);
    SQ_RUN(test_retry_unavailable);
    SQ_RUN(test_invalid_not_retried);
    SQ_RUN(test_stale_reply_dropped);
    SQ_RUN(test_error_without_rid);
    SQ_RUN(test_timeouts);
    SQ_RUN(test_garbage_reply);
    SQ_RUN(test_submit_encoding);
    SQ_RUN(test_results_pages);
    SQ_RUN(test_results_page_halved);
    SQ_RUN(test_results_late_task);
    SQ_RUN(test_unreachable);
    return sq_test_summary("client");
}
