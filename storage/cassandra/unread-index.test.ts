/**
 * The unread index derived from inbox rows as they are written (unread-index.ts): the rows one
 * window implies, and counts over combined, overlapping (a replay grouped differently) and
 * pre-version-6 rows on a real Cassandra.
 */
import assert from 'node:assert/strict';
import { peerConvId } from '../../common/ids';
import { direct, suiteStore, uid } from './store.test-support';
import { packSeqs, UnreadIndex, unpackSeqs } from './unread-index';
import { inboxSpec, toStoredMessage } from './rows';
import { routingKey, type TableRow } from './writer';

const INSERT = 'INSERT INTO ks.inbox (uid, bucket, seq, msg_id, conv_id, conv_seq, from_uid, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)';
const INSERT_V9 = 'INSERT INTO ks.inbox (uid, bucket, seq, msg_id, body) VALUES (?, ?, ?, ?, ?)';

function inboxRow(owner: string, seq: number, convId: string, from: string, ts: number): TableRow {
  return {
    query: INSERT, params: [owner, Math.floor(seq / 100), seq, `m${seq}`, convId, seq, from, Buffer.from('body')],
    routingKey: routingKey(owner, Math.floor(seq / 100)), bytes: 200, ts,
  };
}

describe('unread index, derived from inbox rows', () => {
  const index = new UnreadIndex('ks', { v7: INSERT, v9: INSERT_V9 }, 100);

  it('packs a row\'s other seqs as varint deltas below its key, and reads them back', () => {
    assert.equal(packSeqs(7, [7]), null, 'a row of one seq carries none');
    const seqs = [1, 5, 130, 16_500, 2_000_000, 2_000_001];
    const packed = packSeqs(2_000_001, seqs)!;
    assert.deepEqual(unpackSeqs(2_000_001, packed).sort((a, b) => a - b), seqs.slice(0, -1));
  });

  it('one user_convs update per kind and one conv_unread row per (user, conversation, bucket) for a whole window', () => {
    const bob = 'bob';
    const withAlice = peerConvId('alice', bob);
    const withCarol = peerConvId('carol', bob);
    const rows = [
      inboxRow(bob, 10, withAlice, 'alice', 1000),
      inboxRow(bob, 11, withAlice, bob, 1001), // bob's own message: no unread mark
      inboxRow(bob, 12, withAlice, 'alice', 1002),
      inboxRow(bob, 13, withCarol, 'carol', 1003),
      inboxRow(bob, 101, withAlice, 'alice', 1004), // the next bucket
      inboxRow(bob, 102, withAlice, bob, 1005),
      { query: 'INSERT INTO ks.history (conv_id, bucket, seq) VALUES (?, ?, ?)', params: [withAlice, 0, 1], routingKey: routingKey(withAlice, 0), bytes: 10, ts: 1 },
    ];
    const derived = index.derive(rows);
    const convs = derived.filter((r) => r.query.includes('user_convs')).map((r) => [r.params[4] ?? r.params[3], r.params]);
    assert.deepEqual(convs, [
      [withAlice, [101, 101, 101, bob, withAlice]], // newest incoming, at its seq
      [withAlice, [102, 102, bob, withAlice]], // newest of all (own), at its seq
      [withCarol, [13, 13, 13, bob, withCarol]],
    ]);
    const unread = derived.filter((r) => r.query.includes('conv_unread'));
    assert.equal(unread.length, 3);
    const seqsOf = (r: TableRow) => [r.params[3] as number, ...(r.params[4] ? unpackSeqs(r.params[3] as number, r.params[4] as Buffer) : [])].sort((a, b) => a - b);
    assert.deepEqual(unread.map((r) => [r.params[1], r.params[2], seqsOf(r), r.ts]), [
      [withAlice, 0, [10, 12], 1004], // the newest incoming row of the conversation in the window
      [withAlice, 1, [101], 1004],
      [withCarol, 0, [13], 1003],
    ]);
    assert.deepEqual(unread[0].routingKey, routingKey(bob, withAlice, 0));
    assert.deepEqual(index.derive(rows.slice(-1)), [], 'no inbox rows, no index rows');

    // The same rows in the version-9 layout (conversation and sender in the body), alone and
    // mixed with version-7 rows (a replayed log of a process that wrote the other layout).
    const spec = inboxSpec(100, true);
    const v9 = rows.slice(0, -1).map((r): TableRow => {
      const [owner, bucket, seq, , convId, , from] = r.params as [string, number, number, string, string, number, string];
      const m = toStoredMessage(direct(from, owner, `x${seq}`, { convId }), seq);
      return { ...r, query: INSERT_V9, params: spec.row(owner, bucket, seq, m) };
    });
    assert.deepEqual(index.derive(v9), derived.slice(), 'version 9 rows imply the same index rows');
    assert.deepEqual(index.derive([...v9.slice(0, 3), ...rows.slice(3)]), derived, 'and mixed with version 7 rows');
  });
});

describe('unread index on Cassandra: counts over combined, overlapping and pre-version-6 rows', function () {
  this.timeout(60_000);
  const { keyspace: KS, store: opened } = suiteStore('unread', { writeBehindMs: 60_000 });

  it('counts each incoming seq once, whatever rows hold it, and stops at the cursor', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    // Written behind a minute later: the reads below make the owner write them now, in one window.
    const acked = [];
    for (let i = 0; i < 5; i++) acked.push(await opened().appendMessage(direct(alice, bob, `m${i}`)));
    await opened().appendMessage(direct(bob, alice, 'reply'));
    const convId = peerConvId(alice, bob);
    const bobSeqs = acked.map((a) => a.seqs.get(bob)!);
    assert.deepEqual((await opened().unread(bob)).map((u) => [u.convId, u.count]), [[convId, 5]]);
    const client = (opened() as unknown as { client: import('cassandra-driver').Client }).client;
    const rows = (await client.execute(`SELECT seq, seqs FROM ${KS}.conv_unread WHERE uid = ? AND conv_id = ? AND bucket = 0`, [bob, convId], { prepare: true })).rows;
    assert.equal(rows.length, 1, 'one row for the window');
    // A replay that grouped them otherwise, and rows of the layout before version 6 (one seq, no seqs).
    await client.execute(`INSERT INTO ${KS}.conv_unread (uid, conv_id, bucket, seq, seqs) VALUES (?, ?, 0, ?, ?)`,
      [bob, convId, bobSeqs[3], packSeqs(bobSeqs[3], bobSeqs.slice(1, 4))], { prepare: true });
    for (const s of bobSeqs.slice(0, 2)) {
      await client.execute(`INSERT INTO ${KS}.conv_unread (uid, conv_id, bucket, seq) VALUES (?, ?, 0, ?)`, [bob, convId, s], { prepare: true });
    }
    assert.equal((await opened().unread(bob, [convId]))[0].count, 5, 'each seq once');
    assert.equal((await opened().setReadCursor(bob, convId, bobSeqs[2])).count, 2, 'only seqs above the cursor');
  });
});
