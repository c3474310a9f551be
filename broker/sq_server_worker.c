/*  sq_server_worker: messages from worker groups (docs/protocol.md §5).
 *
 *  A group is known by its ZMQ identity once it sent READY. RESULT and FAIL
 *  entries are fenced: the (lease, token) pair must be the task's live
 *  lease held by this very group, otherwise the entry is stale, audited and
 *  dropped. That, plus the primary key on task_results, is what makes
 *  result recording exactly-once while execution is at-least-once.
 */
#include "sq_server.h"

#include "sq_error.h"
#include "sq_log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void s_disconnect(sq_server_t *self, zframe_t *to, const char *reason)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 1);
    sq_wire_kv_str(e, "reason", reason);
    sq_wire_send(zsock_resolve(self->workers), to, SQ_WIRE_DISCONNECT, e);
}

/* ---- READY ---- */

static int s_ready_fields(sq_wire_val_t b, sq_group_t *g)
{
    uint64_t tp = 1, max_batch = 0, kv_pages = 0;
    bool draining = false;
    char *gid = NULL, *model = NULL, *sha = NULL, *device = NULL, *kv_type = NULL;
    int rc = sq_wire_get_strdup(b, "group_id", true, SQ_WIRE_MAX_ID, &gid);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "model", true, SQ_WIRE_MAX_NAME, &model);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "model_sha256", false, SQ_WIRE_MAX_NAME, &sha);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "device", false, SQ_WIRE_MAX_NAME, &device);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "kv_type", false, SQ_WIRE_MAX_NAME, &kv_type);
    if (rc == 0)
        rc = sq_wire_get_u64(b, "tp_size", false, 4096, &tp);
    if (rc == 0)
        rc = sq_wire_get_u64(b, "max_batch", true, SQ_WIRE_MAX_BATCH, &max_batch);
    if (rc == 0)
        rc = sq_wire_get_u64(b, "kv_pages", false, UINT32_MAX, &kv_pages);
    if (rc == 0 && max_batch < 1)
        rc = SQ_FAIL(SQ_EINVAL, "field \"max_batch\": must be at least 1");
    if (rc == 0)
        rc = sq_wire_get_bool(b, "draining", false, &draining);
    if (rc == 0 && g->model && strcmp(g->model, model) != 0 && g->n_leases)
        rc = SQ_FAIL(SQ_ESTATE, "field \"model\": cannot change while holding leases");
    if (rc) {
        free(gid), free(model), free(sha), free(device), free(kv_type);
        return rc;
    }
    free(g->group_id), free(g->model), free(g->sha), free(g->device), free(g->kv_type);
    g->group_id = gid;
    g->model = model;
    g->sha = sha;
    g->device = device ? device : strdup("cpu");
    g->kv_type = kv_type;
    g->tp_size = (uint32_t)tp;
    g->max_batch = (uint32_t)max_batch;
    g->kv_pages = (uint32_t)kv_pages;
    g->draining = draining;
    return 0;
}

static char *s_caps_json(sq_group_t *g)
{
    json_t *o = json_pack("{s:s,s:s?,s:s,s:s?,s:i,s:i,s:b}", "model", g->model, "model_sha256",
                          g->sha, "device", g->device, "kv_type", g->kv_type, "tp_size",
                          (int)g->tp_size, "max_batch", (int)g->max_batch, "draining",
                          g->draining);
    if (o && g->kv_pages)
        json_object_set_new(o, "kv_pages", json_integer((json_int_t)g->kv_pages));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The result's lineage (sql/0002_lineage.sql): the weights come from the
 * group's READY, the adapter version and timings from the RESULT entry.
 * Caller frees; NULL when out of memory (the result is kept without). */
static char *s_lineage_json(const sq_group_t *g, sq_wire_val_t r)
{
    const char *adapter = NULL, *version = NULL;
    size_t n_adapter = 0, n_version = 0;
    double prefill = -1, decode = -1, wait = -1;
    sq_wire_get_str(r, "adapter", false, SQ_WIRE_MAX_NAME, &adapter, &n_adapter);
    sq_wire_get_str(r, "adapter_version", false, SQ_WIRE_MAX_NAME, &version, &n_version);
    sq_wire_get_double(r, "prefill_ms", false, &prefill);
    sq_wire_get_double(r, "decode_ms", false, &decode);
    sq_wire_get_double(r, "queue_wait_ms", false, &wait);
    json_t *o = json_pack("{s:s?,s:s,s:i,s:s,s:s?}", "model_sha256", g->sha, "group_id",
                          g->group_id, "tp_size", (int)g->tp_size, "device", g->device,
                          "kv_type", g->kv_type);
    if (o && adapter)
        json_object_set_new(o, "adapter", json_stringn(adapter, n_adapter));
    if (o && version)
        json_object_set_new(o, "adapter_version", json_stringn(version, n_version));
    const struct { const char *key; double v; } times[] = {
        {"queue_wait_ms", wait}, {"prefill_ms", prefill}, {"decode_ms", decode}};
    for (size_t i = 0; o && i < sizeof times / sizeof times[0]; i++)
        if (times[i].v >= 0 && times[i].v < 1e12)
            json_object_set_new(o, times[i].key, json_real(times[i].v));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static void s_ready(sq_server_t *self, sq_group_t *g, const char *key, sq_wire_msg_t *msg)
{
    bool fresh = g == NULL;
    if (fresh) {
        g = calloc(1, sizeof *g);
        if (!g)
            return;
        snprintf(g->key, sizeof g->key, "%s", key);
        g->identity = zframe_dup(msg->identity);
        g->last_recv_ms = g->last_send_ms = sq_now_ms();
    }
    if (s_ready_fields(msg->body, g) != 0) {
        char detail[600];
        snprintf(detail, sizeof detail, "READY: %s", sq_error_detail());
        SQ_WARN("bad READY", "err=%s", sq_q(detail));
        if (fresh) {
            s_disconnect(self, msg->identity, detail);
            zframe_destroy(&g->identity);
            free(g);
        } else {
            sq_wire_send_error(zsock_resolve(self->workers), msg->identity, 0,
                               SQ_WIRE_E_INVALID, detail);
        }
        return;
    }
    if (g->draining) {
        /* the acknowledgement: every TASKS sent before it arrives before
         * it, and a draining group gets none after it */
        sq_wire_enc_t *e = self->enc;
        sq_wire_enc_reset(e);
        sq_wire_map(e, 1);
        sq_wire_kv_bool(e, "draining", true);
        sq_wire_send(zsock_resolve(self->workers), g->identity, SQ_WIRE_HEARTBEAT, e);
        g->last_send_ms = sq_now_ms();
    }
    char *caps = s_caps_json(g);
    sq_batch_add_worker(self->pending, g->group_id, g->model, caps);
    if (fresh) {
        zhashx_insert(self->groups, g->key, g);
        char subject[300];
        snprintf(subject, sizeof subject, "group:%s", g->group_id);
        sq_batch_audit(self->pending, "broker", "worker_joined", 0, 0, subject, caps,
                       sq_wall_ms());
        SQ_INFO("worker group ready", "group=%s model=%s max_batch=%u", sq_q(g->group_id), sq_q(g->model),
                g->max_batch);
    }
    free(caps);
}

/* ---- fencing ---- */

/* The live lease (lease, token) held by g, or NULL after auditing it. */
static sq_task_t *s_fenced(sq_server_t *self, sq_group_t *g, sq_wire_val_t entry,
                           const char *what)
{
    uint64_t lease = 0, token = 0;
    if (sq_wire_get_u64(entry, "lease", true, UINT64_MAX, &lease) ||
        sq_wire_get_u64(entry, "token", true, UINT64_MAX, &token))
        return NULL;
    sq_task_t *t = zhashx_lookup(self->leases, &lease);
    if (t && t->token == token && t->group == g && t->state == SQ_T_LEASED)
        return t;
    self->n_stale++;
    json_t *o = json_pack("{s:s,s:I,s:s}", "kind", what, "lease", (json_int_t)lease, "group",
                          g->group_id);
    char *details = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char subject[300], actor[300];
    snprintf(subject, sizeof subject, "group:%s", g->group_id);
    snprintf(actor, sizeof actor, "worker:%s", g->group_id);
    /* a lease that ended (cancelled, timed out, its group declared lost)
     * still names its task while it is among the last ones that ended */
    uint64_t task_id = t ? sq_task_id(t) : sq_server_ended_lease(self, lease);
    sq_batch_audit(self->pending, actor, "result_rejected_stale", sq_task_id_job(task_id),
                   sq_task_id_idx(task_id), subject, details, sq_wall_ms());
    free(details);
    SQ_INFO("stale result rejected", "group=%s lease=%" PRIu64, sq_q(g->group_id), lease);
    return NULL;
}

/* ---- RESULT / FAIL ---- */

static int s_result_entry(sq_server_t *self, sq_group_t *g, sq_wire_val_t r)
{
    sq_task_t *t = s_fenced(self, g, r, "result");
    if (!t)
        return sq_error_code() == SQ_EINVAL ? SQ_EINVAL : 0;
    const char *text = NULL, *finish = NULL;
    size_t ntext = 0, nfinish = 0;
    uint64_t ptok = 0, ctok = 0, cached = 0;
    sq_usage_t usage = {-1, -1, -1};
    int rc = sq_wire_get_str(r, "text", true, SQ_WIRE_MAX_TEXT, &text, &ntext);
    if (rc == 0)
        rc = sq_wire_get_str(r, "finish_reason", false, 32, &finish, &nfinish);
    if (rc == 0 && sq_wire_get_u64(r, "prompt_tokens", false, INT32_MAX, &ptok) == 0)
        usage.prompt = (int64_t)ptok;
    if (rc == 0 && sq_wire_get_u64(r, "completion_tokens", false, INT32_MAX, &ctok) == 0)
        usage.completion = (int64_t)ctok;
    if (rc == 0 && sq_wire_get_u64(r, "cached_tokens", false, INT32_MAX, &cached) == 0)
        usage.cached = (int64_t)cached;
    if (rc) { /* unusable output (e.g. invalid UTF-8): a retryable failure */
        char err[600];
        snprintf(err, sizeof err, "worker sent an unusable result: %s", sq_error_detail());
        sq_server_task_failed(self, t, "failed", true, err);
        return rc;
    }
    char fr[33] = {0};
    memcpy(fr, finish ? finish : "", nfinish);
    sq_batch_attempt(self->pending, t, "succeeded", NULL, sq_wall_ms());
    sq_server_unlease(self, t);
    t->group = NULL;
    int64_t now = sq_wall_ms();
    char *lineage = s_lineage_json(g, r);
    if (usage.cached > usage.prompt)
        usage.cached = -1;   /* not a count of its (known) prompt's tokens: unknown */
    sq_pstat_t *ps = sq_server_pstat(self, t->job->model);
    if (ps) {
        ps->prompt_tokens += usage.prompt > 0 ? (uint64_t)usage.prompt : 0;
        ps->cached_tokens += usage.cached > 0 ? (uint64_t)usage.cached : 0;
        ps->completion_tokens += usage.completion > 0 ? (uint64_t)usage.completion : 0;
    }
    sq_batch_result(self->pending, t, "succeeded", text, ntext, finish ? fr : NULL, &usage, NULL,
                    lineage, now);
    free(lineage);
    sq_batch_add_done(self->pending, t, SQ_T_SUCCEEDED);
    sq_server_set_state(self, t, SQ_T_COMPLETING);
    g->completed++;
    return 0;
}

static int s_fail_entry(sq_server_t *self, sq_group_t *g, sq_wire_val_t f)
{
    sq_task_t *t = s_fenced(self, g, f, "fail");
    if (!t)
        return sq_error_code() == SQ_EINVAL ? SQ_EINVAL : 0;
    bool retryable = true;
    char *error = NULL;
    int rc = sq_wire_get_bool(f, "retryable", false, &retryable);
    if (rc == 0)
        rc = sq_wire_get_strdup(f, "error", false, SQ_WIRE_MAX_ERROR, &error);
    sq_server_task_failed(self, t, retryable ? "failed" : "failed_permanent", retryable,
                          error ? error : (rc ? "unreadable error text" : "unspecified error"));
    free(error);
    return rc;
}

/* A worker's DISCONNECT: its leases go back to the queue, each attempt's
 * error (and the audit event) saying why the worker gave, when it gave a
 * readable reason (an unreadable one is ignored: the group leaves anyway) */
static void s_worker_left(sq_server_t *self, sq_group_t *g, sq_wire_msg_t *msg)
{
    const char *reason = NULL;
    size_t len = 0;
    if (sq_wire_get_str(msg->body, "reason", false, SQ_WIRE_MAX_ERROR, &reason, &len) != 0) {
        sq_error_clear();
        reason = NULL;
    }
    char why[SQ_WIRE_MAX_ERROR + 32] = "worker disconnected";
    if (reason)
        snprintf(why, sizeof why, "worker disconnected: %.*s", (int)len, reason);
    sq_server_group_lost(self, g, why);
}

/* Apply fn to each entry of the array `key`; report the first bad one. */
static void s_entries(sq_server_t *self, sq_group_t *g, sq_wire_msg_t *msg, const char *key,
                      int (*fn)(sq_server_t *, sq_group_t *, sq_wire_val_t))
{
    sq_wire_val_t arr, entry;
    int rc = sq_wire_get_array(msg->body, key, true, SQ_WIRE_MAX_BATCH, &arr), first = rc;
    char detail[600] = "";
    if (rc)
        snprintf(detail, sizeof detail, "%s", sq_error_detail());
    sq_wire_iter_t it;
    uint32_t i = 0;
    if (rc == 0 && sq_wire_iter_init(&it, arr) == 0)
        while (sq_wire_iter_next(&it, &entry)) {
            sq_error_clear();
            rc = sq_wire_type(entry) == SQ_WIRE_T_MAP
                     ? fn(self, g, entry)
                     : SQ_FAIL(SQ_EINVAL, "expected a map");
            if (rc && !first) {
                first = rc;
                snprintf(detail, sizeof detail, "%s[%u]: %s", key, i, sq_error_detail());
            }
            i++;
        }
    if (first)
        sq_wire_send_error(zsock_resolve(self->workers), msg->identity, 0,
                           sq_wire_errcode_from(first), detail);
}

/* A group's HEARTBEAT may say how its KV cache is used (protocol §5.8):
 * both counts or neither; a bad one gets ERROR and changes nothing */
static void s_heartbeat(sq_server_t *self, sq_group_t *g, sq_wire_msg_t *msg)
{
    uint64_t in_use = UINT64_MAX, preemptions = UINT64_MAX;
    int rc = sq_wire_get_u64(msg->body, "kv_pages_in_use", false,
                             g->kv_pages ? g->kv_pages : UINT32_MAX, &in_use);
    if (rc == 0)
        rc = sq_wire_get_u64(msg->body, "preemptions", false, UINT64_MAX - 1, &preemptions);
    if (rc == 0 && (in_use == UINT64_MAX) != (preemptions == UINT64_MAX))
        rc = SQ_FAIL(SQ_EINVAL, "kv_pages_in_use and preemptions come together");
    if (rc) {
        char detail[600];
        snprintf(detail, sizeof detail, "HEARTBEAT: %s", sq_error_detail());
        SQ_WARN("bad HEARTBEAT", "group=%s err=%s", sq_q(g->group_id), sq_q(detail));
        sq_wire_send_error(zsock_resolve(self->workers), msg->identity, 0, SQ_WIRE_E_INVALID,
                           detail);
    } else if (in_use != UINT64_MAX) {
        g->kv_reported = true;
        g->kv_in_use = (uint32_t)in_use;
        g->preemptions = preemptions;
    }
}

static void s_message(sq_server_t *self, sq_wire_msg_t *msg)
{
    char *key = zframe_strhex(msg->identity);
    sq_group_t *g = key ? zhashx_lookup(self->groups, key) : NULL;
    if (g)
        g->last_recv_ms = sq_now_ms();
    if (msg->cmd == SQ_WIRE_READY) {
        if (key)
            s_ready(self, g, key, msg);
    } else if (!g) {
        s_disconnect(self, msg->identity, "send READY first");
    } else if (!sq_wire_cmd_is_from_worker(msg->cmd)) {
        sq_wire_send_error(zsock_resolve(self->workers), msg->identity, 0, SQ_WIRE_E_UNKNOWN,
                           "unknown command from a worker");
    } else if (msg->cmd == SQ_WIRE_RESULT || msg->cmd == SQ_WIRE_FAIL) {
        if (g->suspect) /* it works after all (the answer may be a stale one) */
            SQ_INFO("worker group answers again", "group=%s", sq_q(g->group_id));
        g->suspect = false;
        if (msg->cmd == SQ_WIRE_RESULT)
            s_entries(self, g, msg, "results", s_result_entry);
        else
            s_entries(self, g, msg, "failures", s_fail_entry);
    } else if (msg->cmd == SQ_WIRE_PARTIAL) {
        s_fenced(self, g, msg->body, "partial"); /* v1: checked, then ignored */
    } else if (msg->cmd == SQ_WIRE_DISCONNECT) {
        s_worker_left(self, g, msg);
    } else if (msg->cmd == SQ_WIRE_HEARTBEAT) {
        s_heartbeat(self, g, msg);
    }
    free(key);
}

int sq_server_on_worker(zloop_t *loop, zsock_t *reader, void *arg)
{
    sq_server_t *self = arg;
    int64_t until = sq_now_ms() + SQ_SERVER_SLICE_MS;
    for (int i = 0; i < 1000 && sq_now_ms() < until && (zsock_events(reader) & ZMQ_POLLIN);
         i++) {
        sq_wire_msg_t *msg = NULL;
        zframe_t *from = NULL;
        int rc = sq_wire_recv(zsock_resolve(reader), true, SQ_WIRE_MAX_BODY, &msg, &from);
        if (rc == SQ_EAGAIN)
            break;
        if (rc) {
            SQ_WARN("bad worker message", "err=%s", sq_q(sq_error_detail()));
            char *key = from ? zframe_strhex(from) : NULL;
            bool known = key && zhashx_lookup(self->groups, key);
            if (from && known)
                sq_server_error(self, reader, from, 0, rc, sq_error_detail());
            else if (from)
                s_disconnect(self, from, sq_error_detail());
            free(key);
            zframe_destroy(&from);
            continue;
        }
        s_message(self, msg);
        sq_wire_msg_destroy(&msg);
    }
    sq_server_kick(self);
    sq_server_dispatch(self);
    return 0;
}
