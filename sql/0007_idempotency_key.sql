-- 0007_idempotency_key: a SUBMIT may carry a key that makes it safe to send
-- again.
--
-- A client that got no answer to a SUBMIT (a timeout, a dropped
-- connection) cannot know whether the job was stored; sending it again
-- could make a second job. With an idempotency key, a SUBMIT whose key the
-- tenant has used before is answered with the job stored the first time,
-- and nothing new is stored (docs/protocol.md, SUBMIT). Keys are per
-- tenant and kept with the job for as long as the job is kept.
ALTER TABLE jobs ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX jobs_tenant_idempotency_key ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
