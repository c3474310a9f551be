'use strict';
// Consumer process: runs one queue's workers with a no-op handler for one
// tag (a graphile task identifier / a pg-boss queue name) and reports to
// the parent over the fork IPC channel.
//   parent → child: {cmd: 'go'} start working; {cmd: 'stop'} drain and exit
//   child → parent: {type: 'ready'}, {type: 'count', n} (every 10 ms while
//   it changes), {type: 'done', n, starts: [[i, ms], ...]} (starts only when
//   recording dispatch times)
// It runs apart from the producer so the two use both cores, as a real
// deployment's workers would.

const { nowMs, pgConfig } = require('./common');

const [queueName, conninfo, tag, record] = process.argv.slice(2);
const queue = require(`../queues/${queueName}`);

let n = 0;
let sent = 0;
const starts = [];
const onJob = record === '1'
  ? (p) => { starts.push([p.i, nowMs()]); n++; }
  : () => { n++; };

async function main() {
  const consumer = await queue.openConsumer(pgConfig(conninfo), tag, onJob);
  let ticker = null;
  process.on('message', async (msg) => {
    try {
      if (msg.cmd === 'go') {
        await consumer.start();
        ticker = setInterval(() => {
          if (n !== sent) {
            sent = n;
            process.send({ type: 'count', n });
          }
        }, 10);
      } else if (msg.cmd === 'stop') {
        clearInterval(ticker);
        await consumer.stop();
        process.send({ type: 'done', n, starts }, () => process.exit(0));
      }
    } catch (err) {
      process.stderr.write(`consumer ${queueName}/${tag}: ${err.stack || err}\n`);
      process.exit(1);
    }
  });
  process.send({ type: 'ready' });
}

main().catch((err) => {
  process.stderr.write(`consumer ${queueName}/${tag}: ${err.stack || err}\n`);
  process.exit(1);
});
