'use strict';
// Shared helpers for the anchor benchmarks: argument parsing, the libpq
// conninfo the shardq scripts print, payloads, clocks and statistics.
// Every figure the anchors report is computed here, so graphile-worker and
// pg-boss are measured by exactly the same rules.

const { performance } = require('node:perf_hooks');

// Wall-clock milliseconds with sub-millisecond resolution. Producer and
// consumer run in different processes; both derive this from the system
// realtime clock, so their stamps are comparable on one machine.
function nowMs() {
  return performance.timeOrigin + performance.now();
}

// Parse "key=value key='quoted value' ..." (libpq conninfo, as printed by
// scripts/pg-local.sh) or a postgres:// URL into a node-postgres config.
function pgConfig(conninfo) {
  if (/^postgres(ql)?:\/\//.test(conninfo)) return { connectionString: conninfo };
  const cfg = {};
  const re = /(\w+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))/g;
  let m;
  while ((m = re.exec(conninfo)) !== null) {
    const val = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
    switch (m[1]) {
      case 'host': cfg.host = val; break;
      case 'port': cfg.port = Number(val); break;
      case 'dbname': cfg.database = val; break;
      case 'user': cfg.user = val; break;
      case 'password': cfg.password = val; break;
      default: throw new Error(`conninfo: unsupported key '${m[1]}'`);
    }
  }
  if (!cfg.database) throw new Error(`conninfo: no dbname in '${conninfo}'`);
  return cfg;
}

// A JSON payload whose serialised form is exactly `bytes` long, carrying
// the sequence number the latency phase matches on.
function payload(i, bytes) {
  const head = JSON.stringify({ i, p: '' });
  return { i, p: 'x'.repeat(Math.max(0, bytes - head.length)) };
}

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx];
}

const USAGE = `usage: node bench.js --queue graphile|pgboss [options]
  --db CONNINFO        libpq conninfo or postgres:// URL (default: $SHARDQ_DB)
  --jobs N             jobs per throughput phase (default 200000)
  --batch N            jobs per insert call (default 1000)
  --payload BYTES      serialised payload size (default 256)
  --rate R             jobs/s offered in the latency phase (default 200)
  --latency-s S        length of the latency phase in seconds (default 10)
  --phases LIST        comma list of insert,process,e2e,latency (default all;
                       process needs insert)
  --json FILE          also write the results as JSON to FILE
exit codes: 0 ok, 2 usage error, 1 benchmark failure`;

function parseArgs(argv) {
  const opt = {
    queue: null, db: process.env.SHARDQ_DB || null, jobs: 200000, batch: 1000,
    payload: 256, rate: 200, latencyS: 10, phases: ['insert', 'process', 'e2e', 'latency'],
    json: null,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) usageError(`${name}: expected a positive number, got '${v}'`);
    return n;
  };
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k];
    const v = () => {
      if (k + 1 >= argv.length) usageError(`${a}: missing value`);
      return argv[++k];
    };
    switch (a) {
      case '--queue': opt.queue = v(); break;
      case '--db': opt.db = v(); break;
      case '--jobs': opt.jobs = Math.floor(num(a, v())); break;
      case '--batch': opt.batch = Math.floor(num(a, v())); break;
      case '--payload': opt.payload = Math.floor(num(a, v())); break;
      case '--rate': opt.rate = num(a, v()); break;
      case '--latency-s': opt.latencyS = num(a, v()); break;
      case '--phases': opt.phases = v().split(',').filter(Boolean); break;
      case '--json': opt.json = v(); break;
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: usageError(`unknown argument '${a}'`);
    }
  }
  if (!['graphile', 'pgboss'].includes(opt.queue)) usageError('--queue: expected graphile or pgboss');
  if (!opt.db) usageError('--db: no conninfo (set SHARDQ_DB or pass --db)');
  for (const p of opt.phases) {
    if (!['insert', 'process', 'e2e', 'latency'].includes(p)) usageError(`--phases: unknown phase '${p}'`);
  }
  if (opt.phases.includes('process') && !opt.phases.includes('insert')) {
    usageError('--phases: process needs insert (it drains the queue insert filled)');
  }
  return opt;
}

function usageError(msg) {
  process.stderr.write(`bench.js: ${msg}\n(node bench.js --help shows the usage)\n`);
  process.exit(2);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Poll `fn` every `everyMs` until it returns true; reject after `timeoutMs`.
async function until(fn, everyMs, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

module.exports = { nowMs, pgConfig, payload, quantile, parseArgs, sleep, until };
