/*  The local actuator on real process groups (a shell script stands in for
 *  mpirun, since worker groups of issue 4 do not exist yet): argv, process
 *  groups, removal order (idle, then starting, then busy), SIGTERM drain,
 *  SIGKILL after the grace period (at once with 0), reaping, cleanup on
 *  destroy, groups that exit on their own reported with their status;
 *  worker flags checked by shardq-worker itself (--check-flags).
 *  argv[1]: path of sched_fake_mpirun.sh; argv[2] (optional): shardq-worker. */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"
#include "sq_actuator.h"
#include "sq_error.h"
#include "sq_test.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char s_dir[64];
static const char *s_fake = "tests/unit/sched_fake_mpirun.sh";
static const char *s_worker;   /* the real shardq-worker, when given */

static int
s_exists(const char *id, const char *ext)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s.%s", s_dir, id, ext);
    return stat(path, &st) == 0;
}

static void
s_nap(void)
{
    nanosleep(&(struct timespec){0, 20 * 1000000L}, NULL);
}

/* Poll the actuator until pred() or 10 s pass. */
#define S_WAIT_FOR(act, cond)                                              \
    do {                                                                   \
        int64_t deadline_ = sq_test_now_ms() + 10000;                      \
        while (!(cond) && sq_test_now_ms() < deadline_) {                  \
            sq_actuator_poll((act), sq_test_now_ms());                     \
            s_nap();                                                       \
        }                                                                  \
    } while (0)

static int
s_requested(sq_actuator_t *a, const sq_pool_policy_t *p, int *draining)
{
    sq_actuator_counts_t c;
    sq_actuator_counts(a, p, &c);
    if (draining)
        *draining = c.draining;
    return c.requested;
}

/* A policy of one pool `name` (max 2 groups). */
static sq_policy_t *
s_one_pool(const char *name)
{
    char yaml[160];
    snprintf(yaml, sizeof yaml, "pools:\n  - {name: %s, worker: {model: m}, max_groups: 2, "
             "target_queued_per_group: 8}\n", name);
    return sq_policy_parse(yaml, strlen(yaml), "p.yaml");
}

/* Scale p to 0 and poll until no group is left draining; *draining (OUT)
 * is what is left. */
static void
s_remove_all(sq_actuator_t *a, const sq_pool_policy_t *p, int *draining)
{
    *draining = -1;
    if (sq_actuator_set(a, p, 0, sq_test_now_ms()) != 0)
        return;
    S_WAIT_FOR(a, (s_requested(a, p, draining), *draining == 0));
}

static void
test_lifecycle(void)
{
    const char *yaml = "pools:\n  - name: p\n    worker: {model: m.gguf, tp: 2, flags: --ctx 512}\n"
                       "    max_groups: 4\n    target_queued_per_group: 8\n";
    sq_policy_t *pol = sq_policy_parse(yaml, strlen(yaml), "p.yaml");
    SQ_REQUIRE(pol);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_actuator_local_opts_t o = {.mpirun = s_fake, .worker = "shardq-worker",
                                  .worker_endpoint = "tcp://127.0.0.1:18501", .grace_ms = 400};
    sq_actuator_t *a = sq_actuator_local_new(&o);
    SQ_REQUIRE(a);
    int64_t now = sq_test_now_ms();
    SQ_REQUIRE(sq_actuator_set(a, p, 3, now) == 0);
    sq_actuator_counts_t c;
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.requested == 3 && c.starting == 3);
    S_WAIT_FOR(a, s_exists("p-1", "args") && s_exists("p-2", "args") && s_exists("p-3", "args"));
    SQ_REQUIRE(s_exists("p-3", "args"));
    char path[256], line[512] = "";
    snprintf(path, sizeof path, "%s/p-1.args", s_dir);
    FILE *f = fopen(path, "r");
    SQ_REQUIRE(f);
    SQ_CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    SQ_CHECK(strcmp(line, "-np 2 shardq-worker --broker tcp://127.0.0.1:18501 --model m.gguf "
                          "--device cpu --max-batch 16 --group-id p-1 --ctx 512\n") == 0);
    /* Each group leads its own process group. */
    int pid1 = sq_actuator_local_pid(a, "p-1");
    SQ_CHECK(pid1 > 0 && getpgid(pid1) == pid1);

    /* p-1 ready and idle, p-2 ready and busy, p-3 still starting. */
    double startup = 0;
    SQ_CHECK(sq_actuator_local_mark(a, "p-1", 1, 1, now + 1500, &startup) == 0);
    SQ_CHECK(startup == 1.5);
    SQ_CHECK(sq_actuator_local_mark(a, "p-2", 1, 0, now + 2000, NULL) == 0);
    SQ_CHECK(sq_actuator_local_mark(a, "p-9", 1, 0, now, NULL) == SQ_ENOTFOUND);
    SQ_CHECK(sq_actuator_counts(a, p, &c) == 0 && c.starting == 1);
    SQ_REQUIRE(sq_actuator_set(a, p, 2, sq_test_now_ms()) == 0);  /* idle p-1 goes */
    int draining = 0;
    SQ_CHECK(s_requested(a, p, &draining) == 2 && draining == 1);
    S_WAIT_FOR(a, s_exists("p-1", "term") && (s_requested(a, p, &draining), draining == 0));
    SQ_CHECK(s_exists("p-1", "term") && draining == 0);
    SQ_CHECK(kill(pid1, 0) != 0); /* reaped */
    SQ_REQUIRE(sq_actuator_set(a, p, 1, sq_test_now_ms()) == 0);  /* starting p-3 before busy p-2 */
    S_WAIT_FOR(a, s_exists("p-3", "term"));
    SQ_CHECK(s_exists("p-3", "term") && !s_exists("p-2", "term"));

    /* A group that ignores SIGTERM is killed after the grace period. */
    setenv("SQ_FAKE_IGNORE_TERM", "1", 1);
    SQ_REQUIRE(sq_actuator_set(a, p, 2, sq_test_now_ms()) == 0);
    unsetenv("SQ_FAKE_IGNORE_TERM");
    S_WAIT_FOR(a, s_exists("p-4", "args"));
    SQ_REQUIRE(s_exists("p-4", "args"));
    SQ_CHECK(sq_actuator_local_mark(a, "p-4", 1, 1, sq_test_now_ms(), NULL) == 0);
    int pid4 = sq_actuator_local_pid(a, "p-4");
    int64_t t_term = sq_test_now_ms();
    SQ_REQUIRE(sq_actuator_set(a, p, 1, t_term) == 0);
    sq_actuator_poll(a, t_term + 100); /* inside the grace period: still there */
    SQ_CHECK(kill(pid4, 0) == 0 && (s_requested(a, p, &draining), draining == 1));
    S_WAIT_FOR(a, (s_requested(a, p, &draining), draining == 0));
    SQ_CHECK(draining == 0 && kill(pid4, 0) != 0 && !s_exists("p-4", "term"));

    /* destroy drains what is left (p-2) gracefully. */
    int pid2 = sq_actuator_local_pid(a, "p-2");
    sq_actuator_destroy(&a);
    SQ_CHECK(a == NULL);
    SQ_CHECK(s_exists("p-2", "term") && kill(pid2, 0) != 0);
    sq_policy_destroy(&pol);
}

static void
test_spawn_failure(void)
{
    sq_policy_t *pol = s_one_pool("q");
    SQ_REQUIRE(pol);
    sq_actuator_local_opts_t o = {.mpirun = "/nonexistent/mpirun"};
    sq_actuator_t *a = sq_actuator_local_new(&o);
    SQ_REQUIRE(a);
    SQ_CHECK(sq_actuator_set(a, &pol->pools[0], 1, 0) < 0);
    SQ_CHECK(strstr(sq_error_detail(), "/nonexistent/mpirun") != NULL);
    SQ_CHECK(s_requested(a, &pol->pools[0], NULL) == 0);
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
}

/* grace_ms 0 is "SIGKILL at once" (--grace-s 0), not the 60 s default: a
 * group that ignores the drain signal is killed at the first poll. */
static void
test_zero_grace(void)
{
    sq_policy_t *pol = s_one_pool("z");
    SQ_REQUIRE(pol);
    const sq_pool_policy_t *p = &pol->pools[0];
    sq_actuator_local_opts_t o = {.mpirun = s_fake, .grace_ms = 0};
    sq_actuator_t *a = sq_actuator_local_new(&o);
    SQ_REQUIRE(a);
    setenv("SQ_FAKE_IGNORE_TERM", "1", 1);
    SQ_REQUIRE(sq_actuator_set(a, p, 1, sq_test_now_ms()) == 0);
    unsetenv("SQ_FAKE_IGNORE_TERM");
    S_WAIT_FOR(a, s_exists("z-1", "args"));
    SQ_REQUIRE(s_exists("z-1", "args"));
    int pid = sq_actuator_local_pid(a, "z-1"), draining;
    s_remove_all(a, p, &draining);
    SQ_CHECK(draining == 0 && kill(pid, 0) != 0);
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
}

typedef struct {
    int n;
    char group[96], pool[64];
    int status, was_ready;
} s_exits_t;

static void
s_on_exit(void *arg, const sq_group_exit_t *ex)
{
    s_exits_t *e = arg;
    e->n++;
    snprintf(e->group, sizeof e->group, "%s", ex->group_id);
    snprintf(e->pool, sizeof e->pool, "%s", ex->pool);
    e->status = ex->status;
    e->was_ready = ex->was_ready;
}

/* A group that exits on its own (here a launcher that fails at once, as a
 * worker refusing its flags does) is reported with its exit status, so the
 * loop can log the respawn loop; a drained group is not reported. */
static void
test_exit_reported(void)
{
    sq_policy_t *pol = s_one_pool("e");
    SQ_REQUIRE(pol);
    const sq_pool_policy_t *p = &pol->pools[0];
    s_exits_t exits = {0};
    sq_actuator_local_opts_t o = {.mpirun = "false", .on_exit = s_on_exit, .on_exit_arg = &exits};
    sq_actuator_t *a = sq_actuator_local_new(&o);
    SQ_REQUIRE(a);
    SQ_REQUIRE(sq_actuator_set(a, p, 1, sq_test_now_ms()) == 0);
    S_WAIT_FOR(a, exits.n > 0);
    SQ_CHECK(exits.n == 1 && strcmp(exits.group, "e-1") == 0 && strcmp(exits.pool, "e") == 0);
    SQ_CHECK(exits.status >= 0 && WIFEXITED(exits.status) && WEXITSTATUS(exits.status) == 1);
    SQ_CHECK(exits.was_ready == 0);
    SQ_CHECK(s_requested(a, p, NULL) == 0); /* forgotten: the next decision replaces it */
    sq_actuator_destroy(&a);

    /* drained on purpose: no report */
    exits.n = 0;
    o.mpirun = s_fake;
    o.grace_ms = 2000;
    a = sq_actuator_local_new(&o);
    SQ_REQUIRE(a);
    SQ_REQUIRE(sq_actuator_set(a, p, 1, sq_test_now_ms()) == 0);
    S_WAIT_FOR(a, s_exists("e-1", "args"));
    int draining;
    s_remove_all(a, p, &draining);
    SQ_CHECK(draining == 0 && s_exists("e-1", "term") && exits.n == 0);
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
}

/* Check one pool's flags with worker `bin`; 1 when the answer is rc (0:
 * taken) with a detail containing want. */
static int
s_check(const char *bin, const char *flags, int rc, const char *want)
{
    char yaml[256];
    snprintf(yaml, sizeof yaml, "pools:\n  - {name: p, worker: {model: m.gguf, flags: \"%s\"},"
             " max_groups: 2, target_queued_per_group: 8}\n", flags);
    sq_policy_t *pol = sq_policy_parse(yaml, strlen(yaml), "p.yaml");
    sq_actuator_local_opts_t o = {.mpirun = s_fake, .worker = bin,
                                  .worker_endpoint = "tcp://127.0.0.1:18501"};
    sq_actuator_t *a = sq_actuator_local_new(&o);
    sq_error_clear();
    int got = pol && a ? sq_actuator_local_check_flags(a, &pol->pools[0]) : -1;
    int ok = got == rc && strstr(sq_error_detail(), want) != NULL;
    if (!ok)
        fprintf(stderr, "  %s \"%s\": wanted %d \"%s\", got %d \"%s\"\n", bin, flags, rc, want,
                got, sq_error_detail());
    sq_actuator_destroy(&a);
    sq_policy_destroy(&pol);
    return ok;
}

/* Worker flags are the worker's to judge: it is asked with the command a
 * group runs and --check-flags first (an unknown flag, a flag without its
 * value or a bad value loaded, and every group then exited at once, again
 * at every decision). */
static void
test_check_flags(void)
{
    /* the command line, as a worker that prints it and refuses sees it */
    char echo[128];
    snprintf(echo, sizeof echo, "%s/echo-worker.sh", s_dir);
    FILE *f = fopen(echo, "w");
    SQ_REQUIRE(f);
    fputs("#!/bin/sh\necho \"$*\" >&2\nexit 2\n", f);
    fclose(f);
    SQ_REQUIRE(chmod(echo, 0755) == 0);
    SQ_CHECK(s_check(echo, "--threads", SQ_EINVAL,
                     "--check-flags --broker tcp://127.0.0.1:18501 --model m.gguf --device cpu "
                     "--max-batch 16 --group-id p-check --threads"));
    /* a worker that cannot be asked, or fails otherwise, is not a yes */
    SQ_CHECK(s_check("/nonexistent/shardq-worker", "--ctx 512", -ENOENT,
                     "cannot ask /nonexistent/shardq-worker to check them"));
    SQ_CHECK(s_check("false", "--ctx 512", SQ_EINVAL, "false --check-flags exited 1"));
    /* one that never answers is killed after 10 s */
    char hang[128];
    snprintf(hang, sizeof hang, "%s/hang-worker.sh", s_dir);
    SQ_REQUIRE((f = fopen(hang, "w")) != NULL);
    fputs("#!/bin/sh\nexec sleep 60\n", f);
    fclose(f);
    SQ_REQUIRE(chmod(hang, 0755) == 0);
    int64_t t0 = sq_test_now_ms();
    SQ_CHECK(s_check(hang, "--ctx 512", SQ_ETIMEDOUT, "--check-flags did not answer within 10 s"));
    SQ_CHECK(sq_test_now_ms() - t0 < 15000);
    if (!s_worker) {
        fprintf(stderr, "  (no shardq-worker given: its own answers not checked)\n");
        return;
    }
    SQ_CHECK(s_check(s_worker, "--ctx 512 --threads=2 --kv-type q8_0", 0, ""));
    SQ_CHECK(s_check(s_worker, "--bogus-flag", SQ_EINVAL,
                     "shardq-worker: unknown option --bogus-flag"));
    SQ_CHECK(s_check(s_worker, "--threads", SQ_EINVAL, "shardq-worker: --threads needs a value"));
    SQ_CHECK(s_check(s_worker, "--kv-type q4", SQ_EINVAL,
                     "shardq-worker: --kv-type: 'q4' is not f16, f32 or q8_0"));
    SQ_CHECK(s_check(s_worker, "--threads 0", SQ_EINVAL, "--threads"));
    SQ_CHECK(s_check(s_worker, "--help", SQ_EINVAL, "a group would not serve"));
}

int
main(int argc, char **argv)
{
    if (argc > 1)
        s_fake = argv[1];
    if (argc > 2)
        s_worker = argv[2];
    snprintf(s_dir, sizeof s_dir, "/tmp/sq-local-act-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    setenv("SQ_FAKE_DIR", s_dir, 1);
    SQ_RUN(test_lifecycle);
    SQ_RUN(test_spawn_failure);
    SQ_RUN(test_zero_grace);
    SQ_RUN(test_exit_reported);
    SQ_RUN(test_check_flags);
    sched_rm_tree(s_dir);
    return sq_test_summary("local_actuator");
}
