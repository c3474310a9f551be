'use strict';
// graphile-worker 0.17.3 with the high-throughput settings its performance
// page documents: 24 concurrent jobs, a pool of 25, a local queue of 500
// and job completion/failure batching on (delay 0).

const { makeWorkerUtils, run, Logger } = require('graphile-worker');
const { Pool } = require('pg');

const WORKER_SETTINGS = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
};

// graphile-worker insists pools have error handlers; a lost connection
// must fail the run loudly rather than be retried silently.
function pool(cfg, max) {
  const p = new Pool({ ...cfg, max });
  const report = (err) => process.stderr.write(`graphile-worker pool: ${err.message}\n`);
  p.on('error', report);
  p.on('connect', (client) => client.on('error', report));
  return p;
}

// Connections for the producer: enough that single inserts at 200/s never
// queue behind each other's commits (fsync) inside the harness.
const PRODUCER_POOL = 20;

const quietLogger = new Logger(() => (level, message) => {
  if (level === 'error') process.stderr.write(`graphile-worker: ${message}\n`);
});

module.exports = {
  label: 'graphile-worker 0.17.3',
  settings: 'concurrency 24, pool 25, localQueue 500, completeJobBatchDelay 0, failJobBatchDelay 0',

  async reset(pool) {
    await pool.query('drop schema if exists graphile_worker cascade');
  },

  async openProducer(cfg) {
    const pgPool = pool(cfg, PRODUCER_POOL);
    const utils = await makeWorkerUtils({ pgPool, logger: quietLogger });
    await utils.migrate();
    return {
      insertBatch: (tag, payloads) =>
        utils.addJobs(payloads.map((p) => ({ identifier: tag, payload: p }))),
      insertOne: (tag, p) => utils.addJob(tag, p),
      async close() {
        await utils.release();
        await pgPool.end();
      },
    };
  },

  // The runner is built only at start() so that process start-up and pool
  // connection stay outside the measured interval.
  async openConsumer(cfg, tag, onJob) {
    const pgPool = pool(cfg, WORKER_SETTINGS.maxPoolSize);
    const warm = await pgPool.connect();
    warm.release();
    let runner = null;
    return {
      async start() {
        runner = await run({
          pgPool,
          concurrency: WORKER_SETTINGS.concurrentJobs,
          noHandleSignals: true,
          logger: quietLogger,
          taskList: { [tag]: async (p) => onJob(p) },
          preset: { worker: { ...WORKER_SETTINGS } },
        });
      },
      async stop() {
        if (runner) await runner.stop();
        await pgPool.end();
      },
    };
  },

  // Completed jobs are deleted, so a tag is done when none of its rows remain.
  async remaining(pool, tag) {
    const r = await pool.query(
      `select count(*)::int as n from graphile_worker._private_jobs j
         join graphile_worker._private_tasks t on t.id = j.task_id
        where t.identifier = $1`, [tag]);
    return r.rows[0].n;
  },
};
