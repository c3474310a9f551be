'use strict';
// Parent side of lib/consumer.js: fork, wait for ready, track the handled
// count, stop and collect.

const { fork } = require('node:child_process');
const path = require('node:path');

class ConsumerChild {
  constructor(queueName, conninfo, tag, record) {
    this.n = 0;
    this.failure = null;
    this.waiters = {};
    this.proc = fork(path.join(__dirname, 'consumer.js'),
      [queueName, conninfo, tag, record ? '1' : '0'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.proc.on('message', (msg) => {
      if (msg.type === 'count') this.n = msg.n;
      const w = this.waiters[msg.type];
      if (w) {
        delete this.waiters[msg.type];
        w.resolve(msg);
      }
    });
    this.proc.on('exit', (code) => {
      if (code === 0) return;
      this.failure = new Error(`consumer ${queueName}/${tag} exited with status ${code}`);
      for (const w of Object.values(this.waiters)) w.reject(this.failure);
      this.waiters = {};
    });
  }

  _wait(type) {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => { this.waiters[type] = { resolve, reject }; });
  }

  ready() { return this._wait('ready'); }

  go() { this.proc.send({ cmd: 'go' }); }

  handled() {
    if (this.failure) throw this.failure;
    return this.n;
  }

  async stop() {
    const done = this._wait('done');
    this.proc.send({ cmd: 'stop' });
    return done;
  }

  kill() {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

module.exports = { ConsumerChild };
