/*  shardq-bench-queue internals: the parts of the queue benchmark that
 *  talk to the broker.
 *
 *  - sq_bench_workers_t: N no-op worker groups, one thread and one DEALER
 *    each, speaking docs/protocol.md §5: READY, then answer every TASKS
 *    message with one RESULT carrying all its leases. They count what they
 *    answered and, for tasks whose custom_id is "lat-<i>", stamp the
 *    moment the task arrived into a table the caller lends them.
 *  - sq_bench_client_t: one DEALER client that submits pipelined SUBMITs
 *    (many tasks each, a window of requests in flight) or paced one-task
 *    SUBMITs, stamping each acknowledgement.
 *  - sq_bench_broker_*: start shardq-broker as a child process (after
 *    --migrate) and stop it.
 *  Times are CLOCK_MONOTONIC milliseconds (sq_bench_now_ms), shared by all
 *  threads of the process, so dispatch latency needs no clock agreement.
 */
#ifndef SQ_BENCH_H
#define SQ_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SQ_BENCH_MODEL "bench"
#define SQ_BENCH_TENANT "bench"

double sq_bench_now_ms(void);

/* Job ids returned by the SUBMITs of one phase (inclusive range). */
typedef struct {
    uint64_t first, last;
} sq_bench_jobs_t;

/* ---- no-op workers ---- */

typedef struct sq_bench_workers_t sq_bench_workers_t;

/* Start n_groups worker threads connected to endpoint, each READY with
 * max_batch. NULL with a recorded error when a thread cannot start. */
sq_bench_workers_t *sq_bench_workers_new(const char *endpoint, int n_groups, int max_batch);
/* Send DISCONNECT from every group, join the threads, free. Safe twice. */
void sq_bench_workers_destroy(sq_bench_workers_t **self_p);
/* Leases answered with RESULT so far, by all groups. */
uint64_t sq_bench_workers_answered(sq_bench_workers_t *self);
/* ERROR or DISCONNECT messages the broker sent the groups so far. */
uint64_t sq_bench_workers_complaints(sq_bench_workers_t *self);
/* Lend a table of n arrival stamps (ms) for "lat-<i>" tasks, i < n; NULL
 * takes it back. The caller keeps ownership. */
void sq_bench_workers_stamp_into(sq_bench_workers_t *self, double *arrived_ms, size_t n);

/* ---- client ---- */

typedef struct sq_bench_client_t sq_bench_client_t;

/* A DEALER connected to endpoint; prompts are payload_bytes long. */
sq_bench_client_t *sq_bench_client_new(const char *endpoint, size_t payload_bytes);
void sq_bench_client_destroy(sq_bench_client_t **self_p);
/* From now on every SUBMIT carries an idempotency key of its own (unique
 * to this process and SUBMIT), so that what keys cost can be measured. */
void sq_bench_client_set_keyed(sq_bench_client_t *self, bool keyed);
/* Submit n tasks with custom_ids "<prefix>-<i>" as SUBMITs of `batch`
 * tasks, keeping up to `window` requests in flight; returns when every
 * SUBMIT is acknowledged (committed). submit_ms (may be NULL; one slot per
 * SUBMIT, ceil(n / batch)) receives each SUBMIT's send→ack time.
 * 0, or a negative SQ_E* with a detail (a broker ERROR names its code). */
int sq_bench_client_submit(sq_bench_client_t *self, const char *prefix, size_t n, size_t batch,
                           int window, int timeout_ms, sq_bench_jobs_t *jobs_out,
                           double *submit_ms);
/* Submit n one-task SUBMITs "lat-<i>" on a fixed schedule of rate per
 * second (a late ack never delays later sends); sent_ms[i] and acked_ms[i]
 * receive the stamps. */
int sq_bench_client_paced(sq_bench_client_t *self, size_t n, double rate, int timeout_ms,
                          double *sent_ms, double *acked_ms, sq_bench_jobs_t *jobs_out);

/* ---- broker process ---- */

/* Run `bin --migrate --db conninfo` and wait for exit 0. */
int sq_bench_broker_migrate(const char *bin, const char *conninfo, const char *log_path);
/* Start `bin --db conninfo --listen client_ep --workers worker_ep` with
 * stdout/stderr appended to log_path; wait until both TCP ports accept
 * connections. *pid_out receives the child. */
int sq_bench_broker_start(const char *bin, const char *conninfo, const char *client_ep,
                          const char *worker_ep, const char *log_path, pid_t *pid_out);
/* SIGTERM, wait up to 10 s, then SIGKILL. 0 when it exited 0 on SIGTERM. */
int sq_bench_broker_stop(pid_t pid);

/* ---- statistics ---- */

/* q-quantile (0..1) of v[0..n), sorting v in place; NAN when n == 0. */
double sq_bench_quantile(double *v, size_t n, double q);

#endif
