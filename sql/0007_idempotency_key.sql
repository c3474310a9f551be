-- 0007_idempotency_key: a SUBMIT may carry a key that makes it safe to send
-- again.
--
-- A client that got no answer to a SUBMIT (a timeout, a dropped
-- connection) cannot know whether the job was stored; sending it again
-- could make a second job. With an idempotency key, a SUBMIT whose key the
-- tenant has used before is answered with the job stored the first time,
-- and nothing new is stored (docs/protocol.md, SUBMIT). Keys are per
-- tenant and kept with the job for as long as the job is kept; so is the
-- SHA-256 of what the SUBMIT carried (its model, adapter, params,
-- priority, attempts and every task field), and a later SUBMIT under the
-- same key that carries anything else is refused.
ALTER TABLE jobs ADD COLUMN idempotency_key text;
ALTER TABLE jobs ADD COLUMN submit_sha256 text;
CREATE UNIQUE INDEX jobs_tenant_idempotency_key ON jobs (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
