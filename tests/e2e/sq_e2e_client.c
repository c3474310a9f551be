/*  sq_e2e_client: a raw, synchronous protocol client for the e2e tests
 *  (see sq_e2e_client.h). It never validates what the test sends.
 */
#define _GNU_SOURCE
#include "sq_e2e_client.h"

#include "sq_error.h"
#include "sq_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sq_e2e_client_t {
    char *endpoint;
    zsock_t *sock;
    sq_wire_enc_t *enc;
    uint64_t next_rid;
    uint64_t rid;       /* of the request being built */
};

static int
s_open(sq_e2e_client_t *self)
{
    zsock_destroy(&self->sock);
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        return SQ_FAIL(SQ_EIO, "cannot create a DEALER socket");
    zsock_set_linger(self->sock, 0);
    zsock_set_sndtimeo(self->sock, 5000);
    if (zsock_connect(self->sock, "%s", self->endpoint) != 0)
        return SQ_FAIL(SQ_EINVAL, "cannot connect to %s", self->endpoint);
    return 0;
}

sq_e2e_client_t *
sq_e2e_client_new(const char *endpoint)
{
    sq_e2e_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup(endpoint);
    self->enc = sq_wire_enc_new();
    self->next_rid = 1;
    if (!self->endpoint || !self->enc || s_open(self) != 0)
        sq_e2e_client_destroy(&self);
    return self;
}

void
sq_e2e_client_destroy(sq_e2e_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_e2e_client_t *self = *self_p;
    zsock_destroy(&self->sock);
    sq_wire_enc_destroy(&self->enc);
    free(self->endpoint);
    free(self);
    *self_p = NULL;
}

sq_wire_enc_t *
sq_e2e_begin(sq_e2e_client_t *self, uint32_t n_pairs)
{
    self->rid = self->next_rid++;
    sq_wire_enc_reset(self->enc);
    sq_wire_map(self->enc, n_pairs + 1);
    sq_wire_kv_u64(self->enc, "rid", self->rid);
    return self->enc;
}

sq_wire_msg_t *
sq_e2e_recv_any(sq_e2e_client_t *self, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    for (;;) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0)
            return NULL;
        zsock_set_rcvtimeo(self->sock, (int)left);
        sq_wire_msg_t *m = NULL;
        if (sq_wire_recv(zsock_resolve(self->sock), false, SQ_WIRE_MAX_BODY, &m, NULL) == 0)
            return m;
    }
}

uint64_t
sq_e2e_send(sq_e2e_client_t *self, uint8_t cmd)
{
    return sq_wire_send(self->sock, NULL, cmd, self->enc) == 0 ? self->rid : 0;
}

int
sq_e2e_call(sq_e2e_client_t *self, uint8_t cmd, int timeout_ms, sq_wire_msg_t **reply_out,
            int *wire_code_out)
{
    *reply_out = NULL;
    if (wire_code_out)
        *wire_code_out = 0;
    if (sq_e2e_send(self, cmd) == 0)
        return SQ_FAIL(SQ_EIO, "%s: send failed", sq_wire_cmd_name(cmd));
    int64_t deadline = zclock_mono() + timeout_ms;
    for (;;) {
        sq_wire_msg_t *m = sq_e2e_recv_any(self, (int)(deadline - zclock_mono()));
        if (!m) {
            s_open(self);
            return SQ_FAIL(SQ_ETIMEDOUT, "%s: no reply from %s within %d ms",
                           sq_wire_cmd_name(cmd), self->endpoint, timeout_ms);
        }
        uint64_t rid = 0;
        sq_wire_get_u64(m->body, "rid", false, UINT64_MAX, &rid);
        if (m->cmd == (cmd | SQ_WIRE_REPLY) && rid == self->rid) {
            *reply_out = m;
            return 0;
        }
        if (m->cmd == SQ_WIRE_ERROR && (rid == self->rid || rid == 0)) {
            uint64_t code = 0;
            char *text = NULL;
            sq_wire_get_u64(m->body, "code", false, UINT64_MAX, &code);
            sq_wire_get_strdup(m->body, "message", false, SQ_WIRE_MAX_ERROR, &text);
            if (wire_code_out)
                *wire_code_out = (int)code;
            SQ_FAIL(SQ_EPROTO, "%s: ERROR %d: %s", sq_wire_cmd_name(cmd), (int)code,
                    text ? text : "");
            free(text);
            sq_wire_msg_destroy(&m);
            return SQ_EPROTO;
        }
        sq_wire_msg_destroy(&m);    /* a late reply to an earlier request */
    }
}

int
sq_e2e_send_frames(sq_e2e_client_t *self, const void *const frames[], const size_t sizes[],
                   int n_frames)
{
    zmsg_t *msg = zmsg_new();
    for (int i = 0; i < n_frames; i++)
        zmsg_addmem(msg, frames[i], sizes[i]);
    return zmsg_send(&msg, self->sock) == 0 ? 0 : SQ_FAIL(SQ_EIO, "send of raw frames failed");
}

/* --- conveniences ---------------------------------------------------- */

int
sq_e2e_submit(sq_e2e_client_t *self, const sq_e2e_job_t *job, int timeout_ms,
              uint64_t *job_id_out, int *wire_code_out)
{
    uint32_t n_pairs = 3 + (job->priority >= 0) + (job->max_attempts > 0) + (job->adapter != NULL);
    sq_wire_enc_t *e = sq_e2e_begin(self, n_pairs);
    sq_wire_kv_str(e, "tenant", job->tenant);
    sq_wire_kv_str(e, "model", job->model);
    if (job->adapter)
        sq_wire_kv_str(e, "adapter", job->adapter);
    if (job->priority >= 0)
        sq_wire_kv_u64(e, "priority", (uint64_t)job->priority);
    if (job->max_attempts > 0)
        sq_wire_kv_u64(e, "max_attempts", (uint64_t)job->max_attempts);
    sq_wire_key(e, "tasks");
    sq_wire_array(e, (uint32_t)job->n_tasks);
    for (int i = 0; i < job->n_tasks; i++) {
        sq_wire_map(e, 2 + (job->max_tokens > 0) + (job->temperature > 0));
        sq_wire_kv_str(e, "custom_id", job->custom_ids[i]);
        if (job->max_tokens > 0)
            sq_wire_kv_u64(e, "max_tokens", (uint64_t)job->max_tokens);
        if (job->temperature > 0)
            sq_wire_kv_double(e, "temperature", job->temperature);
        sq_wire_kv_strn(e, "prompt", job->prompts[i],
                        job->prompt_lens ? job->prompt_lens[i] : strlen(job->prompts[i]));
    }
    sq_wire_msg_t *reply = NULL;
    int rc = sq_e2e_call(self, SQ_WIRE_SUBMIT, timeout_ms, &reply, wire_code_out);
    if (rc == 0) {
        rc = sq_wire_get_u64(reply->body, "job_id", true, UINT64_MAX, job_id_out);
        sq_wire_msg_destroy(&reply);
    }
    return rc;
}

int
sq_e2e_submit_n(sq_e2e_client_t *self, const char *tenant, const char *model, int n,
                const char *prefix, int max_attempts, uint64_t *job_id_out, int *wire_code_out)
{
    char **ids = calloc((size_t)n, sizeof *ids);
    char **prompts = calloc((size_t)n, sizeof *prompts);
    int rc = ids && prompts ? 0 : SQ_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++)
        if (asprintf(&ids[i], "%s-%d", prefix, i + 1) < 0
            || asprintf(&prompts[i], "prompt %s %d", prefix, i + 1) < 0)
            rc = SQ_ENOMEM;
    if (rc == 0) {
        sq_e2e_job_t job = {.tenant = tenant, .model = model, .priority = -1,
                            .max_attempts = max_attempts, .n_tasks = n,
                            .custom_ids = (const char *const *)ids,
                            .prompts = (const char *const *)prompts};
        rc = sq_e2e_submit(self, &job, 60000, job_id_out, wire_code_out);
    }
    for (int i = 0; i < n && ids && prompts; i++) {
        free(ids[i]);
        free(prompts[i]);
    }
    free(ids);
    free(prompts);
    return rc;
}

int
sq_e2e_cancel(sq_e2e_client_t *self, uint64_t job_id, uint64_t *n_cancelled_out)
{
    sq_wire_enc_t *e = sq_e2e_begin(self, 1);
    sq_wire_kv_u64(e, "job_id", job_id);
    sq_wire_msg_t *reply = NULL;
    int rc = sq_e2e_call(self, SQ_WIRE_CANCEL, 10000, &reply, NULL);
    if (rc == 0 && n_cancelled_out)
        rc = sq_wire_get_u64(reply->body, "cancelled", true, UINT64_MAX, n_cancelled_out);
    sq_wire_msg_destroy(&reply);
    return rc;
}

int
sq_e2e_status_count(sq_e2e_client_t *self, uint64_t job_id, const char *count, uint64_t *out)
{
    sq_wire_enc_t *e = sq_e2e_begin(self, 1);
    sq_wire_kv_u64(e, "job_id", job_id);
    sq_wire_msg_t *reply = NULL;
    int rc = sq_e2e_call(self, SQ_WIRE_STATUS, 10000, &reply, NULL);
    sq_wire_val_t counts;
    if (rc == 0)
        rc = sq_wire_get_map(reply->body, "counts", true, &counts);
    if (rc == 0)
        rc = sq_wire_get_u64(counts, count, true, UINT64_MAX, out);
    sq_wire_msg_destroy(&reply);
    return rc;
}

int
sq_e2e_wait_count(sq_e2e_client_t *self, uint64_t job_id, const char *count, uint64_t at_least,
                  int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    uint64_t v = 0;
    for (;;) {
        int rc = sq_e2e_status_count(self, job_id, count, &v);
        if (rc == 0 && v >= at_least)
            return 0;
        if (zclock_mono() > deadline)
            return SQ_FAIL(SQ_ETIMEDOUT, "job %llu: %s is %llu after %d ms, want >= %llu",
                           (unsigned long long)job_id, count, (unsigned long long)v, timeout_ms,
                           (unsigned long long)at_least);
        sq_harness_poll_pause();
    }
}
