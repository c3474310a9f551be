/*  sq_client: requests to shardq-broker over one DEALER socket.
 *
 *  Every request goes through s_request(): number it (rid), build its body,
 *  send, and read replies until the one carrying that rid arrives or the
 *  deadline passes; retry per the rules in sq_client.h. The decoding of
 *  each reply lives next to the call that asked for it. RESULTS paging is
 *  in sq_client_results.c.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_client_internal.h"
#include "sq_clock.h"
#include "sq_utf8.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sq_client_t {
    char *endpoint;
    sq_client_opts_t opts;
    zsock_t *sock;
    uint64_t next_rid;
    sq_wire_enc_t *enc;
};

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A fresh DEALER: IMMEDIATE so nothing queues towards an absent broker,
 * linger 0 so an abandoned request dies with the socket, and a receive
 * cap so a hostile peer cannot make us allocate more than a frame. */
static int
s_connect(sq_client_t *self)
{
    zsock_destroy(&self->sock);
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        return SQ_FAIL(SQ_ENOMEM, "cannot create a ZeroMQ socket");
    zsock_set_linger(self->sock, 0);
    zsock_set_immediate(self->sock, 1);
    zsock_set_maxmsgsize(self->sock, (int64_t)SQ_WIRE_MAX_BODY + 64);
    zsock_set_sndtimeo(self->sock, self->opts.connect_timeout_ms);
    if (zsock_connect(self->sock, "%s", self->endpoint) != 0) {
        zsock_destroy(&self->sock);
        return SQ_FAIL(SQ_EINVAL, "bad broker endpoint \"%s\" (expected e.g. tcp://host:5555)",
                       self->endpoint);
    }
    return 0;
}

sq_client_t *
sq_client_new(const char *endpoint, const sq_client_opts_t *opts)
{
    if (!endpoint || !*endpoint)
        endpoint = getenv("SHARDQ_BROKER");
    if (!endpoint || !*endpoint)
        endpoint = SQ_CLIENT_DEFAULT_BROKER;
    sq_client_t *self = calloc(1, sizeof *self);
    if (!self) {
        SQ_FAIL(SQ_ENOMEM, "out of memory");
        return NULL;
    }
    sq_client_opts_t o = opts ? *opts : (sq_client_opts_t){0};
    self->opts.timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 10000;
    self->opts.submit_timeout_ms = o.submit_timeout_ms > 0 ? o.submit_timeout_ms : 60000;
    self->opts.connect_timeout_ms = o.connect_timeout_ms > 0 ? o.connect_timeout_ms : 3000;
    self->opts.retries = o.retries > 0 ? o.retries : (o.retries < 0 ? 0 : 4);
    self->opts.backoff_ms = o.backoff_ms > 0 ? o.backoff_ms : 100;
    self->endpoint = strdup(endpoint);
    self->enc = sq_wire_enc_new();
    if (!self->endpoint || !self->enc) {
        SQ_FAIL(SQ_ENOMEM, "out of memory");
        sq_client_destroy(&self);
        return NULL;
    }
    if (s_connect(self) != 0)
        sq_client_destroy(&self);
    return self;
}

void
sq_client_destroy(sq_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_client_t *self = *self_p;
    zsock_destroy(&self->sock);
    sq_wire_enc_destroy(&self->enc);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

const char *
sq_client_endpoint(const sq_client_t *self)
{
    return self->endpoint;
}

/* An ERROR reply as a local code, with the broker's message as detail. */
static int
s_error_reply(sq_client_t *self, sq_wire_msg_t *msg, bool *retryable)
{
    uint64_t code = 0;
    const char *text = "";
    size_t len = 0;
    sq_wire_get_u64(msg->body, "code", false, UINT32_MAX, &code);
    sq_wire_get_str(msg->body, "message", false, SQ_WIRE_MAX_ERROR, &text, &len);
    *retryable = false;
    sq_wire_get_bool(msg->body, "retryable", false, retryable);
    int rc = code == SQ_WIRE_E_INVALID       ? SQ_EINVAL
             : code == SQ_WIRE_E_TOOBIG      ? SQ_ETOOBIG
             : code == SQ_WIRE_E_NOTFOUND    ? SQ_ENOTFOUND
             : code == SQ_WIRE_E_STATE       ? SQ_ESTATE
             : code == SQ_WIRE_E_UNAVAILABLE ? SQ_EAGAIN
             : code == SQ_WIRE_E_INTERNAL    ? SQ_EAGAIN
                                             : SQ_EPROTO;
    return SQ_FAIL(rc, "broker %s: %.*s", self->endpoint, (int)len, text);
}

/* Wait for the reply to `rid`; replies to older requests are dropped.
 * 0 with *reply_p, SQ_ETIMEDOUT, or a decoding error. */
static int
s_await(sq_client_t *self, uint8_t cmd, uint64_t rid, int timeout_ms, sq_wire_msg_t **reply_p)
{
    int64_t deadline = sq_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - sq_mono_ms();
        if (left <= 0)
            return SQ_FAIL(SQ_ETIMEDOUT, "broker %s: no reply to %s within %d ms",
                           self->endpoint, sq_wire_cmd_name(cmd), timeout_ms);
        zsock_set_rcvtimeo(self->sock, (int)left);
        sq_wire_msg_t *msg = NULL;
        int rc = sq_wire_recv(zsock_resolve(self->sock), false, SQ_WIRE_MAX_BODY, &msg, NULL);
        if (rc == SQ_EAGAIN)
            continue;
        if (rc)
            return SQ_FAIL(SQ_EPROTO, "broker %s: malformed reply: %s", self->endpoint,
                           sq_error_detail());
        if (msg->cmd == SQ_WIRE_DISCONNECT) {
            /* a broker's worker endpoint answers a client so: the request
             * was not taken (SUBMIT included), so say it now, not after
             * the retries */
            const char *why = NULL;
            size_t n = 0;
            sq_wire_get_str(msg->body, "reason", false, SQ_WIRE_MAX_ERROR, &why, &n);
            rc = SQ_FAIL(SQ_EPROTO, "%s ended the session (\"%.*s\"), nothing was taken: is it "
                         "the broker's worker endpoint? clients use its client endpoint "
                         "(--listen, default port 5555)", self->endpoint, why ? (int)n : 0,
                         why ? why : "");
            sq_wire_msg_destroy(&msg);
            return rc;
        }
        uint64_t got = 0;
        sq_wire_get_u64(msg->body, "rid", false, UINT64_MAX, &got);
        /* ERROR with rid 0 answers a request the broker could not even
         * parse; only one request is outstanding per socket, so it is ours */
        if ((got == rid && msg->cmd == (cmd | SQ_WIRE_REPLY)) ||
            (msg->cmd == SQ_WIRE_ERROR && (got == rid || got == 0))) {
            *reply_p = msg;
            return 0;
        }
        sq_wire_msg_destroy(&msg); /* late answer to an abandoned request */
    }
}

/* One attempt: build, send, await. *sent tells whether the broker may have
 * seen the request (only then is a timeout ambiguous). */
static int
s_attempt(sq_client_t *self, uint8_t cmd, sq_client_build_fn build, const void *arg,
          int timeout_ms, sq_wire_msg_t **reply_p, bool *sent)
{
    uint64_t rid = ++self->next_rid;
    *sent = false;
    sq_wire_enc_reset(self->enc);
    int rc = build(self->enc, rid, arg);
    if (rc)
        return rc;
    if (sq_wire_enc_size(self->enc) > SQ_WIRE_MAX_BODY)
        return SQ_FAIL(SQ_ETOOBIG, "%s request is %zu bytes, over the protocol cap of %u bytes",
                       sq_wire_cmd_name(cmd), sq_wire_enc_size(self->enc), SQ_WIRE_MAX_BODY);
    if (sq_wire_send(zsock_resolve(self->sock), NULL, cmd, self->enc) != 0)
        return SQ_FAIL(-ECONNREFUSED, "broker %s unreachable: no connection within %d ms",
                       self->endpoint, self->opts.connect_timeout_ms);
    *sent = true;
    return s_await(self, cmd, rid, timeout_ms, reply_p);
}

/* idempotent: a request that timed out may be sent again */
static int
s_request(sq_client_t *self, uint8_t cmd, sq_client_build_fn build, const void *arg,
          bool idempotent, sq_wire_msg_t **reply_p)
{
    int timeout_ms = idempotent ? self->opts.timeout_ms : self->opts.submit_timeout_ms;
    int backoff_ms = self->opts.backoff_ms;
    *reply_p = NULL;
    for (int attempt = 0;; attempt++) {
        sq_wire_msg_t *msg = NULL;
        bool sent, retryable = false;
        int rc = s_attempt(self, cmd, build, arg, timeout_ms, &msg, &sent);
        if (rc == 0 && msg->cmd != SQ_WIRE_ERROR) {
            *reply_p = msg;
            return 0;
        }
        if (rc == 0) {
            rc = s_error_reply(self, msg, &retryable);
            sq_wire_msg_destroy(&msg);
        } else if (rc == SQ_ETIMEDOUT || rc == -ECONNREFUSED) {
            /* replace the socket: nothing of this attempt may linger */
            int crc = s_connect(self);
            if (crc)
                return crc;
            retryable = rc == SQ_ETIMEDOUT && idempotent;
            if (rc == SQ_ETIMEDOUT && !idempotent)
                SQ_FAIL(rc, "broker %s: no reply to %s within %d ms; %s", self->endpoint,
                        sq_wire_cmd_name(cmd), timeout_ms,
                        cmd == SQ_WIRE_SUBMIT
                            ? "the job may or may not have been accepted (see `shardq jobs`)"
                            : "the change may or may not have been made (see `shardq lora "
                              "list`)");
        }
        /* a silent broker is asked once more, not `retries` times: each
         * wait is long, and a user at a terminal is waiting */
        int max_attempts = rc == SQ_ETIMEDOUT ? (self->opts.retries > 0) : self->opts.retries;
        if (!retryable || attempt >= max_attempts)
            return rc;
        s_sleep_ms(backoff_ms);
        backoff_ms *= 2;
    }
}

int
sq_client_request(sq_client_t *self, uint8_t cmd, sq_client_build_fn build, const void *arg,
                  sq_wire_msg_t **reply_p)
{
    return s_request(self, cmd, build, arg, cmd != SQ_WIRE_SUBMIT, reply_p);
}

int
sq_client_request_change(sq_client_t *self, uint8_t cmd, sq_client_build_fn build,
                         const void *arg, sq_wire_msg_t **reply_p)
{
    return s_request(self, cmd, build, arg, false, reply_p);
}

/* ------------------------------------------------------- field helpers */

void
sq_client_get_fixed(sq_wire_val_t map, const char *key, char *buf, size_t size)
{
    const char *s = NULL;
    size_t len = 0;
    buf[0] = '\0';
    if (sq_wire_get_str(map, key, false, SIZE_MAX, &s, &len) == 0 && s) {
        const size_t n = len < size - 1 ? len : size - 1;
        memcpy(buf, s, n);
        buf[n] = '\0';
        sq_utf8_fit(buf, size, len > INT_MAX ? INT_MAX : (int)len);
    }
}

char *
sq_client_get_dup(sq_wire_val_t map, const char *key)
{
    const char *s = NULL;
    size_t len = 0;
    if (sq_wire_get_str(map, key, false, SIZE_MAX, &s, &len) != 0 || !s)
        return NULL;
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

uint64_t
sq_client_get_u64(sq_wire_val_t map, const char *key)
{
    uint64_t v = 0;
    sq_wire_get_u64(map, key, false, UINT64_MAX, &v);
    return v;
}

/* ---------------------------------------------------------------- SUBMIT */

void
sq_client_job_limits(sq_jsonl_limits_t *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->max_tasks = SQ_WIRE_MAX_TASKS;
    lim->max_custom_id_bytes = SQ_WIRE_MAX_ID;
    lim->max_prompt_bytes = SQ_WIRE_MAX_PROMPT;
    lim->refuse_nul = 1;
}

typedef struct {
    const sq_client_job_spec_t *spec;
    const sq_jsonl_task_t *tasks;
    size_t n_tasks;
} s_submit_args_t;

static void
s_pack_task(sq_wire_enc_t *e, const sq_jsonl_task_t *t)
{
    uint32_t n = 2 + (t->max_tokens > 0) + !isnan(t->temperature) + !isnan(t->top_p) +
                 (t->seed >= 0) + (t->body_json != NULL) + (t->adapter != NULL) +
                 (t->adapter_version != NULL);
    sq_wire_map(e, n);
    sq_wire_kv_strn(e, "custom_id", t->custom_id, t->custom_id_len);
    sq_wire_kv_strn(e, "prompt", t->prompt, t->prompt_len);
    if (t->max_tokens > 0)
        sq_wire_kv_u64(e, "max_tokens", (uint64_t)t->max_tokens);
    if (!isnan(t->temperature))
        sq_wire_kv_double(e, "temperature", t->temperature);
    if (!isnan(t->top_p))
        sq_wire_kv_double(e, "top_p", t->top_p);
    if (t->seed >= 0)
        sq_wire_kv_u64(e, "seed", (uint64_t)t->seed);
    if (t->body_json)
        sq_wire_kv_strn(e, "body", t->body_json, t->body_json_len);
    if (t->adapter)
        sq_wire_kv_str(e, "adapter", t->adapter);
    if (t->adapter_version)
        sq_wire_kv_str(e, "adapter_version", t->adapter_version);
}

static int
s_build_submit(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const s_submit_args_t *a = arg;
    const sq_client_job_spec_t *s = a->spec;
    uint32_t n = 4 + (s->adapter != NULL) + (s->priority >= 0) + (s->max_attempts > 0) +
                 (s->params_json != NULL) + (s->idempotency_key != NULL);
    sq_wire_map(e, n);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_str(e, "tenant", s->tenant);
    sq_wire_kv_str(e, "model", s->model);
    if (s->adapter)
        sq_wire_kv_str(e, "adapter", s->adapter);
    if (s->priority >= 0)
        sq_wire_kv_u64(e, "priority", (uint64_t)s->priority);
    if (s->max_attempts > 0)
        sq_wire_kv_u64(e, "max_attempts", (uint64_t)s->max_attempts);
    if (s->params_json)
        sq_wire_kv_str(e, "params", s->params_json);
    if (s->idempotency_key)
        sq_wire_kv_str(e, "idempotency_key", s->idempotency_key);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, (uint32_t)a->n_tasks);
    for (size_t i = 0; i < a->n_tasks; i++)
        s_pack_task(e, &a->tasks[i]);
    return 0;
}

int
sq_client_submit(sq_client_t *self, const sq_client_job_spec_t *spec,
                 const sq_jsonl_task_t *tasks, size_t n_tasks, uint64_t *job_id_out)
{
    return sq_client_submit_keyed(self, spec, tasks, n_tasks, job_id_out, NULL);
}

int
sq_client_submit_keyed(sq_client_t *self, const sq_client_job_spec_t *spec,
                       const sq_jsonl_task_t *tasks, size_t n_tasks, uint64_t *job_id_out,
                       bool *repeated_out)
{
    if (repeated_out)
        *repeated_out = false;
    if (!spec->tenant || !*spec->tenant || !spec->model || !*spec->model)
        return SQ_FAIL(SQ_EINVAL, "a job needs a tenant and a model");
    if (n_tasks == 0 || n_tasks > SQ_WIRE_MAX_TASKS)
        return SQ_FAIL(n_tasks ? SQ_ETOOBIG : SQ_EINVAL,
                       "a job holds 1 to %u tasks, not %zu", SQ_WIRE_MAX_TASKS, n_tasks);
    s_submit_args_t args = {spec, tasks, n_tasks};
    sq_wire_msg_t *reply;
    int rc = s_request(self, SQ_WIRE_SUBMIT, s_build_submit, &args,
                       spec->idempotency_key != NULL, &reply);
    size_t size = sq_wire_enc_size(self->enc);
    if (rc == SQ_ETOOBIG && size > SQ_WIRE_MAX_BODY) {
        /* what would fit, at this job's bytes a task, with a margin */
        size_t fit = (size_t)((double)n_tasks * 0.9 * SQ_WIRE_MAX_BODY / (double)size);
        return SQ_FAIL(SQ_ETOOBIG, "the job is %zu bytes encoded, over the cap of %u bytes a "
                       "message: split it into jobs of about %zu tasks or fewer", size,
                       SQ_WIRE_MAX_BODY, fit ? fit : 1);
    }
    if (rc)
        return rc;
    if (repeated_out)
        sq_wire_get_bool(reply->body, "repeated", false, repeated_out);
    rc = sq_wire_get_u64(reply->body, "job_id", true, UINT64_MAX, job_id_out);
    sq_wire_msg_destroy(&reply);
    return rc ? SQ_FAIL(SQ_EPROTO, "SUBMIT reply without a job id") : 0;
}

/* ------------------------------------------------- STATUS, LIST, CANCEL */

/* Requests whose body is {rid} or {rid, job_id}. */
static int
s_build_job(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const uint64_t *job_id = arg;
    sq_wire_map(e, job_id ? 2 : 1);
    sq_wire_kv_u64(e, "rid", rid);
    if (job_id)
        sq_wire_kv_u64(e, "job_id", *job_id);
    return 0;
}

/* The kind a job's results take, from its params JSON when present. */
static sq_jsonl_kind_t
s_kind_from_params(sq_wire_val_t map)
{
    const char *p = NULL;
    size_t len = 0;
    if (sq_wire_get_str(map, "params", false, SQ_WIRE_MAX_TEXT, &p, &len) || !p)
        return SQ_JSONL_KIND_SIMPLE;
    return sq_jsonl_params_kind(p, len);
}

static void
s_decode_job(sq_wire_val_t m, sq_client_job_t *j)
{
    memset(j, 0, sizeof *j);
    j->job_id = sq_client_get_u64(m, "job_id");
    sq_client_get_fixed(m, "tenant", j->tenant, sizeof j->tenant);
    sq_client_get_fixed(m, "model", j->model, sizeof j->model);
    sq_client_get_fixed(m, "state", j->state, sizeof j->state);
    j->priority = sq_client_get_u64(m, "priority");
    j->n_tasks = sq_client_get_u64(m, "n_tasks");
    j->created_at_ms = sq_client_get_u64(m, "created_at");
    j->kind = s_kind_from_params(m);
    sq_wire_val_t c;
    if (sq_wire_get_map(m, "counts", false, &c) == 0 && sq_wire_type(c) == SQ_WIRE_T_MAP) {
        j->counts.queued = sq_client_get_u64(c, "queued");
        j->counts.leased = sq_client_get_u64(c, "leased");
        j->counts.retrying = sq_client_get_u64(c, "retrying");
        j->counts.succeeded = sq_client_get_u64(c, "succeeded");
        j->counts.dead = sq_client_get_u64(c, "dead");
        j->counts.cancelled = sq_client_get_u64(c, "cancelled");
    }
}

uint64_t
sq_client_counts_terminal(const sq_client_counts_t *c)
{
    return c->succeeded + c->dead + c->cancelled;
}

bool
sq_client_state_terminal(const char *state)
{
    return strcmp(state, "succeeded") == 0 || strcmp(state, "failed") == 0 ||
           strcmp(state, "cancelled") == 0;
}

int
sq_client_status(sq_client_t *self, uint64_t job_id, sq_client_job_t *out)
{
    sq_wire_msg_t *reply;
    int rc = sq_client_request(self, SQ_WIRE_STATUS, s_build_job, &job_id, &reply);
    if (rc)
        return rc;
    s_decode_job(reply->body, out);
    sq_wire_msg_destroy(&reply);
    return 0;
}

typedef struct {
    const char *state, *tenant;
    uint64_t before;
    uint32_t limit;
} s_list_args_t;

static int
s_build_list(sq_wire_enc_t *e, uint64_t rid, const void *arg)
{
    const s_list_args_t *a = arg;
    sq_wire_map(e, 2 + (a->state != NULL) + (a->tenant != NULL) + (a->before != 0));
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "limit", a->limit);
    if (a->state)
        sq_wire_kv_str(e, "state", a->state);
    if (a->tenant)
        sq_wire_kv_str(e, "tenant", a->tenant);
    if (a->before)
        sq_wire_kv_u64(e, "before", a->before);
    return 0;
}

/* Decode every map of reply[key] with fn into a new array of elem_size. */
int
sq_client_decode_array(sq_wire_val_t body, const char *key, size_t elem_size,
                       void (*fn)(sq_wire_val_t m, void *elem), void **out, size_t *n_out)
{
    sq_wire_val_t arr, m;
    *out = NULL;
    *n_out = 0;
    if (sq_wire_get_array(body, key, true, UINT32_MAX, &arr))
        return SQ_FAIL(SQ_EPROTO, "reply without \"%s\"", key);
    uint32_t n = sq_wire_count(arr);
    char *items = calloc(n ? n : 1, elem_size);
    if (!items)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    sq_wire_iter_t it;
    sq_wire_iter_init(&it, arr);
    size_t i = 0;
    while (i < n && sq_wire_iter_next(&it, &m))
        if (sq_wire_type(m) == SQ_WIRE_T_MAP)
            fn(m, items + elem_size * i++);
    *out = items;
    *n_out = i;
    return 0;
}

static void
s_decode_job_elem(sq_wire_val_t m, void *elem)
{
    s_decode_job(m, elem);
}

int
sq_client_list(sq_client_t *self, const char *state, const char *tenant, uint64_t before,
               uint32_t limit, sq_client_job_t **jobs_out, size_t *n_out, uint64_t *next_out)
{
    s_list_args_t args = {state, tenant, before, limit ? limit : 100};
    sq_wire_msg_t *reply;
    *jobs_out = NULL;
    *n_out = 0;
    int rc = sq_client_request(self, SQ_WIRE_LIST, s_build_list, &args, &reply);
    if (rc)
        return rc;
    rc = sq_client_decode_array(reply->body, "jobs", sizeof **jobs_out, s_decode_job_elem,
                                (void **)jobs_out, n_out);
    if (next_out)
        *next_out = sq_client_get_u64(reply->body, "next");
    sq_wire_msg_destroy(&reply);
    return rc;
}

int
sq_client_cancel(sq_client_t *self, uint64_t job_id, uint64_t *n_cancelled_out,
                 char *state_out)
{
    sq_wire_msg_t *reply;
    int rc = sq_client_request(self, SQ_WIRE_CANCEL, s_build_job, &job_id, &reply);
    if (rc)
        return rc;
    if (n_cancelled_out)
        *n_cancelled_out = sq_client_get_u64(reply->body, "cancelled");
    if (state_out)
        sq_client_get_fixed(reply->body, "state", state_out, SQ_CLIENT_STATE_BYTES);
    sq_wire_msg_destroy(&reply);
    return 0;
}

/* ------------------------------------------------------ WORKERS, STATS */

static void
s_decode_worker(sq_wire_val_t m, void *elem)
{
    sq_client_worker_t *w = elem;
    sq_client_get_fixed(m, "group_id", w->group_id, sizeof w->group_id);
    sq_client_get_fixed(m, "model", w->model, sizeof w->model);
    sq_client_get_fixed(m, "device", w->device, sizeof w->device);
    sq_client_get_fixed(m, "kv_type", w->kv_type, sizeof w->kv_type);
    sq_client_get_fixed(m, "state", w->state, sizeof w->state);
    w->tp_size = sq_client_get_u64(m, "tp_size");
    w->max_batch = sq_client_get_u64(m, "max_batch");
    w->kv_pages = sq_client_get_u64(m, "kv_pages");
    uint64_t in_use = UINT64_MAX;
    w->kv_reported = sq_wire_get_u64(m, "kv_pages_in_use", false, UINT64_MAX - 1, &in_use) == 0 &&
                     in_use != UINT64_MAX;
    w->kv_pages_in_use = w->kv_reported ? in_use : 0;
    w->preemptions = w->kv_reported ? sq_client_get_u64(m, "preemptions") : 0;
    w->leases = sq_client_get_u64(m, "leases");
    w->last_seen_ms_ago = sq_client_get_u64(m, "last_seen_ms_ago");
    w->completed = sq_client_get_u64(m, "completed");
}

int
sq_client_workers(sq_client_t *self, sq_client_worker_t **workers_out, size_t *n_out)
{
    sq_wire_msg_t *reply;
    *workers_out = NULL;
    *n_out = 0;
    int rc = sq_client_request(self, SQ_WIRE_WORKERS, s_build_job, NULL, &reply);
    if (rc)
        return rc;
    rc = sq_client_decode_array(reply->body, "workers", sizeof **workers_out, s_decode_worker,
                                (void **)workers_out, n_out);
    sq_wire_msg_destroy(&reply);
    return rc;
}

static void
s_decode_pool(sq_wire_val_t m, void *elem)
{
    sq_client_pool_t *p = elem;
    sq_client_get_fixed(m, "model", p->model, sizeof p->model);
    p->queued = sq_client_get_u64(m, "queued");
    p->retrying = sq_client_get_u64(m, "retrying");
    p->oldest_queued_age_ms = sq_client_get_u64(m, "oldest_queued_age_ms");
    p->leased = sq_client_get_u64(m, "leased");
    p->completed_10s = sq_client_get_u64(m, "completed_10s");
    sq_wire_get_double(m, "throughput_per_s", false, &p->throughput_per_s);
    p->prompt_tokens = sq_client_get_u64(m, "prompt_tokens");
    p->cached_tokens = sq_client_get_u64(m, "cached_tokens");
    p->completion_tokens = sq_client_get_u64(m, "completion_tokens");
    sq_wire_val_t g;
    if (sq_wire_get_map(m, "groups", false, &g) == 0 && sq_wire_type(g) == SQ_WIRE_T_MAP) {
        p->busy = sq_client_get_u64(g, "busy");
        p->idle = sq_client_get_u64(g, "idle");
        p->starting = sq_client_get_u64(g, "starting");
        p->draining = sq_client_get_u64(g, "draining");
    }
}

static void
s_decode_tenant(sq_wire_val_t m, void *elem)
{
    sq_client_tenant_t *t = elem;
    sq_client_get_fixed(m, "tenant", t->tenant, sizeof t->tenant);
    t->queued = sq_client_get_u64(m, "queued");
    t->leased = sq_client_get_u64(m, "leased");
}

int
sq_client_stats(sq_client_t *self, sq_client_stats_t *out)
{
    sq_wire_msg_t *reply;
    memset(out, 0, sizeof *out);
    int rc = sq_client_request(self, SQ_WIRE_STATS, s_build_job, NULL, &reply);
    if (rc)
        return rc;
    out->now_ms = sq_client_get_u64(reply->body, "now");
    out->uncommitted = sq_client_get_u64(reply->body, "uncommitted");
    sq_wire_get_bool(reply->body, "dispatch_paused", false, &out->dispatch_paused);
    rc = sq_client_decode_array(reply->body, "pools", sizeof *out->pools, s_decode_pool,
                                (void **)&out->pools, &out->n_pools);
    if (rc == 0)
        rc = sq_client_decode_array(reply->body, "tenants", sizeof *out->tenants,
                                    s_decode_tenant, (void **)&out->tenants, &out->n_tenants);
    sq_wire_msg_destroy(&reply);
    if (rc)
        sq_client_stats_clear(out);
    return rc;
}

void
sq_client_stats_clear(sq_client_stats_t *stats)
{
    free(stats->pools);
    free(stats->tenants);
    memset(stats, 0, sizeof *stats);
}
