/*  sq_bench_client: the submitting side of the queue benchmark.
 *
 *  One DEALER socket. Requests carry consecutive rids, so a reply's rid
 *  says which SUBMIT it acknowledges (replies may come in any order). A
 *  SUBMIT reply means the job and all its tasks are committed
 *  (docs/protocol.md §4.1), which is what "submit committed" means in the
 *  benchmark's figures.
 */
#define _GNU_SOURCE
#include "sq_bench.h"
#include "sq_error.h"
#include "sq_wire.h"

#include <czmq.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sq_bench_client_t {
    zsock_t *sock;
    sq_wire_enc_t *enc;
    char *prompt; /* payload_bytes of text, shared by every task */
    size_t prompt_len;
    uint64_t next_rid;
    bool keyed;
    char key_prefix[48]; /* "<pid>-<start ms>": keys unique across runs */
};

sq_bench_client_t *
sq_bench_client_new(const char *endpoint, size_t payload_bytes)
{
    sq_bench_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->next_rid = 1;
    snprintf(self->key_prefix, sizeof self->key_prefix, "%d-%.0f", (int)getpid(),
             sq_bench_now_ms());
    self->prompt_len = payload_bytes;
    self->prompt = malloc(payload_bytes + 1);
    self->enc = sq_wire_enc_new();
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->prompt || !self->enc || !self->sock) {
        SQ_FAIL(SQ_ENOMEM, "client: out of memory");
        sq_bench_client_destroy(&self);
        return NULL;
    }
    /* Printable, not all one letter, so no layer can shortcut it. */
    for (size_t i = 0; i < payload_bytes; i++)
        self->prompt[i] = (char)('a' + (i * 7) % 26);
    self->prompt[payload_bytes] = '\0';
    zsock_set_maxmsgsize(self->sock, (int64_t)SQ_WIRE_MAX_BODY + 64);
    zsock_set_linger(self->sock, 0);
    zsock_set_sndhwm(self->sock, 0);
    zsock_set_rcvhwm(self->sock, 0);
    if (zsock_connect(self->sock, "%s", endpoint) != 0) {
        SQ_FAIL(SQ_EINVAL, "client: cannot connect to %s", endpoint);
        sq_bench_client_destroy(&self);
    }
    return self;
}

void
sq_bench_client_destroy(sq_bench_client_t **self_p)
{
    sq_bench_client_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy(&self->sock);
    sq_wire_enc_destroy(&self->enc);
    free(self->prompt);
    free(self);
    *self_p = NULL;
}

void
sq_bench_client_set_keyed(sq_bench_client_t *self, bool keyed)
{
    self->keyed = keyed;
}

/* SUBMIT {rid, tenant, model, tasks: [{custom_id: "<prefix>-<i>", prompt}]}
 * for tasks first .. first+n-1 (and an idempotency_key when keyed). */
static int
s_send_submit(sq_bench_client_t *self, uint64_t rid, const char *prefix, size_t first, size_t n)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, self->keyed ? 5 : 4);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_str(e, "tenant", SQ_BENCH_TENANT);
    sq_wire_kv_str(e, "model", SQ_BENCH_MODEL);
    if (self->keyed) {
        char key[128];
        snprintf(key, sizeof key, "%s-%s-%zu", self->key_prefix, prefix, first);
        sq_wire_kv_str(e, "idempotency_key", key);
    }
    sq_wire_key(e, "tasks");
    sq_wire_array(e, (uint32_t)n);
    for (size_t i = first; i < first + n; i++) {
        char cid[64];
        snprintf(cid, sizeof cid, "%s-%zu", prefix, i);
        sq_wire_map(e, 2);
        sq_wire_kv_str(e, "custom_id", cid);
        sq_wire_kv_strn(e, "prompt", self->prompt, self->prompt_len);
    }
    return sq_wire_send(zsock_resolve(self->sock), NULL, SQ_WIRE_SUBMIT, e);
}

/* Wait up to timeout_ms for one SUBMIT reply: 0 with *rid and *job_id,
 * SQ_EAGAIN when none came, or a failure naming the broker's ERROR. */
static int
s_recv_ack(sq_bench_client_t *self, long timeout_ms, uint64_t *rid, uint64_t *job_id)
{
    void *sock = zsock_resolve(self->sock);
    if (!(zsock_events(self->sock) & ZMQ_POLLIN)) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout_ms) <= 0)
            return SQ_EAGAIN;
    }
    sq_wire_msg_t *msg = NULL;
    int rc = sq_wire_recv(sock, false, SQ_WIRE_MAX_BODY, &msg, NULL);
    if (rc != 0)
        return rc;
    if (msg->cmd == (SQ_WIRE_SUBMIT | SQ_WIRE_REPLY)) {
        rc = sq_wire_get_u64(msg->body, "rid", true, UINT64_MAX, rid);
        if (rc == 0)
            rc = sq_wire_get_u64(msg->body, "job_id", true, UINT64_MAX, job_id);
    } else if (msg->cmd == SQ_WIRE_ERROR) {
        uint64_t code = 0;
        char *text = NULL;
        sq_wire_get_u64(msg->body, "code", false, UINT64_MAX, &code);
        sq_wire_get_strdup(msg->body, "message", false, SQ_WIRE_MAX_ERROR, &text);
        rc = SQ_FAIL(SQ_EPROTO, "broker answered SUBMIT with ERROR %llu: %s",
                     (unsigned long long)code, text ? text : "(no message)");
        free(text);
    } else {
        rc = SQ_FAIL(SQ_EPROTO, "unexpected %s from broker", sq_wire_cmd_name(msg->cmd));
    }
    sq_wire_msg_destroy(&msg);
    return rc;
}

static void
s_jobs_add(sq_bench_jobs_t *jobs, uint64_t job_id)
{
    if (jobs->first == 0 || job_id < jobs->first)
        jobs->first = job_id;
    if (job_id > jobs->last)
        jobs->last = job_id;
}

/* Take one ack for a request among rids [base, base+n) and stamp it. */
static int
s_take_ack(sq_bench_client_t *self, long timeout_ms, uint64_t base, size_t n,
           sq_bench_jobs_t *jobs, double *acked_ms, bool *got)
{
    uint64_t rid = 0, job_id = 0;
    *got = false;
    int rc = s_recv_ack(self, timeout_ms, &rid, &job_id);
    if (rc == SQ_EAGAIN)
        return 0;
    if (rc != 0)
        return rc;
    if (rid < base || rid >= base + n)
        return SQ_FAIL(SQ_EPROTO, "SUBMIT reply with rid %llu outside %llu..%llu",
                       (unsigned long long)rid, (unsigned long long)base,
                       (unsigned long long)(base + n - 1));
    acked_ms[rid - base] = sq_bench_now_ms();
    s_jobs_add(jobs, job_id);
    *got = true;
    return 0;
}

int
sq_bench_client_submit(sq_bench_client_t *self, const char *prefix, size_t n, size_t batch,
                       int window, int timeout_ms, sq_bench_jobs_t *jobs_out, double *submit_ms)
{
    size_t n_req = (n + batch - 1) / batch;
    double *sent = calloc(n_req, sizeof *sent), *acked = calloc(n_req, sizeof *acked);
    int rc = (sent && acked) ? 0 : SQ_FAIL(SQ_ENOMEM, "submit: out of memory");
    uint64_t base = self->next_rid;
    self->next_rid += n_req;
    *jobs_out = (sq_bench_jobs_t){0, 0};
    size_t next = 0, done = 0;
    double deadline = sq_bench_now_ms() + timeout_ms;
    while (rc == 0 && done < n_req) {
        while (rc == 0 && next < n_req && next - done < (size_t)window) {
            size_t first = next * batch, count = n - first < batch ? n - first : batch;
            sent[next] = sq_bench_now_ms();
            rc = s_send_submit(self, base + next, prefix, first, count);
            next++;
        }
        bool got = false;
        if (rc == 0)
            rc = s_take_ack(self, 100, base, n_req, jobs_out, acked, &got);
        done += got;
        if (rc == 0 && !got && sq_bench_now_ms() > deadline)
            rc = SQ_FAIL(SQ_ETIMEDOUT, "%zu of %zu SUBMITs unacknowledged after %d ms",
                         n_req - done, n_req, timeout_ms);
    }
    for (size_t k = 0; rc == 0 && submit_ms && k < n_req; k++)
        submit_ms[k] = acked[k] - sent[k];
    free(sent);
    free(acked);
    return rc;
}

int
sq_bench_client_paced(sq_bench_client_t *self, size_t n, double rate, int timeout_ms,
                      double *sent_ms, double *acked_ms, sq_bench_jobs_t *jobs_out)
{
    uint64_t base = self->next_rid;
    self->next_rid += n;
    *jobs_out = (sq_bench_jobs_t){0, 0};
    size_t next = 0, done = 0;
    double t0 = sq_bench_now_ms(), deadline = t0 + n * 1000.0 / rate + timeout_ms;
    int rc = 0;
    while (rc == 0 && done < n) {
        double now = sq_bench_now_ms(), due = t0 + next * 1000.0 / rate;
        if (next < n && now >= due) {
            sent_ms[next] = now;
            rc = s_send_submit(self, base + next, "lat", next, 1);
            next++;
            continue;
        }
        long wait_ms = next < n ? (long)floor(due - now) : 100;
        bool got = false;
        rc = s_take_ack(self, wait_ms, base, n, jobs_out, acked_ms, &got);
        done += got;
        if (rc == 0 && sq_bench_now_ms() > deadline)
            rc = SQ_FAIL(SQ_ETIMEDOUT, "%zu of %zu paced SUBMITs unacknowledged", n - done, n);
    }
    return rc;
}
