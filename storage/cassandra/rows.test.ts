/**
 * Message rows (rows.ts): one packed body per message, shared by its history and inbox rows; rows
 * of the layout before schema version 7 (separate columns) read back the same; inbox rows of group
 * messages refer to their history row (version 9), on a real Cassandra.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Client } from 'cassandra-driver';
import { InProcessBus } from '../../bus/bus';
import { groupConvId, peerConvId } from '../../common/ids';
import { bodyOf, historyRowToMessage, historySpec, inboxHead, inboxSpec, readInboxRow, toStoredMessage } from './rows';
import { CassandraStore } from './store';
import { direct, suiteStore, testStoreOptions, uid } from './store.test-support';
import { dropKeyspace, needs } from '../../test/infra';
import type { AppendInput, InboxEntry } from '../store';

/** A group send to `members` (the sender among them). */
function toGroup(from: string, groupId: string, members: string[], text: string): AppendInput {
  return direct(from, '', text, { convId: groupConvId(groupId), to: '', groupId, recipients: members });
}

const clientOf = (store: CassandraStore) => (store as unknown as { client: Client }).client;
const text = (e: InboxEntry) => Buffer.from(e.content).toString();
/** The body cells of a user's inbox rows in bucket 0, by seq. */
const inboxBodies = async (client: Client, ks: string, who: string) =>
  (await client.execute(`SELECT seq, body FROM ${ks}.inbox WHERE uid = ? AND bucket = 0`, [who], { prepare: true })).rows.map((r) => r.body as Buffer);

describe('message rows', () => {
  it('version 7: pack a message once, its history row and every inbox row carry the same body, which reads back whole', () => {
    const input = direct('alice', 'bob', 'héllo', { groupId: '', to: 'bob' });
    const stored = toStoredMessage(input, 7);
    const [historyValues, inboxValues] = [historySpec(100).row(input.convId, 0, 7, input), inboxSpec(100).row('bob', 0, 3, stored)];
    assert.deepEqual(historyValues.slice(0, 4), [input.convId, 0, 7, input.msgId], 'key, bucket, seq, then the columns');
    assert.deepEqual(inboxValues.slice(0, 7), ['bob', 0, 3, input.msgId, input.convId, 7, 'alice']);
    assert.equal(historyValues[4], inboxValues[7], 'one buffer');
    assert.equal(bodyOf(stored), bodyOf(input));
    const message = historyRowToMessage(input.convId, { seq: 7, msg_id: input.msgId, body: historyValues[4] });
    assert.deepEqual({ ...message, content: Buffer.from(message.content) }, { ...stored, content: Buffer.from(stored.content) });
    const { entry, ref } = readInboxRow({ seq: 3, msg_id: input.msgId, conv_id: input.convId, conv_seq: 7, from_uid: 'alice', body: inboxValues[7] });
    assert.equal(ref, false);
    assert.deepEqual({ ...entry, content: Buffer.from(entry.content) }, { ...stored, seq: 3, content: Buffer.from(stored.content) });
  });

  it('version 9: an inbox row is msg_id and one body, shared by the message\'s rows; a group message\'s rows refer to its history row', () => {
    const spec = inboxSpec(100, true);
    const d = toStoredMessage(direct('alice', 'bob', 'just us'), 2);
    const [toBob, toAlice] = [spec.row('bob', 0, 5, d), spec.row('alice', 1, 150, d)];
    assert.deepEqual(toBob.slice(0, 4), ['bob', 0, 5, d.msgId], 'key, bucket, seq, msg_id, body');
    assert.equal(toBob.length, 5);
    assert.equal(toBob[4], toAlice[4], 'one buffer for every inbox row of the message');
    assert.deepEqual(inboxHead(toBob[4] as Buffer), { convId: d.convId, from: 'alice' });
    const read = readInboxRow({ seq: 5, msg_id: d.msgId, body: toBob[4] });
    assert.equal(read.ref, false);
    assert.deepEqual({ ...read.entry, content: Buffer.from(read.entry.content).toString() }, { ...d, seq: 5, content: 'just us' });

    const g = toStoredMessage(toGroup('alice', 'g1', ['alice', 'bob'], 'to the group'), 9);
    const body = spec.row('bob', 0, 4, g)[4] as Buffer;
    assert.ok(body.length < 60 && !body.includes(Buffer.from('to the group')), `a reference, not the message (${body.length} B)`);
    assert.deepEqual(inboxHead(body), { convId: g.convId, from: 'alice' });
    const bare = readInboxRow({ seq: 4, msg_id: g.msgId, body });
    assert.equal(bare.ref, true);
    assert.deepEqual([bare.entry.msgId, bare.entry.from, bare.entry.convId, bare.entry.convSeq, bare.entry.content.length], [g.msgId, 'alice', g.convId, 9, 0]);
    assert.equal(inboxSpec(100).row('bob', 0, 4, g)[7], bodyOf(g), 'version 7: the message, in every row');
  });
});

describe('message rows on Cassandra: the layout before version 7 reads back the same', function () {
  this.timeout(60_000);
  const { keyspace: KS, store: opened } = suiteStore('rows');

  it('sync and history read old rows (separate columns) and new rows (body) alike', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const convId = peerConvId(alice, bob);
    const client = (opened() as unknown as { client: Client }).client;
    // An old row at seq 1 of bob's inbox and of the conversation's history, as version 6 wrote them.
    const old = direct(alice, bob, 'written by version 6');
    await client.execute(`INSERT INTO ${KS}.inbox (uid, bucket, seq, msg_id, conv_id, conv_seq, from_uid, to_uid, group_id, client_msg_id, content_type, content, sent_at_ms)
      VALUES (?, 0, 1, ?, ?, 1, ?, ?, '', ?, ?, ?, ?)`, [bob, old.msgId, convId, alice, bob, old.clientMsgId, old.contentType, Buffer.from(old.content), old.sentAtMs], { prepare: true });
    await client.execute(`INSERT INTO ${KS}.history (conv_id, bucket, seq, msg_id, from_uid, to_uid, group_id, client_msg_id, content_type, content, sent_at_ms)
      VALUES (?, 0, 1, ?, ?, ?, '', ?, ?, ?, ?)`, [convId, old.msgId, alice, bob, old.clientMsgId, old.contentType, Buffer.from(old.content), old.sentAtMs], { prepare: true });
    const fresh = await opened().appendMessage(direct(alice, bob, 'written by version 7'));
    assert.equal(fresh.seqs.get(bob), 2, 'the owner starts after the old row');
    const texts = (items: { content: Uint8Array; msgId: string }[]) => items.map((m) => [m.msgId, Buffer.from(m.content).toString()]);
    const expected = [[old.msgId, 'written by version 6'], [fresh.message.msgId, 'written by version 7']];
    assert.deepEqual(texts((await opened().sync(bob, 0, 10)).items), expected);
    assert.deepEqual(texts((await opened().history(convId, 0, 10)).items).reverse(), expected);
    const [first] = (await opened().sync(bob, 0, 1)).items;
    assert.deepEqual({ ...first, content: Buffer.from(first.content).toString() }, {
      seq: 1, msgId: old.msgId, convId, convSeq: 1, from: alice, to: bob, groupId: '', clientMsgId: old.clientMsgId,
      contentType: old.contentType, content: 'written by version 6', sentAtMs: old.sentAtMs,
    });
  });
});

describe('group messages in the inbox on Cassandra, two processes (references to the history row)', function () {
  this.timeout(60_000);
  // A keyspace of its own: no third store whose lease would make it the preferred owner of a shard.
  const KS = `im_test_${randomBytes(4).toString('hex')}_grouprefs2`;
  const bus = new InProcessBus();
  let a: CassandraStore | undefined;
  let b: CassandraStore | undefined;
  before(async function () {
    await needs(this, 'cassandra');
    a = await CassandraStore.open(testStoreOptions(KS, { bus }));
    b = await CassandraStore.open(testStoreOptions(KS, { bus }));
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await dropKeyspace(KS);
  });

  it('syncs a group message whole from its history row, also while that row is only logged by another process', async () => {
    const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
    const groupId = uid('grp');
    const sent = await a!.appendMessage(toGroup(alice, groupId, [alice, bob, carol], 'hello group'));
    const direct1 = await a!.appendMessage(direct(alice, bob, 'hello bob'));
    // The history row is logged by its owner (a) and written behind later: not in the table yet.
    const hist = await clientOf(a!).execute(`SELECT seq FROM ${KS}.history WHERE conv_id = ? AND bucket = 0`, [groupConvId(groupId)], { prepare: true });
    assert.equal(hist.rows.length, 0, 'still only in the owner log');
    // b owns nothing: a writes the inbox rows, then the history row, on b's demand.
    const page = await b!.sync(bob, 0, 10);
    assert.deepEqual(page.items.map((e) => [e.msgId, text(e), e.groupId, e.from, e.seq]), [
      [sent.message.msgId, 'hello group', groupId, alice, sent.seqs.get(bob)],
      [direct1.message.msgId, 'hello bob', '', alice, direct1.seqs.get(bob)],
    ]);
    assert.equal(page.items[0].clientMsgId, sent.message.clientMsgId);
    assert.equal(page.items[0].sentAtMs, sent.message.sentAtMs);
    const bodies = await inboxBodies(clientOf(a!), KS, bob);
    assert.ok(!bodies[0].includes(Buffer.from('hello group')), 'the group row is a reference');
    assert.ok(bodies[1].includes(Buffer.from('hello bob')), 'the 1:1 row carries the message');
    assert.equal(text((await a!.sync(carol, 0, 10)).items[0]), 'hello group');
  });
});

describe('group messages in the inbox on Cassandra, one process', function () {
  this.timeout(60_000);
  const { keyspace: KS, store: opened } = suiteStore('grouprefs');

  it('syncs past a reference whose history row is gone, without its content (and logs it), not failing the page', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const groupId = uid('grp');
    const sent = await opened().appendMessage(toGroup(alice, groupId, [alice, bob], 'lost'));
    const after = await opened().appendMessage(direct(alice, bob, 'kept'));
    await opened().history(groupConvId(groupId), 0, 1); // written to its table
    await clientOf(opened()).execute(`DELETE FROM ${KS}.history WHERE conv_id = ? AND bucket = 0`, [groupConvId(groupId)], { prepare: true });
    const items = (await opened().sync(bob, 0, 10)).items;
    assert.deepEqual(items.map((e) => [e.msgId, text(e)]), [[sent.message.msgId, ''], [after.message.msgId, 'kept']]);
  });
});

describe('inbox rows on an upgraded keyspace (the version-7 layout)', function () {
  this.timeout(60_000);
  const KS = `im_test_${randomBytes(4).toString('hex')}_grouprefsoff`;
  before(async function () {
    await needs(this, 'cassandra');
  });
  after(async () => {
    await dropKeyspace(KS);
  });

  it('writes the message into every inbox row, in the version-7 columns, until the setting is changed', async () => {
    const first = await CassandraStore.open(testStoreOptions(KS));
    // As a keyspace created before version 9 records it.
    await clientOf(first).execute(`UPDATE ${KS}.store_settings SET value = 7 WHERE name = 'inboxLayout'`);
    await first.close();
    const store = await CassandraStore.open(testStoreOptions(KS));
    try {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await store.appendMessage(toGroup(alice, uid('grp'), [alice, bob], 'bodies everywhere'));
      assert.equal(text((await store.sync(bob, 0, 10)).items[0]), 'bodies everywhere');
      assert.ok((await inboxBodies(clientOf(store), KS, bob))[0].includes(Buffer.from('bodies everywhere')), 'the message, not a reference');
      const rs = await clientOf(store).execute(`SELECT conv_id, from_uid FROM ${KS}.inbox WHERE uid = ? AND bucket = 0`, [bob], { prepare: true });
      assert.equal(rs.first().from_uid, alice, 'the version-7 columns');
    } finally {
      await store.close();
    }
  });
});
