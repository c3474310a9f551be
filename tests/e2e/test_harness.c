/*  Tests of the e2e harness itself: processes (exit codes, SIGTERM then
 *  SIGKILL, deadlines), the per-test database and polling. Every other e2e
 *  test trusts these parts, so they are checked against plain /bin/sh
 *  children and SQL, without the broker.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_error.h"
#include "sq_harness.h"
#include "sq_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static sq_harness_t *h;

static void
test_exit_codes(void)
{
    const char *ok[] = {"/bin/sh", "-c", "echo hello; exit 3", NULL};
    sq_proc_t *p = sq_harness_spawn(h, "exit3", ok);
    SQ_REQUIRE(p);
    SQ_CHECK(sq_proc_wait(p, 10000) == 0);
    SQ_CHECK(sq_proc_exit_code(p) == 3);
    SQ_CHECK(!sq_proc_running(p));
    /* The log file holds what the child printed. */
    FILE *f = fopen(sq_proc_log(p), "r");
    SQ_REQUIRE(f);
    char line[64] = "";
    SQ_CHECK(fgets(line, sizeof line, f) && strcmp(line, "hello\n") == 0);
    fclose(f);

    const char *missing[] = {"/nonexistent/program", NULL};
    SQ_CHECK(sq_harness_spawn(h, "missing", missing) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent/program") != NULL);
}

static void
test_stop_escalates(void)
{
    /* A child that ignores SIGTERM is killed after the grace period. The
     * child announces in its log that the trap is set before we signal. */
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; echo armed; while :; do sleep 1; done",
                          NULL};
    sq_proc_t *p = sq_harness_spawn(h, "stubborn", argv);
    SQ_REQUIRE(p);
    int64_t deadline = sq_test_now_ms() + 10000;
    for (;;) {
        FILE *f = fopen(sq_proc_log(p), "r");
        char line[16] = "";
        bool armed = f && fgets(line, sizeof line, f) && strcmp(line, "armed\n") == 0;
        if (f)
            fclose(f);
        if (armed || sq_test_now_ms() > deadline)
            break;
        sq_harness_poll_pause();
    }
    SQ_CHECK(sq_proc_wait(p, 50) == SQ_ETIMEDOUT);
    SQ_CHECK(sq_proc_running(p));
    SQ_CHECK(sq_proc_stop(p, 300) == 128 + SIGKILL);
    SQ_CHECK(!sq_proc_running(p));
    SQ_CHECK(sq_proc_signal(p, SIGTERM) == 0);  /* exited: a no-op */
}

static void
test_database_is_fresh_and_polls(void)
{
    int64_t v = -1;
    SQ_REQUIRE(sq_harness_sql_i64(h, "select count(*) from pg_tables where schemaname='public'",
                                  &v) == 0);
    SQ_CHECK(v == 0);
    PGresult *r = sq_harness_sql(h, "create table t (x int)", 0, NULL);
    SQ_REQUIRE(r);
    PQclear(r);
    /* A wait sees a value that is there; a wait for a value that never
     * comes times out and names the last value seen. */
    const char *params[] = {"7"};
    r = sq_harness_sql(h, "insert into t values ($1::int)", 1, params);
    SQ_REQUIRE(r);
    PQclear(r);
    SQ_CHECK(sq_harness_wait_i64(h, "select sum(x) from t", 7, 1000) == 0);
    SQ_CHECK(sq_harness_wait_i64(h, "select sum(x) from t", 8, 100) == SQ_ETIMEDOUT);
    SQ_CHECK(strstr(sq_error_detail(), "is 7") != NULL);
    int64_t last = 0;
    SQ_CHECK(sq_harness_wait_at_least(h, "select sum(x) from t", 5, 1000, &last) == 0);
    SQ_CHECK(last == 7);
    /* SQL errors are reported, not retried forever. */
    SQ_CHECK(sq_harness_sql(h, "select * from no_such_table", 0, NULL) == NULL);
    SQ_CHECK(strstr(sq_error_detail(), "no_such_table") != NULL);
    SQ_CHECK(strstr(sq_harness_conninfo(h), "sq_e2e_harness_") != NULL);
}

int
main(void)
{
    h = sq_harness_new("harness");
    if (!h) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    SQ_RUN(test_exit_codes);
    SQ_RUN(test_stop_escalates);
    SQ_RUN(test_database_is_fresh_and_polls);
    sq_harness_destroy(&h);
    return sq_test_summary("e2e.harness");
}
