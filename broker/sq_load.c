/*  sq_load: rebuild the in-memory queue from PostgreSQL at start.
 *
 *  Only the hot table task_queue is scanned (unfinished tasks), so start-up
 *  time follows the backlog, not the history. Rows stream in single-row
 *  mode so a million queued tasks never sit in one PGresult.
 */
#include "sq_store.h"

#include "sq_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *s_dup_or_null(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

static int s_load_jobs(sq_db_t *db, zhashx_t *jobs)
{
    PGresult *res = NULL;
    int rc = sq_db_exec(db,
                        "SELECT j.id, j.tenant, j.model, j.adapter, j.priority, j.max_attempts,"
                        " j.params, j.n_tasks,"
                        " " SQ_STORE_EPOCH_MS("j.created_at") ","
                        " j.cancelled_at IS NOT NULL"
                        " FROM jobs j WHERE j.id IN (SELECT DISTINCT job_id FROM task_queue)"
                        " ORDER BY j.id",
                        0, NULL, &res);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        sq_job_t *job = sq_job_new((uint32_t)strtoul(PQgetvalue(res, i, 7), NULL, 10));
        if (!job) {
            PQclear(res);
            return SQ_FAIL(SQ_ENOMEM, "rebuild: out of memory");
        }
        job->id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        job->tenant = s_dup_or_null(res, i, 1);
        job->model = s_dup_or_null(res, i, 2);
        job->adapter = s_dup_or_null(res, i, 3);
        job->priority = atoi(PQgetvalue(res, i, 4));
        job->max_attempts = atoi(PQgetvalue(res, i, 5));
        job->params = s_dup_or_null(res, i, 6);
        job->created_wall_ms = strtoll(PQgetvalue(res, i, 8), NULL, 10);
        job->cancelled = PQgetvalue(res, i, 9)[0] == 't';
        for (uint32_t k = 0; k < job->n_tasks; k++)
            job->tasks[k].state = SQ_T_DONE;
        zhashx_insert(jobs, &job->id, job);
    }
    PQclear(res);
    return 0;
}

static int s_load_counts(sq_db_t *db, zhashx_t *jobs)
{
    PGresult *res = NULL;
    int rc = sq_db_exec(db,
                        "SELECT r.job_id, r.state, count(*) FROM task_results r"
                        " WHERE r.job_id IN (SELECT DISTINCT job_id FROM task_queue)"
                        " GROUP BY 1, 2",
                        0, NULL, &res);
    if (rc)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        uint64_t id = strtoull(PQgetvalue(res, i, 0), NULL, 10);
        sq_job_t *job = zhashx_lookup(jobs, &id);
        const char *st = PQgetvalue(res, i, 1);
        int s = strcmp(st, "succeeded") == 0 ? SQ_T_SUCCEEDED
                : strcmp(st, "dead") == 0    ? SQ_T_DEAD
                                             : SQ_T_CANCELLED;
        if (job)
            job->counts[s] = (uint32_t)strtoul(PQgetvalue(res, i, 2), NULL, 10);
    }
    PQclear(res);
    return 0;
}

/* Fill one unfinished task from a streamed row. */
static int s_fill_task(sq_task_t *t, PGresult *res)
{
    size_t cid = (size_t)PQgetlength(res, 0, 2), prompt = (size_t)PQgetlength(res, 0, 3);
    bool has_body = !PQgetisnull(res, 0, 8);
    size_t body = has_body ? (size_t)PQgetlength(res, 0, 8) : 0;
    bool has_adapter = !PQgetisnull(res, 0, 10);
    size_t nad = has_adapter ? (size_t)PQgetlength(res, 0, 10) : 0;
    size_t nver = has_adapter ? (size_t)PQgetlength(res, 0, 11) : 0;
    t->data = malloc(cid + prompt + body + nad + nver + 5);
    if (!t->data)
        return SQ_FAIL(SQ_ENOMEM, "rebuild: out of memory");
    memcpy(t->data, PQgetvalue(res, 0, 2), cid + 1);
    t->prompt_off = (uint32_t)(cid + 1);
    memcpy(t->data + t->prompt_off, PQgetvalue(res, 0, 3), prompt + 1);
    t->body_off = has_body ? (uint32_t)(cid + prompt + 2) : 0;
    if (has_body)
        memcpy(t->data + t->body_off, PQgetvalue(res, 0, 8), body + 1);
    if (has_adapter) {
        t->adapter_off = (uint32_t)(cid + prompt + 2 + (has_body ? body + 1 : 0));
        memcpy(t->data + t->adapter_off, PQgetvalue(res, 0, 10), nad + 1);
        memcpy(t->data + t->adapter_off + nad + 1, PQgetvalue(res, 0, 11), nver + 1);
    }
    t->max_tokens = (uint32_t)strtoul(PQgetvalue(res, 0, 4), NULL, 10);
    t->temperature = strtod(PQgetvalue(res, 0, 5), NULL);
    t->top_p = strtod(PQgetvalue(res, 0, 6), NULL);
    t->has_seed = !PQgetisnull(res, 0, 7);
    t->seed = t->has_seed ? strtoull(PQgetvalue(res, 0, 7), NULL, 10) : 0;
    t->attempts = (uint16_t)strtoul(PQgetvalue(res, 0, 9), NULL, 10);
    t->state = SQ_T_SUBMITTING;
    return 0;
}

static int s_load_tasks(sq_db_t *db, zhashx_t *jobs, size_t *n_tasks)
{
    PGconn *conn = sq_db_conn(db);
    if (!PQsendQueryParams(conn,
                           "SELECT q.job_id, q.idx, t.custom_id, t.prompt, t.max_tokens,"
                           " t.temperature, t.top_p, t.seed, t.body,"
                           " (SELECT count(*) FROM task_attempts a"
                           "   WHERE a.job_id = q.job_id AND a.idx = q.idx),"
                           " t.adapter, coalesce(t.adapter_version, '')"
                           " FROM task_queue q JOIN tasks t ON t.job_id = q.job_id"
                           "   AND t.idx = q.idx",
                           0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode(conn))
        return SQ_DB_FAIL(db, NULL, "rebuild: task query");
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE && rc == 0) {
            uint64_t id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
            uint32_t idx = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
            sq_job_t *job = zhashx_lookup(jobs, &id);
            if (job && idx >= 1 && idx <= job->n_tasks) {
                rc = s_fill_task(&job->tasks[idx - 1], res);
                (*n_tasks)++;
            }
        } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE && rc == 0) {
            rc = SQ_DB_FAIL(db, res, "rebuild: task query");
        }
        PQclear(res);
    }
    return rc;
}

int sq_store_load(sq_db_t *db, void (*add)(void *arg, sq_job_t *job), void *arg,
                  size_t *n_jobs, size_t *n_tasks)
{
    *n_jobs = *n_tasks = 0;
    zhashx_t *jobs = sq_u64_hash_new(); /* &job->id -> job */
    if (!jobs)
        return SQ_FAIL(SQ_ENOMEM, "rebuild: out of memory");
    int rc = s_load_jobs(db, jobs);
    if (rc == 0)
        rc = s_load_counts(db, jobs);
    if (rc == 0)
        rc = s_load_tasks(db, jobs, n_tasks);
    for (sq_job_t *job = zhashx_first(jobs); job; job = zhashx_next(jobs)) {
        if (rc == 0) {
            add(arg, job);
            (*n_jobs)++;
        } else {
            sq_job_destroy(&job);
        }
    }
    zhashx_destroy(&jobs);
    return rc;
}
