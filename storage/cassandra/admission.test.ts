import { strict as assert } from 'node:assert';
import { Admission } from './admission';

describe('send admission (CoDel on completions)', () => {
  function admission() {
    let now = 0;
    const a = new Admission({ targetMs: 100, intervalMs: 50, nowMs: () => now });
    return { a, at: (ms: number) => { now = ms; } };
  }

  it('admits while the quickest send of each interval is within the target, however slow the others', () => {
    const { a, at } = admission();
    at(10); a.done(5_000); a.done(80);
    at(60); assert.equal(a.shed(), false);
    a.done(30_000); a.done(99);
    at(120); assert.equal(a.shed(), false);
    assert.equal(a.refusedCount, 0);
  });

  it('refuses once a whole interval\'s sends all took longer than the target, and admits again after a quick one', () => {
    const { a, at } = admission();
    at(10); a.done(150); a.done(400);
    at(50); assert.equal(a.shed(), true, 'the quickest of the first interval took 150 ms');
    at(70); assert.equal(a.shed(), true, 'until the interval ends');
    a.done(120); a.done(90);
    at(100); assert.equal(a.shed(), false, 'an interval whose quickest took 90 ms');
    assert.equal(a.refusedCount, 2);
  });

  it('refuses nothing on an interval without a completion (no standing queue to tell)', () => {
    const { a, at } = admission();
    at(10); a.done(500);
    at(50); assert.equal(a.shed(), true);
    at(100); assert.equal(a.shed(), false, 'nothing finished in the interval 50-100');
  });
});
