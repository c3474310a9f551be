-- Everything that happened to one job, in time order.
--   psql "$SHARDQ_DB" -v job_id=42 -f sql/queries/job_history.sql
-- Columns: at, source (audit|attempt|result), action, task (idx or NULL for
-- job-level events), actor/group, details (jsonb).
-- Sources: audit_log (submission, cancel, retry, dead-letter, lost lease,
-- stale result), task_attempts (every lease that ended, start and end) and
-- task_results (the terminal outcome of each task).
-- Events of the same millisecond come in the order they happen: job
-- events first, then for each task its attempts in turn (leased, ended,
-- what the broker made of it), its result last.
SELECT at, source, action, idx AS task, actor, details
FROM (
    SELECT a.at, 'audit' AS source, a.action, a.idx, a.actor, a.details,
           coalesce((a.details ->> 'attempt')::int, 0) AS attempt,
           CASE WHEN a.idx IS NULL THEN 0 ELSE 3 END AS rank, a.id
    FROM audit_log a
    WHERE a.job_id = :job_id
  UNION ALL
    SELECT t.started_at, 'attempt', 'leased', t.idx, 'worker:' || t.group_id,
           jsonb_build_object('attempt', t.attempt, 'lease', t.lease_id), t.attempt, 1, 0
    FROM task_attempts t
    WHERE t.job_id = :job_id
  UNION ALL
    SELECT t.ended_at, 'attempt', 'attempt_' || t.outcome, t.idx, 'worker:' || t.group_id,
           jsonb_build_object('attempt', t.attempt, 'lease', t.lease_id, 'error', t.error),
           t.attempt, 2, 0
    FROM task_attempts t
    WHERE t.job_id = :job_id
  UNION ALL
    SELECT r.finished_at, 'result', r.state, r.idx, 'broker',
           jsonb_build_object('attempts', r.attempts, 'error', r.error,
                              'finish_reason', r.finish_reason), r.attempts, 4, 0
    FROM task_results r
    WHERE r.job_id = :job_id
) h
ORDER BY at, idx NULLS FIRST, attempt, rank, id;
