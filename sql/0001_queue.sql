-- 0001_queue: the durable job queue (issue 2).
--
-- Hot/cold split (docs/audit.md explains it at length):
--   * tasks, jobs, task_attempts, task_results and audit_log are
--     INSERT-mostly history ("cold"): a task row is written once at submit
--     and never updated, so completed work leaves no dead tuples behind.
--   * task_queue is the only "hot" table: one tiny row per task that is not
--     yet terminal, inserted at submit and deleted when the task reaches a
--     terminal state. The broker rebuilds its in-memory queue from it at
--     start, so restart time is proportional to the backlog, never to the
--     history. Its dead tuples are few and autovacuum clears them quickly.
-- The broker writes all of these in batches (COPY inside one transaction
-- per batch); nothing here is on a per-task round trip.
--
-- No foreign keys on the per-task tables: every row is written by the
-- broker in the same transaction as (or after the commit of) its parent,
-- and a foreign key costs a trigger and an index probe per row -- four per
-- task on the hot path. custom_id uniqueness within a job is checked by the
-- broker before anything is stored. sql/queries/duplicate_results.sql is
-- the independent consistency check.

CREATE TABLE jobs (
    id            bigserial PRIMARY KEY,
    tenant        text        NOT NULL,
    model         text        NOT NULL,
    adapter       text,
    priority      integer     NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 1000),
    max_attempts  integer     NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    params        text,                       -- job-level JSON, passed through verbatim
    n_tasks       integer     NOT NULL CHECK (n_tasks > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    cancelled_at  timestamptz
);
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at);
CREATE INDEX jobs_created ON jobs (created_at);

-- One row per task, written once. (job_id, idx) is the task's identity;
-- idx is the 1-based position in the SUBMIT.
CREATE TABLE tasks (
    job_id       bigint  NOT NULL,
    idx          integer NOT NULL CHECK (idx > 0),
    custom_id    text    NOT NULL,
    prompt       text    NOT NULL,
    max_tokens   integer NOT NULL,
    temperature  double precision NOT NULL,
    top_p        double precision NOT NULL,
    seed         bigint,
    body         text,                        -- OpenAI-Batch body JSON, verbatim
    PRIMARY KEY (job_id, idx)
);

-- Hot: tasks that are not terminal yet (queued, leased or waiting to retry).
CREATE TABLE task_queue (
    job_id  bigint  NOT NULL,
    idx     integer NOT NULL,
    PRIMARY KEY (job_id, idx)
);

-- One row per lease that ended (result, failure, worker lost, cancel,
-- stale). An attempt cut short by a broker crash leaves no row: its lease
-- died with the broker and the task is queued again at restart.
CREATE TABLE task_attempts (
    job_id       bigint      NOT NULL,
    idx          integer     NOT NULL,
    attempt      integer     NOT NULL CHECK (attempt > 0),
    lease_id     bigint      NOT NULL,
    token        bigint      NOT NULL,   -- the fencing token (two's complement of the uint64)
    group_id     text        NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN
                   ('succeeded', 'failed', 'failed_permanent', 'worker_lost', 'cancelled')),
    error        text,
    PRIMARY KEY (job_id, idx, attempt)
);
-- A task has at most one successful attempt recorded (fencing backstop).
CREATE UNIQUE INDEX task_attempts_one_success ON task_attempts (job_id, idx)
    WHERE outcome = 'succeeded';
CREATE INDEX task_attempts_ended ON task_attempts (ended_at) WHERE outcome <> 'succeeded';

-- The terminal outcome of a task: at most one row per task, ever.
CREATE TABLE task_results (
    job_id             bigint      NOT NULL,
    idx                integer     NOT NULL,
    state              text        NOT NULL CHECK (state IN ('succeeded', 'dead', 'cancelled')),
    text               text,
    finish_reason      text,
    prompt_tokens      integer,
    completion_tokens  integer,
    error              text,
    attempts           integer     NOT NULL,
    finished_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX task_results_finished ON task_results (finished_at);

-- Append-only log of every submission, cancel, retry, dead-letter, lost
-- lease, rejected stale result and worker group arrival/departure.
-- (Leases and successes are recorded in task_attempts / task_results; the
-- job-history query unions all three.)
CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor     text        NOT NULL,     -- 'broker', 'client:<tenant>', 'worker:<group>'
    action    text        NOT NULL,     -- submitted, cancelled, retry, dead, ...
    job_id    bigint,
    idx       integer,
    subject   text        NOT NULL,     -- 'job:12', 'task:12/7', 'group:g1'
    details   jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_job ON audit_log (job_id, at) WHERE job_id IS NOT NULL;
CREATE INDEX audit_log_action_at ON audit_log (action, at);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Worker groups seen, with their capabilities.
CREATE TABLE workers (
    group_id      text        PRIMARY KEY,
    model         text        NOT NULL,
    capabilities  jsonb       NOT NULL DEFAULT '{}',
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now()
);
