/*  shardq-scheduler's control loop under faults, as a process (label db):
 *   - PostgreSQL that accepts connections but never answers (a TCP proxy
 *     in this test stops relaying): the loop keeps ticking and deciding,
 *     events wait in memory and are written once the server answers
 *     again, and SIGTERM is obeyed while it hangs;
 *   - a row the database refuses (a CHECK constraint this test adds) is
 *     logged with PostgreSQL's reason and dropped after a few tries, and
 *     the rows behind it are recorded;
 *   - an actuator error cut to the row's 255 bytes inside a UTF-8
 *     character is still recorded (it was refused as invalid UTF-8);
 *   - a reload that removes or renames a pool scales the vanished pool
 *     to 0 (drained, event recorded);
 *   - --grace-s 0 kills a group that ignores the drain signal at once.
 *  A protocol fixture broker (ROUTER answering STATS and WORKERS through
 *  sq_wire) gives the numbers; tests/unit/sched_fake_mpirun.sh stands in
 *  for mpirun + shardq-worker.
 *  Each scenario has pools of its own names (the events are per pool).
 *  argv: scheduler binary, fake mpirun, sql dir. Ports 18560-18562. */
#define _DEFAULT_SOURCE /* usleep */
#define _POSIX_C_SOURCE 200809L
#include "sched_testutil.h"
#include "sq_db.h"
#include "sq_error.h"
#include "sq_test.h"
#include "sq_wire.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define S_BROKER_EP "tcp://127.0.0.1:18560"
#define S_PROXY_PORT 18561
#define S_METRICS_PORT 18562

static const char *s_bin, *s_fake, *s_sql;
static char s_dir[64], s_mpirun[128], s_dbname[64], s_direct[1024], s_proxied[1024];
static sq_db_t *s_db;

/* --- fixture broker: STATS for one pool (h.gguf), no groups ------------
 * Other pools get no broker numbers: the scheduler then holds them at
 * min_groups, which is all those scenarios need. */

static sched_broker_t *s_broker;

/* --- a TCP proxy in front of PostgreSQL that can stop answering --------
 * Relaying, it passes bytes both ways. Hung, it relays nothing on the
 * open connections and accepts new ones without ever answering: a server
 * that is there and does not answer. */

#define S_MAX_CONNS 64
static _Atomic int s_hang, s_proxy_stop;
static char s_pg_unix[100], s_pg_host[256], s_pg_port[16];

typedef struct {
    int client, upstream;   /* upstream -1: accepted while hung, never answered */
} s_pair_t;

static int
s_upstream(void)
{
    if (s_pg_unix[0]) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", s_pg_unix);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(s_pg_host, s_pg_port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Move what `from` has to `to`; 0 when the connection ended. */
static int
s_relay(int from, int to)
{
    char buf[65536];
    ssize_t n = recv(from, buf, sizeof buf, 0);
    for (ssize_t off = 0; n > 0 && off < n;) {
        ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
        if (w <= 0)
            return 0;
        off += w;
    }
    return n > 0;
}

static void
s_close_pair(s_pair_t *p)
{
    close(p->client);
    if (p->upstream >= 0)
        close(p->upstream);
    p->client = -1;
}

static void *
s_proxy(void *arg)
{
    int lfd = (int)(intptr_t)arg, was_hung = 0;
    s_pair_t pairs[S_MAX_CONNS];
    int n = 0;
    while (!atomic_load(&s_proxy_stop)) {
        int hang = atomic_load(&s_hang);
        for (int i = 0; was_hung && !hang && i < n; i++)
            if (pairs[i].upstream < 0)
                s_close_pair(&pairs[i]); /* never answered: the client gave up on it */
        was_hung = hang;
        struct pollfd pfd[1 + 2 * S_MAX_CONNS] = {{lfd, POLLIN, 0}};
        int owner[1 + 2 * S_MAX_CONNS], nfds = 1;
        for (int i = 0; !hang && i < n; i++) {
            if (pairs[i].client < 0 || pairs[i].upstream < 0)
                continue;
            owner[nfds] = i;
            pfd[nfds++] = (struct pollfd){pairs[i].client, POLLIN, 0};
            owner[nfds] = i;
            pfd[nfds++] = (struct pollfd){pairs[i].upstream, POLLIN, 0};
        }
        if (poll(pfd, (nfds_t)nfds, 50) <= 0)
            goto compact;
        if (pfd[0].revents & POLLIN) {
            int c = accept(lfd, NULL, NULL);
            int u = c >= 0 && !hang && n < S_MAX_CONNS ? s_upstream() : -1;
            if (c >= 0 && n < S_MAX_CONNS && (hang || u >= 0))
                pairs[n++] = (s_pair_t){c, u};
            else if (c >= 0)
                close(c);
        }
        for (int k = 1; k < nfds; k++) {
            s_pair_t *p = &pairs[owner[k]];
            if (p->client < 0 || !(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int from = pfd[k].fd, to = from == p->client ? p->upstream : p->client;
            if (!s_relay(from, to))
                s_close_pair(p);
        }
    compact:
        for (int i = 0; i < n;)
            if (pairs[i].client < 0)
                pairs[i] = pairs[--n];
            else
                i++;
    }
    for (int i = 0; i < n; i++)
        s_close_pair(&pairs[i]);
    return NULL;
}

/* The test server's address from its conninfo, and a conninfo for the
 * scheduler that goes through the proxy (the same user and options). */
static int
s_conninfos(const char *base)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    if (!opts) {
        fprintf(stderr, "conninfo: %s\n", err ? err : "?");
        PQfreemem(err);
        return -1;
    }
    const char *host = NULL, *port = "5432";
    size_t k = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val)
            continue;
        if (!strcmp(o->keyword, "host"))
            host = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (strcmp(o->keyword, "hostaddr") && strcmp(o->keyword, "dbname"))
            k += (size_t)snprintf(s_proxied + k, sizeof s_proxied - k, "%s='%s' ", o->keyword,
                                  o->val);
    }
    snprintf(s_proxied + k, sizeof s_proxied - k, "host=127.0.0.1 port=%d dbname=%s",
             S_PROXY_PORT, s_dbname);
    snprintf(s_pg_port, sizeof s_pg_port, "%s", port);
    if (!host || host[0] == '/')
        snprintf(s_pg_unix, sizeof s_pg_unix, "%s/.s.PGSQL.%s", host ? host : "/tmp", port);
    else
        snprintf(s_pg_host, sizeof s_pg_host, "%s", host);
    PQconninfoFree(opts);
    return 0;
}

/* --- helpers ----------------------------------------------------------- */

static const char *
s_events(const char *pool)
{
    static char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT coalesce(string_agg(from_groups || '>' || to_groups, ',' ORDER BY id), '')"
             " FROM scaling_events WHERE pool = '%s'", pool);
    return sql;
}

static void
s_write(const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int
s_file_exists(const char *name)
{
    char path[256];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    return stat(path, &st) == 0;
}

static int
s_wait_file(const char *name, int timeout_ms)
{
    for (int64_t end = sq_test_now_ms() + timeout_ms; sq_test_now_ms() < end; usleep(20000))
        if (s_file_exists(name))
            return 1;
    fprintf(stderr, "file not seen: %s\n", name);
    return 0;
}

/* The scheduler's log (its stderr) so far, in a static buffer. */
static const char *
s_log(const char *name)
{
    static char buf[1 << 18];
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* Start the scheduler on s_dir/policy, logging to s_dir/log. */
static pid_t
s_start(const char *policy, const char *db, const char *mpirun, const char *grace,
        const char *log)
{
    char ppath[128], lpath[128];
    snprintf(ppath, sizeof ppath, "%s/%s", s_dir, policy);
    snprintf(lpath, sizeof lpath, "%s/%s", s_dir, log);
    char *argv[] = {(char *)s_bin, "--db", (char *)db, "--broker", S_BROKER_EP, "--policy",
                    ppath, "--actuator", "local", "--mpirun", (char *)mpirun, "--tick-ms", "200",
                    "--metrics-port", "18562", "--metrics-bind", "127.0.0.1", "--grace-s",
                    (char *)grace, NULL};
    return sched_spawn_logged(argv, lpath);
}

/* After a scheduler stopped: kill what it started when it did not stop
 * cleanly (each group's mpirun leads a process group; s_mpirun notes their
 * pids), and forget the pids either way (they may be reused). */
static void
s_forget_groups(int kill_them)
{
    char path[128], line[32];
    snprintf(path, sizeof path, "%s/pids", s_dir);
    FILE *f = kill_them ? fopen(path, "r") : NULL;
    while (f && fgets(line, sizeof line, f))
        if (atoi(line) > 1)
            kill(-atoi(line), SIGKILL);
    if (f)
        fclose(f);
    remove(path);
}

/* SIGTERM and wait up to timeout_ms for exit status 0; SIGKILL after. */
static int
s_stop_within(pid_t pid, int timeout_ms)
{
    kill(pid, SIGTERM);
    int status = -1;
    for (int64_t end = sq_test_now_ms() + timeout_ms; sq_test_now_ms() < end; usleep(20000))
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s_forget_groups(0);
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        }
    fprintf(stderr, "scheduler still running %d ms after SIGTERM: killed\n", timeout_ms);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    s_forget_groups(1);
    return 0;
}

/* A counter from the metrics, or -1 when the scrape failed. */
static long long
s_metric(const char *name)
{
    static char buf[65536];
    char line[128]; /* at a line's start: "# HELP name ..." is not it */
    snprintf(line, sizeof line, "\n%s ", name);
    const char *at = strstr(sched_scrape(S_METRICS_PORT, buf, sizeof buf), line);
    return at ? atoll(at + strlen(line)) : -1;
}

/* --- the scenarios ----------------------------------------------------- */

/* The database stops answering: the loop carries on (ticks, decisions,
 * the actuator), the event waits in memory, and is written once the
 * server answers again; SIGTERM is obeyed while it hangs. */
static void
test_db_hangs(void)
{
    s_write("hang.yaml", "pools:\n  - {name: h, worker: {model: h.gguf}, min_groups: 1,"
                         " max_groups: 4, target_queued_per_group: 100,"
                         " scale_down_stabilization_s: 1}\n");
    pid_t pid = s_start("hang.yaml", s_proxied, s_mpirun, "2", "hang.log");
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(sched_wait_sql(s_db, s_events("h"), "0>1", 20000));
    atomic_store(&s_hang, 1);
    sched_broker_set(s_broker, 350, 0);
    /* decided and applied while the database hangs */
    SQ_CHECK(sched_wait_metric(S_METRICS_PORT, "shardq_scheduler_pool_desired_groups{pool=\"h\"} 4",
                               30000));
    SQ_CHECK(s_wait_file("h-4.args", 10000));
    SQ_CHECK(sched_wait_metric(S_METRICS_PORT, "shardq_scheduler_events_pending 1", 10000));
    long long t0 = -1, t1 = -1;
    for (int64_t end = sq_test_now_ms() + 20000; t0 < 0 && sq_test_now_ms() < end;)
        t0 = s_metric("shardq_scheduler_ticks_total");
    for (int64_t end = sq_test_now_ms() + 20000; t1 <= t0 + 3 && sq_test_now_ms() < end;
         usleep(100000))
        t1 = s_metric("shardq_scheduler_ticks_total");
    SQ_CHECK(t0 >= 0 && t1 > t0 + 3); /* still ticking */
    SQ_CHECK(strcmp(sched_sql_one(s_db, s_events("h")), "0>1") == 0);

    /* the server answers again: the waiting event is written */
    atomic_store(&s_hang, 0);
    SQ_CHECK(sched_wait_sql(s_db, s_events("h"), "0>1,1>4", 30000));
    SQ_CHECK(strstr(s_log("hang.log"), "no answer from the server within") != NULL);

    /* hung again with an event waiting: SIGTERM still stops it */
    atomic_store(&s_hang, 1);
    sched_broker_set(s_broker, 0, 0);
    SQ_CHECK(sched_wait_metric(S_METRICS_PORT, "shardq_scheduler_pool_desired_groups{pool=\"h\"} 1",
                               30000));
    SQ_CHECK(s_stop_within(pid, 20000));
    atomic_store(&s_hang, 0);
}

/* A row the database refuses is retried a few times, then logged with
 * PostgreSQL's reason and dropped: the rows behind it are recorded. */
static void
test_refused_row(void)
{
    SQ_REQUIRE(sq_db_exec_script(s_db, "ALTER TABLE scaling_events ADD CONSTRAINT"
                                       " faults_no_x CHECK (pool <> 'x')") == 0);
    s_write("refuse.yaml",
            "pools:\n  - {name: x, worker: {model: x.gguf}, max_groups: 2,"
            " target_queued_per_group: 10}\n"
            "  - {name: y, worker: {model: y.gguf}, max_groups: 2, target_queued_per_group: 10}\n");
    pid_t pid = s_start("refuse.yaml", s_direct, s_mpirun, "2", "refuse.log");
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(sched_wait_sql(s_db, s_events("y"), "0>1", 20000)); /* behind x's refused 0>1 */
    SQ_CHECK(strcmp(sched_sql_one(s_db, s_events("x")), "") == 0);
    SQ_CHECK(sched_wait_metric(S_METRICS_PORT, "shardq_scheduler_events_refused_total 1", 10000));
    const char *log = s_log("refuse.log");
    const char *line = strstr(log, "scaling event refused by the database, dropped");
    SQ_CHECK(line != NULL);
    /* the row and PostgreSQL's own words, not the SQL text */
    SQ_CHECK(line && strstr(line, "pool=x from=0 to=1") != NULL);
    SQ_CHECK(line && strstr(line, "violates check constraint") != NULL);
    SQ_CHECK(line && strstr(line, "faults_no_x") != NULL);
    SQ_CHECK(s_stop_within(pid, 20000));
    SQ_CHECK(sq_db_exec_script(s_db, "ALTER TABLE scaling_events DROP CONSTRAINT faults_no_x")
             == 0);
}

/* The actuator's error goes into a 256-byte column value: cut inside a
 * 2-byte character it was invalid UTF-8, and PostgreSQL refused the row. */
static void
test_error_cut_in_utf8(void)
{
    char mpirun[512] = "/nonexistent/x"; /* "pool g: spawn " + this: 28 bytes, then é */
    for (int i = 0; i < 150; i++)
        strcat(mpirun, "\xc3\xa9");
    s_write("utf8.yaml", "pools:\n  - {name: g, worker: {model: g.gguf}, max_groups: 2,"
                         " target_queued_per_group: 10}\n");
    pid_t pid = s_start("utf8.yaml", s_direct, mpirun, "2", "utf8.log");
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(sched_wait_sql(s_db, "SELECT count(*) > 0 FROM scaling_events WHERE pool = 'g'", "t",
                            20000));
    SQ_CHECK(strcmp(sched_sql_one(
                        s_db,
                        "SELECT bool_and(NOT applied AND error LIKE 'pool g: spawn /nonexistent/x%'"
                        " AND octet_length(error) BETWEEN 250 AND 255)"
                        " FROM scaling_events WHERE pool = 'g'"),
                    "t") == 0);
    SQ_CHECK(s_stop_within(pid, 20000));
}

/* SIGHUP with a policy that renames pool rb to rc: rb's group is drained
 * (scaled to 0 with an event, as any scale-down) and rc starts. */
static void
test_reload_removes_pool(void)
{
    const char *ra = "pools:\n  - {name: ra, worker: {model: a.gguf}, max_groups: 2,"
                     " target_queued_per_group: 10}\n";
    char text[512];
    snprintf(text, sizeof text, "%s  - {name: rb, worker: {model: b.gguf}, max_groups: 2,"
             " target_queued_per_group: 10}\n", ra);
    s_write("reload.yaml", text);
    pid_t pid = s_start("reload.yaml", s_direct, s_mpirun, "2", "reload.log");
    SQ_REQUIRE(pid > 0);
    /* group ids count across pools: ra-1, rb-2 */
    SQ_CHECK(sched_wait_sql(s_db, s_events("rb"), "0>1", 20000));
    SQ_CHECK(s_wait_file("rb-2.args", 10000));
    snprintf(text, sizeof text, "%s  - {name: rc, worker: {model: c.gguf}, max_groups: 2,"
             " target_queued_per_group: 10}\n", ra);
    s_write("reload.yaml", text);
    kill(pid, SIGHUP);
    SQ_CHECK(sched_wait_sql(s_db, s_events("rb"), "0>1,1>0", 20000));
    SQ_CHECK(strncmp(sched_sql_one(s_db, "SELECT reason FROM scaling_events WHERE pool = 'rb'"
                                         " ORDER BY id DESC LIMIT 1"),
                     "down (pool no longer in the policy)", 35) == 0);
    SQ_CHECK(strcmp(sched_sql_one(
                        s_db, "SELECT policy_version = (SELECT max(version) FROM policies)"
                              " FROM scaling_events WHERE pool = 'rb' ORDER BY id DESC LIMIT 1"),
                    "t") == 0);
    SQ_CHECK(s_wait_file("rb-2.term", 10000)); /* drained, not left running */
    SQ_CHECK(sched_wait_sql(s_db, s_events("rc"), "0>1", 10000));
    SQ_CHECK(strcmp(sched_sql_one(s_db, s_events("ra")), "0>1") ==
             0); /* the kept pool is untouched */
    SQ_CHECK(s_stop_within(pid, 20000));
}

/* --grace-s 0: a group that ignores the drain signal is killed at once on
 * SIGTERM (it meant 60 s). */
static void
test_grace_zero(void)
{
    s_write("grace.yaml", "pools:\n  - {name: z, worker: {model: z.gguf}, max_groups: 2,"
                          " target_queued_per_group: 10}\n");
    setenv("SQ_FAKE_IGNORE_TERM", "1", 1);
    pid_t pid = s_start("grace.yaml", s_direct, s_mpirun, "0", "grace.log");
    unsetenv("SQ_FAKE_IGNORE_TERM");
    SQ_REQUIRE(pid > 0);
    SQ_CHECK(s_wait_file("z-1.args", 20000));
    SQ_CHECK(s_stop_within(pid, 20000));
}

static int
s_setup_db(const char *base)
{
    return sched_db_create(base, s_sql, "sq_sched_faults", s_dbname, sizeof s_dbname, s_direct,
                           sizeof s_direct, &s_db) || s_conninfos(base)
               ? -1
               : 0;
}

static void
s_drop_db(const char *base)
{
    sched_db_drop(base, s_dbname, &s_db);
}

/* A listening socket on 127.0.0.1:port, or -1. */
static int
s_listen(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0)) {
        close(fd);
        fd = -1;
    }
    return fd;
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
    zsys_handler_set(NULL);
    signal(SIGPIPE, SIG_IGN);
    snprintf(s_dir, sizeof s_dir, "/tmp/sq-faults-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    setenv("SQ_FAKE_DIR", s_dir, 1);
    /* mpirun: the fake, with its pid noted (for cleanup if a test fails) */
    snprintf(s_mpirun, sizeof s_mpirun, "%s/mpirun.sh", s_dir);
    char script[512];
    snprintf(script, sizeof script, "#!/bin/sh\necho $$ >> \"$SQ_FAKE_DIR/pids\"\nexec %s \"$@\"\n",
             s_fake);
    s_write("mpirun.sh", script);
    chmod(s_mpirun, 0755);

    s_broker = sched_broker_start(S_BROKER_EP, "h.gguf", "h", 0);
    int lfd = s_listen(S_PROXY_PORT);
    int db_ok = s_setup_db(base) == 0;
    pthread_t proxy;
    SQ_CHECK(s_broker && lfd >= 0 && db_ok);
    if (s_broker && lfd >= 0 && db_ok) {
        if (pthread_create(&proxy, NULL, s_proxy, (void *)(intptr_t)lfd) == 0) {
            SQ_RUN(test_db_hangs);
            SQ_RUN(test_refused_row);
            SQ_RUN(test_error_cut_in_utf8);
            SQ_RUN(test_reload_removes_pool);
            SQ_RUN(test_grace_zero);
            atomic_store(&s_proxy_stop, 1);
            pthread_join(proxy, NULL);
        }
    } else {
        fprintf(stderr, "setup failed: %s\n", sq_error_detail());
    }
    if (lfd >= 0)
        close(lfd);
    sched_broker_stop(&s_broker);
    s_drop_db(base);
    sched_rm_tree(s_dir);
    return sq_test_summary("sched_faults");
}
