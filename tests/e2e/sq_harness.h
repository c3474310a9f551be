/*  sq_harness: the environment of one end-to-end test.
 *
 *  A harness owns, for one test:
 *    - a fresh PostgreSQL database (CREATE DATABASE on the server named by
 *      SHARDQ_TEST_DB), dropped again at the end, so tests never see each
 *      other's rows;
 *    - a pair of free loopback ports (clients, workers) for the broker;
 *    - every process the test starts (broker, fixture workers, scripts),
 *      with their logs in one directory; all are killed at the end; when
 *      the test failed the tail of every log is printed and the logs are
 *      kept, otherwise they are removed;
 *    - a libpq connection used to poll the database with deadlines
 *      (reconnecting by itself after a PostgreSQL restart).
 *
 *  Programs are found through environment variables that CTest sets:
 *  SHARDQ_BROKER_BIN (shardq-broker) and SHARDQ_TEST_WORKER_BIN
 *  (sq-test-worker). SHARDQ_PG_CTL names scripts/pg-local.sh for the
 *  tests that restart PostgreSQL. Nothing here sleeps to synchronise: every
 *  wait polls an observable condition until a deadline.
 *
 *  Other test areas (the CLI tests) use this header too; its API only grows.
 */
#ifndef SQ_HARNESS_H
#define SQ_HARNESS_H

#include "sq_proc.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct sq_harness_t sq_harness_t;

/* Make the environment for test `name` (letters, digits, '_'). Exits 77
 * (CTest skip) when SHARDQ_TEST_DB is unset; NULL with a recorded error
 * when the database cannot be created. */
sq_harness_t *sq_harness_new(const char *name);
/* Stop all processes (SIGKILL), print their log tails and keep the logs
 * when a check failed (sq_test_n_failed_checks > 0), else remove them;
 * drop the database, free. Safe twice. */
void sq_harness_destroy(sq_harness_t **self_p);

/* libpq conninfo of this test's database (give it to --db / SHARDQ_DB). */
const char *sq_harness_conninfo(const sq_harness_t *self);
/* "tcp://127.0.0.1:PORT" endpoints to connect to the broker. */
const char *sq_harness_client_endpoint(const sq_harness_t *self);
const char *sq_harness_worker_endpoint(const sq_harness_t *self);
/* Directory holding the logs of this test's processes. */
const char *sq_harness_log_dir(const sq_harness_t *self);

/* Start a program with the given arguments (argv[0] is the path; NULL
 * terminated). The harness owns the process; its log is <log_dir>/<name>.log. */
sq_proc_t *sq_harness_spawn(sq_harness_t *self, const char *name, const char *const argv[]);

/* Apply the schema: shardq-broker --migrate --db CONNINFO, expecting exit 0. */
int sq_harness_migrate(sq_harness_t *self);
/* Start shardq-broker on this test's database and ports with extra flags
 * (NULL-terminated list, may be NULL), and wait until both ports accept
 * TCP connections. The broker is the harness's; a previous one (killed or
 * stopped) may be started again: same database, same ports. */
sq_proc_t *sq_harness_broker_start(sq_harness_t *self, const char *const extra[]);
/* The broker started last (NULL if none). */
sq_proc_t *sq_harness_broker(const sq_harness_t *self);
/* Start one fixture worker connected to the broker, with extra flags. */
sq_proc_t *sq_harness_worker_start(sq_harness_t *self, const char *name,
                                   const char *const extra[]);

/* The usual start of a broker test: sq_harness_new + migrate + broker
 * start with broker_extra flags. NULL (detail printed) on failure. */
sq_harness_t *sq_harness_start(const char *name, const char *const broker_extra[]);

/* Run SHARDQ_PG_CTL with action (restart|kill|start|stop) and wait for it.
 * SQ_ENOTFOUND when SHARDQ_PG_CTL is unset. */
int sq_harness_pg_ctl(sq_harness_t *self, const char *action);
/* True when SHARDQ_PG_CTL is set (tests that need it skip otherwise). */
bool sq_harness_has_pg_ctl(void);

/* Run one SQL statement with text parameters (nparams may be 0). Returns
 * the result (caller PQclear()s) or NULL when it did not succeed; the
 * error detail says why. Reconnects once if the connection was lost. */
PGresult *sq_harness_sql(sq_harness_t *self, const char *sql, int nparams,
                         const char *const params[]);
/* The first column of the first row as an integer (0 when NULL).
 * 0 or a negative SQ_E* code. */
int sq_harness_sql_i64(sq_harness_t *self, const char *sql, int64_t *out);
/* Run the SQL file sql/<rel_path> of the source tree (found through
 * SHARDQ_SQL_DIR) as-is; 0 and *n_rows_out its row count. */
int sq_harness_sql_file_rows(sq_harness_t *self, const char *rel_path, int64_t *n_rows_out);
/* Run psql on this test's database the way an operator would (psql -X -A
 * -t -v ON_ERROR_STOP=1 <args>), with its output in the log of a process
 * named `name`; waits for it. The process (exited; see sq_proc_exit_code
 * and sq_proc_log_count) or NULL. psql comes from PG_BINDIR, else PATH. */
sq_proc_t *sq_harness_psql(sq_harness_t *self, const char *name, const char *const args[]);
/* Poll `sql` (one integer) every few ms until it equals `want` or
 * timeout_ms passes. 0 when reached; SQ_ETIMEDOUT (the detail carries the
 * last value seen) otherwise. */
int sq_harness_wait_i64(sq_harness_t *self, const char *sql, int64_t want, int timeout_ms);
/* Like sq_harness_wait_i64 but waits for a value >= at_least; *last_out
 * (may be NULL) receives the last value seen. */
int sq_harness_wait_at_least(sq_harness_t *self, const char *sql, int64_t at_least,
                             int timeout_ms, int64_t *last_out);

/* A loopback TCP port in the e2e range (16500-16999) that is free now,
 * other than `not` (0 for none); negative SQ_E* when none is. */
int sq_harness_free_port(int not);

/* Pause briefly between two polls (the only sleeping the tests do). */
void sq_harness_poll_pause(void);

#endif
