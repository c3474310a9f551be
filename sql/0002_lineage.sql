-- 0002_lineage: which weights produced each output.
--
-- Every result a worker group records carries its lineage: the SHA-256 of
-- the model file, the LoRA adapter and the exact version it ran with, the
-- worker group, its tensor-parallel size and device, and where the time
-- went (queue wait, prefill, decode). It is kept as one jsonb value next to
-- the result so a compliance query can join outputs to weights without
-- another table, and new lineage fields need no migration.
ALTER TABLE task_results ADD COLUMN lineage jsonb;

-- "Which outputs did adapter X version V produce?" without a scan.
CREATE INDEX task_results_adapter_idx ON task_results
    ((lineage->>'adapter'), (lineage->>'adapter_version'))
    WHERE lineage ? 'adapter';

-- Typed view of the lineage for ad-hoc SQL.
CREATE VIEW result_lineage AS
SELECT r.job_id, r.idx, t.custom_id, r.state, r.finished_at,
       r.lineage->>'model_sha256'            AS model_sha256,
       r.lineage->>'adapter'                 AS adapter,
       r.lineage->>'adapter_version'         AS adapter_version,
       r.lineage->>'group_id'                AS group_id,
       (r.lineage->>'tp_size')::int          AS tp_size,
       r.lineage->>'device'                  AS device,
       (r.lineage->>'queue_wait_ms')::float8 AS queue_wait_ms,
       (r.lineage->>'prefill_ms')::float8    AS prefill_ms,
       (r.lineage->>'decode_ms')::float8     AS decode_ms
FROM task_results r
JOIN tasks t ON t.job_id = r.job_id AND t.idx = r.idx;
