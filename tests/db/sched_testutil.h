/*  Helpers shared by the scheduler's tests (unit, db and e2e). */
#ifndef SCHED_TESTUTIL_H
#define SCHED_TESTUTIL_H

#include "sq_db.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Start argv[0] with argv, its stderr into the file at log (created or
 * truncated). Its pid, or -1. */
pid_t sched_spawn_logged(char *const argv[], const char *log);

/* GET /metrics from 127.0.0.1:port into buf (NUL-terminated; "" when the
 * scrape failed). Returns buf. */
const char *sched_scrape(int port, char *buf, size_t size);
/* Poll the metrics until a line containing `needle` appears or
 * timeout_ms passes. 1 when seen (else prints what was awaited). */
int sched_wait_metric(int port, const char *needle, int timeout_ms);

/* First column of the first row of `sql` as text ("" when there is none or
 * the query failed). A static buffer: use it before the next call. */
const char *sched_sql_one(sq_db_t *db, const char *sql);
/* Run the SQL script dir/name (a migration file). 0 or negative SQ_E*. */
int sched_sql_file(sq_db_t *db, const char *dir, const char *name);

/* Poll sql until its first column reads want; 1, or 0 after timeout_ms
 * (then it prints what it read). */
int sched_wait_sql(sq_db_t *db, const char *sql, const char *want, int timeout_ms);

/* A database of its own for a test: "PREFIX_<pid>" made on the server of
 * base (a conninfo), its name into dbname, its conninfo into conninfo,
 * connected (*db), with the migrations the scheduler needs (0001 for
 * audit_log, 0010, 0012) from sql_dir. 0, or -1 (detail set). */
int sched_db_create(const char *base, const char *sql_dir, const char *prefix, char *dbname,
                    size_t dbname_size, char *conninfo, size_t conninfo_size, sq_db_t **db);
/* Disconnect *db and drop dbname (made by sched_db_create). */
void sched_db_drop(const char *base, const char *dbname, sq_db_t **db);

/* Remove a test's scratch directory and everything below it. */
void sched_rm_tree(const char *dir);

/* A broker played by a test (sched_fake_broker.c): a ROUTER bound to
 * endpoint, speaking sq_wire in a thread. STATS: one pool of model with
 * the tasks queued (the oldest oldest_ms old) and the idle groups set by
 * sched_broker_set; WORKERS: those groups, PREFIX-1 .. PREFIX-n, idle.
 * NULL when the endpoint cannot be bound. */
typedef struct sched_broker sched_broker_t;
sched_broker_t *sched_broker_start(const char *endpoint, const char *model, const char *prefix,
                                   int64_t oldest_ms);
void sched_broker_set(sched_broker_t *b, long queued, int n_workers);
void sched_broker_stop(sched_broker_t **b_p);

#endif
