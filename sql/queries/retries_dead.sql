-- Tasks that were retried or dead-lettered in a time range, and why.
--   psql "$SHARDQ_DB" -v from="'2026-11-01'" -v to="'2026-12-01'" \
--        -f sql/queries/retries_dead.sql
-- One row per retry, lost lease (the worker group was lost: the task
-- went back to the queue, the attempt counted) or dead-letter event: when,
-- the task, the job's tenant, the attempt number and the error that
-- caused it. Uses the audit_log (action, at) index. from and to without a
-- zone are UTC (the SET lasts for this psql session only).
SET TIME ZONE 'UTC';
SELECT a.at, a.action, a.job_id, a.idx, t.custom_id, j.tenant,
       (a.details ->> 'attempt')::int AS attempt,
       a.details ->> 'error' AS error
FROM audit_log a
JOIN jobs j ON j.id = a.job_id
LEFT JOIN tasks t ON t.job_id = a.job_id AND t.idx = a.idx
WHERE a.action IN ('retry', 'lease_lost', 'dead')
  AND a.at >= (:from)::timestamptz
  AND a.at <  (:to)::timestamptz
ORDER BY a.at, a.id;
