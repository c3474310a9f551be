-- 0005_kv_type: the KV cache's value type in the lineage.
--
-- A worker group says in READY whether it keeps keys and values in F16
-- (the default) or F32 (`shardq-worker --kv-type`); the broker stores it
-- in each result's lineage as "kv_type", since it moves the logits (by up
-- to about 1e-3 of the largest). Results of groups that did not say have
-- none (NULL). The view gains the column; the jsonb needs no migration.
CREATE OR REPLACE VIEW result_lineage AS
SELECT r.job_id, r.idx, t.custom_id, r.state, r.finished_at,
       r.lineage->>'model_sha256'            AS model_sha256,
       r.lineage->>'adapter'                 AS adapter,
       r.lineage->>'adapter_version'         AS adapter_version,
       r.lineage->>'group_id'                AS group_id,
       (r.lineage->>'tp_size')::int          AS tp_size,
       r.lineage->>'device'                  AS device,
       (r.lineage->>'queue_wait_ms')::float8 AS queue_wait_ms,
       (r.lineage->>'prefill_ms')::float8    AS prefill_ms,
       (r.lineage->>'decode_ms')::float8     AS decode_ms,
       r.lineage->>'kv_type'                 AS kv_type
FROM task_results r
JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx;
