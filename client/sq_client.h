/*  sq_client (libshardq): the C client of shardq-broker.
 *
 *  Speaks the client half of docs/protocol.md over one ZeroMQ DEALER
 *  socket: SUBMIT, STATUS, RESULTS (paged iterator), CANCEL, LIST, STATS,
 *  WORKERS. Every call is synchronous and bounded:
 *    - connect: the socket is ZMQ_IMMEDIATE, so a request is never queued
 *      towards a broker that is not there; when no connection is made
 *      within connect_timeout_ms the call fails with -ECONNREFUSED;
 *    - reply: timeout_ms per attempt (SQ_ETIMEDOUT);
 *    - retries: ERROR replies marked retryable (database down, broker
 *      restarting) are retried with exponential backoff, up to `retries`
 *      extra attempts; a request that timed out is retried once, and only
 *      when it is idempotent (everything but SUBMIT: a SUBMIT that timed out
 *      may have been committed, and repeating it would make a second job). After a
 *      timeout the socket is replaced (ZeroMQ guide's "Lazy Pirate"), so a
 *      late reply can never be mistaken for the answer to a new request;
 *      replies also carry the request id (rid) and stale ones are dropped.
 *  Errors: 0 or a negative SQ_E* / -errno; sq_error_detail() says what the
 *  broker or the transport said. ERROR codes map as INVALID -> SQ_EINVAL,
 *  TOOBIG -> SQ_ETOOBIG, NOTFOUND -> SQ_ENOTFOUND, UNAVAILABLE/INTERNAL ->
 *  SQ_EAGAIN (after the retries), STATE -> SQ_ESTATE, others -> SQ_EPROTO.
 *
 *  Ownership: one sq_client_t per thread. Arrays returned through OUT
 *  parameters are the caller's to free() (sq_client_stats_clear for
 *  stats); results from the iterator are borrowed until the next call.
 */
#ifndef SQ_CLIENT_H
#define SQ_CLIENT_H

#include "sq_jsonl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQ_CLIENT_DEFAULT_BROKER "tcp://127.0.0.1:5555"
#define SQ_CLIENT_NAME_BYTES 129   /* tenant, model, device: 128 + NUL */
#define SQ_CLIENT_ID_BYTES 257     /* group ids: 256 + NUL */
#define SQ_CLIENT_STATE_BYTES 16

typedef struct {
    int timeout_ms;         /* reply deadline per attempt; default 10000 */
    int submit_timeout_ms;  /* for SUBMIT (commits many rows); default 60000 */
    int connect_timeout_ms; /* default 3000 */
    int retries;            /* extra attempts on retryable errors; default 4 */
    int backoff_ms;         /* first backoff, doubled per retry; default 100 */
} sq_client_opts_t;

typedef struct sq_client_t sq_client_t;

/* endpoint NULL: $SHARDQ_BROKER, else SQ_CLIENT_DEFAULT_BROKER. opts NULL
 * or zero fields: defaults. NULL (with a detail) when the socket cannot be
 * made or the endpoint is malformed; nothing is sent until a request. */
sq_client_t *sq_client_new(const char *endpoint, const sq_client_opts_t *opts);
void sq_client_destroy(sq_client_t **self_p);
const char *sq_client_endpoint(const sq_client_t *self);

/* The limits the broker enforces on a job (docs/protocol.md §2: id and
 * prompt caps, no NUL, tasks per SUBMIT), for sq_jsonl_load(), so that a
 * file the broker would refuse fails locally, naming its line. */
void sq_client_job_limits(sq_jsonl_limits_t *lim);

/* ---- SUBMIT ---- */

typedef struct {
    const char *tenant;     /* required */
    const char *model;      /* required */
    const char *adapter;    /* LoRA adapter or NULL */
    int priority;           /* 0..1000, -1 = broker default */
    int max_attempts;       /* 1..100, 0 = broker default */
    const char *params_json;/* job-level JSON object or NULL */
    const char *idempotency_key; /* or NULL; makes the SUBMIT safe to send again */
} sq_client_job_spec_t;

/* Submit n tasks as one job. Acknowledged only once the broker committed
 * the job and every task; *job_id_out receives its id. SQ_ETOOBIG when the
 * encoded job exceeds the protocol's message cap (split the file).
 * With spec->idempotency_key, a SUBMIT that gets no reply in time is sent
 * again (the broker stores a key's job once), and a key the tenant used
 * before gives that job's id: *repeated_out (may be NULL) says so. */
int sq_client_submit(sq_client_t *self, const sq_client_job_spec_t *spec,
                     const sq_jsonl_task_t *tasks, size_t n_tasks, uint64_t *job_id_out);
int sq_client_submit_keyed(sq_client_t *self, const sq_client_job_spec_t *spec,
                           const sq_jsonl_task_t *tasks, size_t n_tasks, uint64_t *job_id_out,
                           bool *repeated_out);

/* ---- STATUS / LIST ---- */

typedef struct {
    uint64_t queued, leased, retrying, succeeded, dead, cancelled;
} sq_client_counts_t;

typedef struct {
    uint64_t job_id;
    char tenant[SQ_CLIENT_NAME_BYTES];
    char model[SQ_CLIENT_NAME_BYTES];
    uint64_t priority;
    char state[SQ_CLIENT_STATE_BYTES]; /* queued|running|succeeded|failed|cancelled */
    uint64_t n_tasks;
    uint64_t created_at_ms;
    sq_client_counts_t counts;         /* STATUS only (zero from LIST) */
    /* The result shape: the job's params {"kind": ...} when the broker
     * returns them, else SIMPLE (text_completion). */
    sq_jsonl_kind_t kind;
} sq_client_job_t;

/* Tasks that will not change any more. */
uint64_t sq_client_counts_terminal(const sq_client_counts_t *c);
/* True for succeeded, failed and cancelled. */
bool sq_client_state_terminal(const char *state);

int sq_client_status(sq_client_t *self, uint64_t job_id, sq_client_job_t *out);

/* Jobs newest first. state/tenant NULL = any; before 0 = from the newest;
 * limit 0 = 100. *jobs_out (caller frees) holds *n_out jobs; *next_out is
 * the cursor for the following page (0 = no more). */
int sq_client_list(sq_client_t *self, const char *state, const char *tenant, uint64_t before,
                   uint32_t limit, sq_client_job_t **jobs_out, size_t *n_out,
                   uint64_t *next_out);

/* ---- CANCEL ---- */

/* Cancels queued, retrying and leased tasks. *n_cancelled_out (may be
 * NULL) counts them; state_out (may be NULL, SQ_CLIENT_STATE_BYTES) gets
 * the job state after. A finished job is not an error. */
int sq_client_cancel(sq_client_t *self, uint64_t job_id, uint64_t *n_cancelled_out,
                     char *state_out);

/* ---- RESULTS ---- */

typedef struct {
    uint64_t index;                    /* position in the SUBMIT, from 1 */
    char *custom_id;
    size_t custom_id_len;
    char state[SQ_CLIENT_STATE_BYTES]; /* succeeded | dead | cancelled */
    char *text;                        /* NULL when absent */
    size_t text_len;
    char finish_reason[SQ_CLIENT_STATE_BYTES]; /* "" when absent */
    int64_t prompt_tokens;             /* -1 when absent */
    int64_t completion_tokens;         /* -1 when absent */
    int64_t cached_tokens;             /* of prompt_tokens, from the KV cache; -1 when absent */
    char *error;                       /* NULL when absent */
    size_t error_len;
    uint64_t attempts;
    int64_t finished_at_ms;            /* when its result was recorded; 0 when absent */
} sq_client_result_t;

typedef struct sq_client_results_t sq_client_results_t;

/* An iterator over the finished tasks of a job, fetched page_size at a
 * time (0 = 1000, at most 10,000; halved whenever the broker answers that
 * a page is too big). Borrows the client. No I/O until the first next. */
sq_client_results_t *sq_client_results_new(sq_client_t *client, uint64_t job_id,
                                           uint32_t page_size);
/* 1 and *out (borrowed until the next call) for the next result; 0 when
 * no further result is available now (see sq_client_results_done); or a
 * negative error. A later call resumes where the last page ended. */
int sq_client_results_next(sq_client_results_t *self, const sq_client_result_t **out);
/* True once the broker said the job is finished and every result was read. */
bool sq_client_results_done(const sq_client_results_t *self);
void sq_client_results_destroy(sq_client_results_t **self_p);

/* ---- WORKERS / STATS ---- */

typedef struct {
    char group_id[SQ_CLIENT_ID_BYTES];
    char model[SQ_CLIENT_NAME_BYTES];
    char device[SQ_CLIENT_NAME_BYTES];
    char kv_type[SQ_CLIENT_NAME_BYTES];   /* "f16", "f32", or "" when the group gave none */
    char state[SQ_CLIENT_STATE_BYTES];
    uint64_t tp_size, max_batch, leases, last_seen_ms_ago, completed;
    uint64_t kv_pages;          /* KV-cache pages of 32 positions, 0 when the group gave none */
    bool kv_reported;           /* the group said how its KV cache is used: */
    uint64_t kv_pages_in_use;   /* pages its running sequences hold */
    uint64_t preemptions;       /* sequences preempted (KV cache full) so far */
} sq_client_worker_t;

int sq_client_workers(sq_client_t *self, sq_client_worker_t **workers_out, size_t *n_out);

typedef struct {
    char model[SQ_CLIENT_NAME_BYTES];
    uint64_t queued, retrying, oldest_queued_age_ms, leased, completed_10s;
    uint64_t busy, idle, starting, draining; /* worker groups */
    double throughput_per_s;
    /* tokens of the results the broker accepted since it started: the
     * prompts', of them from a worker's KV cache, and generated */
    uint64_t prompt_tokens, cached_tokens, completion_tokens;
} sq_client_pool_t;

typedef struct {
    char tenant[SQ_CLIENT_NAME_BYTES];
    uint64_t queued, leased;
} sq_client_tenant_t;

typedef struct {
    uint64_t now_ms;
    uint64_t uncommitted;       /* finished tasks whose rows wait for their commit */
    bool dispatch_paused;       /* no lease granted until commits catch up */
    sq_client_pool_t *pools;
    size_t n_pools;
    sq_client_tenant_t *tenants;
    size_t n_tenants;
} sq_client_stats_t;

int sq_client_stats(sq_client_t *self, sq_client_stats_t *out);
void sq_client_stats_clear(sq_client_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif
