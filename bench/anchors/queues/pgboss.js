'use strict';
// pg-boss 10.4.2 with batch settings: four polling workers per consumer,
// each fetching up to 500 jobs per round at the shortest polling interval
// pg-boss allows (0.5 s). pg-boss has no LISTEN/NOTIFY wake-up, so its
// dispatch latency is bounded below by polling.

const PgBoss = require('pg-boss');

const N_WORKERS = 4;
const WORK_OPTIONS = { batchSize: 500, pollingIntervalSeconds: 0.5 };

// Connections for the producer: enough that single inserts at 200/s never
// queue behind each other's commits (fsync) inside the harness.
const PRODUCER_POOL = 20;

// Maintenance and cron scheduling only archive, expire and schedule: none
// of that happens inside a run, and it would add background queries.
function open(cfg, max) {
  const boss = new PgBoss({ ...cfg, max, supervise: false, schedule: false });
  boss.on('error', (err) => process.stderr.write(`pg-boss: ${err.message}\n`));
  return boss;
}

module.exports = {
  label: 'pg-boss 10.4.2',
  settings: `${N_WORKERS} workers x batchSize ${WORK_OPTIONS.batchSize}, polling 0.5 s`,

  async reset(pool) {
    await pool.query('drop schema if exists pgboss cascade');
  },

  async openProducer(cfg) {
    const boss = open(cfg, PRODUCER_POOL);
    await boss.start();
    const made = new Set();
    const queue = async (tag) => {
      if (!made.has(tag)) {
        await boss.createQueue(tag);
        made.add(tag);
      }
    };
    return {
      async insertBatch(tag, payloads) {
        await queue(tag);
        await boss.insert(payloads.map((p) => ({ name: tag, data: p })));
      },
      async insertOne(tag, p) {
        await queue(tag);
        await boss.send(tag, p);
      },
      prepare: queue,
      async close() {
        await boss.stop({ graceful: true, wait: true });
      },
    };
  },

  async openConsumer(cfg, tag, onJob) {
    const boss = open(cfg, N_WORKERS + 4);
    await boss.start();
    await boss.createQueue(tag);
    return {
      async start() {
        const handler = async (jobs) => {
          for (const job of jobs) onJob(job.data);
        };
        for (let w = 0; w < N_WORKERS; w++) await boss.work(tag, WORK_OPTIONS, handler);
      },
      async stop() {
        await boss.stop({ graceful: true, wait: true });
      },
    };
  },

  async remaining(pool, tag) {
    const r = await pool.query(
      "select count(*)::int as n from pgboss.job where name = $1 and state <> 'completed'", [tag]);
    return r.rows[0].n;
  },
};
