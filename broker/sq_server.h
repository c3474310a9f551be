/*  sq_server: the broker's event loop and the state it owns.
 *
 *  sq_server.c         loop, batches (group commit), groups, leases, dispatch,
 *                      timers, task state changes
 *  sq_server_client.c  client requests (SUBMIT, STATUS, RESULTS, CANCEL,
 *                      LIST, STATS, WORKERS)
 *  sq_server_worker.c  worker messages (READY, RESULT, FAIL, ...)
 *  Everything here runs on the loop thread; see sq_broker.h for task states
 *  and sq_store.h for the database threads.
 */
#ifndef SQ_SERVER_H
#define SQ_SERVER_H

#include "sq_broker.h"
#include "sq_store.h"

typedef struct {
    const char *db;           /* libpq conninfo */
    const char *listen;       /* client ROUTER endpoint */
    const char *workers;      /* worker ROUTER endpoint */
    int heartbeat_ms;         /* 1000 */
    int liveness;             /* missed beats before a group is dead: 3 */
    int64_t lease_timeout_ms; /* 0 = leases never expire while the group lives */
    int64_t retry_base_ms;    /* 1000 */
    int64_t retry_cap_ms;     /* 60000 */
    uint32_t drr_quantum;     /* 1024 (tokens) */
    const char *adapters_dir; /* LoRA files shared with workers, or NULL */
    int metrics_port;         /* Prometheus text on this port; 0: off */
    uint32_t max_uncommitted; /* no new leases while this many finished tasks wait
                                 for their commit (20000); 0: no limit */
} sq_server_opts_t;

/* The most one wake-up of a socket handler reads for (ms): a burst of large
 * requests must not keep the loop from its timers and other sockets, least
 * of all from sending heartbeats (a worker group gives the broker up after
 * 3 silent beats). One message may overrun it (a 100,000-task SUBMIT takes
 * a quarter of a second to read). */
#define SQ_SERVER_SLICE_MS 50

/* Ended leases remembered (lease id -> task), so that a late RESULT or
 * FAIL for one is audited under its job and task; a power of two. */
#define SQ_SERVER_ENDED_LEASES 65536

/* the cancelled jobs of the batch with the writer that a shutdown's log
 * can name */
#define SQ_SERVER_INFLIGHT_IDS 8

typedef struct sq_server_t {
    sq_server_opts_t opts;
    zsock_t *clients, *workers;
    sq_store_t *store;
    struct sq_lora_t *lora;   /* LoRA updates and version registry */
    struct sq_metrics_http_t *metrics; /* scrape endpoint, or NULL */
    zloop_t *loop;
    sq_queue_t *queue;
    zhashx_t *jobs;   /* &job->id -> job (unfinished jobs) */
    zhashx_t *leases; /* &task->lease_id -> task */
    zhashx_t *groups; /* hex identity -> group */
    zhashx_t *pstats; /* model -> sq_pstat_t */
    sq_batch_t *pending;  /* collecting */
    sq_batch_t *retry;    /* failed commit to repeat first */
    bool writer_busy;
    /* what the batch with the writer carries, for the log of a shutdown
     * that cannot wait for it (the writer owns the batch meanwhile) */
    size_t inflight_dones, inflight_cancels;
    uint64_t inflight_cancel_ids[SQ_SERVER_INFLIGHT_IDS];
    bool db_down;
    int64_t db_retry_at_ms;
    int db_backoff_ms;
    bool stopping;
    uint64_t next_lease;
    uint64_t rng;
    int64_t last_lease_scan_ms;
    sq_wire_enc_t *enc; /* scratch encoder for replies */
    uint64_t n_stale, n_dispatched, n_committed_batches;
    uint32_t n_completing; /* tasks COMPLETING: terminal row written, commit pending */
    /* the last ended leases, direct-mapped by lease id (leases are numbered
     * in order): {lease id, sq_task_id}, {0, 0} when empty */
    struct { uint64_t lease, task_id; } ended[SQ_SERVER_ENDED_LEASES];
} sq_server_t;

sq_server_t *sq_server_new(const sq_server_opts_t *opts);
void sq_server_destroy(sq_server_t **self_p);
/* Rebuild from PG, bind, run until SIGINT/SIGTERM, flush. 0 or error. */
int sq_server_run(sq_server_t *self);

/* ---- shared between the server files ---- */

int64_t sq_now_ms(void);  /* monotonic */
int64_t sq_wall_ms(void); /* unix */
sq_pstat_t *sq_server_pstat(sq_server_t *self, const char *model);
void sq_server_set_state(sq_server_t *self, sq_task_t *t, uint8_t state);
/* Put a task into the ready queue (state QUEUED). */
void sq_server_enqueue(sq_server_t *self, sq_task_t *t);
/* Hand pending writes to the writer when it is idle. */
void sq_server_kick(sq_server_t *self);
/* Prometheus text exposition of the queue (sq_server_client.c). */
size_t sq_server_metrics(void *self, char *buf, size_t size);
/* Lease bookkeeping. */
void sq_server_unlease(sq_server_t *self, sq_task_t *t);
/* Tell the holder of t's lease to abort it (CANCEL-LEASE). */
void sq_server_cancel_lease(sq_server_t *self, sq_task_t *t);
/* A leased task's attempt ended badly: retry, requeue or dead-letter. */
void sq_server_task_failed(sq_server_t *self, sq_task_t *t, const char *outcome, bool retryable,
                           const char *error);
/* Write the terminal row for t and mark it COMPLETING (done on commit). */
void sq_server_task_terminal(sq_server_t *self, sq_task_t *t, uint8_t state, const char *error);
/* Audit row with a JSON details object built from printf-free pairs. */
void sq_server_audit(sq_server_t *self, const char *actor, const char *action, sq_task_t *t,
                     uint64_t job_id, const char *details_json);
/* The 'cancelled' audit row of a job, in its tenant's name. */
void sq_server_audit_cancelled(sq_server_t *self, const sq_job_t *job, const char *details_json);
void sq_server_dispatch(sq_server_t *self);
/* True while max_uncommitted finished tasks wait for their commit: no new
 * leases until a commit brings the count down. */
bool sq_server_dispatch_paused(const sq_server_t *self);
/* Forget a group, re-queue its leases, dispatch them to the others. */
void sq_server_group_lost(sq_server_t *self, sq_group_t *g, const char *reason);
/* The task id (sq_task_id) an ended lease was for, or 0 when it is not
 * among the last SQ_SERVER_ENDED_LEASES ended (or never existed). */
uint64_t sq_server_ended_lease(const sq_server_t *self, uint64_t lease);

int sq_server_on_client(zloop_t *loop, zsock_t *reader, void *arg);
int sq_server_on_worker(zloop_t *loop, zsock_t *reader, void *arg);
/* Send a reply to a client request; logs send failures. */
void sq_server_reply(sq_server_t *self, zframe_t *to, uint8_t cmd, sq_wire_enc_t *enc);
void sq_server_error(sq_server_t *self, zsock_t *sock, zframe_t *to, uint64_t rid, int rc,
                     const char *detail);
/* Reader thread answered. */
int sq_server_on_read(zloop_t *loop, zsock_t *reader, void *arg);
void sq_server_cancel_job(sq_server_t *self, sq_job_t *job, zframe_t *to, uint64_t rid);

/* Defined in sq_store.c. */
void sq_store_encode_counts(sq_wire_enc_t *e, const uint32_t c[SQ_T_N]);

#endif
