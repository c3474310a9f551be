-- 0003_lora: LoRA adapter updates, as records compliance can query.
--
-- One row per published (name, version). Its state moves
--   staged -> canary -> active -> retired
--   staged -> active,   canary|active -> rolled_back
-- and every move is a row in lora_events (who, when, from, to) and in
-- audit_log. At most one version per name is active and at most one is in
-- canary at a time (partial unique indexes); the broker resolves the
-- version of each task at dispatch from these rows and records it in the
-- result's lineage (0002).
CREATE TABLE lora_updates (
    id           bigserial   PRIMARY KEY,
    name         text        NOT NULL,
    version      text        NOT NULL,
    state        text        NOT NULL CHECK (state IN
                   ('staged', 'canary', 'active', 'retired', 'rolled_back')),
    canary_pct   integer     CHECK (canary_pct BETWEEN 1 AND 99),
    sha256       text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes   bigint      NOT NULL CHECK (size_bytes > 0),
    rank         integer     NOT NULL CHECK (rank > 0),
    targets      text[]      NOT NULL,
    base_sha256  text,
    source       text,
    metrics      jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text        NOT NULL,
    UNIQUE (name, version)
);
CREATE UNIQUE INDEX lora_one_active ON lora_updates (name) WHERE state = 'active';
CREATE UNIQUE INDEX lora_one_canary ON lora_updates (name) WHERE state = 'canary';

CREATE TABLE lora_events (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    name        text        NOT NULL,
    version     text        NOT NULL,
    from_state  text,
    to_state    text        NOT NULL,
    actor       text        NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX lora_events_name_at ON lora_events (name, at);
