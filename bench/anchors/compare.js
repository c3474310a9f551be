'use strict';
// Print one comparison table from the JSON files of shardq-bench-queue and
// the anchors (bench.js --json), as Markdown, with the targets:
// shardq end-to-end >= 1.5 x the better anchor, dispatch p99 <= 5 ms.
// Usage: node compare.js RESULT.json ... (shardq's file is recognised by its
// "queue" field; without it, the anchors are tabled alone).

const fs = require('node:fs');

const E2E_TARGET_RATIO = 1.5;
const DISPATCH_P99_TARGET_MS = 5;

function load(path) {
  try {
    return JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    process.stderr.write(`compare.js: ${path}: ${err.message}\n`);
    process.exit(1);
  }
}

const rate = (v) => (v == null ? '-' : Math.round(v).toLocaleString('en-US'));
const ms = (v) => (v == null ? '-' : v.toFixed(2));

function main(argv) {
  if (argv.length < 1) {
    process.stderr.write('usage: node compare.js RESULT.json ...\n');
    process.exit(2);
  }
  const all = argv.map(load);
  const shardq = all.find((r) => r.queue.startsWith('shardq')) || {};
  const anchors = all.filter((r) => r !== shardq);
  const rows = all.map((r) => [
    r.queue, rate(r.submit_per_s ?? r.insert_per_s), rate(r.process_per_s), rate(r.e2e_per_s),
    `${ms(r.dispatch_p50_ms)} / ${ms(r.dispatch_p99_ms)}`,
    r.submit_p50_ms == null ? '-' : `${ms(r.submit_p50_ms)} / ${ms(r.submit_p99_ms)}`,
    `${ms(r.send_to_start_p50_ms)} / ${ms(r.send_to_start_p99_ms)}`,
  ]);
  const head = ['queue', 'batch insert/s', 'process/s (pre-filled)', 'end-to-end/s',
    `dispatch p50/p99 ms @${all[0].rate}/s`, 'submit p50/p99 ms',
    'submit sent → handler p50/p99 ms'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) out.push(`| ${r.join(' | ')} |`);
  process.stdout.write(out.join('\n') + '\n\n');

  const best = anchors.filter((a) => a.e2e_per_s != null)
    .sort((a, b) => b.e2e_per_s - a.e2e_per_s)[0];
  if (best && shardq.e2e_per_s != null) {
    const ratio = shardq.e2e_per_s / best.e2e_per_s;
    process.stdout.write(`end-to-end ratio: shardq / ${best.queue} = ${ratio.toFixed(2)}` +
      ` (target >= ${E2E_TARGET_RATIO}: ${ratio >= E2E_TARGET_RATIO ? 'met' : 'NOT met'})\n`);
  }
  for (const a of anchors) {
    if (a.process_per_s != null && shardq.process_per_s != null) {
      process.stdout.write(`pre-filled ratio: shardq / ${a.queue} = ` +
        `${(shardq.process_per_s / a.process_per_s).toFixed(2)}\n`);
    }
  }
  if (shardq.dispatch_p99_ms != null) {
    const ok = shardq.dispatch_p99_ms <= DISPATCH_P99_TARGET_MS;
    process.stdout.write(`shardq dispatch p99 ${ms(shardq.dispatch_p99_ms)} ms` +
      ` (target <= ${DISPATCH_P99_TARGET_MS} ms: ${ok ? 'met' : 'NOT met'})\n`);
  }
  if (shardq.backlog && shardq.backlog.length) {
    process.stdout.write('\n| tasks queued | shardq process/s |\n|---|---|\n');
    for (const b of shardq.backlog) process.stdout.write(`| ${rate(b.queued)} | ${rate(b.per_s)} |\n`);
  }
}

main(process.argv.slice(2));
