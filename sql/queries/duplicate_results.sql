-- Tasks whose result was recorded more than once. MUST always be empty.
--   psql "$SHARDQ_DB" -f sql/queries/duplicate_results.sql
-- A result is recorded in two places: the successful attempt
-- (task_attempts, outcome 'succeeded') and the terminal outcome
-- (task_results). This lists tasks with more than one successful attempt,
-- and tasks whose successful attempt disagrees with the terminal outcome.
-- A fenced (stale) result is logged as audit action result_rejected_stale
-- and never recorded, so it never shows up here.
SELECT job_id, idx, 'several successful attempts' AS problem, count(*) AS n
FROM task_attempts
WHERE outcome = 'succeeded'
GROUP BY job_id, idx
HAVING count(*) > 1
UNION ALL
SELECT a.job_id, a.idx, 'success without a succeeded result', 1
FROM task_attempts a
LEFT JOIN task_results r ON r.job_id = a.job_id AND r.idx = a.idx
WHERE a.outcome = 'succeeded' AND r.state IS DISTINCT FROM 'succeeded'
ORDER BY 1, 2;
