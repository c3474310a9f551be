/*  shardq-scheduler's control loop as a process, with real PostgreSQL, real
 *  ZeroMQ and real process groups (label db):
 *   - a protocol fixture broker (ROUTER speaking docs/protocol.md STATS and
 *     WORKERS replies through sq_wire) plays the broker, since this test
 *     drives the numbers the scheduler sees;
 *   - tests/unit/sched_fake_mpirun.sh stands in for mpirun + shardq-worker
 *     (issue 4's worker groups do not exist yet);
 *  and checks: min_groups at start, a burst scales up in one decision,
 *  scaling_events + audit rows, Prometheus metrics, SIGHUP with an invalid
 *  policy (refused, running one kept) and a valid one (new version stored,
 *  scale-down to the new max), stabilised scale-down to min when the
 *  queue empties, SIGTERM drains the groups; a schedule window at an
 *  injected clock (--clock) raises the floor from start - lead time; the
 *  stop is logged with the signal's name and number, or --once; worker
 *  flags shardq-worker refuses are refused at start and on SIGHUP.
 *  argv: scheduler binary, fake mpirun, sql dir, and shardq-worker (which
 *  judges worker flags) when it was built. Ports 18520-18521. */
#define _DEFAULT_SOURCE /* usleep */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"
#include "sq_db.h"
#include "sq_error.h"
#include "sq_test.h"
#include "sq_wire.h"

#include <czmq.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *s_bin, *s_fake, *s_sql;
static const char *s_worker = "shardq-worker"; /* argv[4]: the real one, when built */
static int s_have_worker;
static char s_dir[64], s_policy[128], s_conninfo[512], s_dbname[64];
static sq_db_t *s_db;
static sched_broker_t *s_broker;   /* at tcp://127.0.0.1:18520: pool m.gguf, groups p-N */

/* --- helpers ----------------------------------------------------------- */

static void
s_write_policy(const char *max_groups)
{
    char text[512];
    snprintf(text, sizeof text,
             "pools:\n  - name: p\n    worker: {model: m.gguf, tp: 2}\n    min_groups: 1\n"
             "    max_groups: %s\n    target_queued_per_group: 100\n"
             "    scale_down_stabilization_s: 2\n",
             max_groups);
    FILE *f = fopen(s_policy, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* The scheduler's metrics (static buffer). */
static const char *
s_scrape(void)
{
    static char buf[65536];
    return sched_scrape(18521, buf, sizeof buf);
}

static int
s_wait_metric(const char *line, int timeout_ms)
{
    return sched_wait_metric(18521, line, timeout_ms);
}

static int
s_file_exists(const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    return stat(path, &st) == 0;
}

/* clock: NULL for real time, else the --clock start. */
static pid_t
s_start_with(const char *policy, const char *clock, const char *mpirun)
{
    char *argv[] = {(char *)s_bin, "--db", s_conninfo, "--broker", "tcp://127.0.0.1:18520",
                    "--policy", (char *)policy, "--actuator", "local", "--mpirun", (char *)mpirun,
                    "--tick-ms", "200", "--metrics-port", "18521", "--metrics-bind",
                    "127.0.0.1", "--grace-s", "2", "--worker-bin", (char *)s_worker,
                    clock ? "--clock" : NULL, (char *)clock, NULL};
    pid_t pid = -1;
    if (posix_spawn(&pid, s_bin, NULL, NULL, argv, environ) != 0)
        return -1;
    return pid;
}

static pid_t
s_start_scheduler(const char *policy, const char *clock)
{
    return s_start_with(policy, clock, s_fake);
}

static void
s_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    SQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* --- the scenario -------------------------------------------------------- */

static void
test_loop(void)
{
    const char *events = "SELECT string_agg(from_groups || '>' || to_groups, ',' ORDER BY id)"
                         " FROM scaling_events";
    s_write_policy("4");
    pid_t pid = s_start_scheduler(s_policy, NULL);
    SQ_REQUIRE(pid > 0);
    /* min_groups: one group at start. */
    SQ_CHECK(sched_wait_sql(s_db, events, "0>1", 20000));
    SQ_CHECK(strcmp(sched_sql_one(s_db, "SELECT count(*) FROM policies"), "1") == 0);
    /* A burst of 350 queued tasks: 4 groups (target 100/group) in one decision. */
    sched_broker_set(s_broker, 350, 0);
    SQ_CHECK(sched_wait_sql(s_db, events, "0>1,1>4", 10000));
    SQ_CHECK(
        strstr(sched_sql_one(s_db, "SELECT reason FROM scaling_events ORDER BY id DESC LIMIT 1"),
               "350 outstanding/100 per group=4") != NULL);
    SQ_CHECK(
        strcmp(sched_sql_one(s_db, "SELECT metrics->>'queued' FROM scaling_events ORDER BY id DESC"
                                   " LIMIT 1"),
               "350") == 0);
    SQ_CHECK(strcmp(sched_sql_one(s_db, "SELECT count(*) FROM audit_log WHERE actor = 'scheduler'"
                                        " AND action = 'scaled'"),
                    "2") == 0);
    for (int64_t end = sq_test_now_ms() + 10000;
         !s_file_exists("p-4.args") && sq_test_now_ms() < end;)
        usleep(20000);
    SQ_CHECK(s_file_exists("p-1.args") && s_file_exists("p-4.args"));
    sched_broker_set(s_broker, 350, 4); /* the groups register with the broker */
    SQ_CHECK(s_wait_metric("shardq_scheduler_pool_groups{pool=\"p\",state=\"idle\"} 4", 10000));
    SQ_CHECK(strstr(s_scrape(), "shardq_scheduler_pool_desired_groups{pool=\"p\"} 4") != NULL);
    SQ_CHECK(strstr(s_scrape(), "shardq_scheduler_decisions_total{pool=\"p\",direction=\"up\"} 2"));
    SQ_CHECK(strstr(s_scrape(), "shardq_scheduler_pool_queued{pool=\"p\"} 350") != NULL);

    /* An invalid policy is refused; the running one stays. */
    FILE *f = fopen(s_policy, "w");
    SQ_REQUIRE(f);
    fputs("pools:\n  - name: p\n    max_groups: lots\n", f);
    fclose(f);
    kill(pid, SIGHUP);
    SQ_CHECK(s_wait_metric("shardq_scheduler_policy_reloads_total{result=\"refused\"} 1", 10000));
    SQ_CHECK(strcmp(sched_sql_one(s_db, "SELECT count(*) FROM policies"), "1") == 0);
    SQ_CHECK(strstr(s_scrape(), "shardq_scheduler_pool_desired_groups{pool=\"p\"} 4") != NULL);

    /* A valid one is stored as version 2 and lowers max_groups to 2. */
    s_write_policy("2");
    kill(pid, SIGHUP);
    SQ_CHECK(sched_wait_sql(s_db, "SELECT count(*) FROM policies", "2", 10000));
    SQ_CHECK(sched_wait_sql(s_db, events, "0>1,1>4,4>2", 10000));
    SQ_CHECK(strcmp(sched_sql_one(
                        s_db, "SELECT (SELECT policy_version FROM scaling_events ORDER BY id DESC"
                              " LIMIT 1) = (SELECT max(version) FROM policies)"),
                    "t") == 0);
    sched_broker_set(s_broker, 350, 2);
    /* Queue empties: down to min_groups after the 2 s stabilisation. */
    sched_broker_set(s_broker, 0, 2);
    SQ_CHECK(sched_wait_sql(s_db, events, "0>1,1>4,4>2,2>1", 15000));
    sched_broker_set(s_broker, 0, 1);

    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    SQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Every group it started was drained by SIGTERM (each left a .term). */
    int terms = 0;
    for (int i = 1; i <= 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "p-%d.term", i);
        terms += s_file_exists(name);
    }
    SQ_CHECK(terms == 4);
}

/* A schedule window at an injected clock: the scheduler's clock starts
 * 10 s before the window's lead time begins (09:30 Shanghai on Monday
 * 2026-11-30 = 01:30Z, lead 90 s = startup_estimate_s since nothing has
 * been measured): first min_groups, then the window's floor, named. */
static void
test_window_at_injected_clock(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/window.yaml", s_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    fputs("pools:\n  - name: w\n    worker: {model: w.gguf}\n    max_groups: 5\n"
          "    target_queued_per_group: 10\n    startup_estimate_s: 90\n    windows:\n"
          "      - {name: pre-open, cron: \"30 9 * * 1-5\", timezone: Asia/Shanghai,"
          " duration: 45m, min_groups: 3, lead_time: auto}\n", f);
    fclose(f);
    pid_t pid = s_start_scheduler(path, "2026-11-30T01:28:20Z");
    SQ_REQUIRE(pid > 0);
    const char *events = "SELECT string_agg(from_groups || '>' || to_groups, ',' ORDER BY id)"
                         " FROM scaling_events WHERE pool = 'w'";
    SQ_CHECK(sched_wait_sql(s_db, events, "0>1,1>3", 30000));
    SQ_CHECK(
        strstr(sched_sql_one(s_db, "SELECT reason FROM scaling_events WHERE pool = 'w' ORDER BY id"
                                   " LIMIT 1"),
               "pre-open") == NULL);
    SQ_CHECK(strstr(sched_sql_one(
                        s_db, "SELECT reason FROM scaling_events WHERE pool = 'w' ORDER BY id DESC"
                              " LIMIT 1"),
                    "up (window floor)") != NULL);
    SQ_CHECK(strstr(sched_sql_one(
                        s_db, "SELECT reason FROM scaling_events WHERE pool = 'w' ORDER BY id DESC"
                              " LIMIT 1"),
                    "floor 3 by pre-open") != NULL);
    kill(pid, SIGTERM);
    int status = -1;
    waitpid(pid, &status, 0);
    SQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A launcher that cannot start: each failure is recorded (applied =
 * false, with the error), and retried with growing gaps, not every tick. */
static void
test_actuator_failure_backoff(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fail.yaml", s_dir);
    FILE *f = fopen(path, "w");
    SQ_REQUIRE(f);
    fputs("pools:\n  - {name: f, worker: {model: f.gguf}, max_groups: 2,"
          " target_queued_per_group: 10}\n", f);
    fclose(f);
    pid_t pid = s_start_with(path, NULL, "/nonexistent/mpirun");
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(
        sched_wait_sql(s_db, "SELECT count(*) FROM scaling_events WHERE pool = 'f'", "3", 30000));
    SQ_CHECK(strcmp(sched_sql_one(
                        s_db, "SELECT bool_and(NOT applied AND error LIKE '%/nonexistent/mpirun%')"
                              " FROM scaling_events WHERE pool = 'f'"),
                    "t") == 0);
    /* gaps between attempts: about 1 s, then about 2 s */
    SQ_CHECK(
        strcmp(sched_sql_one(s_db,
                             "WITH e AS (SELECT at - lag(at) OVER (ORDER BY id) AS gap"
                             " FROM scaling_events WHERE pool = 'f')"
                             " SELECT min(gap) >= interval '0.9 s' AND max(gap) >= interval '1.9 s'"
                             " FROM e"),
               "t") == 0);
    s_stop(pid);
}

/* The scheduler on `policy` with its log (stderr) in s_dir/NAME; `once`:
 * with --once. */
static pid_t
s_start_logged(const char *policy, const char *name, int once)
{
    char log[128];
    snprintf(log, sizeof log, "%s/%s", s_dir, name);
    char *argv[] = {(char *)s_bin, "--db", s_conninfo, "--broker", "tcp://127.0.0.1:18520",
                    "--policy", (char *)policy, "--mpirun", (char *)s_fake, "--worker-bin",
                    (char *)s_worker, "--tick-ms", "200", "--grace-s", "2",
                    once ? "--once" : NULL, NULL};
    return sched_spawn_logged(argv, log);
}

/* The scheduler on `policy` with --once, its log in s_dir/NAME: its exit
 * code, or -1 when it did not start or did not exit normally. */
static int
s_once_exit(const char *policy, const char *name)
{
    pid_t pid = s_start_logged(policy, name, 1);
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whether s_dir/name holds needle, waiting up to timeout_ms for it. */
static int
s_log_has(const char *name, const char *needle, int timeout_ms)
{
    char path[128], buf[65536];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    for (int64_t end = sq_test_now_ms() + timeout_ms;; usleep(20000)) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        if (strstr(buf, needle))
            return 1;
        if (sq_test_now_ms() >= end) {
            fprintf(stderr, "  %s: no \"%s\" in:\n%s", name, needle, buf);
            return 0;
        }
    }
}

/* The stop is logged with its cause: the signal by name and number (the
 * log said signal=1 for SIGTERM, the flag it set, and signal=0 after
 * --once), or --once. */
static void
test_stop_reason(void)
{
    static const struct { int sig; const char *log, *want; } stops[] = {
        {SIGTERM, "term.log", "msg=\"stopping\" reason=signal signal=SIGTERM signo=15"},
        {SIGINT, "int.log", "msg=\"stopping\" reason=signal signal=SIGINT signo=2"}};
    s_write_policy("2");
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        pid_t pid = s_start_logged(s_policy, stops[i].log, 0);
        SQ_REQUIRE(pid > 0);
        SQ_CHECK(s_log_has(stops[i].log, "msg=\"started\"", 20000));
        kill(pid, stops[i].sig);
        int status = -1;
        waitpid(pid, &status, 0);
        SQ_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        SQ_CHECK(s_log_has(stops[i].log, stops[i].want, 0));
    }
    SQ_CHECK(s_once_exit(s_policy, "once.log") == 0);
    SQ_CHECK(s_log_has("once.log", "msg=\"stopping\" reason=once", 0));
}

/* Write a one-pool policy with worker flags `flags` to s_dir/name; its
 * path into path (128 bytes). */
static void
s_write_flags_policy(const char *name, const char *flags, char *path)
{
    snprintf(path, 128, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "pools:\n  - name: p\n    worker: {model: m.gguf, flags: \"%s\"}\n"
                "    max_groups: 2\n    target_queued_per_group: 100\n", flags);
        fclose(f);
    }
}

/* Worker flags shardq-worker refuses are refused with its reason, at
 * start (exit 1) and on SIGHUP (the running policy kept, nothing stored):
 * they loaded, and every group started with them exited at once, again at
 * every decision. */
static void
test_worker_flags_refused(void)
{
    if (!s_have_worker) {
        fprintf(stderr, "  (no shardq-worker built: not checked)\n");
        return;
    }
    char bad[128], good[128];
    s_write_flags_policy("bad.yaml", "--ctx 64 --bogus-flag", bad);
    SQ_CHECK(s_once_exit(bad, "bad.log") == 1);
    SQ_CHECK(s_log_has("bad.log", "msg=\"startup failed\" error=\"", 0));
    SQ_CHECK(s_log_has("bad.log", "bad.yaml:3: pools[0].worker.flags: shardq-worker: unknown "
                                  "option --bogus-flag", 0));

    s_write_flags_policy("good.yaml", "--ctx 64", good);
    pid_t pid = s_start_logged(good, "reload.log", 0);
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(s_log_has("reload.log", "msg=\"started\"", 20000));
    char versions[32];
    snprintf(versions, sizeof versions, "%s", sched_sql_one(s_db, "SELECT count(*) FROM policies"));
    s_write_flags_policy("good.yaml", "--ctx 64 --kv-type q4", good);
    kill(pid, SIGHUP);
    SQ_CHECK(s_log_has("reload.log", "good.yaml:3: pools[0].worker.flags: shardq-worker: "
                                     "--kv-type: 'q4' is not f16, f32 or q8_0", 10000));
    SQ_CHECK(s_log_has("reload.log", "msg=\"policy refused, keeping the running one\"", 0));
    SQ_CHECK(strcmp(sched_sql_one(s_db, "SELECT count(*) FROM policies"), versions) == 0);
    s_stop(pid);
}

static int
s_setup_db(const char *base)
{
    return sched_db_create(base, s_sql, "sq_sched_loop", s_dbname, sizeof s_dbname, s_conninfo,
                           sizeof s_conninfo, &s_db)
               ? -1
               : 0;
}

static void
s_drop_db(const char *base)
{
    sched_db_drop(base, s_dbname, &s_db);
}

int
main(int argc, char **argv)
{
    const char *base = sq_test_env_or_skip("SHARDQ_TEST_DB");
    if (argc < 4)
        return 2;
    s_bin = argv[1];
    s_fake = argv[2];
    s_sql = argv[3];
    if (argc > 4) {
        s_worker = argv[4];
        s_have_worker = 1;
    }
    zsys_handler_set(NULL);
    snprintf(s_dir, sizeof s_dir, "/tmp/sq-loop-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    setenv("SQ_FAKE_DIR", s_dir, 1);
    snprintf(s_policy, sizeof s_policy, "%s/policy.yaml", s_dir);
    s_broker = sched_broker_start("tcp://127.0.0.1:18520", "m.gguf", "p", 1500);
    int db_ok = s_setup_db(base) == 0;
    SQ_CHECK(s_broker && db_ok);
    if (s_broker && db_ok) {
        SQ_RUN(test_loop);
        SQ_RUN(test_window_at_injected_clock);
        SQ_RUN(test_actuator_failure_backoff);
        SQ_RUN(test_stop_reason);
        SQ_RUN(test_worker_flags_refused);
    } else {
        fprintf(stderr, "setup failed: %s\n", sq_error_detail());
    }
    sched_broker_stop(&s_broker);
    s_drop_db(base);
    sched_rm_tree(s_dir);
    return sq_test_summary("sched_loop");
}
