import assert from 'node:assert/strict';
import { Gate } from './util';

describe('Gate', () => {
  it('runs at most its limit at once, the rest in the order they came, with thousands waiting', async () => {
    const gate = new Gate(3);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const release: (() => void)[] = [];
    const runs = Array.from({ length: 5000 }, (_, i) => gate.run(async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise<void>((r) => release.push(r));
      running--;
      return i;
    }));
    assert.equal(gate.waiting, 4997);
    // Let them finish one at a time, oldest first, so every slot passes to a waiter.
    while (started.length < 5000 || release.length > 0) {
      await new Promise((r) => setImmediate(r));
      release.shift()?.();
    }
    assert.deepEqual(await Promise.all(runs), Array.from({ length: 5000 }, (_, i) => i));
    assert.deepEqual(started, Array.from({ length: 5000 }, (_, i) => i));
    assert.equal(most, 3);
    assert.equal(gate.waiting, 0);
  });

  it('frees the slot when a call throws', async () => {
    const gate = new Gate(1);
    await assert.rejects(gate.run(async () => { throw new Error('boom'); }), /boom/);
    assert.equal(await gate.run(async () => 7), 7);
    assert.equal(gate.waiting, 0);
  });
});
