'use strict';
// Anchor benchmark: one PostgreSQL job queue (graphile-worker or pg-boss)
// measured the way bench/queue measures shardq, on the same PostgreSQL:
//   insert    batch insert throughput (no worker running)
//   process   throughput draining the queue `insert` filled (a pre-filled queue)
//   e2e       insert → handler ran → completion recorded, worker running
//             while the producer inserts; the clock stops when PostgreSQL
//             shows every job completed
//   latency   single inserts at a steady rate; dispatch latency is the time
//             from the insert's acknowledged commit to the handler starting
//             (0 when the handler starts before the acknowledgement arrives);
//             also insert latency (send → ack) and send → handler start
// Usage: node bench.js --help. Prints a table; --json writes the figures.

const fs = require('node:fs');
const { Pool } = require('pg');
const { nowMs, pgConfig, payload, quantile, parseArgs, sleep, until } = require('./lib/common');
const { ConsumerChild } = require('./lib/child');

const DRAIN_TIMEOUT_MS = 30 * 60 * 1000;

async function insertAll(producer, tag, payloads, batch) {
  for (let k = 0; k < payloads.length; k += batch) {
    await producer.insertBatch(tag, payloads.slice(k, k + batch));
  }
}

// Wait until the consumer has run `n` handlers and PostgreSQL records all
// of them as completed (completion batching may lag the handler).
async function drained(ctx, child, tag, n) {
  await until(() => child.handled() >= n, 2, DRAIN_TIMEOUT_MS, `${n} ${tag} handlers`);
  await until(async () => (await ctx.queue.remaining(ctx.admin, tag)) === 0, 5,
    DRAIN_TIMEOUT_MS, `${tag} completions recorded`);
}

async function startConsumer(ctx, tag, record) {
  const child = new ConsumerChild(ctx.opt.queue, ctx.opt.db, tag, record);
  ctx.children.push(child);
  await child.ready();
  return child;
}

async function phaseInsert(ctx) {
  await ctx.admin.query('checkpoint');
  const t0 = nowMs();
  await insertAll(ctx.producer, 'proc', ctx.payloads, ctx.opt.batch);
  return { insert_per_s: ctx.payloads.length / ((nowMs() - t0) / 1000) };
}

async function phaseProcess(ctx) {
  await ctx.admin.query('checkpoint');
  const child = await startConsumer(ctx, 'proc', false);
  const t0 = nowMs();
  child.go();
  await drained(ctx, child, 'proc', ctx.payloads.length);
  const secs = (nowMs() - t0) / 1000;
  await child.stop();
  return { process_per_s: ctx.payloads.length / secs };
}

async function phaseE2e(ctx) {
  await ctx.admin.query('checkpoint');
  if (ctx.producer.prepare) await ctx.producer.prepare('e2e');
  const child = await startConsumer(ctx, 'e2e', false);
  child.go();
  const t0 = nowMs();
  await insertAll(ctx.producer, 'e2e', ctx.payloads, ctx.opt.batch);
  await drained(ctx, child, 'e2e', ctx.payloads.length);
  const secs = (nowMs() - t0) / 1000;
  await child.stop();
  return { e2e_per_s: ctx.payloads.length / secs };
}

// Offer `rate` single-job inserts per second on an absolute schedule (a
// slow insert does not push later ones back), stamp each acknowledgement,
// and match it with the handler start stamped in the consumer.
async function phaseLatency(ctx) {
  const { rate, latencyS } = ctx.opt;
  const n = Math.max(1, Math.round(rate * latencyS));
  if (ctx.producer.prepare) await ctx.producer.prepare('lat');
  await ctx.admin.query('checkpoint');
  const child = await startConsumer(ctx, 'lat', true);
  child.go();
  await sleep(500);
  const sent = new Float64Array(n);
  const acked = new Float64Array(n);
  const pending = [];
  const t0 = nowMs();
  for (let i = 0; i < n; i++) {
    const wait = t0 + (i * 1000) / rate - nowMs();
    if (wait > 0) await sleep(wait);
    sent[i] = nowMs();
    pending.push(ctx.producer.insertOne('lat', payload(i, ctx.opt.payload)).then(() => { acked[i] = nowMs(); }));
  }
  await Promise.all(pending);
  await until(() => child.handled() >= n, 5, 60000, `${n} latency handlers`);
  const { starts } = await child.stop();
  // Same rule as shardq-bench-queue: a job that reached its handler before
  // the producer saw the insert's acknowledgement counts as 0 ms.
  const lat = starts.map(([i, t]) => Math.max(0, t - acked[i])).sort((a, b) => a - b);
  const whole = starts.map(([i, t]) => t - sent[i]).sort((a, b) => a - b);
  const insert = Array.from(acked, (t, i) => t - sent[i]).sort((a, b) => a - b);
  return {
    dispatch_n: lat.length,
    dispatch_p50_ms: quantile(lat, 0.5),
    dispatch_p99_ms: quantile(lat, 0.99),
    dispatch_max_ms: lat[lat.length - 1],
    submit_p50_ms: quantile(insert, 0.5),
    submit_p99_ms: quantile(insert, 0.99),
    send_to_start_p50_ms: quantile(whole, 0.5),
    send_to_start_p99_ms: quantile(whole, 0.99),
  };
}

function fmtRate(v) {
  return v === undefined ? '-' : `${Math.round(v).toLocaleString('en-US')} jobs/s`;
}

function fmtMs(v) {
  return v === undefined ? '-' : `${v.toFixed(2)} ms`;
}

function printTable(r) {
  const rows = [
    ['queue', r.queue],
    ['settings', r.settings],
    ['jobs', `${r.jobs} x ${r.payload_bytes} B payload, insert batch ${r.batch}`],
    ['batch insert', fmtRate(r.insert_per_s)],
    ['process (pre-filled)', fmtRate(r.process_per_s)],
    ['end-to-end', fmtRate(r.e2e_per_s)],
    [`dispatch p50 @${r.rate}/s`, fmtMs(r.dispatch_p50_ms)],
    [`dispatch p99 @${r.rate}/s`, fmtMs(r.dispatch_p99_ms)],
    [`insert p50/p99 @${r.rate}/s`, `${fmtMs(r.submit_p50_ms)} / ${fmtMs(r.submit_p99_ms)}`],
    [`insert→handler p50/p99`, `${fmtMs(r.send_to_start_p50_ms)} / ${fmtMs(r.send_to_start_p99_ms)}`],
  ];
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(24)} ${v}\n`);
}

async function main() {
  const opt = parseArgs(process.argv.slice(2));
  const queue = require(`./queues/${opt.queue}`);
  const cfg = pgConfig(opt.db);
  const ctx = { opt, queue, children: [], admin: new Pool({ ...cfg, max: 2 }) };
  const result = {
    queue: queue.label, settings: queue.settings, jobs: opt.jobs, batch: opt.batch,
    payload_bytes: opt.payload, rate: opt.rate, date: new Date().toISOString(),
  };
  try {
    await queue.reset(ctx.admin);
    ctx.producer = await queue.openProducer(cfg);
    ctx.payloads = Array.from({ length: opt.jobs }, (_, i) => payload(i, opt.payload));
    const phases = { insert: phaseInsert, process: phaseProcess, e2e: phaseE2e, latency: phaseLatency };
    for (const name of ['insert', 'process', 'e2e', 'latency']) {
      if (opt.phases.includes(name)) Object.assign(result, await phases[name](ctx));
    }
    await ctx.producer.close();
  } finally {
    for (const c of ctx.children) c.kill();
    await ctx.admin.end();
  }
  printTable(result);
  if (opt.json) fs.writeFileSync(opt.json, JSON.stringify(result, null, 2) + '\n');
}

main().catch((err) => {
  process.stderr.write(`bench.js: ${err.stack || err}\n`);
  process.exit(1);
});
