-- Everything that happened to one job, in time order.
--   psql "$SHARDQ_DB" -v job_id=42 -f sql/queries/job_history.sql
-- Columns: at, source (audit|attempt|result), action, task (idx or NULL for
-- job-level events), actor/group, details (jsonb).
-- Sources: audit_log (submission, cancel, retry, dead-letter, lost lease,
-- stale result), task_attempts (every lease that ended, start and end) and
-- task_results (the terminal outcome of each task).
SELECT at, source, action, idx AS task, actor, details
FROM (
    SELECT a.at, 'audit' AS source, a.action, a.idx, a.actor, a.details, a.id AS ord
    FROM audit_log a
    WHERE a.job_id = :job_id
  UNION ALL
    SELECT t.started_at, 'attempt', 'leased', t.idx, 'worker:' || t.group_id,
           jsonb_build_object('attempt', t.attempt, 'lease', t.lease_id), 0
    FROM task_attempts t
    WHERE t.job_id = :job_id
  UNION ALL
    SELECT t.ended_at, 'attempt', 'attempt_' || t.outcome, t.idx, 'worker:' || t.group_id,
           jsonb_build_object('attempt', t.attempt, 'lease', t.lease_id, 'error', t.error), 0
    FROM task_attempts t
    WHERE t.job_id = :job_id
  UNION ALL
    SELECT r.finished_at, 'result', r.state, r.idx, 'broker',
           jsonb_build_object('attempts', r.attempts, 'error', r.error,
                              'finish_reason', r.finish_reason), 0
    FROM task_results r
    WHERE r.job_id = :job_id
) h
ORDER BY at, ord, idx NULLS FIRST;
