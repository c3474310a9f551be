/*  sq_batch: one group-commit batch of broker writes, and the job object.
 *
 *  The loop fills a batch (rows go straight into COPY text buffers, so a
 *  result's text is copied once and never parsed again); the writer thread
 *  commits it in one transaction. A batch is owned by exactly one thread at
 *  a time: the loop while it is pending, the writer while in flight.
 */
#include "sq_broker.h"

#include "sq_error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Grow a (ptr, n, cap) array by one slot of `size` bytes. */
static int s_grow(void **arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return 0;
    size_t new_cap = *cap ? *cap * 2 : 64;
    void *grown = realloc(*arr, new_cap * size);
    if (!grown)
        return SQ_FAIL(SQ_ENOMEM, "batch: out of memory");
    *arr = grown;
    *cap = new_cap;
    return 0;
}

sq_batch_t *sq_batch_new(void)
{
    sq_batch_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->attempts = sq_db_copy_new();
    self->results = sq_db_copy_new();
    self->audit = sq_db_copy_new();
    if (!self->attempts || !self->results || !self->audit)
        sq_batch_destroy(&self);
    return self;
}

void sq_batch_destroy(sq_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_batch_t *self = *self_p;
    for (size_t i = 0; i < self->n_acks; i++)
        zframe_destroy(&self->acks[i].to);
    for (size_t i = 0; i < self->n_worker_rows; i++)
        free(self->worker_rows[i]);
    sq_db_copy_destroy(&self->attempts);
    sq_db_copy_destroy(&self->results);
    sq_db_copy_destroy(&self->audit);
    free(self->jobs);
    free(self->cancel_ids);
    free(self->withdraw_ids);
    free(self->worker_rows);
    free(self->acks);
    free(self->dones);
    free(self->res_job);
    free(self->res_idx);
    free(self);
    *self_p = NULL;
}

bool sq_batch_empty(sq_batch_t *self)
{
    return self->n_jobs == 0 && self->n_cancel == 0 && self->n_worker_rows == 0 &&
           self->n_withdraw == 0 &&
           self->n_acks == 0 && self->n_dones == 0 && sq_db_copy_rows(self->attempts) == 0 &&
           sq_db_copy_rows(self->results) == 0 && sq_db_copy_rows(self->audit) == 0;
}

int sq_batch_add_job(sq_batch_t *self, sq_job_t *job)
{
    int rc = s_grow((void **)&self->jobs, self->n_jobs, &self->cap_jobs, sizeof *self->jobs);
    if (rc == 0)
        self->jobs[self->n_jobs++] = job;
    return rc;
}

int sq_batch_add_ack(sq_batch_t *self, sq_ack_t ack)
{
    int rc = s_grow((void **)&self->acks, self->n_acks, &self->cap_acks, sizeof *self->acks);
    if (rc == 0)
        self->acks[self->n_acks++] = ack;
    return rc;
}

int sq_batch_add_done(sq_batch_t *self, sq_task_t *task, uint8_t state)
{
    int rc = s_grow((void **)&self->dones, self->n_dones, &self->cap_dones, sizeof *self->dones);
    if (rc == 0)
        self->dones[self->n_dones++] = (sq_done_t){task, state};
    return rc;
}

/* Append a job id to one of the batch's id lists. */
static int s_add_id(uint64_t **ids, size_t *n, size_t *cap, uint64_t job_id)
{
    int rc = s_grow((void **)ids, *n, cap, sizeof **ids);
    if (rc == 0)
        (*ids)[(*n)++] = job_id;
    return rc;
}

int sq_batch_add_cancel(sq_batch_t *self, uint64_t job_id)
{
    return s_add_id(&self->cancel_ids, &self->n_cancel, &self->cap_cancel, job_id);
}

int sq_batch_add_withdraw(sq_batch_t *self, uint64_t job_id)
{
    return s_add_id(&self->withdraw_ids, &self->n_withdraw, &self->cap_withdraw, job_id);
}

int sq_batch_add_worker(sq_batch_t *self, const char *group_id, const char *model,
                        const char *caps_json)
{
    const char *vals[3] = {group_id, model, caps_json ? caps_json : "{}"};
    for (int i = 0; i < 3; i++) {
        int rc = s_grow((void **)&self->worker_rows, self->n_worker_rows,
                        &self->cap_worker_rows, sizeof *self->worker_rows);
        if (rc)
            return rc;
        self->worker_rows[self->n_worker_rows++] = strdup(vals[i]);
    }
    return 0;
}

void sq_copy_ts(sq_db_copy_t *c, int64_t wall_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char buf[48];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, sizeof buf - n, ".%03d+00", (int)(wall_ms % 1000));
    sq_db_copy_str(c, buf, n);
}

void sq_batch_attempt(sq_batch_t *self, sq_task_t *t, const char *outcome, const char *error,
                      int64_t now_wall_ms)
{
    sq_db_copy_t *c = self->attempts;
    sq_db_copy_i64(c, (int64_t)t->job->id);
    sq_db_copy_i64(c, t->idx);
    sq_db_copy_i64(c, t->attempts);
    sq_db_copy_i64(c, (int64_t)t->lease_id);
    sq_db_copy_i64(c, (int64_t)t->token); /* stored as two's complement */
    sq_db_copy_cstr(c, t->group ? t->group->group_id : "?");
    sq_copy_ts(c, t->leased_wall_ms);
    sq_copy_ts(c, now_wall_ms);
    sq_db_copy_cstr(c, outcome);
    sq_db_copy_cstr(c, error);
    sq_db_copy_end_row(c);
}

/* a count, or NULL when unknown (< 0) */
static void s_copy_count(sq_db_copy_t *c, int64_t n)
{
    if (n >= 0)
        sq_db_copy_i64(c, n);
    else
        sq_db_copy_null(c);
}

void sq_batch_result(sq_batch_t *self, sq_task_t *t, const char *state, const char *text,
                     size_t text_len, const char *finish_reason, const sq_usage_t *usage,
                     const char *error, const char *lineage_json, int64_t now_wall_ms)
{
    const sq_usage_t none = {-1, -1, -1};
    if (!usage)
        usage = &none;
    size_t cap = self->cap_res;
    if (s_grow((void **)&self->res_job, self->n_res, &cap, sizeof *self->res_job) == 0 &&
        s_grow((void **)&self->res_idx, self->n_res, &self->cap_res, sizeof *self->res_idx) == 0) {
        self->res_job[self->n_res] = t->job->id;
        self->res_idx[self->n_res++] = t->idx;
    }
    sq_db_copy_t *c = self->results;
    sq_db_copy_i64(c, (int64_t)t->job->id);
    sq_db_copy_i64(c, t->idx);
    sq_db_copy_cstr(c, state);
    if (text)
        sq_db_copy_str(c, text, text_len);
    else
        sq_db_copy_null(c);
    sq_db_copy_cstr(c, finish_reason);
    s_copy_count(c, usage->prompt);
    s_copy_count(c, usage->completion);
    sq_db_copy_cstr(c, error);
    sq_db_copy_i64(c, t->attempts);
    sq_copy_ts(c, now_wall_ms);
    sq_db_copy_cstr(c, lineage_json);
    s_copy_count(c, usage->cached);
    sq_db_copy_end_row(c);
}

void sq_batch_audit(sq_batch_t *self, const char *actor, const char *action, uint64_t job_id,
                    uint32_t idx, const char *subject, const char *details_json,
                    int64_t now_wall_ms)
{
    sq_db_copy_t *c = self->audit;
    sq_copy_ts(c, now_wall_ms);
    sq_db_copy_cstr(c, actor);
    sq_db_copy_cstr(c, action);
    if (job_id)
        sq_db_copy_i64(c, (int64_t)job_id);
    else
        sq_db_copy_null(c);
    if (idx)
        sq_db_copy_i64(c, idx);
    else
        sq_db_copy_null(c);
    sq_db_copy_cstr(c, subject);
    sq_db_copy_cstr(c, details_json ? details_json : "{}");
    sq_db_copy_end_row(c);
}

static size_t s_hash_u64(const void *key)
{
    return (size_t)(*(const uint64_t *)key * 0x9e3779b97f4a7c15ull);
}

int sq_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

zhashx_t *sq_u64_hash_new(void)
{
    zhashx_t *h = zhashx_new();
    if (h) {
        zhashx_set_key_hasher(h, s_hash_u64);
        zhashx_set_key_comparator(h, sq_u64_cmp);
        zhashx_set_key_duplicator(h, NULL);
        zhashx_set_key_destructor(h, NULL);
    }
    return h;
}

/* ---- jobs ---- */

sq_job_t *sq_job_new(uint32_t n_tasks)
{
    sq_job_t *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->tasks = calloc(n_tasks ? n_tasks : 1, sizeof *job->tasks);
    if (!job->tasks) {
        free(job);
        return NULL;
    }
    job->n_tasks = n_tasks;
    for (uint32_t i = 0; i < n_tasks; i++) {
        job->tasks[i].job = job;
        job->tasks[i].idx = i + 1;
    }
    return job;
}

void sq_job_destroy(sq_job_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_job_t *job = *self_p;
    for (uint32_t i = 0; i < job->n_tasks; i++)
        free(job->tasks[i].data);
    free(job->tasks);
    free(job->tenant);
    free(job->model);
    free(job->adapter);
    free(job->params);
    free(job->idempotency_key);
    zframe_destroy(&job->reply_to);
    free(job);
    *self_p = NULL;
}

const char *sq_job_state_name(const uint32_t counts[SQ_T_N], uint32_t n_tasks, bool cancelled)
{
    uint32_t terminal = counts[SQ_T_SUCCEEDED] + counts[SQ_T_DEAD] + counts[SQ_T_CANCELLED];
    if (terminal < n_tasks) {
        if (counts[SQ_T_QUEUED] + counts[SQ_T_SUBMITTING] == n_tasks)
            return "queued";
        return "running";
    }
    if (cancelled && counts[SQ_T_CANCELLED] > 0)
        return "cancelled";
    if (counts[SQ_T_DEAD] > 0)
        return "failed";
    if (counts[SQ_T_CANCELLED] > 0)
        return "cancelled";
    return "succeeded";
}
