/*  sq_harness: database, ports, processes and polling for one e2e test
 *  (see sq_harness.h). The harness is the only owner of what it starts:
 *  destroy kills everything and drops the database, even after a failure.
 */
#define _GNU_SOURCE
#include "sq_harness.h"

#include "sq_error.h"
#include "sq_test.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <signal.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SQ_HARNESS_MAX_PROCS 64
#define SQ_HARNESS_PORT_LO 16500
#define SQ_HARNESS_PORT_HI 16999
#define SQ_HARNESS_START_MS 20000   /* a broker must listen within this */
#define SQ_HARNESS_TAIL_LINES 60

struct sq_harness_t {
    char *admin_conninfo;       /* SHARDQ_TEST_DB: where we CREATE DATABASE */
    char *conninfo;             /* this test's database */
    char dbname[64];
    char log_dir[512];
    char client_ep[64];
    char worker_ep[64];
    int client_port;
    int worker_port;
    PGconn *conn;               /* polling connection to our database */
    sq_proc_t *procs[SQ_HARNESS_MAX_PROCS];
    int n_procs;
    sq_proc_t *broker;          /* the latest broker, also in procs[] */
    int n_brokers;              /* brokers started so far (names their logs) */
    bool pg_down;               /* we stopped PostgreSQL: start it at the end */
};

/* --- database -------------------------------------------------------- */

/* Append key='value' to buf, escaping as libpq's conninfo grammar wants. */
static void
s_conninfo_append(char *buf, size_t size, const char *key, const char *value)
{
    size_t n = strlen(buf);
    n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%s='", n ? " " : "", key);
    for (const char *p = value; *p && n + 3 < size; p++) {
        if (*p == '\'' || *p == '\\')
            buf[n++] = '\\';
        buf[n++] = *p;
    }
    if (n + 2 < size) {
        buf[n++] = '\'';
        buf[n] = '\0';
    }
}

/* The conninfo `base` (keyword form or URL) with its dbname replaced. */
static char *
s_conninfo_with_db(const char *base, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    if (!opts) {
        SQ_FAIL(SQ_EINVAL, "SHARDQ_TEST_DB: %s", err ? err : "unparsable conninfo");
        PQfreemem(err);
        return NULL;
    }
    char buf[2048] = "";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (strcmp(o->keyword, "dbname") == 0 || !o->val)
            continue;
        s_conninfo_append(buf, sizeof buf, o->keyword, o->val);
    }
    s_conninfo_append(buf, sizeof buf, "dbname", dbname);
    PQconninfoFree(opts);
    return strdup(buf);
}

/* "database does not exist, skipping" and the like are not news. */
static void
s_quiet(void *arg, const char *message)
{
}

/* Run a statement on a fresh connection to the admin database. */
static int
s_admin_exec(const sq_harness_t *self, const char *sql)
{
    PGconn *c = PQconnectdb(self->admin_conninfo);
    PQsetNoticeProcessor(c, s_quiet, NULL);
    int rc = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        rc = SQ_FAIL(SQ_EDBDOWN, "connect %s: %s", self->admin_conninfo, PQerrorMessage(c));
    } else {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            rc = SQ_FAIL(SQ_EDB, "%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    }
    PQfinish(c);
    return rc;
}

static int
s_create_database(sq_harness_t *self, const char *name)
{
    int n = snprintf(self->dbname, sizeof self->dbname, "sq_e2e_%.30s_%d", name, (int)getpid());
    for (int i = 0; i < n; i++)
        self->dbname[i] = (char)tolower((unsigned char)self->dbname[i]);
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", self->dbname);
    int rc = s_admin_exec(self, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", self->dbname);
    if (rc == 0)
        rc = s_admin_exec(self, sql);
    if (rc != 0)
        return rc;
    self->conninfo = s_conninfo_with_db(self->admin_conninfo, self->dbname);
    return self->conninfo ? 0 : SQ_EINVAL;
}

/* --- ports, logs ----------------------------------------------------- */

/* Probe a loopback TCP port: can we bind it (free), or connect to it
 * (someone listens)? */
static bool
s_port_probe(int port, bool want_listener)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = want_listener ? connect(fd, (struct sockaddr *)&a, sizeof a)
                           : bind(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
    return rc == 0;
}

/* A free port in our range other than `not`, starting at a pid-derived
 * place so that tests running side by side rarely probe the same ones. */
int
sq_harness_free_port(int not)
{
    int span = SQ_HARNESS_PORT_HI - SQ_HARNESS_PORT_LO + 1;
    int start = (int)((getpid() * 37L + not) % span);
    for (int i = 0; i < span; i++) {
        int port = SQ_HARNESS_PORT_LO + (start + i) % span;
        if (port != not && s_port_probe(port, false))
            return port;
    }
    return SQ_FAIL(SQ_EAGAIN, "no free port in %d-%d", SQ_HARNESS_PORT_LO, SQ_HARNESS_PORT_HI);
}

static int
s_make_log_dir(sq_harness_t *self, const char *name)
{
    const char *base = getenv("SHARDQ_E2E_LOG_DIR");
    if (!base || !*base)
        base = "e2e-logs";
    mkdir(base, 0755);
    snprintf(self->log_dir, sizeof self->log_dir, "%s/%s-%d", base, name, (int)getpid());
    if (mkdir(self->log_dir, 0755) != 0 && errno != EEXIST)
        return SQ_FAIL(-errno, "mkdir %s: %s", self->log_dir, strerror(errno));
    return 0;
}

static void
s_print_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    /* Two passes: count lines, then print the last ones. */
    long n_lines = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF)
        n_lines += ch == '\n';
    rewind(f);
    long skip = n_lines > SQ_HARNESS_TAIL_LINES ? n_lines - SQ_HARNESS_TAIL_LINES : 0;
    fprintf(stderr, "==== %s (last %ld of %ld lines) ====\n", path, n_lines - skip, n_lines);
    char line[2048];
    long i = 0;
    while (fgets(line, sizeof line, f)) {
        if (i++ >= skip)
            fputs(line, stderr);
        if (!strchr(line, '\n') && !feof(f))
            i--;    /* a long line continues in the next chunk */
    }
    fclose(f);
}

/* --- lifecycle ------------------------------------------------------- */

/* Two free ports for the broker, and the endpoints naming them. */
static int
s_pick_ports(sq_harness_t *self)
{
    self->client_port = sq_harness_free_port(0);
    self->worker_port = self->client_port > 0 ? sq_harness_free_port(self->client_port) : -1;
    if (self->worker_port < 0)
        return self->client_port < 0 ? self->client_port : self->worker_port;
    snprintf(self->client_ep, sizeof self->client_ep, "tcp://127.0.0.1:%d", self->client_port);
    snprintf(self->worker_ep, sizeof self->worker_ep, "tcp://127.0.0.1:%d", self->worker_port);
    return 0;
}

sq_harness_t *
sq_harness_new(const char *name)
{
    const char *admin = sq_test_env_or_skip("SHARDQ_TEST_DB");
    sq_harness_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->admin_conninfo = strdup(admin);
    if (!self->admin_conninfo || s_make_log_dir(self, name) != 0
        || s_create_database(self, name) != 0)
        goto fail;
    if (s_pick_ports(self) != 0)
        goto fail;
    return self;
fail:
    fprintf(stderr, "harness %s: %s\n", name, sq_error_detail());
    sq_harness_destroy(&self);
    return NULL;
}

void
sq_harness_destroy(sq_harness_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_harness_t *self = *self_p;
    /* A test that failed while PostgreSQL was down must not leave it down
     * for the tests after it. */
    if (self->pg_down)
        sq_harness_pg_ctl(self, "start");
    for (int i = 0; i < self->n_procs; i++)
        sq_proc_signal(self->procs[i], SIGKILL);
    /* Logs are kept (and their tails shown) only when something failed. */
    bool failed = sq_test_n_failed_checks > 0;
    for (int i = 0; i < self->n_procs; i++) {
        if (failed)
            s_print_tail(sq_proc_log(self->procs[i]));
        else
            unlink(sq_proc_log(self->procs[i]));
        sq_proc_destroy(&self->procs[i]);
    }
    if (failed)
        fprintf(stderr, "logs kept in %s, database %s\n", self->log_dir, self->dbname);
    else
        rmdir(self->log_dir);
    PQfinish(self->conn);
    if (self->conninfo) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", self->dbname);
        s_admin_exec(self, sql);
    }
    free(self->conninfo);
    free(self->admin_conninfo);
    free(self);
    *self_p = NULL;
}

const char *
sq_harness_conninfo(const sq_harness_t *self)
{
    return self->conninfo;
}

const char *
sq_harness_client_endpoint(const sq_harness_t *self)
{
    return self->client_ep;
}

const char *
sq_harness_worker_endpoint(const sq_harness_t *self)
{
    return self->worker_ep;
}

const char *
sq_harness_log_dir(const sq_harness_t *self)
{
    return self->log_dir;
}

/* --- processes ------------------------------------------------------- */

sq_proc_t *
sq_harness_spawn(sq_harness_t *self, const char *name, const char *const argv[])
{
    if (self->n_procs == SQ_HARNESS_MAX_PROCS) {
        SQ_FAIL(SQ_ETOOBIG, "more than %d processes in one test", SQ_HARNESS_MAX_PROCS);
        return NULL;
    }
    char log_path[640];
    snprintf(log_path, sizeof log_path, "%s/%s.log", self->log_dir, name);
    sq_proc_t *p = sq_proc_new(name, argv, log_path);
    if (p)
        self->procs[self->n_procs++] = p;
    return p;
}

static const char *
s_bin(const char *var)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        SQ_FAIL(SQ_ENOTFOUND, "%s is not set (CTest sets it)", var);
        return NULL;
    }
    return v;
}

/* argv = head..., extra..., NULL into out (capacity cap). */
static int
s_build_argv(const char **out, int cap, const char *const head[], int n_head,
             const char *const extra[])
{
    int n_extra = 0;
    while (extra && extra[n_extra])
        n_extra++;
    if (n_head + n_extra + 1 > cap)
        return SQ_FAIL(SQ_ETOOBIG, "%d arguments, at most %d", n_head + n_extra, cap - 1);
    memcpy(out, head, (size_t)n_head * sizeof *out);
    if (n_extra)
        memcpy(out + n_head, extra, (size_t)n_extra * sizeof *out);
    out[n_head + n_extra] = NULL;
    return 0;
}

int
sq_harness_migrate(sq_harness_t *self)
{
    const char *bin = s_bin("SHARDQ_BROKER_BIN");
    if (!bin)
        return SQ_ENOTFOUND;
    const char *argv[] = {bin, "--migrate", "--db", self->conninfo, NULL};
    sq_proc_t *p = sq_harness_spawn(self, "migrate", argv);
    if (!p)
        return sq_error_code();
    int rc = sq_proc_wait(p, 60000);
    if (rc == 0 && sq_proc_exit_code(p) != 0)
        rc = SQ_FAIL(SQ_EDB, "shardq-broker --migrate exited %d (see %s)",
                     sq_proc_exit_code(p), sq_proc_log(p));
    return rc;
}

sq_proc_t *
sq_harness_broker_start(sq_harness_t *self, const char *const extra[])
{
    const char *bin = s_bin("SHARDQ_BROKER_BIN");
    if (!bin)
        return NULL;
    const char *head[] = {bin, "--db", self->conninfo, "--listen", self->client_ep,
                          "--workers", self->worker_ep};
    const char *argv[64];
    if (s_build_argv(argv, 64, head, 7, extra) != 0)
        return NULL;
    char name[32];
    snprintf(name, sizeof name, "broker-%d", ++self->n_brokers);
    sq_proc_t *p = sq_harness_spawn(self, name, argv);
    if (!p)
        return NULL;
    self->broker = p;
    int64_t deadline = sq_test_now_ms() + SQ_HARNESS_START_MS;
    while (!(s_port_probe(self->client_port, true) && s_port_probe(self->worker_port, true))) {
        if (!sq_proc_running(p)) {
            SQ_FAIL(SQ_EIO, "%s exited %d before listening (see %s)", name,
                    sq_proc_exit_code(p), sq_proc_log(p));
            return NULL;
        }
        if (sq_test_now_ms() > deadline) {
            SQ_FAIL(SQ_ETIMEDOUT, "%s not listening on %s and %s after %d ms", name,
                    self->client_ep, self->worker_ep, SQ_HARNESS_START_MS);
            return NULL;
        }
        sq_harness_poll_pause();
    }
    return p;
}

sq_proc_t *
sq_harness_broker(const sq_harness_t *self)
{
    return self->broker;
}

sq_proc_t *
sq_harness_worker_start(sq_harness_t *self, const char *name, const char *const extra[])
{
    const char *bin = s_bin("SHARDQ_TEST_WORKER_BIN");
    if (!bin)
        return NULL;
    const char *head[] = {bin, "--broker", self->worker_ep, "--group", name};
    const char *argv[64];
    if (s_build_argv(argv, 64, head, 5, extra) != 0)
        return NULL;
    return sq_harness_spawn(self, name, argv);
}

sq_harness_t *
sq_harness_start(const char *name, const char *const broker_extra[])
{
    sq_harness_t *self = sq_harness_new(name);
    if (!self)
        return NULL;
    /* A port found free may be taken before the broker binds it: then
     * try other ports (nobody has connected to these yet). */
    bool up = sq_harness_migrate(self) == 0;
    for (int attempt = 0; up && attempt < 3; attempt++) {
        if (sq_harness_broker_start(self, broker_extra))
            break;
        up = attempt < 2 && s_pick_ports(self) == 0;
    }
    if (!up) {
        fprintf(stderr, "harness %s: %s\n", name, sq_error_detail());
        sq_test_fail(__FILE__, __LINE__, "broker setup");
        sq_harness_destroy(&self);
    }
    return self;
}

bool
sq_harness_has_pg_ctl(void)
{
    const char *v = getenv("SHARDQ_PG_CTL");
    return v && *v;
}

int
sq_harness_pg_ctl(sq_harness_t *self, const char *action)
{
    const char *ctl = s_bin("SHARDQ_PG_CTL");
    if (!ctl)
        return SQ_ENOTFOUND;
    const char *argv[] = {ctl, action, NULL};
    char name[32];
    snprintf(name, sizeof name, "pg-%s", action);
    sq_proc_t *p = sq_harness_spawn(self, name, argv);
    if (!p)
        return sq_error_code();
    int rc = sq_proc_wait(p, 120000);
    if (rc == 0 && sq_proc_exit_code(p) != 0)
        rc = SQ_FAIL(SQ_EIO, "%s %s exited %d", ctl, action, sq_proc_exit_code(p));
    if (rc == 0)
        self->pg_down = strcmp(action, "kill") == 0 || strcmp(action, "stop") == 0;
    return rc;
}

/* --- SQL polling ----------------------------------------------------- */

void
sq_harness_poll_pause(void)
{
    struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
}

static int
s_connect(sq_harness_t *self)
{
    if (self->conn && PQstatus(self->conn) == CONNECTION_OK)
        return 0;
    PQfinish(self->conn);
    self->conn = PQconnectdb(self->conninfo);
    if (PQstatus(self->conn) != CONNECTION_OK)
        return SQ_FAIL(SQ_EDBDOWN, "connect %s: %s", self->dbname, PQerrorMessage(self->conn));
    return 0;
}

PGresult *
sq_harness_sql(sq_harness_t *self, const char *sql, int nparams, const char *const params[])
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (s_connect(self) != 0)
            continue;
        PGresult *r = PQexecParams(self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
            return r;
        SQ_FAIL(SQ_EDB, "%s: %s", sql, PQerrorMessage(self->conn));
        PQclear(r);
        if (PQstatus(self->conn) == CONNECTION_OK)
            return NULL;    /* a real SQL error: retrying will not help */
    }
    return NULL;
}

int
sq_harness_sql_i64(sq_harness_t *self, const char *sql, int64_t *out)
{
    PGresult *r = sq_harness_sql(self, sql, 0, NULL);
    if (!r)
        return sq_error_code() ? sq_error_code() : SQ_EDB;
    int rc = 0;
    if (PQntuples(r) < 1 || PQnfields(r) < 1)
        rc = SQ_FAIL(SQ_EDB, "%s: no rows", sql);
    else
        *out = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}

int
sq_harness_sql_file_rows(sq_harness_t *self, const char *rel_path, int64_t *n_rows_out)
{
    const char *dir = s_bin("SHARDQ_SQL_DIR");
    if (!dir)
        return SQ_ENOTFOUND;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel_path);
    FILE *f = fopen(path, "r");
    if (!f)
        return SQ_FAIL(-errno, "%s: %s", path, strerror(errno));
    char *sql = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&sql, &cap, '\0', f);   /* the whole file */
    fclose(f);
    if (n < 0) {
        free(sql);
        return SQ_FAIL(SQ_EIO, "%s: cannot read", path);
    }
    PGresult *r = sq_harness_sql(self, sql, 0, NULL);
    free(sql);
    if (!r)
        return sq_error_code();
    *n_rows_out = PQntuples(r);
    PQclear(r);
    return 0;
}

sq_proc_t *
sq_harness_psql(sq_harness_t *self, const char *name, const char *const args[])
{
    const char *bindir = getenv("PG_BINDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/psql",
             bindir && *bindir ? bindir : "/usr/lib/postgresql/15/bin");
    if (access(path, X_OK) != 0)
        snprintf(path, sizeof path, "/usr/bin/psql");
    const char *head[] = {path, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self->conninfo};
    const char *argv[64];
    if (s_build_argv(argv, 64, head, 8, args) != 0)
        return NULL;
    sq_proc_t *p = sq_harness_spawn(self, name, argv);
    if (p && sq_proc_wait(p, 60000) != 0)
        return NULL;
    return p;
}

/* Poll until pred(value) holds; shared by the two waits below. */
static int
s_wait(sq_harness_t *self, const char *sql, int64_t want, bool at_least, int timeout_ms,
       int64_t *last_out)
{
    int64_t deadline = sq_test_now_ms() + timeout_ms;
    int64_t last = -1;
    for (;;) {
        int64_t v;
        if (sq_harness_sql_i64(self, sql, &v) == 0) {
            last = v;
            if (v == want || (at_least && v >= want))
                break;
        }
        if (sq_test_now_ms() > deadline) {
            if (last_out)
                *last_out = last;
            return SQ_FAIL(SQ_ETIMEDOUT, "after %d ms `%s` is %lld, want %s%lld", timeout_ms,
                           sql, (long long)last, at_least ? ">= " : "", (long long)want);
        }
        sq_harness_poll_pause();
    }
    if (last_out)
        *last_out = last;
    return 0;
}

int
sq_harness_wait_i64(sq_harness_t *self, const char *sql, int64_t want, int timeout_ms)
{
    return s_wait(self, sql, want, false, timeout_ms, NULL);
}

int
sq_harness_wait_at_least(sq_harness_t *self, const char *sql, int64_t at_least, int timeout_ms,
                         int64_t *last_out)
{
    return s_wait(self, sql, at_least, true, timeout_ms, last_out);
}
