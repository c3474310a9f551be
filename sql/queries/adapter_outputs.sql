-- Which model and adapter version produced which outputs.
--
-- For every recorded result in a time range: the model file's SHA-256, the
-- LoRA adapter and version (NULL for the base model), the worker group and
-- the output itself, oldest first. Filter by adapter with :adapter ('' for
-- all) and by job with :job (0 for all).
--
--   psql "$SHARDQ_DB" -v from="'2026-11-01'" -v to="'2026-12-01'" \
--        -v adapter="''" -v job=0 -f sql/queries/adapter_outputs.sql
-- from and to without a zone are UTC (the SET lasts for this psql session).
SET TIME ZONE 'UTC';
SELECT r.finished_at,
       r.job_id,
       t.custom_id,
       r.lineage->>'model_sha256'    AS model_sha256,
       r.lineage->>'adapter'         AS adapter,
       r.lineage->>'adapter_version' AS adapter_version,
       r.lineage->>'group_id'        AS worker_group,
       left(r.text, 60)              AS output_start
FROM task_results r
JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx
WHERE r.state = 'succeeded'
  AND r.finished_at >= :from::timestamptz
  AND r.finished_at <  :to::timestamptz
  AND (:adapter = '' OR r.lineage->>'adapter' = :adapter)
  AND (:job = 0 OR r.job_id = :job)
ORDER BY r.finished_at, r.job_id, r.idx;
