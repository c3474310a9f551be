-- 0004_task_adapter: a task may name its own LoRA adapter (and pin a
-- version), so one job file mixes the base model and adapters. NULL: the
-- job's adapter (jobs.adapter), or the base model when that is NULL too.
ALTER TABLE tasks ADD COLUMN adapter text;
ALTER TABLE tasks ADD COLUMN adapter_version text;
