/*  sq_link: rank 0's link to the broker (docs/protocol.md §5).
 *
 *  A thread of its own owns the DEALER socket, so heartbeats keep flowing
 *  however long a forward step takes. It sends READY with the group's
 *  capabilities, turns TASKS into leases the compute thread takes with
 *  sq_link_take(), passes CANCEL-LEASE on, sends the outcomes the compute
 *  thread hands in (batched into RESULT and FAIL messages), and reconnects
 *  when the broker is silent for 3 heartbeats or says DISCONNECT. It is
 *  also the group's watchdog: a forward step (sq_link_step) that runs
 *  past the step timeout means a device or a collective hangs, and the
 *  heartbeats it keeps sending would hide that from the broker for ever;
 *  so it says DISCONNECT (the broker re-queues the leases at once), logs
 *  why and ends the process with status 1 (mpirun then ends the group). A
 *  reconnect voids every lease taken before it: sq_link_epoch() moves on,
 *  and the compute thread drops sequences of older epochs (the broker has
 *  re-queued them; a late result would be stale anyway).
 *
 *  Ownership: a lease from sq_link_take() belongs to the caller until it
 *  is passed back to sq_link_complete()/sq_link_fail() (which take it) or
 *  freed with sq_lease_destroy().
 */
#ifndef SQ_LINK_H
#define SQ_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sq_jsonl.h"

typedef struct {
    uint64_t lease, token, task_id, job_id;
    uint32_t attempt;
    char *custom_id;
    char *prompt;
    size_t prompt_len;
    char *model;
    char *adapter;              /* NULL: the base model */
    char *adapter_version;      /* NULL: the active version */
    int64_t max_tokens;         /* -1: default */
    double temperature;         /* NAN: default */
    double top_p;               /* NAN: default */
    int64_t seed;               /* -1: default */
    char *stop[4];              /* the stop strings of the task's body (n_stop) */
    int n_stop;
    /* a chat task's prompt as its template's turns, from the messages of
     * its body (when they render to the prompt); n_turns 0: the prompt
     * is encoded as text */
    sq_jsonl_chat_t chat;
    int64_t received_ns;        /* CLOCK_MONOTONIC when TASKS arrived */
    uint64_t epoch;
} sq_lease_t;

void sq_lease_destroy(sq_lease_t **self_p);

typedef struct {
    const char *endpoint;       /* broker worker endpoint */
    const char *group_id;
    const char *model;          /* model name (file name) */
    const char *model_sha256;
    int tp_size;
    const char *device;
    const char *kv_type;        /* the KV cache's values: "f16" or "f32" */
    int max_batch;
    int kv_pages;               /* KV-cache pages of 32 positions (0: not said) */
    const char *const *adapters;/* names held; may be NULL */
    int n_adapters;
    int heartbeat_ms;           /* 0: 1000 */
    int step_timeout_ms;        /* a step running longer ends the process; 0: never */
} sq_link_config_t;

/* What a finished task reports (text may hold any bytes; lineage fields
 * are copied into the RESULT entry). */
typedef struct {
    const char *text;
    size_t text_len;
    const char *finish_reason;  /* "stop" | "length" */
    int64_t prompt_tokens, completion_tokens;
    int64_t cached_tokens;      /* of prompt_tokens, those the KV cache held */
    const char *adapter_version;/* the version it ran with, or NULL */
    double queue_wait_ms, prefill_ms, decode_ms;
} sq_outcome_t;

typedef struct sq_link sq_link_t;

/* Start the link thread; it connects and sends READY at once. cfg strings
 * are copied. NULL on error (detail set: an endpoint ZeroMQ refuses, say). */
sq_link_t *sq_link_new(const sq_link_config_t *cfg);
/* Why the group stops, for the DISCONNECT that sq_link_destroy sends (the
 * broker records it with each lease it re-queues); default "group
 * shutting down". Copied. */
void sq_link_set_stop_reason(sq_link_t *self, const char *reason);
/* Flush outcomes queued so far, send DISCONNECT, stop the thread. */
void sq_link_destroy(sq_link_t **self_p);

/* Next lease, waiting up to timeout_ms (0: don't wait). NULL when none. */
sq_lease_t *sq_link_take(sq_link_t *self, int timeout_ms);
/* Lease ids the broker cancelled since the last call (up to max). */
int sq_link_cancelled(sq_link_t *self, uint64_t *leases, int max);
uint64_t sq_link_epoch(sq_link_t *self);
/* Draining and nothing more can come: the broker acknowledged the
 * draining READY (so every lease it sent has arrived) and every lease
 * received has been taken. */
bool sq_link_drained(sq_link_t *self);

/* Report a lease's outcome (takes the lease). */
void sq_link_complete(sq_link_t *self, sq_lease_t *lease, const sq_outcome_t *out);
void sq_link_fail(sq_link_t *self, sq_lease_t *lease, bool retryable, const char *error);
/* A forward step begins (running) or has ended: the watchdog's clock
 * (step_timeout_ms). */
void sq_link_step(sq_link_t *self, bool running);
/* Announce draining (READY draining=true): the broker sends no more tasks. */
void sq_link_set_draining(sq_link_t *self);
/* The link thread has ended by itself (its broker endpoint failed): no
 * lease can come or go any more. */
bool sq_link_dead(sq_link_t *self);
/* The KV-cache pages the running sequences hold and the preemptions so
 * far: HEARTBEAT takes them to the broker, at most once a heartbeat
 * interval when they change, even while results flow. */
void sq_link_set_kv_use(sq_link_t *self, int pages_in_use, long preemptions);

#endif
