/*  sq_migrate: apply and check the embedded migrations. See sq_migrate.h. */
#include "sq_migrate.h"

#include "sq_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char s_create[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";

/* Is `name` recorded? 1 yes, 0 no, <0 error. */
static int s_applied(sq_db_t *db, const char *name)
{
    PGresult *res = NULL;
    const char *p[1] = {name};
    int rc = sq_db_exec(db, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, p, &res);
    if (rc)
        return rc;
    rc = PQntuples(res) > 0;
    PQclear(res);
    return rc;
}

static int s_apply_one(sq_db_t *db, const sq_migration_t *m, int *n_applied)
{
    int rc = sq_db_begin(db);
    if (rc)
        return rc;
    /* one migrator at a time; the lock ends with the transaction */
    rc = sq_db_exec(db, "SELECT pg_advisory_xact_lock(7165247)", 0, NULL, NULL);
    int done = rc ? rc : s_applied(db, m->name);
    if (done < 0) {
        rc = done;
    } else if (done == 0) {
        const char *p[1] = {m->name};
        rc = sq_db_exec_script(db, m->sql);
        if (rc == 0)
            rc = sq_db_exec(db, "INSERT INTO schema_migrations (name) VALUES ($1)", 1, p, NULL);
        if (rc == 0 && n_applied)
            (*n_applied)++;
    }
    if (rc) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", sq_error_detail());
        sq_db_rollback(db);
        return SQ_FAIL(rc, "migration %s: %s", m->name, detail);
    }
    return sq_db_commit(db);
}

int sq_migrate_apply(sq_db_t *db, int *n_applied)
{
    if (n_applied)
        *n_applied = 0;
    int rc = sq_db_exec(db, s_create, 0, NULL, NULL);
    for (int i = 0; rc == 0 && i < sq_n_migrations; i++)
        rc = s_apply_one(db, &sq_migrations[i], n_applied);
    return rc;
}

int sq_migrate_check(sq_db_t *db)
{
    PGresult *res = NULL;
    int rc = sq_db_exec(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", 0, NULL, &res);
    if (rc)
        return rc;
    bool exists = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    for (int i = 0; i < sq_n_migrations; i++) {
        int applied = exists ? s_applied(db, sq_migrations[i].name) : 0;
        if (applied < 0)
            return applied;
        if (!applied)
            return SQ_FAIL(SQ_ESTATE, "migration %s not applied: run shardq-broker --migrate",
                           sq_migrations[i].name);
    }
    return 0;
}
