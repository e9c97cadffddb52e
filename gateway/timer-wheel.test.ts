/**
 * The one timer for every connection's deadlines, on an injected clock: scheduling, rescheduling,
 * cancelling, a long stall, and the granule a timeout gets.
 */
import * as assert from 'node:assert/strict';
import { granuleFor, TimerWheel, WheelItem } from './timer-wheel';

/** An item that records when it was called and answers with the next deadlines it is given. */
function item(next: (number | undefined)[] = []): WheelItem & { calls: number[] } {
  const calls: number[] = [];
  return { wheelTick: -1, calls, onDeadline: (now) => { calls.push(now); return next.shift(); } };
}

describe('TimerWheel (injected clock)', () => {
  let nowMs = 0;
  const wheel = (granuleMs = 100) => new TimerWheel({ granuleMs, now: () => nowMs, autoAdvance: false });
  beforeEach(() => { nowMs = 10_000; });

  it('fires an item at its deadline rounded up to the granule, never early', () => {
    const w = wheel();
    const a = item();
    w.schedule(a, 10_250);
    w.advance(10_200);
    assert.deepEqual(a.calls, []);
    w.advance(10_299);
    assert.deepEqual(a.calls, [], 'not before the deadline');
    w.advance(10_300);
    assert.deepEqual(a.calls, [10_300], 'at most one granule late');
    assert.equal(w.size, 0);
  });

  it('reschedules an item at the deadline it returns, and drops it on undefined', () => {
    const w = wheel();
    const a = item([10_500, undefined]);
    w.schedule(a, 10_100);
    w.advance(10_100);
    w.advance(10_400);
    assert.equal(a.calls.length, 1);
    w.advance(10_500);
    assert.deepEqual(a.calls, [10_100, 10_500]);
    w.advance(20_000);
    assert.equal(a.calls.length, 2);
    assert.equal(w.size, 0);
  });

  it('a cancelled item never fires, even when cancelled by another item of the same tick', () => {
    const w = wheel();
    const b = item();
    const a: WheelItem = { wheelTick: -1, onDeadline: () => { w.cancel(b); return undefined; } };
    const c = item();
    w.schedule(a, 10_100);
    w.schedule(b, 10_100);
    w.schedule(c, 10_200);
    w.cancel(c);
    w.advance(11_000);
    assert.deepEqual(b.calls, []);
    assert.deepEqual(c.calls, []);
    assert.equal(w.size, 0);
  });

  it('schedule replaces an earlier schedule; scheduleEarlier only moves it forward', () => {
    const w = wheel();
    const a = item();
    w.schedule(a, 10_100);
    w.schedule(a, 11_500);
    w.scheduleEarlier(a, 15_000);
    w.advance(10_800);
    assert.deepEqual(a.calls, []);
    w.scheduleEarlier(a, 10_850);
    w.advance(10_900);
    assert.deepEqual(a.calls, [10_900]);
    assert.equal(w.size, 0);
  });

  it('after a long stall fires every due item once, in deadline order', () => {
    const w = wheel(10);
    const order: number[] = [];
    for (const at of [10_030, 500_000, 10_010, 90_000]) {
      w.schedule({ wheelTick: -1, onDeadline: () => { order.push(at); return undefined; } }, at);
    }
    w.advance(100_000);
    assert.deepEqual(order, [10_010, 10_030, 90_000]);
    assert.equal(w.size, 1);
  });

  it('a deadline in the past fires on the next advance', () => {
    const w = wheel();
    const a = item();
    w.schedule(a, 0);
    w.advance(10_100);
    assert.deepEqual(a.calls, [10_100]);
  });

  it('granuleFor: a tenth of the shortest timeout, within 10 ms .. 1 s', () => {
    assert.equal(granuleFor(5000), 500);
    assert.equal(granuleFor(150), 15);
    assert.equal(granuleFor(20), 10);
    assert.equal(granuleFor(90_000), 1000);
  });
});
