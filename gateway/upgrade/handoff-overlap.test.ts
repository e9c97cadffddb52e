/**
 * The two ledgers that keep each downlink item to each connection exactly once while two workers
 * of a node overlap in a hot upgrade (handoff-overlap.ts).
 */
import * as assert from 'node:assert/strict';
import type { Connection } from '../connection';
import { deliveryItemId, kickItemId } from '../upgrade-seam';
import { OverlapBuffer, OverlapRecord } from './handoff-overlap';

/** The ledgers only key by connection identity and read its uid. */
const conn = (uid: string) => ({ uid }) as unknown as Connection;

describe('hand-off overlap ledgers', () => {
  it('the old worker records what it applied, per uid it holds, up to its bound', () => {
    const r = new OverlapRecord(3);
    const held = [conn('ann')];
    r.observe('ann', deliveryItemId(1), 10, () => undefined, held);
    r.observe('bob', deliveryItemId(1), 10, () => undefined, undefined); // nobody here: nothing to remember
    r.observe('ann', kickItemId('phone', 3005, 'x'), 0, () => undefined, held);
    assert.deepEqual(r.seen('ann'), ['d1', 'kphone/3005/x']);
    assert.deepEqual(r.seen('bob'), []);
    r.observe('ann', deliveryItemId(2), 10, () => undefined, held);
    r.observe('ann', deliveryItemId(3), 10, () => undefined, held);
    assert.equal(r.overflowed, true);
    assert.deepEqual(r.seen('ann'), ['d1', 'kphone/3005/x', 'd2']);
  });

  it('the new worker replays to an arriving connection only what the old one did not apply, and skips it later too', () => {
    const b = new OverlapBuffer(100, 1 << 20);
    const applied: string[] = [];
    const item = (uid: string, seq: number) => b.observe(uid, deliveryItemId(seq), 5, (c) => applied.push(`${c.uid}:${seq}`));
    item('ann', 1);
    item('bob', 1);
    item('ann', 2);
    item('ann', 3);
    const ann = conn('ann');
    assert.equal(b.adopted(ann, ['d1', 'd3', 'd4']), true);
    assert.deepEqual(applied, ['ann:2']);
    // d4 reaches the new worker only now: the old one already wrote it.
    assert.equal(b.skip(ann, 'd4'), true);
    assert.equal(b.skip(ann, 'd5'), false);
    assert.equal(b.skip(conn('ann'), 'd4'), false, 'another connection of the same uid has its own ledger');
  });

  it('past its bound the buffer is dropped and later arrivals are reported, not silently short of pushes', () => {
    const b = new OverlapBuffer(10, 12);
    b.observe('ann', 'd1', 8, () => undefined);
    assert.equal(b.adopted(conn('ann'), []), true);
    b.observe('ann', 'd2', 8, () => undefined); // 16 bytes > 12
    assert.equal(b.overflowed, true);
    assert.equal(b.adopted(conn('ann'), []), false);
  });
});
