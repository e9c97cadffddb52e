import assert from 'node:assert/strict';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { sampleThreads, type ProcessSummary } from './proc-stats';
import { threadUsPer } from './results';

describe('bench: CPU by thread', () => {
  it('a thread that named itself is counted under its name, the event loop as main', async function () {
    if (process.platform !== 'linux') this.skip();
    // The worker names itself, spins ~300 ms of CPU, says so, and stays alive until told to end.
    const namer = path.join(__dirname, '..', 'common', 'thread-name.js');
    const worker = new Worker(`
      const { parentPort } = require('node:worker_threads');
      require(${JSON.stringify(namer)}).nameThisThread('test-spin');
      const end = Date.now() + 300; let x = 0;
      while (Date.now() < end) x += Math.sqrt(x + 1);
      parentPort.postMessage(x > 0);
      parentPort.once('message', () => process.exit(0));
    `, { eval: true });
    try {
      await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
      const t = sampleThreads(process.pid);
      assert.ok(t, 'this process has /proc entries');
      assert.ok(t['test-spin'] >= 0.2, `the spinning thread's CPU: ${JSON.stringify(t)}`);
      assert.ok(t.main > 0, 'the event loop thread is main');
      assert.equal(sampleThreads(2 ** 22 + 12_345), undefined, 'a process that does not exist');
    } finally {
      worker.postMessage('end');
      await new Promise((r) => worker.once('exit', r));
    }
  });

  it('µs per send by role and thread group, largest first; roles without thread figures or an idle main thread left out', () => {
    const procs: ProcessSummary[] = [
      { role: 'embedded', pid: 1, cpuPct: 0, cpuS: 3, rssMb: 0, peakRssMb: 0, threadsCpuS: { main: 1, 'sqlite-write': 1.5, other: 0.5 } },
      { role: 'gateway', pid: 2, cpuPct: 0, cpuS: 1, rssMb: 0, peakRssMb: 0, threadsCpuS: { main: 0.4, other: 0.1 } },
      { role: 'gateway', pid: 3, cpuPct: 0, cpuS: 1, rssMb: 0, peakRssMb: 0, threadsCpuS: { main: 0.6 } },
      { role: 'nats', pid: 4, cpuPct: 0, cpuS: 1, rssMb: 0, peakRssMb: 0 },
      { role: 'cassandra', pid: 5, cpuPct: 0, cpuS: 1, rssMb: 0, peakRssMb: 0, threadsCpuS: { main: 0, other: 1 } },
    ];
    assert.deepEqual(threadUsPer(procs, 10_000), [
      ['embedded', [['sqlite-write', 150], ['main', 100], ['other', 50]]],
      ['gateway', [['main', 100], ['other', 10]]],
    ]);
    assert.deepEqual(threadUsPer(procs, 0), []);
  });
});
