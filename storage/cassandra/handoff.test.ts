/**
 * Heads handed off at a clean release (handoff.ts, docs/sequencer.md "Heads handed off"): the
 * next owner of a shard starts the keys the last one had loaded from their heads, reading no
 * bucket list, tail or sender journal; their seqs go on above the new epoch's start bound, and a
 * retry of a send stored before the release is answered with its original, also one stored
 * within the clock margin of the release (its msgId goes with the head as a hash).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { decodeHandOff, encodeHandOff } from './handoff';
import { CassandraStore, type CassandraStoreOptions } from './store';
import { countRequests, direct, killHard, testStoreOptions, uid } from './store.test-support';
import { dropKeyspace, needs } from '../../test/infra';
import type { AppendInput, AppendResult } from '../store';

describe('handed-off heads: encoding', () => {
  it('round-trips every kind, negative numbers and 32-bit hashes included', () => {
    const h = {
      inbox: [['alice', [1000, 1_765_000_000_123, -1]], ['bob', [7, 0, 0]]] as [string, number[]][],
      history: [['c:alice:bob', [12, 5, 3]]] as [string, number[]][],
      journal: [['alice', [-2_128_831_035, 2_128_831_035, 0]], ['bob', []]] as [string, number[]][],
    };
    const { body, heads } = encodeHandOff(h);
    assert.equal(heads, 5);
    assert.deepEqual(decodeHandOff(body), h);
  });

  it('stops adding heads once the body is full', () => {
    const inbox = Array.from({ length: 1000 }, (_, i) => [`user-${i}`, [i, i, -1]] as [string, number[]]);
    const { body, heads } = encodeHandOff({ inbox, history: [], journal: [] }, 2000);
    assert.ok(heads > 10 && heads < 1000, `${heads} heads`);
    assert.deepEqual(decodeHandOff(body).inbox, inbox.slice(0, heads));
  });
});

type Inner = { shards: { mine(shard: number): { failed?: boolean } | undefined; of(key: string): number } };
const inner = (store: CassandraStore) => store as unknown as Inner;

describe('handed-off heads (real Cassandra)', function () {
  this.timeout(60_000);
  const keyspaces: string[] = [];
  const stores: CassandraStore[] = [];
  const open = async (ks: string, over: Partial<CassandraStoreOptions> = {}) => {
    const s = await CassandraStore.open(testStoreOptions(ks, { writeBehindMs: 100, ...over }));
    stores.push(s);
    return s;
  };
  const keyspace = (name: string) => {
    const ks = `im_test_${randomBytes(4).toString('hex')}_${name}`;
    keyspaces.push(ks);
    return ks;
  };
  before(async function () {
    await needs(this, 'cassandra');
  });
  after(async () => {
    for (const s of stores) await s.close();
    for (const ks of keyspaces) await dropKeyspace(ks);
  });

  /**
   * alice and bob talk on a first store, which then stops cleanly (its shards released); a second
   * store on the keyspace takes the next send. Returns what was acknowledged and what the next
   * send read. `beforeClose` may steer the first store.
   */
  async function acrossRelease(ks: string, next: Partial<CassandraStoreOptions> = {}, beforeClose?: (first: CassandraStore, alice: string, bob: string) => void) {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const first = await open(ks);
    const sends: AppendInput[] = [];
    const acked: AppendResult[] = [];
    for (let i = 0; i < 3; i++) {
      sends.push(direct(i % 2 ? bob : alice, i % 2 ? alice : bob, `before ${i}`));
      acked.push(await first.appendMessage(sends[i]));
    }
    beforeClose?.(first, alice, bob);
    await first.close();
    // Within the clock margin (5 s) of the last appends: the heads carry those appends' msgIds as
    // hashes, so the next send needs no tail search unless it repeats one of them.
    const second = await open(ks, next);
    const count = countRequests(second);
    try {
      acked.push(await second.appendMessage(direct(alice, bob, 'after')));
    } finally {
      count.restore();
    }
    return { alice, bob, sends, acked, second, reads: count.queries.filter((q) => q.startsWith('SELECT')) };
  }

  it('starts the keys of a released shard from the heads its owner handed off: no tail, bucket list or journal read', async () => {
    const { alice, bob, sends, acked, second, reads } = await acrossRelease(keyspace('handoff'));
    assert.ok(second.keyHeadsAdopted >= 5, `${second.keyHeadsAdopted} heads adopted (two inboxes, the conversation, two senders)`);
    // The orphan sweep looks at the stopped store's log once (log_marks, logic_leases, store_log).
    assert.deepEqual(reads.filter((q) => !/FROM \w+\.(shard_owners|shard_heads|log_marks|logic_leases|store_log)\b/.test(q)), [],
      'only the shard rows and their handed-off heads were read');
    // Above the new epoch's start bound: a gap, never a seq handed out before.
    const last = acked[3];
    assert.ok(last.message.convSeq > 1000, `conversation seq ${last.message.convSeq}`);
    for (const u of [alice, bob]) {
      const page = await second.sync(u, 0, 100);
      assert.deepEqual(page.items.map((m) => m.msgId), acked.map((a) => a.message.msgId), `${u}'s inbox`);
      const seqs = page.items.map((m) => m.seq);
      assert.deepEqual(seqs.slice(0, 3), [1, 2, 3], `${u}'s seqs before`);
      assert.ok(seqs[3] > 1000, `${u}'s seq after: ${seqs[3]}`);
    }
    // A retry of a send stored just before the release (its msgId among the carried hashes) is
    // looked up in the tail and answered with its original.
    const retry = await second.appendMessage({ ...sends[2], msgId: 'another-id' });
    assert.equal(retry.duplicate, true);
    assert.equal(retry.message.msgId, acked[2].message.msgId);
    assert.equal(retry.senderSeq, acked[2].senderSeq);
    assert.equal((await second.sync(alice, 0, 100)).items.length, 4, 'stored once');
  });

  it('reads the keys again when the epoch had a failed write (it may still land; only a fence covers it)', async () => {
    const { acked, second, reads } = await acrossRelease(keyspace('tainted'), {}, (first, alice) => {
      const s = inner(first).shards;
      s.mine(s.of(alice))!.failed = true;
    });
    assert.ok(reads.some((q) => q.includes('WRITETIME(msg_id)')), `alice's inbox tail read: ${reads.join('; ')}`);
    assert.ok(reads.some((q) => q.includes('SELECT client_msg_id FROM')), `alice's journal read: ${reads.join('; ')}`);
    assert.deepEqual((await second.sync(acked[0].message.from, 0, 100)).items.map((m) => m.msgId), acked.map((a) => a.message.msgId));
  });

  it('adopts nothing on a takeover from a dead owner: its keys are read and fenced (the row of an earlier release does not count)', async () => {
    const ks = keyspace('dead');
    const { alice, acked, second } = await acrossRelease(ks, { leaseMs: 1000 });
    assert.ok(second.keyHeadsAdopted > 0);
    await killHard(second);
    const third = await open(ks, { leaseMs: 1000 });
    const count = countRequests(third);
    let last: AppendResult;
    try {
      last = await third.appendMessage(direct(alice, acked[1].message.from, 'after the kill'));
    } finally {
      count.restore();
    }
    assert.equal(third.keyHeadsAdopted, 0);
    const reads = count.queries.filter((q) => q.startsWith('SELECT'));
    assert.ok(!reads.some((q) => q.includes('shard_heads')), 'no handed-off heads looked for');
    assert.ok(reads.some((q) => q.includes('WRITETIME(msg_id)')), `tails read: ${reads.join('; ')}`);
    const seqs = (await third.sync(alice, 0, 100)).items.map((m) => m.seq);
    assert.equal(seqs.length, 5);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
    assert.ok(last.message.convSeq > 2000, `above the second epoch's bound: ${last.message.convSeq}`);
  });

  it('reads the keys when the next owner keeps no heads (maxKeyHeads 0): what the handoff saves', async () => {
    const { second, reads } = await acrossRelease(keyspace('noadopt'), { maxKeyHeads: 0 });
    assert.equal(second.keyHeadsAdopted, 0);
    assert.ok(reads.some((q) => q.includes('seq_heads')), `reads: ${reads.join('; ')}`);
    assert.ok(reads.some((q) => q.includes('WRITETIME(msg_id)')), `reads: ${reads.join('; ')}`);
  });
});
