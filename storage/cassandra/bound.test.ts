/**
 * A timeline round that needs a new persisted seq bound (docs/sequencer.md) and cannot get it —
 * its shard was taken over meanwhile, so the bound's conditional write is refused — answers its
 * appends with an error and does not leave them waiting. The takeover is made by hand: the shard's
 * bound is moved behind the owner's back, as another process's advance would.
 */
import assert from 'node:assert/strict';
import { Client } from 'cassandra-driver';
import { CASSANDRA_CONTACT } from '../../test/infra';
import { direct, suiteStore, uid } from './store.test-support';

/** How long an append may take here before it counts as left waiting (it takes ~10 ms). */
const SETTLE_MS = 10_000;

function settledWithin<T>(p: Promise<T>, ms: number): Promise<{ value?: T; err?: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`not settled after ${ms} ms`)), ms); });
  return Promise.race([p.then((value) => ({ value }), (err: unknown) => ({ err })), late]).finally(() => clearTimeout(timer));
}

describe('CassandraStore: a seq bound refused mid-round (real Cassandra)', function () {
  this.timeout(60_000);
  // One shard, and a bound advanced every 2 seqs: the third message of a conversation needs one.
  const suite = suiteStore('bound', { shardCount: 1, seqStep: 2 });
  let admin: Client | undefined;

  before(async () => {
    admin = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1' });
    await admin.connect();
  });
  after(async () => {
    await admin?.shutdown();
  });

  it('answers the appends of that round (an error or a stored message), and stores none of them twice', async () => {
    const store = suite.store();
    const [alice, bob] = [uid('alice'), uid('bob')];
    const first = await store.appendMessage(direct(alice, bob, 'one'));
    assert.equal(first.message.convSeq, 1);
    // Another process's advance, as far as this owner's next conditional write can tell.
    const row = (await admin!.execute(`SELECT bound FROM ${suite.keyspace}.shard_owners WHERE shard = 0`)).first();
    await admin!.execute(`UPDATE ${suite.keyspace}.shard_owners SET bound = ? WHERE shard = 0`, [Number(row.bound) + 1000], { prepare: true });

    const inputs = [direct(alice, bob, 'two'), direct(alice, bob, 'three'), direct(bob, alice, 'four')];
    const outcomes = await Promise.all(inputs.map((i) => settledWithin(store.appendMessage(i), SETTLE_MS)));
    for (const [i, o] of outcomes.entries()) {
      if (o.err !== undefined) assert.equal(typeof (o.err as { code?: unknown }).code, 'number', `append ${i}: a store error with a code, got ${String(o.err)}`);
    }
    // Whatever was stored is there once, in order.
    const ids = (await store.sync(bob, 0, 20)).items.map((m) => m.msgId);
    assert.equal(new Set(ids).size, ids.length, 'no message twice in bob\'s inbox');
    for (const [i, o] of outcomes.entries()) {
      if (o.value) assert.ok(ids.includes(o.value.message.msgId), `acknowledged append ${i} is in bob's inbox`);
    }
  });
});
