/*  sq_db: small libpq helpers shared by the broker, scheduler and tests.
 *
 *  - sq_db_connect(): connect with exponential backoff until a deadline.
 *  - All SQL with values goes through PQexecParams (sq_db_exec) with text
 *    parameters; there is no string-building of SQL anywhere.
 *  - Errors are converted at the boundary by SQ_DB_FAIL, which records the
 *    server message and our file:line; a lost connection (or a server
 *    shutting down) becomes SQ_EDBDOWN, which callers treat as retryable.
 *  - sq_db_copy_t builds COPY ... FROM STDIN text-format rows in memory, so
 *    a batch of thousands of rows is one round trip.
 *  One sq_db_t belongs to one thread at a time (libpq connections are not
 *  thread-safe).
 */
#ifndef SQ_DB_H
#define SQ_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sq_db_t sq_db_t;

/* Connect to conninfo (libpq conninfo or URL), retrying with backoff
 * (50 ms doubling to 1 s) until timeout_ms has passed (0: one try).
 * Returns 0 and *out, or SQ_EDBDOWN / SQ_ENOMEM with a detail. */
int sq_db_connect(const char *conninfo, int timeout_ms, sq_db_t **out);
/* As sq_db_connect, with every wait on the server bounded by wait_ms (0:
 * unbounded, as sq_db_connect): each connection attempt (reconnects too)
 * and each statement of sq_db_exec, sq_db_exec_script, begin, commit and
 * rollback. For a caller that must keep running while a server accepts
 * connections but never answers (the scheduler's loop): libpq alone would
 * wait for ever. A statement without an answer in time drops the
 * connection (its state is unknown) and returns SQ_EDBDOWN, so the caller
 * reconnects as after any lost connection. The session's
 * statement_timeout is set to 3/4 of wait_ms, so that a server that is only
 * slow cancels the statement itself first (SQLSTATE 57014, SQ_EDB) and the
 * connection stays. Such a connection is non-blocking: no COPY on it. */
int sq_db_connect_bounded(const char *conninfo, int timeout_ms, int wait_ms, sq_db_t **out);
void sq_db_destroy(sq_db_t **self_p);
/* Reconnect after SQ_EDBDOWN (one attempt). 0 or SQ_EDBDOWN. */
int sq_db_reconnect(sq_db_t *self);
bool sq_db_is_up(sq_db_t *self);
/* The raw connection, for PQ calls not wrapped here. Borrowed; NULL on a
 * bounded connection whose wait ran out, until it is reconnected. */
PGconn *sq_db_conn(sq_db_t *self);

/* Convert a failed libpq call (res may be NULL) into SQ_EDB or SQ_EDBDOWN,
 * recording "what: server message (SQLSTATE)" at file:line; a long `what`
 * (sq_db_exec passes the SQL) is cut to its first 64 bytes and "...", so
 * the server's message always fits in the detail. */
int sq_db_fail(sq_db_t *self, PGresult *res, const char *file, int line, const char *what);
#define SQ_DB_FAIL(db, res, what) sq_db_fail((db), (res), __FILE__, __LINE__, (what))

/* PQexecParams with n text parameters (NULL entries are SQL NULL).
 * out (may be NULL): the result on success, caller PQclear()s it. */
int sq_db_exec(sq_db_t *self, const char *sql, int n, const char *const *params,
               PGresult **out);
/* A parameterless script of one or more statements (migrations). */
int sq_db_exec_script(sq_db_t *self, const char *sql);
int sq_db_begin(sq_db_t *self);
int sq_db_commit(sq_db_t *self);
/* Roll back, ignoring failures (used on error paths). */
void sq_db_rollback(sq_db_t *self);
/* The SQLSTATE of the last failed statement ("23505"), "" when the failure
 * had none (a lost connection, a wait that ran out) or nothing failed yet. */
const char *sq_db_sqlstate(const sq_db_t *self);

/* ---- COPY FROM STDIN batches (text format) ---- */

typedef struct sq_db_copy_t sq_db_copy_t;

sq_db_copy_t *sq_db_copy_new(void);
void sq_db_copy_destroy(sq_db_copy_t **self_p);
void sq_db_copy_reset(sq_db_copy_t *self);
size_t sq_db_copy_rows(sq_db_copy_t *self);
/* Append fields of the current row; sq_db_copy_end_row() closes it.
 * Strings are escaped for COPY text format (\\, tab, newline, CR), and
 * what is not UTF-8 in them, or NUL, is stored as U+FFFD. */
void sq_db_copy_str(sq_db_copy_t *self, const char *s, size_t n);
void sq_db_copy_cstr(sq_db_copy_t *self, const char *s); /* NULL -> \N */
void sq_db_copy_i64(sq_db_copy_t *self, int64_t v);
void sq_db_copy_double(sq_db_copy_t *self, double v);
void sq_db_copy_null(sq_db_copy_t *self);
void sq_db_copy_end_row(sq_db_copy_t *self);
/* False once an allocation failed; the batch must then be dropped. */
bool sq_db_copy_ok(sq_db_copy_t *self);
/* Run `copy_sql` ("COPY t (a, b) FROM STDIN") with the buffered rows.
 * Does not reset the buffer. */
int sq_db_copy_send(sq_db_t *db, const char *copy_sql, sq_db_copy_t *rows);

#ifdef __cplusplus
}
#endif
#endif
