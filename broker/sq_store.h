/*  sq_store: the broker's PostgreSQL side, off the event loop.
 *
 *  Two threads (czmq actors), each with its own connection:
 *    writer  commits one sq_batch_t per transaction (group commit: COPY
 *            into the tables or into temp staging tables, then set-based
 *            INSERT ... ON CONFLICT DO NOTHING / DELETE), and hands the
 *            batch back with its status;
 *    reader  answers history queries (STATUS of finished jobs, RESULTS
 *            pages, LIST) and encodes the reply body itself.
 *  The loop polls the actors' pipes; a pointer travels in each message and
 *  whoever holds it owns it. Neither thread ever blocks the loop.
 *  sq_store_load() is the one synchronous call: it rebuilds the in-memory
 *  queue at start, before the loop runs.
 */
#ifndef SQ_STORE_H
#define SQ_STORE_H

#include "sq_broker.h"

/* SQL: the timestamptz column col as Unix milliseconds, floored (rounded,
 * .9996 s would read as the next second) */
#define SQ_STORE_EPOCH_MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

typedef struct sq_store_t sq_store_t;

typedef enum {
    SQ_READ_STATUS, SQ_READ_RESULTS, SQ_READ_LIST, SQ_READ_CANCEL, SQ_READ_SCALING
} sq_read_kind_t;

typedef struct {
    sq_read_kind_t kind;
    zframe_t *to;
    uint64_t rid, job_id, after, limit;
    char *state, *tenant;  /* LIST filters (may be NULL) */
    char *pool;            /* SCALING filter (may be NULL); after = since, unix ms */
    sq_wire_enc_t *reply; /* body, set by the reader on success */
    int rc;
    char error[512];
} sq_read_t;

sq_store_t *sq_store_new(const char *conninfo);
void sq_store_destroy(sq_store_t **self_p);
zactor_t *sq_store_writer(sq_store_t *self);
zactor_t *sq_store_reader(sq_store_t *self);

/* Hand a batch to the writer (ownership passes). */
int sq_store_commit(sq_store_t *self, sq_batch_t *batch);
/* Take back the batch the writer finished (call when its pipe is readable). */
sq_batch_t *sq_store_committed(sq_store_t *self);
int sq_store_read(sq_store_t *self, sq_read_t *op);
sq_read_t *sq_store_read_done(sq_store_t *self);
void sq_read_destroy(sq_read_t **self_p);

/* Rebuild: call add(arg, job) for every job with unfinished tasks. Tasks
 * finished before have state SQ_T_DONE (their counts are in job->counts);
 * unfinished ones have state SQ_T_SUBMITTING and their data loaded. */
int sq_store_load(sq_db_t *db, void (*add)(void *arg, sq_job_t *job), void *arg,
                  size_t *n_jobs, size_t *n_tasks);

#endif
