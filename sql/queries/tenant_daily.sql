-- Per-tenant submitted / succeeded / failed task counts per day (UTC), and
-- the succeeded tasks' tokens: prompt, of them served from the workers' KV
-- cache (cached; unreported counts as none), and completion.
--   psql "$SHARDQ_DB" -v from="'2026-11-01'" -v to="'2026-12-01'" \
--        -f sql/queries/tenant_daily.sql
-- submitted counts tasks by the day their job was created; succeeded,
-- failed (dead) and cancelled count tasks by the day they finished.
-- from and to without a zone are UTC, as the days are, whatever the
-- session's TimeZone (the SET lasts for this psql session only).
SET TIME ZONE 'UTC';
WITH sub AS (
    SELECT j.tenant, date_trunc('day', j.created_at AT TIME ZONE 'UTC')::date AS day,
           sum(j.n_tasks) AS submitted
    FROM jobs j
    WHERE j.created_at >= (:from)::timestamptz AND j.created_at < (:to)::timestamptz
    GROUP BY 1, 2
), fin AS (
    SELECT j.tenant, date_trunc('day', r.finished_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE r.state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE r.state = 'dead') AS failed,
           count(*) FILTER (WHERE r.state = 'cancelled') AS cancelled,
           sum(r.prompt_tokens) FILTER (WHERE r.state = 'succeeded') AS prompt_tokens,
           sum(r.cached_tokens) FILTER (WHERE r.state = 'succeeded') AS cached_tokens,
           sum(r.completion_tokens) FILTER (WHERE r.state = 'succeeded') AS completion_tokens
    FROM task_results r
    JOIN jobs j ON j.id = r.job_id
    WHERE r.finished_at >= (:from)::timestamptz AND r.finished_at < (:to)::timestamptz
    GROUP BY 1, 2
)
SELECT coalesce(sub.tenant, fin.tenant) AS tenant,
       coalesce(sub.day, fin.day) AS day,
       coalesce(sub.submitted, 0) AS submitted,
       coalesce(fin.succeeded, 0) AS succeeded,
       coalesce(fin.failed, 0) AS failed,
       coalesce(fin.cancelled, 0) AS cancelled,
       coalesce(fin.prompt_tokens, 0) AS prompt_tokens,
       coalesce(fin.cached_tokens, 0) AS cached_tokens,
       coalesce(fin.completion_tokens, 0) AS completion_tokens
FROM sub FULL JOIN fin ON fin.tenant = sub.tenant AND fin.day = sub.day
ORDER BY 1, 2;
