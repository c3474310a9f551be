/*  sq_server_client: requests from clients (docs/protocol.md §4).
 *
 *  SUBMIT is validated whole before anything is stored; the job then waits
 *  in the pending batch and is acknowledged (and its tasks become visible
 *  to workers) only when the writer reports the commit. Questions about
 *  unfinished jobs are answered from memory; finished jobs, result pages
 *  and job lists come from PostgreSQL through the reader thread.
 */
#include "sq_server.h"
#include "sq_jsonl.h"
#include "sq_lora.h"

#include "sq_error.h"
#include "sq_log.h"
#include "sq_metrics_http.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SUBMIT ---- */

/* what an adapter name or version may be (they become file names) */
#define S_ADAPTER_RULE "use 1-128 of [A-Za-z0-9._-], not starting with '.'"

static int s_parse_task(sq_wire_val_t m, sq_task_t *t, zhashx_t *seen, const sq_lora_t *lora)
{
    const char *cid, *prompt, *body = NULL, *adapter = NULL, *version = NULL;
    size_t ncid, nprompt, nbody = 0, nad = 0, nver = 0;
    uint64_t max_tokens = 128, seed = 0;
    double temperature = 0, top_p = 1;
    sq_wire_val_t v;
    int rc = sq_wire_get_str(m, "custom_id", true, SQ_WIRE_MAX_ID, &cid, &ncid);
    if (rc == 0 && ncid == 0)
        rc = SQ_FAIL(SQ_EINVAL, "field \"custom_id\": empty");
    if (rc == 0)
        rc = sq_wire_get_str(m, "prompt", true, SQ_WIRE_MAX_PROMPT, &prompt, &nprompt);
    if (rc == 0)
        rc = sq_wire_get_u64(m, "max_tokens", false, 1000000, &max_tokens);
    if (rc == 0 && max_tokens < 1)
        rc = SQ_FAIL(SQ_EINVAL, "field \"max_tokens\": must be at least 1");
    if (rc == 0)
        rc = sq_wire_get_double(m, "temperature", false, &temperature);
    if (rc == 0 && !(temperature >= 0 && temperature <= 100))
        rc = SQ_FAIL(SQ_EINVAL, "field \"temperature\": must be in [0, 100]");
    if (rc == 0)
        rc = sq_wire_get_double(m, "top_p", false, &top_p);
    if (rc == 0 && !(top_p >= 0 && top_p <= 1))
        rc = SQ_FAIL(SQ_EINVAL, "field \"top_p\": must be in [0, 1]");
    if (rc == 0)
        rc = sq_wire_get_u64(m, "seed", false, INT64_MAX, &seed);
    if (rc == 0)
        rc = sq_wire_get_str(m, "body", false, SQ_WIRE_MAX_TEXT, &body, &nbody);
    if (rc == 0 && body) {
        /* a JSON object whose stop strings the workers can use: checked
         * here, or every task of the job would fail when leased */
        char *stop[SQ_JSONL_MAX_STOP];
        int n_stop = 0;
        rc = sq_jsonl_body_stop(body, nbody, stop, &n_stop);
        for (int i = 0; i < n_stop; i++)
            free(stop[i]);
    }
    if (rc == 0)
        rc = sq_wire_get_str(m, "adapter", false, SQ_WIRE_MAX_NAME, &adapter, &nad);
    if (rc == 0)
        rc = sq_wire_get_str(m, "adapter_version", false, SQ_WIRE_MAX_NAME, &version, &nver);
    if (rc == 0 && adapter && !sq_lora_name_ok(adapter, nad))
        rc = SQ_FAIL(SQ_EINVAL, "field \"adapter\": %s", S_ADAPTER_RULE);
    if (rc == 0 && version && (!adapter || !sq_lora_name_ok(version, nver)))
        rc = SQ_FAIL(SQ_EINVAL, "field \"adapter_version\": %s",
                     adapter ? S_ADAPTER_RULE : "needs \"adapter\"");
    if (rc)
        return rc;
    t->data = malloc(ncid + nprompt + nbody + nad + nver + 5);
    if (!t->data)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    memcpy(t->data, cid, ncid);
    t->data[ncid] = '\0';
    if (zhashx_insert(seen, t->data, t) != 0)
        return SQ_FAIL(SQ_EINVAL, "field \"custom_id\": \"%.64s\" appears twice in the job",
                       t->data);
    t->prompt_off = (uint32_t)ncid + 1;
    memcpy(t->data + t->prompt_off, prompt, nprompt);
    t->data[t->prompt_off + nprompt] = '\0';
    if (body) {
        t->body_off = t->prompt_off + (uint32_t)nprompt + 1;
        memcpy(t->data + t->body_off, body, nbody);
        t->data[t->body_off + nbody] = '\0';
    }
    if (adapter) {
        t->adapter_off = (uint32_t)(t->body_off ? t->body_off + nbody : t->prompt_off + nprompt) + 1;
        memcpy(t->data + t->adapter_off, adapter, nad);
        t->data[t->adapter_off + nad] = '\0';
        memcpy(t->data + t->adapter_off + nad + 1, version ? version : "", nver);
        t->data[t->adapter_off + nad + 1 + nver] = '\0';
    }
    /* a pinned version the registry does not have would fail every attempt */
    if (version && !sq_lora_pin_ok(lora, sq_task_adapter(t), sq_task_adapter_version(t)))
        return SQ_FAIL(SQ_EINVAL, "field \"adapter_version\": %s@%s was never published or was "
                       "rolled back", sq_task_adapter(t), sq_task_adapter_version(t));
    t->max_tokens = (uint32_t)max_tokens;
    t->temperature = temperature;
    t->top_p = top_p;
    t->has_seed = sq_wire_map_find(m, "seed", &v) == 0 && sq_wire_type(v) != SQ_WIRE_T_NIL;
    t->seed = seed;
    t->state = SQ_T_SUBMITTING;
    return 0;
}

static int s_parse_job_fields(sq_wire_val_t b, sq_job_t *job)
{
    uint64_t priority = 0, max_attempts = 3;
    int rc = sq_wire_get_strdup(b, "tenant", true, SQ_WIRE_MAX_NAME, &job->tenant);
    if (rc == 0 && !job->tenant[0])
        rc = SQ_FAIL(SQ_EINVAL, "field \"tenant\": empty");
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "model", true, SQ_WIRE_MAX_NAME, &job->model);
    if (rc == 0 && !job->model[0])
        rc = SQ_FAIL(SQ_EINVAL, "field \"model\": empty");
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "adapter", false, SQ_WIRE_MAX_NAME, &job->adapter);
    /* (a file name on the workers, as a task's own adapter is) */
    if (rc == 0 && job->adapter && !sq_lora_name_ok(job->adapter, strlen(job->adapter)))
        rc = SQ_FAIL(SQ_EINVAL, "field \"adapter\": %s", S_ADAPTER_RULE);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "params", false, SQ_WIRE_MAX_TEXT, &job->params);
    if (rc == 0)
        rc = sq_wire_get_strdup(b, "idempotency_key", false, SQ_WIRE_MAX_ID,
                                &job->idempotency_key);
    if (rc == 0 && job->idempotency_key && !job->idempotency_key[0])
        rc = SQ_FAIL(SQ_EINVAL, "field \"idempotency_key\": empty");
    if (rc == 0)
        rc = sq_wire_get_u64(b, "priority", false, 1000, &priority);
    if (rc == 0)
        rc = sq_wire_get_u64(b, "max_attempts", false, 100, &max_attempts);
    if (rc == 0 && max_attempts < 1)
        rc = SQ_FAIL(SQ_EINVAL, "field \"max_attempts\": must be at least 1");
    job->priority = (int)priority;
    job->max_attempts = (int)max_attempts;
    return rc;
}

/* Build a job from a SUBMIT body. OUT: *out (owned by the caller). */
static int s_parse_submit(sq_wire_val_t b, const sq_lora_t *lora, sq_job_t **out)
{
    sq_wire_val_t tasks;
    *out = NULL;
    int rc = sq_wire_get_array(b, "tasks", true, SQ_WIRE_MAX_TASKS, &tasks);
    if (rc == 0 && sq_wire_count(tasks) == 0)
        rc = SQ_FAIL(SQ_EINVAL, "field \"tasks\": empty");
    if (rc)
        return rc;
    sq_job_t *job = sq_job_new(sq_wire_count(tasks));
    zhashx_t *seen = zhashx_new();
    if (!job || !seen) {
        sq_job_destroy(&job);
        zhashx_destroy(&seen);
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    }
    rc = s_parse_job_fields(b, job);
    sq_wire_iter_t it;
    sq_wire_val_t m;
    uint32_t i = 0;
    sq_wire_iter_init(&it, tasks);
    while (rc == 0 && sq_wire_iter_next(&it, &m)) {
        if (sq_wire_type(m) != SQ_WIRE_T_MAP)
            rc = SQ_FAIL(SQ_EINVAL, "tasks[%u]: expected a map", i);
        else if ((rc = s_parse_task(m, &job->tasks[i], seen, lora)) != 0) {
            /* 'field "NAME": why' becomes 'tasks[i].NAME: why' */
            char detail[600];
            snprintf(detail, sizeof detail, "%s", sq_error_detail());
            const char *d = detail, *end;
            if (!strncmp(d, "field \"", 7) && (end = strchr(d + 7, '"')) != NULL)
                rc = SQ_FAIL(rc, "tasks[%u].%.*s%s", i, (int)(end - d - 7), d + 7, end + 1);
            else
                rc = SQ_FAIL(rc, "tasks[%u].%s", i, d);
        }
        i++;
    }
    zhashx_destroy(&seen);
    if (rc) {
        sq_job_destroy(&job);
        return rc;
    }
    job->counts[SQ_T_SUBMITTING] = job->n_tasks;
    job->created_wall_ms = sq_wall_ms();
    *out = job;
    return 0;
}

static void s_submit(sq_server_t *self, sq_wire_msg_t *msg, uint64_t rid)
{
    if (self->db_down || self->stopping) {
        sq_server_error(self, self->clients, msg->identity, rid, SQ_EDBDOWN,
                        self->stopping ? "broker shutting down; retry"
                                       : "database unavailable, nothing was stored; retry");
        return;
    }
    sq_job_t *job = NULL;
    int rc = s_parse_submit(msg->body, self->lora, &job);
    if (rc) {
        sq_server_error(self, self->clients, msg->identity, rid, rc, sq_error_detail());
        return;
    }
    sq_ack_t ack = {.kind = SQ_ACK_SUBMIT, .to = zframe_dup(msg->identity), .rid = rid,
                    .job = job};
    if (sq_batch_add_job(self->pending, job) != 0 || sq_batch_add_ack(self->pending, ack) != 0) {
        zframe_destroy(&ack.to);
        sq_server_error(self, self->clients, msg->identity, rid, SQ_ENOMEM, "out of memory");
        return; /* the job (if added) is dropped with the batch's failure path */
    }
}

/* ---- STATUS / CANCEL / STATS / WORKERS ---- */

static void s_status_mem(sq_server_t *self, sq_job_t *job, zframe_t *to, uint64_t rid)
{
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, job->params ? 10 : 9);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "job_id", job->id);
    sq_wire_kv_str(e, "tenant", job->tenant);
    sq_wire_kv_str(e, "model", job->model);
    sq_wire_kv_u64(e, "priority", (uint64_t)job->priority);
    sq_wire_kv_str(e, "state", sq_job_state_name(job->counts, job->n_tasks, job->cancelled));
    sq_wire_kv_u64(e, "n_tasks", job->n_tasks);
    sq_wire_kv_u64(e, "created_at", (uint64_t)job->created_wall_ms);
    if (job->params)
        sq_wire_kv_str(e, "params", job->params);
    sq_store_encode_counts(e, job->counts);
    sq_server_reply(self, to, SQ_WIRE_STATUS | SQ_WIRE_REPLY, e);
}

/* CANCEL's reply, sent once the next commit has landed (and with it,
 * in order, every earlier one). */
static void s_cancel_ack(sq_server_t *self, uint64_t job_id, zframe_t *to, uint64_t rid,
                         uint32_t n)
{
    sq_ack_t ack = {.kind = SQ_ACK_CANCEL, .to = zframe_dup(to), .rid = rid, .job_id = job_id,
                    .n = n};
    if (sq_batch_add_ack(self->pending, ack) != 0)
        zframe_destroy(&ack.to);
}

void sq_server_cancel_job(sq_server_t *self, sq_job_t *job, zframe_t *to, uint64_t rid)
{
    uint32_t n = 0;
    job->cancelled = true;
    for (uint32_t i = 0; i < job->n_tasks; i++) {
        sq_task_t *t = &job->tasks[i];
        if (t->state == SQ_T_QUEUED)
            sq_queue_remove(self->queue, &t->q);
        else if (t->state == SQ_T_RETRYING)
            sq_queue_undefer(self->queue, &t->q);
        else if (t->state == SQ_T_LEASED) {
            sq_server_cancel_lease(self, t);
            sq_batch_attempt(self->pending, t, "cancelled", "cancelled by request", sq_wall_ms());
            sq_server_unlease(self, t);
            t->group = NULL;
        } else {
            continue;
        }
        sq_server_task_terminal(self, t, SQ_T_CANCELLED, "cancelled by request");
        n++;
    }
    char details[64];
    snprintf(details, sizeof details, "{\"tasks_cancelled\": %u}", n);
    sq_server_audit_cancelled(self, job, details);
    sq_batch_add_cancel(self->pending, job->id);
    s_cancel_ack(self, job->id, to, rid, n);
}

/* A group's state, as an index into s_group_states */
static const char *const s_group_states[3] = {"busy", "idle", "draining"};

static int s_group_state(const sq_group_t *g)
{
    return g->draining ? 2 : g->n_leases || g->suspect ? 0 : 1; /* suspect: not free */
}

/* Tasks of the pool (p may be NULL) finished in the last 10 s */
static uint32_t s_done10(const sq_pstat_t *p, int64_t now)
{
    uint32_t n = 0;
    for (int64_t s = now / 1000 - 10; s < now / 1000 && p; s++)
        if (s > p->ring_sec - 16 && s <= p->ring_sec)
            n += p->done_per_s[s % 16];
    return n;
}

/* How long a model stays on /metrics and in STATS after its last task
 * succeeded, once no group serves it and no unfinished job names it (s):
 * long enough for scrapes to see its last counts. Then its entry in
 * self->pstats goes. */
#define S_MODEL_KEEP_S 300

typedef struct {
    uint32_t groups[3]; /* busy, idle, draining */
} s_shown_t;

static s_shown_t *s_shown(zhashx_t *shown, const char *model)
{
    s_shown_t *s = zhashx_lookup(shown, model);
    if (!s && (s = calloc(1, sizeof *s)) != NULL && zhashx_insert(shown, model, s) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* The models /metrics and STATS show, with their groups counted: those a
 * connected group serves, those an unfinished job names, and those that
 * finished a task in the last S_MODEL_KEEP_S. Any other model's entry in
 * self->pstats is dropped: model names are the clients' choice, and every
 * name ever sent would otherwise stay a label value (ten series) for as
 * long as the broker runs. NULL when out of memory. */
static zhashx_t *s_shown_models(sq_server_t *self, int64_t now)
{
    zhashx_t *shown = zhashx_new();
    if (!shown)
        return NULL;
    zhashx_set_destructor(shown, (zhashx_destructor_fn *)zstr_free);
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        s_shown_t *s = s_shown(shown, g->model);
        if (s)
            s->groups[s_group_state(g)]++;
    }
    for (sq_job_t *j = zhashx_first(self->jobs); j; j = zhashx_next(self->jobs))
        s_shown(shown, j->model);
    zlistx_t *models = zhashx_keys(self->pstats);
    for (const char *m = models ? zlistx_first(models) : NULL; m; m = zlistx_next(models)) {
        if (zhashx_lookup(shown, m))
            continue;
        const sq_pstat_t *p = zhashx_lookup(self->pstats, m);
        if (p && (p->leased || p->retrying ||
                  (p->ring_sec && now / 1000 - p->ring_sec < S_MODEL_KEEP_S)))
            s_shown(shown, m);
        else
            zhashx_delete(self->pstats, m);
    }
    zlistx_destroy(&models);
    return shown;
}

static void s_stats_pool(sq_server_t *self, sq_wire_enc_t *e, const char *model,
                         const uint32_t groups[3], int64_t now)
{
    const sq_pstat_t *p = zhashx_lookup(self->pstats, model);
    uint32_t done10 = s_done10(p, now);
    int64_t oldest = sq_queue_oldest_ms(self->queue, model);
    sq_wire_map(e, 11);
    sq_wire_kv_str(e, "model", model);
    sq_wire_kv_u64(e, "queued", sq_queue_ready(self->queue, model));
    sq_wire_kv_u64(e, "retrying", p ? p->retrying : 0);
    sq_wire_kv_u64(e, "oldest_queued_age_ms", oldest ? (uint64_t)(now - oldest) : 0);
    sq_wire_kv_u64(e, "leased", p ? p->leased : 0);
    sq_wire_key(e, "groups");
    sq_wire_map(e, 4);
    sq_wire_kv_u64(e, "busy", groups[0]);
    sq_wire_kv_u64(e, "idle", groups[1]);
    sq_wire_kv_u64(e, "starting", 0);
    sq_wire_kv_u64(e, "draining", groups[2]);
    sq_wire_kv_u64(e, "completed_10s", done10);
    sq_wire_kv_double(e, "throughput_per_s", done10 / 10.0);
    sq_wire_kv_u64(e, "prompt_tokens", p ? p->prompt_tokens : 0);
    sq_wire_kv_u64(e, "cached_tokens", p ? p->cached_tokens : 0);
    sq_wire_kv_u64(e, "completion_tokens", p ? p->completion_tokens : 0);
}

static void s_stats(sq_server_t *self, zframe_t *to, uint64_t rid)
{
    int64_t now = sq_now_ms();
    zhashx_t *shown = s_shown_models(self, now);
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 6);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_kv_u64(e, "now", (uint64_t)sq_wall_ms());
    sq_wire_kv_u64(e, "uncommitted", self->n_completing);
    sq_wire_kv_bool(e, "dispatch_paused", sq_server_dispatch_paused(self));
    sq_wire_key(e, "pools");
    sq_wire_array(e, shown ? (uint32_t)zhashx_size(shown) : 0);
    for (const s_shown_t *s = shown ? zhashx_first(shown) : NULL; s; s = zhashx_next(shown))
        s_stats_pool(self, e, zhashx_cursor(shown), s->groups, now);
    zhashx_destroy(&shown);
    /* tenants with unfinished work */
    zhashx_t *tenants = zhashx_new();
    for (sq_job_t *j = zhashx_first(self->jobs); j; j = zhashx_next(self->jobs)) {
        uint32_t *c = zhashx_lookup(tenants, j->tenant);
        if (!c && (c = calloc(2, sizeof *c)) != NULL)
            zhashx_insert(tenants, j->tenant, c);
        if (c)
            c[1] += j->counts[SQ_T_LEASED] + j->counts[SQ_T_COMPLETING];
    }
    zhashx_set_destructor(tenants, (zhashx_destructor_fn *)zstr_free);
    sq_wire_key(e, "tenants");
    sq_wire_array(e, (uint32_t)zhashx_size(tenants));
    for (uint32_t *c = zhashx_first(tenants); c; c = zhashx_next(tenants)) {
        const char *name = zhashx_cursor(tenants);
        sq_wire_map(e, 3);
        sq_wire_kv_str(e, "tenant", name);
        sq_wire_kv_u64(e, "queued", sq_queue_ready_tenant(self->queue, name));
        sq_wire_kv_u64(e, "leased", c[1]);
    }
    zhashx_destroy(&tenants);
    sq_server_reply(self, to, SQ_WIRE_STATS | SQ_WIRE_REPLY, e);
}

/* s as a Prometheus label value: backslash, quote and newline escaped
 * (names are any UTF-8 without NUL); cut to fit buf */
static const char *s_label(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    for (; *s && n + 3 < size; s++) {
        if (*s == '\\' || *s == '"' || *s == '\n')
            buf[n++] = '\\';
        buf[n++] = *s == '\n' ? 'n' : *s;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- /metrics ---- */

static void s_metrics_model(sq_server_t *self, sq_metrics_text_t *o, const char *model,
                            const s_shown_t *s, int64_t now)
{
    char lm[2 * SQ_WIRE_MAX_NAME + 8]; /* room to escape every byte */
    const sq_pstat_t *p = zhashx_lookup(self->pstats, model);
    const char *m = s_label(model, lm, sizeof lm);
    const uint32_t done10 = s_done10(p, now);
    int64_t oldest = sq_queue_oldest_ms(self->queue, model);
    sq_metrics_text_put(o, "shardq_broker_queued_tasks{model=\"%s\"} %u\n", m,
                        (unsigned)sq_queue_ready(self->queue, model));
    sq_metrics_text_put(o, "shardq_broker_leased_tasks{model=\"%s\"} %u\n", m,
                        p ? (unsigned)p->leased : 0);
    sq_metrics_text_put(o, "shardq_broker_oldest_queued_age_seconds{model=\"%s\"} %.3f\n", m,
                        oldest ? (double)(now - oldest) / 1000.0 : 0.0);
    for (int st = 0; st < 3; st++)
        sq_metrics_text_put(o, "shardq_broker_groups{model=\"%s\",state=\"%s\"} %u\n", m,
                            s_group_states[st], s->groups[st]);
    sq_metrics_text_put(o, "shardq_broker_throughput_tasks_per_second{model=\"%s\"} %.1f\n", m,
                        done10 / 10.0);
    const struct { const char *name; uint64_t n; } tokens[] = {
        {"prompt", p ? p->prompt_tokens : 0},
        {"cached_prompt", p ? p->cached_tokens : 0},
        {"completion", p ? p->completion_tokens : 0}};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
        sq_metrics_text_put(o, "shardq_broker_%s_tokens_total{model=\"%s\"} %" PRIu64 "\n",
                            tokens[i].name, m, tokens[i].n);
}

/* The same figures as STATS, as Prometheus text (sq_metrics_render_fn:
 * returns the length the whole text needs; the metrics server calls again
 * with more room, or cuts it after a whole line at its cap). What must
 * always be seen comes first: the broker's own gauges, then the groups
 * (as many as are connected), then the models (as many as clients name in
 * unfinished jobs). */
size_t sq_server_metrics(void *arg, char *buf, size_t size)
{
    sq_server_t *self = arg;
    sq_metrics_text_t o = {buf, size, 0};
    int64_t now = sq_now_ms();
    sq_metrics_text_put(
        &o,
        "# HELP shardq_broker_uncommitted_tasks Tasks finished whose rows wait for their "
        "commit.\n"
        "# TYPE shardq_broker_uncommitted_tasks gauge\n"
        "shardq_broker_uncommitted_tasks %u\n"
        "# HELP shardq_broker_dispatch_paused 1 while no lease is granted because "
        "--max-uncommitted tasks wait for their commit.\n"
        "# TYPE shardq_broker_dispatch_paused gauge\n"
        "shardq_broker_dispatch_paused %d\n"
        "# HELP shardq_broker_open_jobs Jobs with unfinished tasks.\n"
        "# TYPE shardq_broker_open_jobs gauge\n"
        "shardq_broker_open_jobs %zu\n"
        "# HELP shardq_broker_database_up 1 while PostgreSQL accepts commits.\n"
        "# TYPE shardq_broker_database_up gauge\n"
        "shardq_broker_database_up %d\n",
        (unsigned)self->n_completing, sq_server_dispatch_paused(self) ? 1 : 0,
        zhashx_size(self->jobs), self->db_down ? 0 : 1);
    sq_metrics_text_put(
        &o, "# HELP shardq_broker_group_kv_pages KV-cache pages of 32 positions, by worker group.\n"
            "# TYPE shardq_broker_group_kv_pages gauge\n"
            "# HELP shardq_broker_group_kv_pages_in_use Of those, pages its running sequences "
            "hold.\n"
            "# TYPE shardq_broker_group_kv_pages_in_use gauge\n"
            "# HELP shardq_broker_group_preemptions_total Sequences a group preempted for want "
            "of KV pages.\n"
            "# TYPE shardq_broker_group_preemptions_total counter\n");
    char lm[2 * SQ_WIRE_MAX_NAME + 8], lg[2 * SQ_WIRE_MAX_ID + 8]; /* room to escape every byte */
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        if (!g->kv_reported)
            continue;
        const char *m = s_label(g->model, lm, sizeof lm), *gid = s_label(g->group_id, lg, sizeof lg);
        if (g->kv_pages)
            sq_metrics_text_put(&o, "shardq_broker_group_kv_pages{model=\"%s\",group=\"%s\"} %u\n",
                                m, gid, g->kv_pages);
        sq_metrics_text_put(&o,
                            "shardq_broker_group_kv_pages_in_use{model=\"%s\",group=\"%s\"} %u\n",
                            m, gid, g->kv_in_use);
        sq_metrics_text_put(
            &o, "shardq_broker_group_preemptions_total{model=\"%s\",group=\"%s\"} %" PRIu64 "\n", m,
            gid, g->preemptions);
    }
    sq_metrics_text_put(
        &o, "# HELP shardq_broker_queued_tasks Tasks ready to lease, by model pool.\n"
            "# TYPE shardq_broker_queued_tasks gauge\n"
            "# HELP shardq_broker_leased_tasks Tasks leased to worker groups.\n"
            "# TYPE shardq_broker_leased_tasks gauge\n"
            "# HELP shardq_broker_oldest_queued_age_seconds Age of the oldest ready task.\n"
            "# TYPE shardq_broker_oldest_queued_age_seconds gauge\n"
            "# HELP shardq_broker_groups Worker groups by state.\n"
            "# TYPE shardq_broker_groups gauge\n"
            "# HELP shardq_broker_throughput_tasks_per_second Tasks finished per second, last "
            "10 s.\n"
            "# TYPE shardq_broker_throughput_tasks_per_second gauge\n"
            "# HELP shardq_broker_prompt_tokens_total Prompt tokens of the results accepted.\n"
            "# TYPE shardq_broker_prompt_tokens_total counter\n"
            "# HELP shardq_broker_cached_prompt_tokens_total Of those, tokens the workers took "
            "from their KV caches.\n"
            "# TYPE shardq_broker_cached_prompt_tokens_total counter\n"
            "# HELP shardq_broker_completion_tokens_total Tokens generated for the results "
            "accepted.\n"
            "# TYPE shardq_broker_completion_tokens_total counter\n");
    zhashx_t *shown = s_shown_models(self, now);
    for (const s_shown_t *s = shown ? zhashx_first(shown) : NULL; s; s = zhashx_next(shown))
        s_metrics_model(self, &o, zhashx_cursor(shown), s, now);
    zhashx_destroy(&shown);
    return o.len;
}

static void s_workers(sq_server_t *self, zframe_t *to, uint64_t rid)
{
    int64_t now = sq_now_ms();
    sq_wire_enc_t *e = self->enc;
    sq_wire_enc_reset(e);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "rid", rid);
    sq_wire_key(e, "workers");
    sq_wire_array(e, (uint32_t)zhashx_size(self->groups));
    for (sq_group_t *g = zhashx_first(self->groups); g; g = zhashx_next(self->groups)) {
        sq_wire_map(e, 10 + (g->kv_type ? 1 : 0) + (g->kv_pages ? 1 : 0) +
                           (g->kv_reported ? 2 : 0));
        sq_wire_kv_str(e, "group_id", g->group_id);
        sq_wire_kv_str(e, "model", g->model);
        sq_wire_kv_str(e, "model_sha256", g->sha);
        sq_wire_kv_u64(e, "tp_size", g->tp_size);
        sq_wire_kv_str(e, "device", g->device);
        if (g->kv_type)
            sq_wire_kv_str(e, "kv_type", g->kv_type);
        sq_wire_kv_u64(e, "max_batch", g->max_batch);
        if (g->kv_pages)
            sq_wire_kv_u64(e, "kv_pages", g->kv_pages);
        if (g->kv_reported) {
            sq_wire_kv_u64(e, "kv_pages_in_use", g->kv_in_use);
            sq_wire_kv_u64(e, "preemptions", g->preemptions);
        }
        sq_wire_kv_u64(e, "leases", g->n_leases);
        sq_wire_kv_str(e, "state", g->suspect && !g->draining ? "suspect"
                                                              : s_group_states[s_group_state(g)]);
        sq_wire_kv_u64(e, "last_seen_ms_ago", (uint64_t)(now - g->last_recv_ms));
        sq_wire_kv_u64(e, "completed", g->completed);
    }
    sq_server_reply(self, to, SQ_WIRE_WORKERS | SQ_WIRE_REPLY, e);
}

/* ---- reads that go to PostgreSQL ---- */

static int s_read(sq_server_t *self, sq_wire_msg_t *msg, uint64_t rid, sq_read_kind_t kind)
{
    sq_read_t *op = calloc(1, sizeof *op);
    if (!op)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    op->kind = kind;
    op->rid = rid;
    op->limit = kind == SQ_READ_LIST || kind == SQ_READ_SCALING ? 100 : 1000;
    int rc = 0;
    if (kind == SQ_READ_SCALING) {
        rc = sq_wire_get_u64(msg->body, "since_ms", false, INT64_MAX, &op->after);
        if (rc == 0)
            rc = sq_wire_get_strdup(msg->body, "pool", false, SQ_WIRE_MAX_NAME, &op->pool);
    } else if (kind != SQ_READ_LIST)
        rc = sq_wire_get_u64(msg->body, "job_id", true, INT64_MAX, &op->job_id);
    if (rc == 0 && kind == SQ_READ_RESULTS)
        rc = sq_wire_get_u64(msg->body, "after", false, UINT32_MAX, &op->after);
    if (rc == 0 && kind == SQ_READ_LIST)
        rc = sq_wire_get_u64(msg->body, "before", false, INT64_MAX, &op->after);
    if (rc == 0 && kind != SQ_READ_STATUS && kind != SQ_READ_CANCEL)
        rc = sq_wire_get_u64(msg->body, "limit", false, SQ_WIRE_MAX_PAGE, &op->limit);
    if (rc == 0 && op->limit == 0)
        rc = SQ_FAIL(SQ_EINVAL, "field \"limit\": must be at least 1");
    if (rc == 0 && kind == SQ_READ_LIST)
        rc = sq_wire_get_strdup(msg->body, "tenant", false, SQ_WIRE_MAX_NAME, &op->tenant);
    if (rc == 0 && kind == SQ_READ_LIST)
        rc = sq_wire_get_strdup(msg->body, "state", false, 32, &op->state);
    if (rc == 0 && op->state && !sq_wire_job_state_known(op->state))
        rc = SQ_FAIL(SQ_EINVAL, "field \"state\": '%s' is not " SQ_WIRE_JOB_STATES, op->state);
    op->to = zframe_dup(msg->identity);
    if (rc == 0 && sq_store_read(self->store, op) != 0)
        rc = SQ_FAIL(SQ_EIO, "reader unavailable");
    if (rc)
        sq_read_destroy(&op);
    return rc;
}

/* ---- dispatch of one request ---- */

static void s_request(sq_server_t *self, sq_wire_msg_t *msg)
{
    uint64_t rid = 0, job_id = 0;
    int rc = sq_wire_get_u64(msg->body, "rid", true, UINT64_MAX, &rid);
    if (rc == 0 && !sq_wire_cmd_is_client_request(msg->cmd))
        rc = SQ_FAIL(SQ_EPROTO, "command 0x%02x is not a client request", msg->cmd);
    if (rc) {
        int code = rc == SQ_EPROTO ? SQ_WIRE_E_UNKNOWN : sq_wire_errcode_from(rc);
        sq_wire_send_error(zsock_resolve(self->clients), msg->identity, rid, code,
                           sq_error_detail());
        return;
    }
    sq_job_t *job = NULL;
    if (msg->cmd == SQ_WIRE_STATUS || msg->cmd == SQ_WIRE_CANCEL) {
        rc = sq_wire_get_u64(msg->body, "job_id", true, INT64_MAX, &job_id);
        job = rc == 0 ? zhashx_lookup(self->jobs, &job_id) : NULL;
    }
    switch (rc ? 0 : msg->cmd) {
    case 0: break;
    case SQ_WIRE_SUBMIT: s_submit(self, msg, rid); break;
    case SQ_WIRE_STATUS:
        if (job)
            s_status_mem(self, job, msg->identity, rid);
        else
            rc = s_read(self, msg, rid, SQ_READ_STATUS);
        break;
    case SQ_WIRE_CANCEL:
        if (job && !job->cancelled)
            sq_server_cancel_job(self, job, msg->identity, rid);
        else if (job)   /* cancelled here but not committed yet (a job leaves memory
                         * once its last outcome is committed): confirm once it is */
            s_cancel_ack(self, job->id, msg->identity, rid, 0);
        else
            rc = s_read(self, msg, rid, SQ_READ_CANCEL);
        break;
    case SQ_WIRE_RESULTS: rc = s_read(self, msg, rid, SQ_READ_RESULTS); break;
    case SQ_WIRE_LIST: rc = s_read(self, msg, rid, SQ_READ_LIST); break;
    case SQ_WIRE_SCALING: rc = s_read(self, msg, rid, SQ_READ_SCALING); break;
    case SQ_WIRE_STATS: s_stats(self, msg->identity, rid); break;
    case SQ_WIRE_WORKERS: s_workers(self, msg->identity, rid); break;
    case SQ_WIRE_LORA: rc = sq_lora_request(self->lora, msg->identity, rid, msg->body); break;
    }
    if (rc)
        sq_server_error(self, self->clients, msg->identity, rid, rc, sq_error_detail());
}

int sq_server_on_client(zloop_t *loop, zsock_t *reader, void *arg)
{
    sq_server_t *self = arg;
    /* drain what is there (bounded in count and time) so one wakeup serves
     * many requests, and the loop still gets to its timers and workers */
    int64_t until = sq_now_ms() + SQ_SERVER_SLICE_MS;
    for (int i = 0; i < 1000 && sq_now_ms() < until && (zsock_events(reader) & ZMQ_POLLIN);
         i++) {
        sq_wire_msg_t *msg = NULL;
        zframe_t *from = NULL;
        int rc = sq_wire_recv(zsock_resolve(reader), true, SQ_WIRE_MAX_BODY, &msg, &from);
        if (rc == SQ_EAGAIN)
            break;
        if (rc) {
            SQ_WARN("bad client message", "err=%s", sq_q(sq_error_detail()));
            if (from)
                sq_server_error(self, reader, from, 0, rc, sq_error_detail());
            zframe_destroy(&from);
            continue;
        }
        s_request(self, msg);
        sq_wire_msg_destroy(&msg);
    }
    sq_server_kick(self);
    return 0;
}
