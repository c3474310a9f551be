/*  sq_sched_db: policy versions and scaling events in PostgreSQL. */
#define _POSIX_C_SOURCE 200809L
#include "sq_sched_db.h"

#include "sq_error.h"

#include <stdio.h>
#include <stdlib.h>

int
sq_sched_db_store_policy(sq_db_t *db, const sq_policy_t *policy, const char *source,
                         int64_t *version)
{
    const char *sql =
        "INSERT INTO policies (digest, source, body) VALUES ($1, $2, $3) "
        "ON CONFLICT (digest) DO UPDATE SET last_loaded_at = clock_timestamp(), "
        "source = EXCLUDED.source RETURNING version";
    const char *params[] = {policy->digest, source, policy->text};
    PGresult *res = NULL;
    int rc = sq_db_exec(db, sql, 3, params, &res);
    if (rc)
        return rc;
    *version = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return *version > 0 ? 0 : SQ_FAIL(SQ_EDB, "policies: no version returned");
}

char *
sq_sched_metrics_json(const sq_pool_metrics_t *m, char *buf, size_t size)
{
    snprintf(buf, size,
             "{\"queued\":%lld,\"leased\":%lld,\"oldest_age_s\":%.3f,\"busy\":%d,\"idle\":%d,"
             "\"starting\":%d,\"draining\":%d,\"throughput_per_s\":%.3f}",
             (long long)m->queued, (long long)m->leased, m->oldest_age_s, m->busy, m->idle,
             m->starting, m->draining, m->throughput);
    return buf;
}

int
sq_sched_db_record(sq_db_t *db, const sq_scaling_event_t *ev, int64_t *id)
{
    /* One statement: the event and its audit row commit together. */
    const char *sql =
        "WITH e AS ("
        "  INSERT INTO scaling_events (pool, from_groups, to_groups, reason, metrics,"
        "                              policy_version, actuator, applied, error, event_key)"
        "  VALUES ($1, $2::int, $3::int, $4, $5::jsonb, $6::bigint, $7, $8::boolean, $9, $10)"
        "  ON CONFLICT (event_key) DO NOTHING"
        "  RETURNING id, pool, from_groups, to_groups, reason, policy_version, applied, error)"
        " INSERT INTO audit_log (actor, action, subject, details)"
        " SELECT 'scheduler', 'scaled', 'pool:' || e.pool,"
        "        jsonb_build_object('scaling_event', e.id, 'from', e.from_groups,"
        "                           'to', e.to_groups, 'reason', e.reason,"
        "                           'policy_version', e.policy_version,"
        "                           'applied', e.applied, 'error', e.error)"
        " FROM e RETURNING (details->>'scaling_event')::bigint";
    char from[16], to[16], version[24], metrics[512];
    snprintf(from, sizeof from, "%d", ev->decision->current);
    snprintf(to, sizeof to, "%d", ev->decision->desired);
    snprintf(version, sizeof version, "%lld", (long long)ev->policy_version);
    sq_sched_metrics_json(ev->metrics, metrics, sizeof metrics);
    const char *params[] = {ev->pool, from, to, ev->decision->reason, metrics,
                            ev->policy_version > 0 ? version : NULL, ev->actuator,
                            ev->applied ? "true" : "false", ev->error, ev->key};
    PGresult *res = NULL;
    int rc = sq_db_exec(db, sql, 10, params, &res);
    if (rc)
        return rc;
    if (id)
        *id = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    return 0;
}
