/**
 * Keys out of memory (heads.ts, docs/sequencer.md): a timeline key or a sender that left the
 * owner's cache in this epoch is written to again from its head, without reading its bucket list
 * and tail or the sender's journal; the seqs go on where they were, and a retried send is still
 * answered with its original.
 */
import assert from 'node:assert/strict';
import { hash32, KeyHeads, packHead, unpackHead, type HeadBudget } from './heads';
import { CLOCK_MARGIN_MS } from './timeline';
import type { CassandraStore } from './store';
import { countRequests, direct, suiteStore, uid } from './store.test-support';
import { waitFor } from '../../test/exactly-once';
import type { AppendResult } from '../store';

describe('KeyHeads', () => {
  const head = (cur: number) => ({ cur, coveredFromMs: 1000 + cur, listedBucket: 0 });

  it('gives a head back once, and only in the epoch it was kept in', () => {
    const budget: HeadBudget = { max: 10, count: 0, used: 0 };
    const heads = new KeyHeads(budget);
    heads.put(3, 7, 'a', head(5));
    heads.put(3, 7, 'b', head(6));
    assert.deepEqual(heads.take(3, 7, 'a'), head(5));
    assert.equal(heads.take(3, 7, 'a'), undefined, 'taken once');
    assert.equal(heads.take(4, 7, 'b'), undefined, 'another shard');
    assert.equal(heads.take(3, 8, 'b'), undefined, 'another epoch');
    assert.equal(heads.take(3, 7, 'b'), undefined, 'a newer epoch dropped the older heads of the shard');
    assert.equal(budget.count, 0);
    assert.equal(budget.used, 1);
  });

  it('keeps at most its budget over the timelines sharing it, the oldest of a shard going first, never the one just kept', () => {
    const budget: HeadBudget = { max: 3, count: 0, used: 0 };
    const inboxes = new KeyHeads(budget);
    const histories = new KeyHeads(budget);
    inboxes.put(1, 1, 'a', head(1));
    inboxes.put(1, 1, 'b', head(2));
    histories.put(1, 1, 'c', head(3));
    inboxes.put(1, 1, 'd', head(4));
    assert.equal(budget.count, 3);
    assert.equal(inboxes.take(1, 1, 'a'), undefined, 'the oldest of the shard went');
    assert.deepEqual(inboxes.take(1, 1, 'd'), head(4));
    // Alone in its shard: the room comes from another shard.
    histories.put(2, 1, 'e', head(5));
    histories.put(2, 1, 'f', head(6));
    assert.equal(budget.count, 3);
    assert.deepEqual(histories.take(2, 1, 'f'), head(6));
    histories.forget(2);
    assert.equal(budget.count, 2, 'b and c');
    inboxes.forget();
    histories.forget();
    assert.equal(budget.count, 0);
    assert.equal(inboxes.size + histories.size, 0);
  });

  it('packs a handed-off head with the hashes of its last appends, and one without', () => {
    const carried = { cur: 9, coveredFromMs: 1_765_000_000_000, listedBucket: -1, carried: [hash32('m1'), hash32('m2')] };
    assert.deepEqual(unpackHead(packHead(carried)), carried);
    assert.deepEqual(unpackHead(packHead(head(3))), head(3));
    assert.notEqual(hash32('m1'), hash32('m2'));
  });

  it('keeps nothing with a budget of 0', () => {
    const heads = new KeyHeads({ max: 0, count: 0, used: 0 });
    heads.put(1, 1, 'a', head(1));
    assert.equal(heads.take(1, 1, 'a'), undefined);
  });
});

type Inner = {
  log: { unflushedRowCount: number };
  inbox: { keptHeads: number; o: { clockMarginMs: number } };
  journal: { keptHeads: number };
  historyLog: { o: { clockMarginMs: number } };
};
const inner = (store: CassandraStore) => store as unknown as Inner;

/**
 * alice sends bob six messages; between two of them other pairs talk, each send written behind
 * before the next, so alice's and bob's keys leave the two-key cache (a key with rows pending
 * stays). Returns the acknowledgements and the reads the last send made.
 */
async function sendAmongOthers(store: CassandraStore): Promise<{ alice: string; bob: string; acked: AppendResult[]; reads: string[] }> {
  const [alice, bob] = [uid('alice'), uid('bob')];
  const others = Array.from({ length: 6 }, (_, i) => uid(`other${i}`));
  const settled = () => waitFor('rows written behind', 20_000, () => inner(store).log.unflushedRowCount === 0);
  const acked: AppendResult[] = [];
  let reads: string[] = [];
  for (let i = 0; i < 6; i++) {
    const count = countRequests(store);
    try {
      acked.push(await store.appendMessage(direct(alice, bob, `m${i}`)));
    } finally {
      count.restore();
    }
    reads = count.queries.filter((q) => q.startsWith('SELECT'));
    await settled();
    for (let p = 0; p < 3; p++) {
      await store.appendMessage(direct(others[2 * p], others[2 * p + 1], `noise ${i}`));
      await settled();
    }
  }
  return { alice, bob, acked, reads };
}

describe('keys out of memory (real Cassandra)', function () {
  this.timeout(60_000);

  describe('with heads', () => {
    const { store } = suiteStore('heads', { maxCachedHeads: 2, writeBehindMs: 100 });

    it('appends to a key that left memory without reading its bucket list or tail, its seqs going on without a gap', async () => {
      // One clock here: no margin for another process's (as if the sends were more than the 5 s
      // margin apart, the usual case for a key that left memory; within it, a tail search would
      // check that the send is not a retry of one appended before).
      const timelines = [inner(store()).inbox, inner(store()).historyLog];
      for (const t of timelines) t.o.clockMarginMs = 0;
      let sent;
      try {
        sent = await sendAmongOthers(store());
      } finally {
        for (const t of timelines) t.o.clockMarginMs = CLOCK_MARGIN_MS;
      }
      const { alice, bob, acked, reads } = sent;
      assert.ok(inner(store()).inbox.keptHeads > 0, 'inbox heads kept');
      assert.ok(inner(store()).journal.keptHeads > 0, 'sender heads kept');
      assert.deepEqual(reads, [], 'the last send read nothing: no bucket list, tail or sender journal');
      for (const u of [alice, bob]) {
        const page = await store().sync(u, 0, 100);
        assert.deepEqual(page.items.map((m) => m.msgId), acked.map((a) => a.message.msgId), `${u}'s inbox`);
        assert.deepEqual(page.items.map((m) => m.seq), [1, 2, 3, 4, 5, 6], `${u}'s seqs`);
      }
      assert.deepEqual(acked.map((a) => a.message.convSeq), [1, 2, 3, 4, 5, 6]);
    });

    it('answers a retry of a send whose keys left memory with the original', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const first = direct(alice, bob, 'once');
      const original = await store().appendMessage(first);
      await waitFor('rows written behind', 20_000, () => inner(store()).log.unflushedRowCount === 0);
      for (let p = 0; p < 3; p++) {
        await store().appendMessage(direct(uid('x'), uid('y'), 'noise'));
        await waitFor('rows written behind', 20_000, () => inner(store()).log.unflushedRowCount === 0);
      }
      const retry = await store().appendMessage({ ...first, msgId: 'another-id' });
      assert.equal(retry.duplicate, true);
      assert.equal(retry.message.msgId, original.message.msgId);
      assert.equal(retry.senderSeq, original.senderSeq);
      const next = await store().appendMessage(direct(alice, bob, 'next'));
      assert.equal(next.senderSeq, original.senderSeq + 1);
      assert.deepEqual((await store().sync(bob, 0, 10)).items.map((m) => m.msgId), [original.message.msgId, next.message.msgId]);
    });
  });

  describe('without heads (maxKeyHeads 0)', () => {
    const { store } = suiteStore('noheads', { maxCachedHeads: 2, writeBehindMs: 100, maxKeyHeads: 0 });

    it('reads the bucket list and tail of a key that left memory (what the heads save)', async () => {
      for (const t of [inner(store()).inbox, inner(store()).historyLog]) t.o.clockMarginMs = 0;
      const { bob, acked, reads } = await sendAmongOthers(store());
      assert.ok(reads.some((q) => q.includes('seq_heads')), `reads: ${reads.join('; ')}`);
      assert.ok(reads.some((q) => q.includes('WRITETIME(msg_id)')), `reads: ${reads.join('; ')}`);
      assert.ok(reads.some((q) => q.includes('SELECT client_msg_id FROM')), `reads: ${reads.join('; ')}`);
      assert.deepEqual((await store().sync(bob, 0, 100)).items.map((m) => m.msgId), acked.map((a) => a.message.msgId));
    });
  });
});
