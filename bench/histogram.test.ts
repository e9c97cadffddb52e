import { strict as assert } from 'node:assert';
import { BUCKETS, bucketLow, bucketOf, bucketValue, Histogram } from './histogram';

describe('bench histogram', () => {
  it('counts values below 128 exactly', () => {
    const h = new Histogram();
    for (let v = 0; v < 100; v++) h.record(v);
    assert.equal(h.count, 100);
    assert.equal(h.quantile(0.5), 49);
    assert.equal(h.quantile(0.99), 98);
    assert.equal(h.quantile(1), 99);
    assert.equal(h.min, 0);
    assert.equal(h.max, 99);
  });

  it('keeps every bucket within 1/64 of the values it holds, up to 2^53', () => {
    let prev = -1;
    for (let e = 7; e < 53; e++) {
      for (const v of [2 ** e, 2 ** e + 1, 1.5 * 2 ** e, 2 ** (e + 1) - 1]) {
        const i = bucketOf(v);
        assert.ok(i >= 0 && i < BUCKETS, `index of ${v}`);
        assert.ok(bucketLow(i) <= v, `low of bucket ${i} <= ${v}`);
        assert.ok(Math.abs(bucketValue(i) - v) / v <= 1 / 64, `bucket value ${bucketValue(i)} near ${v}`);
        assert.ok(i >= prev, 'indexes grow with values');
        prev = i;
      }
    }
  });

  it('reports percentiles of a known distribution within its precision', () => {
    const h = new Histogram();
    for (let v = 1; v <= 100_000; v++) h.record(v); // 1 µs .. 100 ms, uniform
    const close = (got: number, want: number) => assert.ok(Math.abs(got - want) / want < 0.01, `${got} ~ ${want}`);
    close(h.quantile(0.5), 50_000);
    close(h.quantile(0.95), 95_000);
    close(h.quantile(0.99), 99_000);
    assert.equal(h.max, 100_000);
    close(h.percentiles().mean, 50_000.5);
  });

  it('merges snapshots from other processes as if it had recorded their values', () => {
    const a = new Histogram();
    const b = new Histogram();
    const all = new Histogram();
    for (let i = 0; i < 5000; i++) {
      const v = Math.floor(Math.random() * 1e6);
      (i % 3 ? a : b).record(v);
      all.record(v);
    }
    // Snapshots travel over IPC as plain data.
    const merged = Histogram.from(JSON.parse(JSON.stringify(a.snapshot())));
    merged.add(JSON.parse(JSON.stringify(b.snapshot())));
    assert.deepEqual(merged.percentiles(), all.percentiles());
  });

  it('is empty after reset and answers 0 when empty', () => {
    const h = new Histogram();
    h.record(5);
    h.reset();
    assert.deepEqual(h.percentiles(), { count: 0, min: 0, mean: 0, p50: 0, p95: 0, p99: 0, max: 0 });
    assert.deepEqual(h.snapshot().buckets, []);
  });
});
