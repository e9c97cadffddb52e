import { strict as assert } from 'node:assert';
import { costDrift, costTrend } from './cost-trend';
import type { PerSecond } from './results';

function second(t: number, acked: number, embeddedPct: number): PerSecond {
  return { t, sent: acked, acked, deliveries: acked, e2eP50Ms: 1, e2eP99Ms: 2, errors: 0, cpu: { embedded: embeddedPct, loadgen: 50 } };
}

describe('costTrend', () => {
  it('gives server CPU per accepted send per window, leaving the load generator out', () => {
    // 1,000 sends/s; the server uses 20 % of a core in the first minute (200 µs per send), 23 % in the second.
    const seconds = [
      ...Array.from({ length: 60 }, (_, i) => second(i + 1, 1000, 20)),
      ...Array.from({ length: 60 }, (_, i) => second(i + 61, 1000, 23)),
      ...Array.from({ length: 10 }, (_, i) => second(i + 121, 1000, 99)), // a stub shorter than half a window
    ];
    const trend = costTrend(seconds, 60);
    assert.deepEqual(trend.map((w) => [w.fromS, w.toS, w.acked, w.cpuUsPerSend]), [[0, 60, 60_000, 200], [60, 120, 60_000, 230]]);
    assert.equal(costDrift(trend), 1.15);
  });

  it('has no drift with fewer than two windows', () => {
    assert.equal(costDrift(costTrend([second(1, 10, 1)], 60)), undefined);
  });
});
