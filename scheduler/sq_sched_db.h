/*  sq_sched_db: the scheduler's writes to PostgreSQL (sql/0010_scheduler.sql).
 *
 *  - policy versions: one row per distinct policy text (by digest);
 *  - scaling events: one row per decision that changed a count, written
 *    together with its audit_log row in ONE statement (a data-modifying
 *    CTE), so there is never an event without its audit entry.
 *  All SQL goes through sq_db_exec (PQexecParams). The caller owns the
 *  connection; a lost one returns SQ_EDBDOWN and the caller reconnects.
 */
#ifndef SQ_SCHED_DB_H
#define SQ_SCHED_DB_H

#include "sq_db.h"
#include "sq_decide.h"
#include "sq_policy.h"

#include <stdint.h>

/* Store (or touch) the policy's version; *version (OUT) is its number. */
int sq_sched_db_store_policy(sq_db_t *db, const sq_policy_t *policy, const char *source,
                             int64_t *version);

typedef struct {
    const char *pool;
    const sq_decision_t *decision;  /* current -> desired, reason */
    const sq_pool_metrics_t *metrics;
    int64_t policy_version;         /* <= 0: unknown (NULL) */
    const char *actuator;
    int applied;
    const char *error;              /* NULL when applied */
    const char *key;                /* unique to the event (a retry of it writes
                                       nothing new); NULL: none */
} sq_scaling_event_t;

/* Insert the event and its audit row; *id (OUT, may be NULL) is the
 * scaling_events id, 0 when a row with the event's key was there already
 * (an earlier try committed: nothing is written again). */
int sq_sched_db_record(sq_db_t *db, const sq_scaling_event_t *ev, int64_t *id);

/* The metrics as the JSON object stored in scaling_events.metrics (and
 * shown in logs): {"queued":..,"leased":..,...}. Writes into buf. */
char *sq_sched_metrics_json(const sq_pool_metrics_t *m, char *buf, size_t size);

#endif
