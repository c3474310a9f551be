-- 0010_scheduler: the scheduler's records (issue 5).
--   policies        every distinct policy file the scheduler has loaded
--                   (one row per content digest; reloading the same text
--                   only moves last_loaded_at)
--   scaling_events  every decision that changed a pool's group count:
--                   when, pool, from -> to, why, the metrics it saw, the
--                   policy version, and whether the actuator accepted it.
-- Both are history: scaling_events is append-only like audit_log, and each
-- event also writes an audit_log row (actor 'scheduler', action 'scaled').

CREATE TABLE policies (
    version         bigserial   PRIMARY KEY,
    digest          text        NOT NULL UNIQUE,   -- FNV-1a 64 of body, hex
    source          text        NOT NULL,          -- file path as given
    body            text        NOT NULL,          -- the YAML as loaded
    loaded_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_loaded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE scaling_events (
    id              bigserial   PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    pool            text        NOT NULL,
    from_groups     integer     NOT NULL CHECK (from_groups >= 0),
    to_groups       integer     NOT NULL CHECK (to_groups >= 0),
    reason          text        NOT NULL,
    metrics         jsonb       NOT NULL DEFAULT '{}',
    policy_version  bigint      REFERENCES policies (version),
    actuator        text        NOT NULL,          -- local | kubernetes
    applied         boolean     NOT NULL,          -- the actuator accepted it
    error           text                           -- why not, when not
);
CREATE INDEX scaling_events_at ON scaling_events (at);
CREATE INDEX scaling_events_pool_at ON scaling_events (pool, at);

CREATE FUNCTION scaling_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'scaling_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER scaling_events_append_only
    BEFORE UPDATE OR DELETE ON scaling_events
    FOR EACH ROW EXECUTE FUNCTION scaling_events_refuse_change();
CREATE TRIGGER scaling_events_no_truncate
    BEFORE TRUNCATE ON scaling_events
    FOR EACH STATEMENT EXECUTE FUNCTION scaling_events_refuse_change();
