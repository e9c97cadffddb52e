import * as assert from 'node:assert/strict';
import { Backoff, backoffCeilingMs, fullJitterDelayMs } from './backoff';

describe('common/backoff', () => {
  it('doubles the jitter window per attempt up to the maximum', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((a) => backoffCeilingMs(a, 500, 10_000)),
      [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
  });

  it('never overflows to Infinity or NaN for huge attempt counts', () => {
    assert.equal(backoffCeilingMs(5000, 500, 30_000), 30_000);
    assert.equal(backoffCeilingMs(Number.MAX_SAFE_INTEGER, 1, 30_000), 30_000);
  });

  it('is full jitter: the delay spans the whole window from 0', () => {
    assert.equal(fullJitterDelayMs(3, 500, 30_000, () => 0), 0);
    assert.equal(fullJitterDelayMs(3, 500, 30_000, () => 0.5), 2000);
    assert.equal(fullJitterDelayMs(3, 500, 30_000, () => 0.999999), 3999);
    for (let i = 0; i < 200; i++) {
      const d = fullJitterDelayMs(2, 100, 1000);
      assert.ok(d >= 0 && d < 400, `delay ${d} outside [0, 400)`);
    }
  });

  it('counts attempts, resets, and keeps the count when the window changes', () => {
    const b = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.5 });
    assert.deepEqual([b.nextDelayMs(), b.nextDelayMs(), b.nextDelayMs()], [50, 100, 200]);
    assert.equal(b.attempts, 3);
    b.configure(10, 20);
    assert.equal(b.nextDelayMs(), 10); // attempt 3: min(20, 80) * 0.5
    b.reset();
    assert.equal(b.attempts, 0);
    assert.equal(b.nextDelayMs(), 5);
  });

  it('rejects a window that makes no sense, naming the field', () => {
    assert.throws(() => new Backoff({ baseMs: -1, maxMs: 10 }), /backoffBaseMs/);
    assert.throws(() => new Backoff({ baseMs: 100, maxMs: 10 }), /backoffMaxMs/);
  });
});
