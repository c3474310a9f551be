/*  Scaling records in a real PostgreSQL (label db): policy versions by
 *  digest, scaling_events with their audit rows, append-only history.
 *  Applies sql/0001_queue.sql (audit_log) and sql/0010_scheduler.sql into
 *  a private schema, so it runs beside other tests on one database.
 *  argv[1]: the sql/ directory. Needs SHARDQ_TEST_DB (else skipped, 77). */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"
#include "sq_db.h"
#include "sq_error.h"
#include "sq_sched_db.h"
#include "sq_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *s_sql_dir = "sql";
static sq_db_t *s_db;
static char s_schema[64];

static const char *
s_one(const char *sql)
{
    return sched_sql_one(s_db, sql);
}

static void
test_policy_versions(void)
{
    const char *a = "pools:\n  - {name: p, worker: {model: m}, max_groups: 4, "
                    "target_queued_per_group: 8}\n";
    const char *b = "pools:\n  - {name: p, worker: {model: m}, max_groups: 6, "
                    "target_queued_per_group: 8}\n";
    sq_policy_t *pa = sq_policy_parse(a, strlen(a), "a.yaml");
    sq_policy_t *pb = sq_policy_parse(b, strlen(b), "b.yaml");
    SQ_REQUIRE(pa && pb);
    int64_t v1 = 0, v2 = 0, v3 = 0;
    SQ_CHECK(sq_sched_db_store_policy(s_db, pa, "a.yaml", &v1) == 0 && v1 > 0);
    SQ_CHECK(sq_sched_db_store_policy(s_db, pb, "b.yaml", &v2) == 0 && v2 > v1);
    SQ_CHECK(sq_sched_db_store_policy(s_db, pa, "a.yaml", &v3) == 0 && v3 == v1);
    SQ_CHECK(strcmp(s_one("SELECT count(*) FROM policies"), "2") == 0);
    SQ_CHECK(strstr(s_one("SELECT body FROM policies WHERE source = 'b.yaml'"), "max_groups: 6"));
    sq_policy_destroy(&pa);
    sq_policy_destroy(&pb);
}

static void
test_scaling_events(void)
{
    int64_t version = 0;
    const char *a = "pools:\n  - {name: p, worker: {model: m}, max_groups: 4, "
                    "target_queued_per_group: 8}\n";
    sq_policy_t *pa = sq_policy_parse(a, strlen(a), "a.yaml");
    SQ_REQUIRE(pa && sq_sched_db_store_policy(s_db, pa, "a.yaml", &version) == 0);
    sq_pool_metrics_t m = {.queued = 500, .leased = 16, .busy = 1, .throughput = 2.5};
    sq_decision_t d = {.current = 1, .desired = 4};
    snprintf(d.reason, sizeof d.reason, "up: 516 outstanding/8 per group=65; -> 4");
    sq_scaling_event_t ev = {.pool = "p", .decision = &d, .metrics = &m,
                             .policy_version = version, .actuator = "local", .applied = 1};
    int64_t id1 = 0, id2 = 0;
    SQ_CHECK(sq_sched_db_record(s_db, &ev, &id1) == 0 && id1 > 0);
    d.current = 4;
    d.desired = 1;
    ev.applied = 0;
    ev.error = "spawn mpirun: No such file or directory";
    ev.policy_version = 0;
    SQ_CHECK(sq_sched_db_record(s_db, &ev, &id2) == 0 && id2 == id1 + 1);
    SQ_CHECK(strcmp(s_one("SELECT format('%s %s->%s %s %s', pool, from_groups, to_groups,"
                          " metrics->>'queued', applied) FROM scaling_events ORDER BY id LIMIT 1"),
                    "p 1->4 500 t") == 0);
    SQ_CHECK(strcmp(s_one("SELECT policy_version IS NULL AND error LIKE 'spawn%'"
                          " FROM scaling_events ORDER BY id DESC LIMIT 1"), "t") == 0);
    /* Each event has exactly one audit row pointing at it. */
    SQ_CHECK(strcmp(s_one("SELECT count(*) FROM audit_log a JOIN scaling_events e"
                          " ON (a.details->>'scaling_event')::bigint = e.id"
                          " WHERE a.actor = 'scheduler' AND a.action = 'scaled'"
                          " AND a.subject = 'pool:p'"), "2") == 0);
    /* An event retried after a lost answer (its first try committed) is
     * found by its key: neither it nor its audit row is written again */
    ev.key = "sched-test:1";
    int64_t id3 = 0, id4 = -1;
    SQ_CHECK(sq_sched_db_record(s_db, &ev, &id3) == 0 && id3 == id2 + 1);
    SQ_CHECK(sq_sched_db_record(s_db, &ev, &id4) == 0 && id4 == 0);
    SQ_CHECK(strcmp(s_one("SELECT count(*) FROM scaling_events WHERE event_key = 'sched-test:1'"),
                    "1") == 0);
    SQ_CHECK(strcmp(s_one("SELECT count(*) FROM audit_log a JOIN scaling_events e"
                          " ON (a.details->>'scaling_event')::bigint = e.id"
                          " WHERE e.event_key = 'sched-test:1'"), "1") == 0);
    ev.key = NULL;
    /* History is append-only. */
    SQ_CHECK(sq_db_exec(s_db, "UPDATE scaling_events SET to_groups = 9", 0, NULL, NULL) ==
             SQ_EDB);
    SQ_CHECK(strstr(sq_error_detail(), "append-only") != NULL);
    SQ_CHECK(sq_db_exec(s_db, "DELETE FROM scaling_events", 0, NULL, NULL) == SQ_EDB);
    /* A bad row is refused whole: no audit row without its event. */
    d.desired = -1;
    SQ_CHECK(sq_sched_db_record(s_db, &ev, NULL) == SQ_EDB);
    SQ_CHECK(strcmp(s_one("SELECT count(*) FROM audit_log WHERE actor = 'scheduler'"), "3") == 0);
    sq_policy_destroy(&pa);
}

int
main(int argc, char **argv)
{
    const char *conninfo = sq_test_env_or_skip("SHARDQ_TEST_DB");
    if (argc > 1)
        s_sql_dir = argv[1];
    if (sq_db_connect(conninfo, 10000, &s_db) != 0) {
        fprintf(stderr, "connect: %s\n", sq_error_detail());
        return 1;
    }
    snprintf(s_schema, sizeof s_schema, "sq_sched_test_%d", (int)getpid());
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s; SET search_path TO %s", s_schema, s_schema);
    int ok = sq_db_exec_script(s_db, sql) == 0 &&
             sched_sql_file(s_db, s_sql_dir, "0001_queue.sql") == 0 &&
             sched_sql_file(s_db, s_sql_dir, "0010_scheduler.sql") == 0 &&
             sched_sql_file(s_db, s_sql_dir, "0012_scaling_event_key.sql") == 0;
    if (!ok)
        fprintf(stderr, "setup: %s\n", sq_error_detail());
    SQ_CHECK(ok);
    if (ok) {
        SQ_RUN(test_policy_versions);
        SQ_RUN(test_scaling_events);
    }
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", s_schema);
    sq_db_exec_script(s_db, sql);
    sq_db_destroy(&s_db);
    return sq_test_summary("sched_db");
}
