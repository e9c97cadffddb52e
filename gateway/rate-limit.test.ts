/**
 * The token bucket and the rejection window that a connection's flood limit is made of.
 */
import * as assert from 'node:assert/strict';
import { TokenBucket, WindowCounter } from './rate-limit';

describe('TokenBucket', () => {
  it('admits a burst, then refills at the rate, never above the burst', () => {
    const b = new TokenBucket(10, 3, 0);
    assert.deepEqual([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false]);
    assert.equal(b.take(50), false, 'half a token after 50ms');
    assert.equal(b.take(100), true, 'one token after 100ms');
    assert.equal(b.take(100), false);
    const admitted = Array.from({ length: 10 }, () => b.take(100_000)).filter(Boolean).length;
    assert.equal(admitted, 3, 'a long pause refills only up to the burst');
  });
});

describe('WindowCounter', () => {
  it('reports exceeding the limit within one window and resets in the next', () => {
    const w = new WindowCounter(2, 1000);
    assert.deepEqual([w.add(0), w.add(10), w.add(20)], [false, false, true]);
    assert.equal(w.add(1000), false, 'new window');
  });
});
