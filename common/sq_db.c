/*  sq_db: libpq connection with backoff, parameterised execution, error
 *  conversion at the boundary, and COPY batches. See sq_db.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "sq_db.h"

#include "sq_clock.h"
#include "sq_error.h"
#include "sq_utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sq_db_t {
    PGconn *conn;
    char *conninfo;
};

static void s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Quiet the server's NOTICEs: libraries never print. */
static void s_notice(void *arg, const char *msg) { (void)arg, (void)msg; }

static int s_try_connect(sq_db_t *self)
{
    if (self->conn)
        PQfinish(self->conn);
    self->conn = PQconnectdb(self->conninfo);
    if (self->conn && PQstatus(self->conn) == CONNECTION_OK) {
        PQsetNoticeProcessor(self->conn, s_notice, NULL);
        return 0;
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

int sq_db_connect(const char *conninfo, int timeout_ms, sq_db_t **out)
{
    *out = NULL;
    sq_db_t *self = calloc(1, sizeof *self);
    if (!self || !(self->conninfo = strdup(conninfo ? conninfo : ""))) {
        free(self);
        return SQ_FAIL(SQ_ENOMEM, "out of memory");
    }
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

void sq_db_destroy(sq_db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sq_db_t *self = *self_p;
    if (self->conn)
        PQfinish(self->conn);
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

int sq_db_fail(sq_db_t *self, PGresult *res, const char *file, int line, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : "";
    if (!msg || !*msg)
        msg = PQerrorMessage(self->conn);
    /* Class 08 = connection exception; 57P01..03 = server shutting down or
     * unavailable; a dead socket has no SQLSTATE at all. */
    bool down = PQstatus(self->conn) != CONNECTION_OK || !state ||
                strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0;
    int rc = down ? SQ_EDBDOWN : SQ_EDB;
    char clean[512];
    snprintf(clean, sizeof clean, "%s", msg ? msg : "");
    clean[strcspn(clean, "\n")] = '\0';
    return sq_error_set(rc, file, line, "%s: %s (%s)", what, clean, state ? state : "no sqlstate");
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

int sq_db_exec(sq_db_t *self, const char *sql, int n, const char *const *params,
               PGresult **out)
{
    if (out)
        *out = NULL;
    PGresult *res = PQexecParams(self->conn, sql, n, NULL, params, NULL, NULL, 0);
    return s_check(self, res, sql, out);
}

int sq_db_exec_script(sq_db_t *self, const char *sql)
{
    return s_check(self, PQexec(self->conn, sql), "script", NULL);
}

int sq_db_begin(sq_db_t *self) { return sq_db_exec(self, "BEGIN", 0, NULL, NULL); }
int sq_db_commit(sq_db_t *self) { return sq_db_exec(self, "COMMIT", 0, NULL, NULL); }

void sq_db_rollback(sq_db_t *self)
{
    if (sq_db_is_up(self))
        PQclear(PQexec(self->conn, "ROLLBACK"));
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
