import { strict as assert } from 'node:assert';
import { LruMap } from './lru';

describe('LruMap', () => {
  it('forgets the least recently used entry beyond max', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    m.get('a');
    m.set('c', 3);
    assert.equal(m.get('b'), undefined);
    assert.equal(m.get('a'), 1);
    assert.equal(m.get('c'), 3);
  });

  it('never forgets the entry being set, even when the hand reaches it first', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    m.get('a');
    m.get('b');
    // Both older entries were used: the hand unmarks them and comes to 'c' before a second pass.
    m.set('c', 3);
    assert.equal(m.get('c'), 3);
    assert.equal(m.size, 2);
  });

  it('keeps pinned entries, looking at a few entries per set however many are pinned, and forgets them once unpinned', () => {
    const pinned = new Set<number>();
    let looks = 0;
    const m = new LruMap<number, number>(10, (v) => {
      looks++;
      return pinned.has(v);
    });
    for (let i = 0; i < 10_000; i++) {
      pinned.add(i);
      m.set(i, i);
    }
    assert.equal(m.size, 10_000, 'every pinned entry kept');
    // A full scan per set would look at ~50 million entries here.
    assert.ok(looks <= 8 * 10_000, `looked at ${looks} entries for 10,000 sets`);
    pinned.clear();
    for (let i = 0; i < 2_000; i++) m.set(10_000 + i, 0);
    assert.equal(m.size, 10, 'back to max once nothing is pinned');
  });

  it('tells which entries it forgot for room, and not those deleted', () => {
    const forgotten: [string, number][] = [];
    const m = new LruMap<string, number>(2, undefined, (k, v) => forgotten.push([k, v]));
    m.set('a', 1);
    m.set('b', 2);
    m.delete('b');
    m.set('c', 3);
    m.set('d', 4);
    assert.deepEqual(forgotten, [['a', 1]]);
    assert.equal(m.get('a'), undefined);
  });
});
