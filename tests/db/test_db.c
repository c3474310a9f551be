/*  test_db: the schema against a real PostgreSQL.
 *
 *  Each run makes a fresh database next to SHARDQ_TEST_DB (keyword-form
 *  conninfo; the test appends its own dbname), then:
 *    migrate        shardq-broker --migrate, twice: both exit 0, the second
 *                   applies nothing, schema_migrations lists every file once;
 *    audit_trigger  audit_log refuses UPDATE, DELETE and TRUNCATE;
 *    queries        every file in sql/queries runs as-is through psql with
 *                   its documented variables against seeded rows, and
 *                   returns what the seed implies (duplicate_results is
 *                   empty, then flags a planted inconsistency).
 *  Env: SHARDQ_TEST_DB, SHARDQ_BROKER_BIN, SHARDQ_SQL_DIR.
 */
#define _GNU_SOURCE
#include "sq_db.h"
#include "sq_error.h"
#include "sq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char s_base[1024], s_conninfo[1200], s_dbname[64];
static sq_db_t *s_db;

/* Run a shell command, capture stdout (up to cap bytes). Exit status. */
static int s_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t n = 0, got;
    char sink[4096];
    while ((got = fread(out ? out + n : sink, 1, out ? cap - 1 - n : sizeof sink, p)) > 0)
        if (out)
            n += got;
    if (out)
        out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int s_exec(const char *sql) { return sq_db_exec(s_db, sql, 0, NULL, NULL); }

static long s_count(const char *sql)
{
    PGresult *res = NULL;
    if (sq_db_exec(s_db, sql, 0, NULL, &res) != 0)
        return -1;
    long v = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

static int s_setup(void)
{
    const char *base = sq_test_env_or_skip("SHARDQ_TEST_DB");
    snprintf(s_base, sizeof s_base, "%s", base);
    snprintf(s_dbname, sizeof s_dbname, "sq_dbtest_%d", (int)getpid());
    snprintf(s_conninfo, sizeof s_conninfo, "%s dbname=%s", s_base, s_dbname);
    sq_db_t *admin = NULL;
    char admin_ci[1200], sql[128];
    snprintf(admin_ci, sizeof admin_ci, "%s dbname=postgres", s_base);
    if (sq_db_connect(admin_ci, 10000, &admin) != 0)
        return -1;
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", s_dbname);
    int rc = sq_db_exec(admin, sql, 0, NULL, NULL);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", s_dbname);
    if (rc == 0)
        rc = sq_db_exec(admin, sql, 0, NULL, NULL);
    sq_db_destroy(&admin);
    return rc;
}

static void s_teardown(void)
{
    sq_db_destroy(&s_db);
    sq_db_t *admin = NULL;
    char admin_ci[1200], sql[128];
    snprintf(admin_ci, sizeof admin_ci, "%s dbname=postgres", s_base);
    if (sq_db_connect(admin_ci, 10000, &admin) == 0) {
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", s_dbname);
        sq_db_exec(admin, sql, 0, NULL, NULL);
    }
    sq_db_destroy(&admin);
}

static void migrate(void)
{
    const char *bin = getenv("SHARDQ_BROKER_BIN");
    SQ_REQUIRE(bin != NULL);
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, "'%s' --migrate --db '%s' 2>&1", bin, s_conninfo);
    SQ_CHECK(s_run(cmd, out, sizeof out) == 0);
    SQ_CHECK(strstr(out, "applied=0") == NULL);
    SQ_CHECK(s_run(cmd, out, sizeof out) == 0);
    SQ_CHECK(strstr(out, "applied=0") != NULL); /* second run is a no-op */
    SQ_REQUIRE(sq_db_connect(s_conninfo, 10000, &s_db) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM schema_migrations WHERE name = '0001_queue.sql'") == 1);
    SQ_CHECK(s_count("SELECT count(*) - count(DISTINCT name) FROM schema_migrations") == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM pg_tables WHERE tablename IN ('jobs', 'tasks',"
                     " 'task_queue', 'task_attempts', 'task_results', 'audit_log', 'workers')")
             == 7);
    /* a bad --db fails clearly with the documented exit code */
    snprintf(cmd, sizeof cmd, "'%s' --migrate --db 'host=/nonexistent dbname=x' 2>&1", bin);
    SQ_CHECK(s_run(cmd, out, sizeof out) == 3);
    SQ_CHECK(strstr(out, "migration failed") != NULL);
}

static void audit_trigger(void)
{
    SQ_REQUIRE(s_db != NULL);
    SQ_REQUIRE(s_exec("INSERT INTO audit_log (actor, action, subject) VALUES"
                      " ('test', 'probe', 'job:0')") == 0);
    SQ_CHECK(s_exec("UPDATE audit_log SET action = 'forged'") == SQ_EDB);
    SQ_CHECK(strstr(sq_error_detail(), "append-only") != NULL);
    SQ_CHECK(s_exec("DELETE FROM audit_log") == SQ_EDB);
    SQ_CHECK(s_exec("TRUNCATE audit_log") == SQ_EDB);
    SQ_CHECK(s_count("SELECT count(*) FROM audit_log WHERE action = 'probe'") == 1);
    /* the adapter history too */
    SQ_REQUIRE(s_exec("INSERT INTO lora_events (name, version, from_state, to_state, actor)"
                      " VALUES ('fin', 'v1', NULL, 'staged', 'test')") == 0);
    SQ_CHECK(s_exec("UPDATE lora_events SET actor = 'forged'") == SQ_EDB);
    SQ_CHECK(strstr(sq_error_detail(), "lora_events is append-only") != NULL);
    SQ_CHECK(s_exec("DELETE FROM lora_events") == SQ_EDB);
    SQ_CHECK(s_exec("TRUNCATE lora_events") == SQ_EDB);
    SQ_CHECK(s_count("SELECT count(*) FROM lora_events WHERE actor = 'test'") == 1);
}

/* Two jobs: acme (3 tasks: ok, ok after a retry, dead after two failures)
 * and beta (2 tasks, cancelled). */
static const char s_seed[] =
    "INSERT INTO jobs (id, tenant, model, n_tasks) VALUES (101, 'acme', 'm', 3),"
    " (102, 'beta', 'm', 2);"
    "INSERT INTO tasks (job_id, idx, custom_id, prompt, max_tokens, temperature, top_p)"
    " SELECT j, i, 'c-' || i, 'p', 8, 0, 1 FROM (VALUES (101, 1), (101, 2), (101, 3),"
    " (102, 1), (102, 2)) v(j, i);"
    "INSERT INTO task_attempts (job_id, idx, attempt, lease_id, token, group_id, started_at,"
    " ended_at, outcome, error) VALUES"
    " (101, 1, 1, 1, 11, 'g1', now() - interval '5 s', now() - interval '4 s', 'succeeded', NULL),"
    " (101, 2, 1, 2, 12, 'g1', now() - interval '5 s', now() - interval '4 s', 'failed', 'boom'),"
    " (101, 2, 2, 3, 13, 'g2', now() - interval '3 s', now() - interval '2 s', 'succeeded', NULL),"
    " (101, 3, 1, 4, 14, 'g1', now() - interval '5 s', now() - interval '4 s', 'failed', 'oom'),"
    " (101, 3, 2, 5, 15, 'g2', now() - interval '3 s', now() - interval '2 s', 'failed', 'oom');"
    "INSERT INTO task_results (job_id, idx, state, text, error, attempts, prompt_tokens,"
    " cached_tokens, completion_tokens) VALUES"
    " (101, 1, 'succeeded', 'a', NULL, 1, 10, 4, 5), (101, 2, 'succeeded', 'b', NULL, 2, 20,"
    " NULL, 7), (101, 3, 'dead', NULL, 'oom', 2, NULL, NULL, NULL),"
    " (102, 1, 'cancelled', NULL, 'cancelled', 0, NULL, NULL, NULL),"
    " (102, 2, 'cancelled', NULL, 'cancelled', 0, NULL, NULL, NULL);"
    "INSERT INTO audit_log (at, actor, action, job_id, idx, subject, details) VALUES"
    " (now() - interval '6 s', 'client:acme', 'submitted', 101, NULL, 'job:101', '{}'),"
    " (now() - interval '4 s', 'broker', 'retry', 101, 2, 'task:101/2',"
    "  '{\"attempt\": 1, \"error\": \"boom\"}'),"
    " (now() - interval '4 s', 'broker', 'retry', 101, 3, 'task:101/3',"
    "  '{\"attempt\": 1, \"error\": \"oom\"}'),"
    " (now() - interval '2 s', 'broker', 'dead', 101, 3, 'task:101/3',"
    "  '{\"attempt\": 2, \"error\": \"oom\"}'),"
    " (now() - interval '1 s', 'client:beta', 'cancelled', 102, NULL, 'job:102', '{}');";

/* psql -f sql/queries/<name> with the variables given (env: a PGTZ=...
 * assignment or ""). */
static int s_query_with(const char *env, const char *vars, const char *name, char *out,
                        size_t cap)
{
    const char *dir = getenv("SHARDQ_SQL_DIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s psql -X -q -A -t -F '|' -v ON_ERROR_STOP=1 %s -d '%s'"
             " -f '%s/queries/%s' 2>&1", env, vars, s_conninfo, dir ? dir : "sql", name);
    return s_run(cmd, out, cap);
}

/* psql -f sql/queries/<name> with the documented variables. */
static int s_query(const char *name, char *out, size_t cap)
{
    return s_query_with("", "-v job_id=101 -v from=\"'2000-01-01'\" -v to=\"'2100-01-01'\"",
                        name, out, cap);
}

static int s_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void queries(void)
{
    SQ_REQUIRE(s_db != NULL);
    SQ_REQUIRE(sq_db_exec_script(s_db, s_seed) == 0);
    static char out[16384];
    SQ_CHECK(s_query("job_history.sql", out, sizeof out) == 0);
    SQ_CHECK(strncmp(strchr(out, '|') ? strchr(out, '|') + 1 : "", "audit|submitted", 15) == 0);
    SQ_CHECK(strstr(out, "attempt_failed") && strstr(out, "|retry|") && strstr(out, "|dead|"));
    SQ_CHECK(strstr(out, "job:102") == NULL && strstr(out, "client:beta") == NULL);
    SQ_CHECK(s_lines(out) == 4 + 10 + 3); /* audit + attempts (start, end) + results */
    SQ_CHECK(s_query("retries_dead.sql", out, sizeof out) == 0);
    SQ_CHECK(s_lines(out) == 3);
    SQ_CHECK(strstr(out, "|retry|101|2|c-2|acme|1|boom") != NULL);
    SQ_CHECK(strstr(out, "|dead|101|3|c-3|acme|2|oom") != NULL);
    SQ_CHECK(s_query("tenant_daily.sql", out, sizeof out) == 0);
    SQ_CHECK(s_lines(out) == 2);
    /* then the succeeded tasks' prompt tokens, of them cached, and
     * completion tokens (a cached count not reported counts none) */
    SQ_CHECK(strstr(out, "acme|") && strstr(out, "|3|2|1|0|30|4|12\n"));
    SQ_CHECK(strstr(out, "beta|") && strstr(out, "|2|0|0|2|0|0|0\n"));
    /* a cached count above the prompt's is refused */
    SQ_CHECK(s_exec("UPDATE task_results SET cached_tokens = 11 WHERE job_id = 101 AND idx = 1")
             == SQ_EDB);
    SQ_CHECK(s_query("duplicate_results.sql", out, sizeof out) == 0);
    SQ_CHECK(out[0] == '\0');
    /* plant a success on a task whose recorded outcome is dead */
    SQ_REQUIRE(s_exec("INSERT INTO task_attempts (job_id, idx, attempt, lease_id, token,"
                      " group_id, started_at, ended_at, outcome) VALUES"
                      " (101, 3, 3, 6, 16, 'g3', now(), now(), 'succeeded')") == 0);
    SQ_CHECK(s_query("duplicate_results.sql", out, sizeof out) == 0);
    SQ_CHECK(strstr(out, "101|3|success without a succeeded result") != NULL);
    /* the unique index refuses a second success for one task */
    SQ_CHECK(s_exec("INSERT INTO task_attempts (job_id, idx, attempt, lease_id, token,"
                    " group_id, started_at, ended_at, outcome) VALUES"
                    " (101, 1, 2, 7, 17, 'g3', now(), now(), 'succeeded')") == SQ_EDB);
    SQ_CHECK(s_exec("INSERT INTO task_results (job_id, idx, state, attempts)"
                    " VALUES (101, 1, 'succeeded', 9)") == SQ_EDB);
}

/* sq_db itself: COPY escaping round-trips hostile text, errors convert
 * with the SQLSTATE, an unreachable server is SQ_EDBDOWN (retryable). */
/* The queries' time windows are UTC days whatever the session's zone, and
 * one job's events of the same millisecond come in the order they
 * happened; a lost lease is among the retries. */
static void queries_time(void)
{
    SQ_REQUIRE(s_db != NULL);
    SQ_REQUIRE(sq_db_exec_script(s_db,
        "INSERT INTO jobs (id, tenant, model, n_tasks, created_at) VALUES"
        " (201, 'gamma', 'm', 1, '2026-12-01 01:30:00+00');"
        "INSERT INTO tasks (job_id, idx, custom_id, prompt, max_tokens, temperature, top_p)"
        " VALUES (201, 1, 'g-1', 'p', 8, 0, 1);"
        "INSERT INTO task_attempts (job_id, idx, attempt, lease_id, token, group_id, started_at,"
        " ended_at, outcome, error) VALUES"
        " (201, 1, 1, 21, 31, 'g1', '2026-12-01 01:40:00.123+00', '2026-12-01 01:40:00.123+00',"
        "  'worker_lost', 'missed heartbeats'),"
        " (201, 1, 2, 22, 32, 'g2', '2026-12-01 01:40:00.123+00', '2026-12-01 01:40:00.123+00',"
        "  'succeeded', NULL);"
        "INSERT INTO task_results (job_id, idx, state, text, attempts, finished_at) VALUES"
        " (201, 1, 'succeeded', 'x', 2, '2026-12-01 01:40:00.123+00');"
        "INSERT INTO audit_log (at, actor, action, job_id, idx, subject, details) VALUES"
        " ('2026-12-01 01:30:00+00', 'client:gamma', 'submitted', 201, NULL, 'job:201', '{}'),"
        " ('2026-12-01 01:40:00.123+00', 'broker', 'lease_lost', 201, 1, 'task:201/1',"
        "  '{\"attempt\": 1, \"error\": \"missed heartbeats\"}')") == 0);
    static char out[16384];
    const char *day = "-v from=\"'2026-12-01'\" -v to=\"'2026-12-02'\"";
    SQ_CHECK(s_query_with("PGTZ=America/New_York", day, "tenant_daily.sql", out,
                          sizeof out) == 0);
    SQ_CHECK(strstr(out, "gamma|2026-12-01|1|1|0|0|") != NULL);
    SQ_CHECK(s_query_with("PGTZ=Asia/Tokyo", day, "tenant_daily.sql", out, sizeof out) == 0);
    SQ_CHECK(strstr(out, "gamma|2026-12-01|1|1|0|0|") != NULL);
    SQ_CHECK(s_query_with("PGTZ=America/New_York", day, "retries_dead.sql", out,
                          sizeof out) == 0);
    SQ_CHECK(strstr(out, "|lease_lost|201|1|g-1|gamma|1|missed heartbeats") != NULL);
    SQ_CHECK(s_query_with("", "-v job_id=201", "job_history.sql", out, sizeof out) == 0);
    const char *order[] = {"|audit|submitted|", "|attempt|leased|", "|attempt|attempt_worker_lost|",
                           "|audit|lease_lost|", "|attempt|leased|", "|attempt|attempt_succeeded|",
                           "|result|succeeded|"};
    const char *at = out;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *next = at ? strstr(at, order[i]) : NULL;
        SQ_CHECK(next != NULL);
        at = next ? strchr(next, '\n') : NULL;
    }
    SQ_CHECK(s_lines(out) == 7);
}

static void db_helpers(void)
{
    SQ_REQUIRE(s_db != NULL);
    static const char *texts[] = {"tab\there", "new\nline\r\n", "back\\slash \\N",
                                  "\\N", "quote ' \" ;--", "caf\xc3\xa9 \xf0\x9f\x98\x80", ""};
    enum { N = sizeof texts / sizeof texts[0] };
    SQ_REQUIRE(s_exec("CREATE TEMP TABLE copy_probe (i int, s text, d double precision)") == 0);
    sq_db_copy_t *c = sq_db_copy_new();
    SQ_REQUIRE(c != NULL);
    for (int i = 0; i < N; i++) {
        sq_db_copy_i64(c, i);
        sq_db_copy_cstr(c, texts[i]);
        sq_db_copy_double(c, i / 3.0);
        sq_db_copy_end_row(c);
    }
    sq_db_copy_i64(c, N);
    sq_db_copy_null(c);
    sq_db_copy_null(c);
    sq_db_copy_end_row(c);
    /* bytes PostgreSQL refuses (not UTF-8, NUL) would fail the whole COPY:
     * they are stored as U+FFFD */
    static const struct { const char *in; size_t n; const char *stored; } bad_text[] = {
        {"bad \xff byte", 10, "bad \xef\xbf\xbd byte"},
        {"cut \xe4\xb8", 6, "cut \xef\xbf\xbd"},
        {"nul\0x\ty", 7, "nul\xef\xbf\xbdx\ty"},
    };
    enum { N_BAD = sizeof bad_text / sizeof bad_text[0] };
    for (int i = 0; i < N_BAD; i++) {
        sq_db_copy_i64(c, N + 1 + i);
        sq_db_copy_str(c, bad_text[i].in, bad_text[i].n);
        sq_db_copy_double(c, 0);
        sq_db_copy_end_row(c);
    }
    SQ_CHECK(sq_db_copy_rows(c) == N + 1 + N_BAD);
    SQ_CHECK(sq_db_copy_send(s_db, "COPY copy_probe (i, s, d) FROM STDIN", c) == 0);
    sq_db_copy_destroy(&c);
    SQ_CHECK(c == NULL);
    PGresult *res = NULL;
    SQ_REQUIRE(sq_db_exec(s_db, "SELECT s, d, s IS NULL FROM copy_probe ORDER BY i", 0, NULL,
                          &res) == 0);
    SQ_REQUIRE(PQntuples(res) == N + 1 + N_BAD);
    for (int i = 0; i < N; i++) {
        SQ_CHECK(strcmp(PQgetvalue(res, i, 0), texts[i]) == 0);
        SQ_CHECK(atof(PQgetvalue(res, i, 1)) == i / 3.0);
    }
    SQ_CHECK(PQgetvalue(res, N, 2)[0] == 't');
    for (int i = 0; i < N_BAD; i++)
        SQ_CHECK(strcmp(PQgetvalue(res, N + 1 + i, 0), bad_text[i].stored) == 0);
    PQclear(res);
    const char *p[1] = {"x'); DROP TABLE jobs; --"};
    SQ_CHECK(sq_db_exec(s_db, "SELECT $1::text", 1, p, NULL) == 0);
    SQ_CHECK(s_count("SELECT count(*) FROM pg_tables WHERE tablename = 'jobs'") == 1);
    SQ_CHECK(s_exec("SELECT * FROM no_such_table") == SQ_EDB);
    SQ_CHECK(strstr(sq_error_detail(), "42P01") != NULL);
    SQ_CHECK(strstr(sq_error_where(), "sq_db.c:") != NULL); /* file:line of the conversion */
    sq_db_t *bad = NULL;
    SQ_CHECK(sq_db_connect("host=/nonexistent dbname=x connect_timeout=1", 0, &bad) ==
             SQ_EDBDOWN);
    SQ_CHECK(bad == NULL);
    sq_db_destroy(&bad);
}

int main(void)
{
    if (s_setup() != 0) {
        fprintf(stderr, "cannot create the test database: %s\n", sq_error_detail());
        return 1;
    }
    SQ_RUN(migrate);
    SQ_RUN(audit_trigger);
    SQ_RUN(queries);
    SQ_RUN(queries_time);
    SQ_RUN(db_helpers);
    s_teardown();
    return sq_test_summary("db");
}
