/*  sq_store: writer and reader threads, and the start-up rebuild.
 *  See sq_store.h for the threading contract.
 */
#include "sq_store.h"

#include "sq_error.h"
#include "sq_sha256.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sq_store_t {
    zactor_t *writer, *reader;
};

typedef struct {
    const char *conninfo;
    bool writer;
} s_actor_args_t;

/* ---- writer ---- */

static const char s_stage_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS stage_task_attempts (LIKE task_attempts) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_task_results (LIKE task_results) ON COMMIT DELETE ROWS;"
    "CREATE TEMP TABLE IF NOT EXISTS stage_audit_log (at timestamptz, actor text, action text,"
    " job_id bigint, idx integer, subject text, details jsonb) ON COMMIT DELETE ROWS;";

#define S_AUDIT_COLS "at, actor, action, job_id, idx, subject, details"
static const char s_copy_audit[] = "COPY audit_log (" S_AUDIT_COLS ") FROM STDIN";

/* Job ids come from the jobs sequence, one round trip for the batch. */
static int s_assign_job_ids(sq_db_t *db, sq_batch_t *b)
{
    char n[24];
    snprintf(n, sizeof n, "%zu", b->n_jobs);
    const char *p[1] = {n};
    PGresult *res = NULL;
    int rc = sq_db_exec(db, "SELECT nextval('jobs_id_seq') FROM generate_series(1, $1::int)", 1,
                        p, &res);
    if (rc)
        return rc;
    for (size_t i = 0; i < b->n_jobs && i < (size_t)PQntuples(res); i++)
        b->jobs[i]->id = strtoull(PQgetvalue(res, (int)i, 0), NULL, 10);
    PQclear(res);
    return 0;
}

static void s_copy_task(sq_db_copy_t *tasks, sq_db_copy_t *queue, sq_task_t *t)
{
    sq_db_copy_i64(tasks, (int64_t)t->job->id);
    sq_db_copy_i64(tasks, t->idx);
    sq_db_copy_cstr(tasks, sq_task_custom_id(t));
    sq_db_copy_cstr(tasks, sq_task_prompt(t));
    sq_db_copy_i64(tasks, t->max_tokens);
    sq_db_copy_double(tasks, t->temperature);
    sq_db_copy_double(tasks, t->top_p);
    if (t->has_seed)
        sq_db_copy_i64(tasks, (int64_t)t->seed);
    else
        sq_db_copy_null(tasks);
    sq_db_copy_cstr(tasks, sq_task_body(t));
    sq_db_copy_cstr(tasks, sq_task_adapter(t));
    sq_db_copy_cstr(tasks, sq_task_adapter_version(t));
    sq_db_copy_end_row(tasks);
    sq_db_copy_i64(queue, (int64_t)t->job->id);
    sq_db_copy_i64(queue, t->idx);
    sq_db_copy_end_row(queue);
}

/* One field into a SUBMIT's digest: its length (or "none") and its bytes,
 * so that no two different jobs feed the same stream. */
static void s_digest_field(sq_sha256_t *h, const char *s)
{
    uint64_t n = s ? strlen(s) : UINT64_MAX;
    sq_sha256_update(h, &n, sizeof n);
    if (s)
        sq_sha256_update(h, s, (size_t)n);
}

/* Numbers as their bytes (fixed width; printing them cost more than the
 * rest of the digest) */
static void s_digest_u64(sq_sha256_t *h, uint64_t v)
{
    sq_sha256_update(h, &v, sizeof v);
}

static void s_digest_double(sq_sha256_t *h, double v)
{
    sq_sha256_update(h, &v, sizeof v);
}

/* What a keyed SUBMIT carried, as SHA-256 hex: a repeat must match it. */
static int s_submit_digest(const sq_job_t *j, char out[65])
{
    sq_sha256_t *h = sq_sha256_new();
    if (!h)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    s_digest_field(h, j->model);
    s_digest_field(h, j->adapter);
    s_digest_field(h, j->params);
    s_digest_u64(h, (uint64_t)j->priority);
    s_digest_u64(h, (uint64_t)j->max_attempts);
    s_digest_u64(h, j->n_tasks);
    for (uint32_t i = 0; i < j->n_tasks; i++) {
        const sq_task_t *t = &j->tasks[i];
        s_digest_field(h, sq_task_custom_id(t));
        s_digest_field(h, sq_task_prompt(t));
        s_digest_field(h, sq_task_body(t));
        s_digest_field(h, sq_task_adapter(t));
        s_digest_field(h, sq_task_adapter_version(t));
        s_digest_u64(h, t->max_tokens);
        s_digest_double(h, t->temperature);
        s_digest_double(h, t->top_p);
        s_digest_u64(h, t->has_seed);
        s_digest_u64(h, t->seed);
    }
    return sq_sha256_finish_hex(&h, out);
}

#define S_JOB_COLS "id, tenant, model, adapter, priority, max_attempts, params, n_tasks, created_at"

/* The S_JOB_COLS fields of a jobs row (the row left open). */
static void s_copy_job_cols(sq_db_copy_t *c, const sq_job_t *j)
{
    sq_db_copy_i64(c, (int64_t)j->id);
    sq_db_copy_cstr(c, j->tenant);
    sq_db_copy_cstr(c, j->model);
    sq_db_copy_cstr(c, j->adapter);
    sq_db_copy_i64(c, j->priority);
    sq_db_copy_i64(c, j->max_attempts);
    sq_db_copy_cstr(c, j->params);
    sq_db_copy_i64(c, j->n_tasks);
    sq_copy_ts(c, j->created_wall_ms);
}

/* A keyed job under a key its tenant used before: j->same_as, and whether
 * that job was submitted with other contents. */
static int s_find_keyed(sq_db_t *db, sq_job_t *j, const char *digest)
{
    const char *q[2] = {j->tenant, j->idempotency_key};
    PGresult *res = NULL;
    int rc = sq_db_exec(db, "SELECT id, submit_sha256 FROM jobs"
                            " WHERE tenant = $1 AND idempotency_key = $2", 2, q, &res);
    if (rc == 0 && PQntuples(res) != 1)
        rc = SQ_FAIL(SQ_EDB, "idempotency key of tenant %s: in use, but no job has it",
                     j->tenant);
    if (rc == 0) {
        j->same_as = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        j->same_as_differs = strcmp(PQgetvalue(res, 0, 1), digest) != 0;
    }
    PQclear(res);
    return rc;
}

#define S_KEYED_COLS 11
#define S_KEYED_MAX 4096   /* jobs a statement (PostgreSQL takes 65,535 parameters) */

/* The batch's keyed jobs: their jobs rows, S_KEYED_MAX to a statement,
 * but for those whose key the tenant used before (earlier in this batch
 * too: the first wins); each of those gets j->same_as, and nothing of it
 * is written. */
static int s_insert_keyed(sq_db_t *db, sq_batch_t *b, size_t n_keyed)
{
    size_t n = n_keyed < S_KEYED_MAX ? n_keyed : S_KEYED_MAX;
    char (*num)[5][24] = calloc(n, sizeof *num);
    char (*digest)[65] = calloc(n_keyed, sizeof *digest);
    const char **p = calloc(n * S_KEYED_COLS, sizeof *p);
    sq_job_t **keyed = calloc(n_keyed, sizeof *keyed);
    char *sql = malloc(512 + n * 192);   /* a row of placeholders is under 140 */
    uint64_t *ret = calloc(n, sizeof *ret);   /* ids a statement stored */
    int rc = num && digest && p && keyed && sql && ret ? 0
                                                       : SQ_FAIL(SQ_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < b->n_jobs; i++)
        if (b->jobs[i]->idempotency_key && (rc = s_submit_digest(b->jobs[i], digest[k])) == 0)
            keyed[k++] = b->jobs[i];
    for (size_t first = 0; rc == 0 && first < n_keyed; first += n) {
        size_t m = n_keyed - first < n ? n_keyed - first : n;
        int len = snprintf(sql, 512, "INSERT INTO jobs (" S_JOB_COLS ", idempotency_key,"
                                     " submit_sha256) VALUES ");
        for (size_t r = 0; r < m; r++) {
            const sq_job_t *j = keyed[first + r];
            int c = (int)(r * S_KEYED_COLS);
            snprintf(num[r][0], 24, "%" PRIu64, j->id);
            snprintf(num[r][1], 24, "%d", j->priority);
            snprintf(num[r][2], 24, "%d", j->max_attempts);
            snprintf(num[r][3], 24, "%u", j->n_tasks);
            snprintf(num[r][4], 24, "%" PRId64, j->created_wall_ms);
            const char *row[S_KEYED_COLS] = {num[r][0], j->tenant, j->model, j->adapter,
                                             num[r][1], num[r][2], j->params, num[r][3],
                                             num[r][4], j->idempotency_key, digest[first + r]};
            memcpy(p + c, row, sizeof row);
            len += sprintf(sql + len, "%s($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d,"
                           " to_timestamp($%d::bigint / 1000.0), $%d, $%d)", r ? ", " : "",
                           c + 1, c + 2, c + 3, c + 4, c + 5, c + 6, c + 7, c + 8, c + 9, c + 10,
                           c + 11);
        }
        snprintf(sql + len, 128, " ON CONFLICT (tenant, idempotency_key)"
                 " WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id");
        PGresult *res = NULL;
        rc = sq_db_exec(db, sql, (int)(m * S_KEYED_COLS), p, &res);
        if (rc == 0 && (size_t)PQntuples(res) < m) {
            /* the ones not stored (their key was in use): the ids returned,
             * sorted once, then looked up */
            size_t n_ret = (size_t)PQntuples(res);
            for (size_t t = 0; t < n_ret; t++)
                ret[t] = strtoull(PQgetvalue(res, (int)t, 0), NULL, 10);
            qsort(ret, n_ret, sizeof *ret, sq_u64_cmp);
            for (size_t r = 0; rc == 0 && r < m; r++)
                if (!bsearch(&keyed[first + r]->id, ret, n_ret, sizeof *ret, sq_u64_cmp))
                    rc = s_find_keyed(db, keyed[first + r], digest[first + r]);
        }
        PQclear(res);
    }
    free(num);
    free(digest);
    free(p);
    free(keyed);
    free(sql);
    free(ret);
    return rc;
}

/* jobs, tasks, task_queue and one 'submitted' audit row per job. */
static int s_write_jobs(sq_db_t *db, sq_batch_t *b)
{
    int rc = s_assign_job_ids(db, b);
    if (rc)
        return rc;
    sq_db_copy_t *jobs = sq_db_copy_new(), *tasks = sq_db_copy_new(), *queue = sq_db_copy_new(),
                 *audit = sq_db_copy_new();
    if (!jobs || !tasks || !queue || !audit) {
        rc = SQ_FAIL(SQ_ENOMEM, "out of memory");
        goto fail;
    }
    size_t n_keyed = 0;
    for (size_t i = 0; i < b->n_jobs; i++)
        n_keyed += b->jobs[i]->idempotency_key != NULL;
    if (n_keyed)
        rc = s_insert_keyed(db, b, n_keyed);
    for (size_t i = 0; rc == 0 && i < b->n_jobs; i++) {
        sq_job_t *j = b->jobs[i];
        if (j->same_as)
            continue;
        if (!j->idempotency_key) {
            s_copy_job_cols(jobs, j);
            sq_db_copy_end_row(jobs);
        }
        for (uint32_t k = 0; k < j->n_tasks; k++)
            s_copy_task(tasks, queue, &j->tasks[k]);
        char subject[32], actor[160], details[96];
        snprintf(subject, sizeof subject, "job:%" PRIu64, j->id);
        snprintf(actor, sizeof actor, "client:%s", j->tenant);
        snprintf(details, sizeof details, "{\"n_tasks\": %u, \"priority\": %d}", j->n_tasks,
                 j->priority);
        sq_copy_ts(audit, j->created_wall_ms);
        sq_db_copy_cstr(audit, actor);
        sq_db_copy_cstr(audit, "submitted");
        sq_db_copy_i64(audit, (int64_t)j->id);
        sq_db_copy_null(audit);
        sq_db_copy_cstr(audit, subject);
        sq_db_copy_cstr(audit, details);
        sq_db_copy_end_row(audit);
    }
    /* (a batch of only repeated keyed SUBMITs has no rows at all) */
    if (rc == 0 && sq_db_copy_rows(jobs))
        rc = sq_db_copy_send(db, "COPY jobs (" S_JOB_COLS ") FROM STDIN", jobs);
    if (rc == 0 && sq_db_copy_rows(tasks))
        rc = sq_db_copy_send(db, "COPY tasks (job_id, idx, custom_id, prompt, max_tokens,"
                                 " temperature, top_p, seed, body, adapter, adapter_version)"
                                 " FROM STDIN", tasks);
    if (rc == 0 && sq_db_copy_rows(queue))
        rc = sq_db_copy_send(db, "COPY task_queue (job_id, idx) FROM STDIN", queue);
    if (rc == 0 && sq_db_copy_rows(audit))
        rc = sq_db_copy_send(db, s_copy_audit, audit);
fail:
    sq_db_copy_destroy(&jobs);
    sq_db_copy_destroy(&tasks);
    sq_db_copy_destroy(&queue);
    sq_db_copy_destroy(&audit);
    return rc;
}

/* "{1,2,3}": a text-format array parameter. Caller frees. */
static char *s_array(const void *vals, size_t n, bool wide)
{
    char *out = malloc(n * 21 + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '{';
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, i ? ",%" PRIu64 : "%" PRIu64,
                     wide ? ((const uint64_t *)vals)[i] : (uint64_t)((const uint32_t *)vals)[i]);
    *o++ = '}';
    *o = '\0';
    return out;
}

/* First try: COPY straight into the tables. A batch retried after a
 * failed (possibly ambiguous) commit goes through staging tables and
 * ON CONFLICT DO NOTHING instead (or merge, for a table without a key to
 * conflict on), so nothing can be recorded twice. */
static int s_write_rows(sq_db_t *db, sq_batch_t *b, sq_db_copy_t *rows, const char *table,
                        const char *cols, const char *merge)
{
    char sql[512];
    if (!sq_db_copy_rows(rows))
        return 0;
    snprintf(sql, sizeof sql, "COPY %s%s (%s) FROM STDIN", b->retried ? "stage_" : "", table,
             cols);
    int rc = sq_db_copy_send(db, sql, rows);
    if (rc == 0 && b->retried) {
        snprintf(sql, sizeof sql, "INSERT INTO %s SELECT * FROM stage_%s ON CONFLICT DO NOTHING",
                 table, table);
        rc = sq_db_exec(db, merge ? merge : sql, 0, NULL, NULL);
    }
    return rc;
}

/* Take the batch's finished tasks out of task_queue: one primary-key probe
 * per task, so the cost follows the batch and not the backlog. Left to
 * itself the planner sees a batch of thousands against a large queue and
 * picks a hash join over a sequential scan of the whole table: with a
 * million tasks queued that is ~350 ms a batch instead of ~45 ms, and
 * throughput fell as the backlog grew. So hash and merge joins and
 * sequential scans are off for this one statement (set_config local to
 * the transaction, restored after it). */
static int s_dequeue(sq_db_t *db, sq_batch_t *b)
{
    char *jobs = s_array(b->res_job, b->n_res, true), *idx = s_array(b->res_idx, b->n_res, false);
    const char *p[2] = {jobs, idx};
    int rc = jobs && idx ? 0 : SQ_FAIL(SQ_ENOMEM, "out of memory");
    if (rc == 0)
        rc = sq_db_exec(db, "SELECT set_config('enable_seqscan', 'off', true),"
                            " set_config('enable_hashjoin', 'off', true),"
                            " set_config('enable_mergejoin', 'off', true)", 0, NULL, NULL);
    if (rc == 0)
        rc = sq_db_exec(db, "DELETE FROM task_queue q"
                            " USING unnest($1::bigint[], $2::int[]) AS d(j, i)"
                            " WHERE q.job_id = d.j AND q.idx = d.i", 2, p, NULL);
    if (rc == 0)
        rc = sq_db_exec(db, "SELECT set_config('enable_seqscan', 'on', true),"
                            " set_config('enable_hashjoin', 'on', true),"
                            " set_config('enable_mergejoin', 'on', true)", 0, NULL, NULL);
    free(jobs);
    free(idx);
    return rc;
}

/* A retried batch's audit rows: audit_log has no key to conflict on, so
 * those already there (the same event, to the millisecond: the batch may
 * have committed before, its COMMIT's answer lost, or its outcomes
 * committed on their connection while its jobs failed) are left out. */
static const char s_merge_audit[] =
    "INSERT INTO audit_log (" S_AUDIT_COLS ") SELECT s.at, s.actor, s.action, s.job_id, s.idx,"
    " s.subject, s.details FROM stage_audit_log s WHERE NOT EXISTS (SELECT 1 FROM audit_log a"
    " WHERE a.action = s.action AND a.at = s.at AND a.subject = s.subject AND a.actor = s.actor"
    " AND a.job_id IS NOT DISTINCT FROM s.job_id AND a.idx IS NOT DISTINCT FROM s.idx"
    " AND a.details = s.details)";

static int s_write_outcomes(sq_db_t *db, sq_batch_t *b)
{
    int rc = s_write_rows(db, b, b->attempts, "task_attempts",
                          "job_id, idx, attempt, lease_id, token, group_id, started_at,"
                          " ended_at, outcome, error", NULL);
    if (rc == 0)
        rc = s_write_rows(db, b, b->results, "task_results",
                          "job_id, idx, state, text, finish_reason, prompt_tokens,"
                          " completion_tokens, error, attempts, finished_at, lineage,"
                          " cached_tokens", NULL);
    if (rc == 0 && b->n_res)
        rc = s_dequeue(db, b);
    if (rc == 0)
        rc = s_write_rows(db, b, b->audit, "audit_log", S_AUDIT_COLS, s_merge_audit);
    return rc;
}

/* Remove the jobs of SUBMITs refused after a lost connection, if their
 * commit landed after all: they were never acknowledged, never loaded and
 * never dispatched, and their clients were told nothing was stored. The
 * audit log (append-only) keeps their "submitted" rows and says why each
 * one went. */
static int s_withdraw(sq_db_t *db, sq_batch_t *b)
{
    char *ids = s_array(b->withdraw_ids, b->n_withdraw, true);
    if (!ids)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    const char *p[1] = {ids};
    PGresult *res = NULL;
    int rc = sq_db_exec(db, "DELETE FROM task_queue WHERE job_id = ANY($1::bigint[])", 1, p,
                        NULL);
    if (rc == 0)
        rc = sq_db_exec(db, "DELETE FROM tasks WHERE job_id = ANY($1::bigint[])", 1, p, NULL);
    if (rc == 0)
        rc = sq_db_exec(db, "WITH gone AS (DELETE FROM jobs WHERE id = ANY($1::bigint[])"
                            " RETURNING id)"
                            " INSERT INTO audit_log (actor, action, job_id, subject, details)"
                            " SELECT 'broker', 'submit_withdrawn', id, 'job:' || id,"
                            " '{\"reason\": \"connection lost during the commit; the"
                            " SUBMIT was refused, so the job is not kept\"}'"
                            " FROM gone RETURNING job_id", 1, p, &res);
    if (rc == 0 && PQntuples(res) > 0)
        SQ_WARN("withdrew jobs stored by a commit whose answer was lost", "jobs=%d first=%s",
                PQntuples(res), PQgetvalue(res, 0, 0));
    PQclear(res);
    free(ids);
    return rc;
}

static int s_write_misc(sq_db_t *db, sq_batch_t *b)
{
    int rc = b->n_withdraw ? s_withdraw(db, b) : 0;
    for (size_t i = 0; rc == 0 && i < b->n_cancel; i++) {
        char id[24];
        snprintf(id, sizeof id, "%" PRIu64, b->cancel_ids[i]);
        const char *p[1] = {id};
        rc = sq_db_exec(db, "UPDATE jobs SET cancelled_at = now() WHERE id = $1"
                            " AND cancelled_at IS NULL", 1, p, NULL);
    }
    for (size_t i = 0; rc == 0 && i + 2 < b->n_worker_rows; i += 3)
        rc = sq_db_exec(db, "INSERT INTO workers (group_id, model, capabilities)"
                            " VALUES ($1, $2, $3::jsonb) ON CONFLICT (group_id) DO UPDATE"
                            " SET model = EXCLUDED.model, capabilities = EXCLUDED.capabilities,"
                            " last_seen = now()", 3, (const char *const *)b->worker_rows + i,
                        NULL);
    return rc;
}

/* One writer connection; `fresh` = temp staging tables not created yet. */
typedef struct {
    const char *conninfo;
    sq_db_t *db;
    bool fresh;
} s_conn_t;

static int s_open(s_conn_t *c)
{
    if (!c->db) {
        int rc = sq_db_connect(c->conninfo, 0, &c->db);
        if (rc)
            return rc;
        c->fresh = true;
    } else if (!sq_db_is_up(c->db)) {
        int rc = sq_db_reconnect(c->db);
        if (rc)
            return rc;
        c->fresh = true;
    }
    if (c->fresh) {
        int rc = sq_db_exec_script(c->db, s_stage_sql);
        if (rc)
            return rc;
        c->fresh = false;
    }
    return 0;
}

static bool s_has_outcomes(sq_batch_t *b)
{
    return sq_db_copy_rows(b->attempts) || sq_db_copy_rows(b->results) ||
           sq_db_copy_rows(b->audit) || b->n_cancel || b->n_worker_rows || b->n_withdraw;
}

/* Outcome half of a batch, left open (no COMMIT). Runs on its own thread. */
typedef struct {
    s_conn_t *conn;
    sq_batch_t *b;
    int rc;
    char error[512];
} s_half_t;

static int s_write_half(s_conn_t *c, sq_batch_t *b)
{
    int rc = s_open(c);
    if (rc == 0)
        rc = sq_db_begin(c->db);
    if (rc == 0)
        rc = s_write_outcomes(c->db, b);
    if (rc == 0)
        rc = s_write_misc(c->db, b);
    return rc;
}

static void *s_half_thread(void *arg)
{
    s_half_t *h = arg;
    h->rc = s_write_half(h->conn, h->b);
    snprintf(h->error, sizeof h->error, "%s", h->rc ? sq_error_detail() : "");
    return NULL;
}

static void s_rollback(s_conn_t *c)
{
    if (c->db)
        sq_db_rollback(c->db);
}

/* Everything on one connection, one transaction. */
static int s_commit_one(s_conn_t *c, sq_batch_t *b)
{
    int rc = s_open(c);
    if (rc == 0)
        rc = sq_db_begin(c->db);
    if (rc == 0 && b->n_jobs)
        rc = s_write_jobs(c->db, b);
    if (rc == 0)
        rc = s_write_outcomes(c->db, b);
    if (rc == 0)
        rc = s_write_misc(c->db, b);
    if (rc == 0)
        rc = sq_db_commit(c->db);
    if (rc)
        s_rollback(c);
    return rc;
}

/* A batch with both new jobs and outcomes: the two halves never depend on
 * each other's rows (tasks are dispatched only after their submit
 * committed), so they are written at the same time on two connections.
 * The COMMITs are ordered: outcomes first, and the jobs only if that
 * worked. So a failure never leaves jobs stored while their SUBMITs are
 * told "nothing was stored"; outcomes that committed before a failed jobs
 * COMMIT are retried idempotently (staging + ON CONFLICT). */
static int s_commit(s_conn_t *jobs, s_conn_t *outs, sq_batch_t *b)
{
    pthread_t thr;
    s_half_t half = {.conn = outs, .b = b};
    if (!b->n_jobs || !s_has_outcomes(b) || pthread_create(&thr, NULL, s_half_thread, &half))
        return s_commit_one(b->n_jobs ? jobs : outs, b);
    int rc = s_open(jobs);
    if (rc == 0)
        rc = sq_db_begin(jobs->db);
    if (rc == 0)
        rc = s_write_jobs(jobs->db, b);
    pthread_join(thr, NULL);
    if (rc == 0 && half.rc)
        rc = SQ_FAIL(half.rc, "%s", half.error);
    if (rc == 0)
        rc = sq_db_commit(outs->db);
    if (rc) {
        s_rollback(outs);
        s_rollback(jobs);
        return rc;
    }
    rc = sq_db_commit(jobs->db);
    if (rc)
        s_rollback(jobs);
    return rc;
}

/* ---- reader ---- */

static uint32_t s_u32(PGresult *res, int row, int col)
{
    return (uint32_t)strtoul(PQgetvalue(res, row, col), NULL, 10);
}

/* counts[] of a job that is not in memory: terminal counts from PG, the
 * rest reported as queued. */
static int s_job_row(sq_db_t *db, uint64_t job_id, PGresult **job, uint32_t counts[SQ_T_N])
{
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, job_id);
    const char *p[1] = {id};
    int rc = sq_db_exec(db,
                        "SELECT tenant, model, priority, n_tasks,"
                        " " SQ_STORE_EPOCH_MS("created_at") ","
                        " cancelled_at IS NOT NULL,"
                        " (SELECT count(*) FILTER (WHERE state = 'succeeded') FROM task_results"
                        "   WHERE job_id = $1),"
                        " (SELECT count(*) FILTER (WHERE state = 'dead') FROM task_results"
                        "   WHERE job_id = $1),"
                        " (SELECT count(*) FILTER (WHERE state = 'cancelled') FROM task_results"
                        "   WHERE job_id = $1),"
                        " params::text"
                        " FROM jobs WHERE id = $1",
                        1, p, job);
    if (rc)
        return rc;
    if (PQntuples(*job) == 0) {
        PQclear(*job);
        *job = NULL;
        return SQ_FAIL(SQ_ENOTFOUND, "no job %" PRIu64, job_id);
    }
    memset(counts, 0, SQ_T_N * sizeof counts[0]);
    counts[SQ_T_SUCCEEDED] = s_u32(*job, 0, 6);
    counts[SQ_T_DEAD] = s_u32(*job, 0, 7);
    counts[SQ_T_CANCELLED] = s_u32(*job, 0, 8);
    uint32_t n = s_u32(*job, 0, 3), term = counts[5] + counts[6] + counts[7];
    counts[SQ_T_QUEUED] = n > term ? n - term : 0;
    return 0;
}

/* Shared by the loop (jobs in memory) and the reader (jobs in PG). */
void sq_store_encode_counts(sq_wire_enc_t *e, const uint32_t c[SQ_T_N]);
void sq_store_encode_counts(sq_wire_enc_t *e, const uint32_t c[SQ_T_N])
{
    sq_wire_key(e, "counts");
    sq_wire_map(e, 6);
    sq_wire_kv_u64(e, "queued", c[SQ_T_QUEUED] + c[SQ_T_SUBMITTING]);
    sq_wire_kv_u64(e, "leased", c[SQ_T_LEASED] + c[SQ_T_COMPLETING]);
    sq_wire_kv_u64(e, "retrying", c[SQ_T_RETRYING]);
    sq_wire_kv_u64(e, "succeeded", c[SQ_T_SUCCEEDED]);
    sq_wire_kv_u64(e, "dead", c[SQ_T_DEAD]);
    sq_wire_kv_u64(e, "cancelled", c[SQ_T_CANCELLED]);
}

static int s_read_status(sq_db_t *db, sq_read_t *op, sq_wire_enc_t *e)
{
    PGresult *job = NULL;
    uint32_t counts[SQ_T_N];
    int rc = s_job_row(db, op->job_id, &job, counts);
    if (rc)
        return rc;
    uint32_t n = s_u32(job, 0, 3);
    bool cancelled = PQgetvalue(job, 0, 5)[0] == 't';
    const char *state = sq_job_state_name(counts, n, cancelled);
    if (op->kind == SQ_READ_CANCEL) {
        sq_wire_map(e, 4);
        sq_wire_kv_u64(e, "rid", op->rid);
        sq_wire_kv_u64(e, "job_id", op->job_id);
        sq_wire_kv_u64(e, "cancelled", 0);
        sq_wire_kv_str(e, "state", state);
    } else {
        const bool params = !PQgetisnull(job, 0, 9);
        sq_wire_map(e, params ? 10 : 9);
        sq_wire_kv_u64(e, "rid", op->rid);
        sq_wire_kv_u64(e, "job_id", op->job_id);
        sq_wire_kv_str(e, "tenant", PQgetvalue(job, 0, 0));
        sq_wire_kv_str(e, "model", PQgetvalue(job, 0, 1));
        sq_wire_kv_u64(e, "priority", s_u32(job, 0, 2));
        sq_wire_kv_str(e, "state", state);
        sq_wire_kv_u64(e, "n_tasks", n);
        sq_wire_kv_u64(e, "created_at", strtoull(PQgetvalue(job, 0, 4), NULL, 10));
        if (params)   /* the job's kind of results (chat or not) is in it */
            sq_wire_kv_str(e, "params", PQgetvalue(job, 0, 9));
        sq_store_encode_counts(e, counts);
    }
    PQclear(job);
    return 0;
}

static void s_kv_text(sq_wire_enc_t *e, const char *key, PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        sq_wire_kv_nil(e, key);
    else
        sq_wire_kv_strn(e, key, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
}

static void s_kv_int(sq_wire_enc_t *e, const char *key, PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        sq_wire_kv_nil(e, key);
    else
        sq_wire_kv_u64(e, key, strtoull(PQgetvalue(res, row, col), NULL, 10));
}

/* A RESULTS page ends before its rows pass this many bytes (a row counted
 * as its strings plus S_RESULT_FIXED_BYTES for keys, numbers and headers),
 * so the reply stays under the body cap whatever the limit; a page holds
 * one row at least, and one always fits (text <= 4 MiB). */
#define S_RESULT_FIXED_BYTES 256
#define S_RESULTS_PAGE_BYTES (SQ_WIRE_MAX_BODY / 2)
_Static_assert(S_RESULTS_PAGE_BYTES + S_RESULT_FIXED_BYTES + SQ_WIRE_MAX_ID +
                   2 * SQ_WIRE_MAX_TEXT + 256 < SQ_WIRE_MAX_BODY,
               "a RESULTS page stays under the body cap");

/* Rows after $2 in index order, $3 at most, cut where their running size
 * passes $4 bytes (the first row always kept; each row counts $5 bytes on
 * top of its strings). n_rows counts the rows before the cut, to tell a
 * page cut short from the end. The cut is made in PostgreSQL (sizes from
 * octet_length, which needs no detoasting), so the rows left out never
 * reach the reader. */
static const char s_results_sql[] =
    "SELECT idx, custom_id, state, text, finish_reason, prompt_tokens, completion_tokens,"
    " error, attempts, cached_tokens, n_rows, finished_ms"
    " FROM (SELECT p.*, sum(p.size) OVER (ORDER BY p.idx) AS upto, count(*) OVER () AS n_rows"
    "       FROM (SELECT r.idx, t.custom_id, r.state, r.text, r.finish_reason,"
    "              r.prompt_tokens, r.completion_tokens, r.error, r.attempts, r.cached_tokens,"
    "              " SQ_STORE_EPOCH_MS("r.finished_at") " AS finished_ms,"
    "              octet_length(t.custom_id) + octet_length(r.state)"
    "              + coalesce(octet_length(r.text), 0) + coalesce(octet_length(r.error), 0)"
    "              + coalesce(octet_length(r.finish_reason), 0)"
    "              + $5 AS size"
    "             FROM task_results r JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx"
    "             WHERE r.job_id = $1 AND r.idx > $2 ORDER BY r.idx LIMIT $3) p) q"
    " WHERE upto = size OR upto <= $4"
    " ORDER BY idx";

static int s_read_results(sq_db_t *db, sq_read_t *op, sq_wire_enc_t *e)
{
    PGresult *job = NULL, *res = NULL;
    uint32_t counts[SQ_T_N];
    int rc = s_job_row(db, op->job_id, &job, counts);
    if (rc)
        return rc;
    uint32_t n_tasks = s_u32(job, 0, 3);
    uint32_t term = counts[SQ_T_SUCCEEDED] + counts[SQ_T_DEAD] + counts[SQ_T_CANCELLED];
    PQclear(job);
    char id[24], after[24], limit[24], bytes[24], fixed[24];
    snprintf(id, sizeof id, "%" PRIu64, op->job_id);
    snprintf(after, sizeof after, "%" PRIu64, op->after);
    snprintf(limit, sizeof limit, "%" PRIu64, op->limit);
    snprintf(bytes, sizeof bytes, "%u", (unsigned)S_RESULTS_PAGE_BYTES);
    snprintf(fixed, sizeof fixed, "%d", S_RESULT_FIXED_BYTES);
    const char *p[5] = {id, after, limit, bytes, fixed};
    rc = sq_db_exec(db, s_results_sql, 5, p, &res);
    if (rc)
        return rc;
    int n = PQntuples(res);
    uint64_t next = n ? strtoull(PQgetvalue(res, n - 1, 0), NULL, 10) : op->after;
    uint64_t n_rows = n ? strtoull(PQgetvalue(res, 0, 10), NULL, 10) : 0;
    /* done: every task is terminal and this page reached the last one (it
     * was neither full nor cut short by its size) */
    bool done = term == n_tasks && (uint64_t)n == n_rows && (uint64_t)n < op->limit;
    sq_wire_map(e, 6);
    sq_wire_kv_u64(e, "rid", op->rid);
    sq_wire_kv_u64(e, "job_id", op->job_id);
    sq_wire_kv_u64(e, "next", next);
    sq_wire_kv_bool(e, "done", done);
    /* every task terminal: a reader whose cursor passed tasks while the
     * job ran goes back for them (client/sq_client_results.c) */
    sq_wire_kv_bool(e, "finished", term == n_tasks);
    sq_wire_key(e, "results");
    sq_wire_array(e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        sq_wire_map(e, 11);
        s_kv_int(e, "index", res, i, 0);
        s_kv_text(e, "custom_id", res, i, 1);
        s_kv_text(e, "state", res, i, 2);
        s_kv_text(e, "text", res, i, 3);
        s_kv_text(e, "finish_reason", res, i, 4);
        s_kv_int(e, "prompt_tokens", res, i, 5);
        s_kv_int(e, "completion_tokens", res, i, 6);
        s_kv_text(e, "error", res, i, 7);
        s_kv_int(e, "attempts", res, i, 8);
        s_kv_int(e, "cached_tokens", res, i, 9);
        s_kv_int(e, "finished_at_ms", res, i, 11);
    }
    PQclear(res);
    return 0;
}

/* A page of at most limit jobs of tenant (NULL: all), newest first, with
 * ids below before (0: from the newest) and their result counts. */
static int s_list_page(sq_db_t *db, const char *tenant, uint64_t before, uint64_t limit,
                       PGresult **res)
{
    char b[24], l[24];
    snprintf(b, sizeof b, "%" PRIu64, before);
    snprintf(l, sizeof l, "%" PRIu64, limit);
    const char *p[3] = {tenant, b, l};
    return sq_db_exec(db,
                      "SELECT j.id, j.tenant, j.model, j.priority, j.n_tasks,"
                      " " SQ_STORE_EPOCH_MS("j.created_at") ","
                      " j.cancelled_at IS NOT NULL, c.s, c.d, c.c"
                      " FROM jobs j, LATERAL (SELECT"
                      "   count(*) FILTER (WHERE state = 'succeeded') AS s,"
                      "   count(*) FILTER (WHERE state = 'dead') AS d,"
                      "   count(*) FILTER (WHERE state = 'cancelled') AS c"
                      "   FROM task_results r WHERE r.job_id = j.id) c"
                      " WHERE ($1::text IS NULL OR j.tenant = $1)"
                      "   AND ($2::bigint = 0 OR j.id < $2)"
                      " ORDER BY j.id DESC LIMIT $3",
                      3, p, res);
}

/* a listed job's state, from its row of s_list_page */
static const char *s_list_state(PGresult *res, int i)
{
    uint32_t c[SQ_T_N] = {0};
    uint32_t n_tasks = s_u32(res, i, 4);
    c[SQ_T_SUCCEEDED] = s_u32(res, i, 7);
    c[SQ_T_DEAD] = s_u32(res, i, 8);
    c[SQ_T_CANCELLED] = s_u32(res, i, 9);
    uint32_t term = c[SQ_T_SUCCEEDED] + c[SQ_T_DEAD] + c[SQ_T_CANCELLED];
    /* unfinished: all queued if nothing finished yet, else running */
    c[term ? SQ_T_LEASED : SQ_T_QUEUED] = n_tasks - (term < n_tasks ? term : n_tasks);
    return sq_job_state_name(c, n_tasks, PQgetvalue(res, i, 6)[0] == 't');
}

typedef struct {
    PGresult *res;
    int row;
    const char *state;
} s_listed_t;

/* Jobs newest first, op->limit at most. A state filter is applied to the
 * jobs in order, page after page, until the limit is reached or the jobs
 * run out: the state is derived from the results (sq_job_state_name), so
 * it cannot go into the query, and filtering one page alone would miss
 * every matching job older than it. */
static int s_read_list(sq_db_t *db, sq_read_t *op, sq_wire_enc_t *e)
{
    const uint64_t page = op->state && op->limit < 500 ? 500 : op->limit;
    s_listed_t *hits = calloc(op->limit, sizeof *hits);
    PGresult **pages = NULL;
    size_t n_pages = 0, kept = 0;
    uint64_t before = op->after, next = 0;
    int rc = hits ? 0 : SQ_FAIL(SQ_ENOMEM, "list of %" PRIu64 " jobs", op->limit);
    while (rc == 0) {
        PGresult *res = NULL, **grown = realloc(pages, (n_pages + 1) * sizeof *pages);
        if (!grown) {
            rc = SQ_FAIL(SQ_ENOMEM, "list pages");
            break;
        }
        pages = grown;
        if ((rc = s_list_page(db, op->tenant, before, page, &res)))
            break;
        pages[n_pages++] = res;
        const int n = PQntuples(res);
        for (int i = 0; i < n && kept < op->limit; i++) {
            const char *st = s_list_state(res, i);
            before = strtoull(PQgetvalue(res, i, 0), NULL, 10);
            if (!op->state || strcmp(op->state, st) == 0)
                hits[kept++] = (s_listed_t){res, i, st};
        }
        if (kept == op->limit) {   /* there may be more: the last one is the cursor */
            next = strtoull(PQgetvalue(hits[kept - 1].res, hits[kept - 1].row, 0), NULL, 10);
            break;
        }
        if ((uint64_t)n < page)    /* the jobs ran out */
            break;
    }
    if (rc == 0) {
        sq_wire_map(e, 3);
        sq_wire_kv_u64(e, "rid", op->rid);
        sq_wire_kv_u64(e, "next", next);
        sq_wire_key(e, "jobs");
        sq_wire_array(e, (uint32_t)kept);
        for (size_t k = 0; k < kept; k++) {
            PGresult *res = hits[k].res;
            const int i = hits[k].row;
            sq_wire_map(e, 7);
            s_kv_int(e, "job_id", res, i, 0);
            s_kv_text(e, "tenant", res, i, 1);
            s_kv_text(e, "model", res, i, 2);
            s_kv_int(e, "priority", res, i, 3);
            sq_wire_kv_str(e, "state", hits[k].state);
            s_kv_int(e, "n_tasks", res, i, 4);
            s_kv_int(e, "created_at", res, i, 5);
        }
    }
    for (size_t k = 0; k < n_pages; k++)
        PQclear(pages[k]);
    free(pages);
    free(hits);
    return rc;
}

/* The scheduler's decisions since op->after (unix ms), newest first. */
static int s_read_scaling(sq_db_t *db, sq_read_t *op, sq_wire_enc_t *e)
{
    char since[24], limit[24];
    snprintf(since, sizeof since, "%" PRIu64, op->after);
    snprintf(limit, sizeof limit, "%" PRIu64, op->limit);
    const char *p[3] = {since, op->pool, limit};
    PGresult *res = NULL;
    int rc = sq_db_exec(db,
                        "SELECT " SQ_STORE_EPOCH_MS("at") ", pool, from_groups,"
                        " to_groups, reason, applied, error, actuator, policy_version,"
                        " metrics::text FROM scaling_events"
                        " WHERE at >= to_timestamp($1::bigint / 1000.0)"
                        "   AND ($2::text IS NULL OR pool = $2)"
                        " ORDER BY at DESC, id DESC LIMIT $3",
                        3, p, &res);
    if (rc)
        return rc;
    int n = PQntuples(res);
    sq_wire_map(e, 2);
    sq_wire_kv_u64(e, "rid", op->rid);
    sq_wire_key(e, "events");
    sq_wire_array(e, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        sq_wire_map(e, 10);
        s_kv_int(e, "at", res, i, 0);
        s_kv_text(e, "pool", res, i, 1);
        s_kv_int(e, "from", res, i, 2);
        s_kv_int(e, "to", res, i, 3);
        s_kv_text(e, "reason", res, i, 4);
        sq_wire_kv_bool(e, "applied", PQgetvalue(res, i, 5)[0] == 't');
        s_kv_text(e, "error", res, i, 6);
        s_kv_text(e, "actuator", res, i, 7);
        s_kv_int(e, "policy_version", res, i, 8);
        s_kv_text(e, "metrics", res, i, 9);
    }
    PQclear(res);
    return 0;
}

static int s_read(sq_db_t *db, sq_read_t *op)
{
    op->reply = sq_wire_enc_new();
    if (!op->reply)
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    switch (op->kind) {
    case SQ_READ_RESULTS: return s_read_results(db, op, op->reply);
    case SQ_READ_LIST: return s_read_list(db, op, op->reply);
    case SQ_READ_SCALING: return s_read_scaling(db, op, op->reply);
    default: return s_read_status(db, op, op->reply);
    }
}

void sq_read_destroy(sq_read_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_read_t *op = *self_p;
    zframe_destroy(&op->to);
    sq_wire_enc_destroy(&op->reply);
    free(op->state);
    free(op->tenant);
    free(op->pool);
    free(op);
    *self_p = NULL;
}

/* ---- actors ---- */

static void s_actor(zsock_t *pipe, void *arg)
{
    s_actor_args_t *args = arg;
    /* the writer has two connections (jobs, outcomes); the reader uses one */
    s_conn_t conn[2] = {{.conninfo = args->conninfo}, {.conninfo = args->conninfo}};
    /* A first connection failure is fine: each job reconnects. */
    s_open(&conn[0]);
    zsock_signal(pipe, 0);
    for (;;) {
        char *cmd = NULL;
        void *ptr = NULL;
        if (zsock_recv(pipe, "sp", &cmd, &ptr) != 0)
            break;
        bool term = streq(cmd, "$TERM");
        zstr_free(&cmd);
        if (term)
            break;
        int rc;
        if (args->writer) {
            sq_batch_t *b = ptr;
            rc = s_commit(&conn[0], &conn[1], b);
            b->rc = rc;
            snprintf(b->error, sizeof b->error, "%s", rc ? sq_error_detail() : "");
        } else {
            sq_read_t *op = ptr;
            rc = s_open(&conn[0]);
            if (rc == 0)
                rc = s_read(conn[0].db, op);
            op->rc = rc;
            snprintf(op->error, sizeof op->error, "%s", rc ? sq_error_detail() : "");
        }
        zsock_send(pipe, "p", ptr);
    }
    sq_db_destroy(&conn[0].db);
    sq_db_destroy(&conn[1].db);
    free(args);
}

static zactor_t *s_start(const char *conninfo, bool writer)
{
    s_actor_args_t *args = calloc(1, sizeof *args);
    if (!args)
        return NULL;
    args->conninfo = conninfo;
    args->writer = writer;
    return zactor_new(s_actor, args);
}

sq_store_t *sq_store_new(const char *conninfo)
{
    sq_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->writer = s_start(conninfo, true);
    self->reader = s_start(conninfo, false);
    if (!self->writer || !self->reader)
        sq_store_destroy(&self);
    return self;
}

void sq_store_destroy(sq_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zactor_destroy(&(*self_p)->writer);
    zactor_destroy(&(*self_p)->reader);
    free(*self_p);
    *self_p = NULL;
}

zactor_t *sq_store_writer(sq_store_t *self) { return self->writer; }
zactor_t *sq_store_reader(sq_store_t *self) { return self->reader; }

int sq_store_commit(sq_store_t *self, sq_batch_t *batch)
{
    return zsock_send(self->writer, "sp", "BATCH", batch) == 0 ? 0 : SQ_EIO;
}

static void *s_take(zactor_t *actor)
{
    void *ptr = NULL;
    return zsock_recv(actor, "p", &ptr) == 0 ? ptr : NULL;
}

sq_batch_t *sq_store_committed(sq_store_t *self) { return s_take(self->writer); }

int sq_store_read(sq_store_t *self, sq_read_t *op)
{
    return zsock_send(self->reader, "sp", "READ", op) == 0 ? 0 : SQ_EIO;
}

sq_read_t *sq_store_read_done(sq_store_t *self) { return s_take(self->reader); }
