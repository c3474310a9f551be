/*  sq_db: libpq connection with backoff, parameterised execution, error
 *  conversion at the boundary, and COPY batches. See sq_db.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_db.h"

#include "sq_clock.h"
#include "sq_error.h"
#include "sq_utf8.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sq_db_t {
    PGconn *conn;       /* NULL after a bounded wait ran out */
    char *conninfo;
    int wait_ms;        /* bound on each wait on the server; 0: none */
    char state[6];      /* SQLSTATE of the last failure; "" when it had none */
};

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Quiet the server's NOTICEs: libraries never print. */
static void s_notice(void *arg, const char *msg) { (void)arg, (void)msg; }

/* Wait until fd is ready for `events` or the deadline (monotonic ms)
 * passes: 1 ready, 0 timed out. A signal does not end the wait early:
 * the bound is what callers rely on. */
static int s_wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - sq_mono_ms();
        if (left <= 0 || fd < 0)
            return 0;
        struct pollfd pfd = {fd, events, 0};
        int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
}

static void s_drop(sq_db_t *self)
{
    if (self->conn)
        PQfinish(self->conn);
    self->conn = NULL;
}

/* PQconnectPoll's state machine with a deadline (libpq's connect_timeout
 * is whole seconds, at least 2, and only covers some of the steps). A host
 * name is still resolved (getaddrinfo) before the bound applies.
 * SQ_EDBDOWN when the deadline passed, else 0 with self->conn in the
 * state libpq left it (CONNECTION_BAD says why). */
static int s_connect_bounded(sq_db_t *self)
{
    int64_t deadline = sq_mono_ms() + self->wait_ms;
    self->conn = PQconnectStart(self->conninfo);
    if (!self->conn || PQstatus(self->conn) == CONNECTION_BAD)
        return 0;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        if (!s_wait_fd(PQsocket(self->conn), ev, deadline)) {
            s_drop(self);
            return SQ_FAIL(SQ_EDBDOWN, "connect: no answer from the server within %d ms",
                           self->wait_ms);
        }
        st = PQconnectPoll(self->conn);
    }
    if (st == PGRES_POLLING_OK && PQsetnonblocking(self->conn, 1) != 0) {
        s_drop(self);
        return SQ_FAIL(SQ_EDBDOWN, "connect: cannot make the connection non-blocking");
    }
    return 0;
}

static int s_session_setup(sq_db_t *self);

static int s_try_connect(sq_db_t *self)
{
    s_drop(self);
    if (self->wait_ms <= 0)
        self->conn = PQconnectdb(self->conninfo);
    else if (s_connect_bounded(self) != 0)
        return SQ_EDBDOWN;
    if (self->conn && PQstatus(self->conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(self->conn, s_notice, NULL);
        return s_session_setup(self);
    }
    /* libpq's message spans lines; a log line must not */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", self->conn ? PQerrorMessage(self->conn) : "out of memory");
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
    return SQ_FAIL(SQ_EDBDOWN, "connect: %s", msg);
}

int sq_db_connect_bounded(const char *conninfo, int timeout_ms, int wait_ms, sq_db_t **out)
{
    *out = NULL;
    sq_db_t *self = calloc(1, sizeof *self);
    if (!self || !(self->conninfo = strdup(conninfo ? conninfo : ""))) {
        free(self);
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    }
    self->wait_ms = wait_ms > 0 ? wait_ms : 0;
    int64_t deadline = sq_mono_ms() + timeout_ms;
    int delay_ms = 50, rc;
    while ((rc = s_try_connect(self)) != 0 && sq_mono_ms() + delay_ms < deadline) {
        s_sleep_ms(delay_ms);
        delay_ms = delay_ms * 2 > 1000 ? 1000 : delay_ms * 2;
    }
    if (rc) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", sq_error_detail());
        sq_db_destroy(&self);
        return SQ_FAIL(rc, "%s", detail);
    }
    *out = self;
    return 0;
}

int sq_db_connect(const char *conninfo, int timeout_ms, sq_db_t **out)
{
    return sq_db_connect_bounded(conninfo, timeout_ms, 0, out);
}

void sq_db_destroy(sq_db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_db_t *self = *self_p;
    s_drop(self);
    free(self->conninfo);
    free(self);
    *self_p = NULL;
}

int sq_db_reconnect(sq_db_t *self) { return s_try_connect(self); }

bool sq_db_is_up(sq_db_t *self)
{
    return self->conn && PQstatus(self->conn) == CONNECTION_OK;
}

PGconn *sq_db_conn(sq_db_t *self) { return self->conn; }

/* How much of `what` goes into a detail: it is often the SQL, whose start
 * names the statement, and all of which would leave no room for the
 * server's message. *more (OUT) is "..." when it was cut. */
static int s_clip(const char *what, const char **more)
{
    size_t n = strlen(what);
    *more = n > 64 ? "..." : "";
    return n > 64 ? (int)sq_utf8_cut(what, 64) : (int)n;
}

int sq_db_fail(sq_db_t *self, PGresult *res, const char *file, int line, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(self->state, sizeof self->state, "%s", state ? state : "");
    const char *msg = res ? PQresultErrorMessage(res) : "";
    if (!msg || !*msg)
        msg = self->conn ? PQerrorMessage(self->conn) : "not connected";
    /* Class 08 = connection exception; 57P01..03 = server shutting down or
     * unavailable; a dead socket has no SQLSTATE at all. */
    bool down = PQstatus(self->conn) != CONNECTION_OK || !state ||
                strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0;
    int rc = down ? SQ_EDBDOWN : SQ_EDB;
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg ? msg : "");
    clean[strcspn(clean, "\n")] = '\0';
    const char *more;
    int cut = s_clip(what, &more);
    return sq_error_set(rc, file, line, "%.*s%s: %s (%s)", cut, what, more, clean,
                        state ? state : "no sqlstate");
}

static int s_check(sq_db_t *self, PGresult *res, const char *what, PGresult **out)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = res;
        else
            PQclear(res);
        return 0;
    }
    int rc = SQ_DB_FAIL(self, res, what);
    PQclear(res);
    return rc;
}

static bool s_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Send, then read every result until the deadline: the first failed one,
 * else the last. NULL on a send or read failure (the connection says
 * why), and with *timed_out when the server did not answer in time. */
static PGresult *s_exec_bounded(sq_db_t *self, const char *sql, int n,
                                const char *const *params, bool script, bool *timed_out)
{
    PGconn *c = self->conn;
    int64_t deadline = sq_mono_ms() + self->wait_ms;
    *timed_out = false;
    if (!(script ? PQsendQuery(c, sql) : PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0)))
        return NULL;
    int f;
    while ((f = PQflush(c)) == 1) {
        if (!s_wait_fd(PQsocket(c), POLLIN | POLLOUT, deadline)) {
            *timed_out = true;
            return NULL;
        }
        if (!PQconsumeInput(c))
            return NULL;
    }
    if (f < 0)
        return NULL;
    PGresult *keep = NULL, *res;
    for (;;) {
        while (PQisBusy(c)) {
            bool ready = s_wait_fd(PQsocket(c), POLLIN, deadline);
            if (!ready || !PQconsumeInput(c)) {
                *timed_out = !ready;
                PQclear(keep);
                return NULL;
            }
        }
        if (!(res = PQgetResult(c)))
            return keep;
        if (keep && !s_ok(keep)) {
            PQclear(res);
        } else {
            PQclear(keep);
            keep = res;
        }
    }
}

/* One statement (or a script), bounded when the connection is; a wait
 * that ran out drops the connection (the statement may still run, so its
 * state is unknown) and returns NULL with *timed_out. */
static PGresult *s_exec(sq_db_t *self, const char *sql, int n, const char *const *params,
                        bool script, bool *timed_out)
{
    *timed_out = false;
    if (self->wait_ms <= 0 || !self->conn)
        return script ? PQexec(self->conn, sql)
                      : PQexecParams(self->conn, sql, n, NULL, params, NULL, NULL, 0);
    PGresult *res = s_exec_bounded(self, sql, n, params, script, timed_out);
    if (*timed_out)
        s_drop(self);
    return res;
}

static int s_run(sq_db_t *self, const char *sql, int n, const char *const *params, bool script,
                 const char *what, PGresult **out)
{
    if (out)
        *out = NULL;
    bool timed_out;
    PGresult *res = s_exec(self, sql, n, params, script, &timed_out);
    if (timed_out) {
        self->state[0] = '\0';
        const char *more;
        int cut = s_clip(what, &more);
        return SQ_FAIL(SQ_EDBDOWN, "%.*s%s: no answer from the server within %d ms", cut, what,
                       more, self->wait_ms);
    }
    return s_check(self, res, what, out);
}

int sq_db_exec(sq_db_t *self, const char *sql, int n, const char *const *params,
               PGresult **out)
{
    return s_run(self, sql, n, params, false, sql, out);
}

int sq_db_exec_script(sq_db_t *self, const char *sql)
{
    return s_run(self, sql, 0, NULL, true, "script", NULL);
}

int sq_db_begin(sq_db_t *self) { return sq_db_exec(self, "BEGIN", 0, NULL, NULL); }
int sq_db_commit(sq_db_t *self) { return sq_db_exec(self, "COMMIT", 0, NULL, NULL); }

void sq_db_rollback(sq_db_t *self)
{
    /* no detail recorded: the caller reports the failure that led here */
    if (!sq_db_is_up(self))
        return;
    bool timed_out;
    PQclear(s_exec(self, "ROLLBACK", 0, NULL, true, &timed_out));
}

const char *sq_db_sqlstate(const sq_db_t *self) { return self->state; }

/* A bounded session asks the server to give up on a statement first (at
 * 3/4 of the bound), so a slow server reports 57014 on a live connection. */
static int s_session_setup(sq_db_t *self)
{
    if (self->wait_ms <= 0)
        return 0;
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", self->wait_ms - self->wait_ms / 4);
    if (s_run(self, sql, 0, NULL, true, "SET statement_timeout", NULL) == 0)
        return 0;
    char detail[512]; /* the detail is the buffer SQ_FAIL writes: copy it first */
    snprintf(detail, sizeof detail, "%s", sq_error_detail());
    s_drop(self);
    return SQ_FAIL(SQ_EDBDOWN, "connect: %s", detail);
}

/* ---- COPY ---- */

struct sq_db_copy_t {
    char *buf;
    size_t len, cap;
    size_t rows;
    bool row_open; /* a field was written in the current row */
    bool ok;
};

sq_db_copy_t *sq_db_copy_new(void)
{
    sq_db_copy_t *self = calloc(1, sizeof *self);
    if (self)
        self->ok = true;
    return self;
}

void sq_db_copy_destroy(sq_db_copy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->buf);
    free(*self_p);
    *self_p = NULL;
}

void sq_db_copy_reset(sq_db_copy_t *self)
{
    self->len = 0;
    self->rows = 0;
    self->row_open = false;
    self->ok = true;
}

size_t sq_db_copy_rows(sq_db_copy_t *self) { return self->rows; }
bool sq_db_copy_ok(sq_db_copy_t *self) { return self->ok; }

static bool s_reserve(sq_db_copy_t *self, size_t more)
{
    if (!self->ok)
        return false;
    if (self->len + more <= self->cap)
        return true;
    size_t cap = self->cap ? self->cap : 65536;
    while (cap < self->len + more)
        cap *= 2;
    char *buf = realloc(self->buf, cap);
    if (!buf)
        return self->ok = false;
    self->buf = buf;
    self->cap = cap;
    return true;
}

static void s_sep(sq_db_copy_t *self)
{
    if (self->row_open && s_reserve(self, 1))
        self->buf[self->len++] = '\t';
    self->row_open = true;
}

static void s_put(sq_db_copy_t *self, const char *s, size_t n)
{
    if (s_reserve(self, n)) {
        memcpy(self->buf + self->len, s, n);
        self->len += n;
    }
}

void sq_db_copy_str(sq_db_copy_t *self, const char *s, size_t n)
{
    /* PostgreSQL refuses the whole COPY over one byte that is not UTF-8
     * (or NUL): such bytes become U+FFFD, so that one bad string can never
     * hold back a batch of results */
    if (!sq_utf8_ok(s, n)) {
        size_t m;
        char *clean = sq_utf8_sanitize(s, n, &m);
        if (clean)
            sq_db_copy_str(self, clean, m);
        else
            self->ok = false;
        free(clean);
        return;
    }
    s_sep(self);
    /* worst case every byte escapes to two */
    if (!s_reserve(self, 2 * n))
        return;
    char *o = self->buf + self->len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *o++ = '\\', *o++ = '\\'; break;
        case '\t': *o++ = '\\', *o++ = 't'; break;
        case '\n': *o++ = '\\', *o++ = 'n'; break;
        case '\r': *o++ = '\\', *o++ = 'r'; break;
        default: *o++ = c;
        }
    }
    self->len = (size_t)(o - self->buf);
}

void sq_db_copy_cstr(sq_db_copy_t *self, const char *s)
{
    if (s)
        sq_db_copy_str(self, s, strlen(s));
    else
        sq_db_copy_null(self);
}

void sq_db_copy_i64(sq_db_copy_t *self, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    s_sep(self);
    s_put(self, tmp, (size_t)n);
}

void sq_db_copy_double(sq_db_copy_t *self, double v)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    s_sep(self);
    s_put(self, tmp, (size_t)n);
}

void sq_db_copy_null(sq_db_copy_t *self)
{
    s_sep(self);
    s_put(self, "\\N", 2);
}

void sq_db_copy_end_row(sq_db_copy_t *self)
{
    s_put(self, "\n", 1);
    self->row_open = false;
    self->rows++;
}

int sq_db_copy_send(sq_db_t *db, const char *copy_sql, sq_db_copy_t *rows)
{
    if (!rows->ok)
        return SQ_FAIL(SQ_ENOMEM, "COPY batch: out of memory while building rows");
    if (db->wait_ms > 0)
        return SQ_FAIL(SQ_ESTATE, "COPY on a connection with bounded waits (non-blocking)");
    PGresult *res = PQexec(db->conn, copy_sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        int rc = SQ_DB_FAIL(db, res, copy_sql);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    if (PQputCopyData(db->conn, rows->buf ? rows->buf : "", (int)rows->len) != 1 ||
        PQputCopyEnd(db->conn, NULL) != 1)
        return SQ_DB_FAIL(db, NULL, copy_sql);
    int rc = 0;
    while ((res = PQgetResult(db->conn)) != NULL) {
        if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
            rc = SQ_DB_FAIL(db, res, copy_sql);
        PQclear(res);
    }
    return rc;
}
