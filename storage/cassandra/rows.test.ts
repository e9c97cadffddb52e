/**
 * Message rows (rows.ts): one packed body per message, shared by its history and inbox rows, and
 * rows of the layout before schema version 7 (separate columns) read back the same, on a real
 * Cassandra.
 */
import assert from 'node:assert/strict';
import type { Client } from 'cassandra-driver';
import { peerConvId } from '../../common/ids';
import { bodyOf, historyRowToMessage, historySpec, inboxRowToEntry, inboxSpec, toStoredMessage } from './rows';
import { direct, suiteStore, uid } from './store.test-support';

describe('message rows', () => {
  it('pack a message once: its history row and every inbox row carry the same body, which reads back whole', () => {
    const input = direct('alice', 'bob', 'héllo', { groupId: '', to: 'bob' });
    const stored = toStoredMessage(input, 7);
    const [historyValues, inboxValues] = [historySpec(100).row(input.convId, 0, 7, input), inboxSpec(100).row('bob', 0, 3, stored)];
    assert.deepEqual(historyValues.slice(0, 4), [input.convId, 0, 7, input.msgId], 'key, bucket, seq, then the columns');
    assert.deepEqual(inboxValues.slice(0, 7), ['bob', 0, 3, input.msgId, input.convId, 7, 'alice']);
    assert.equal(historyValues[4], inboxValues[7], 'one buffer');
    assert.equal(bodyOf(stored), bodyOf(input));
    const message = historyRowToMessage(input.convId, { seq: 7, msg_id: input.msgId, body: historyValues[4] });
    assert.deepEqual({ ...message, content: Buffer.from(message.content) }, { ...stored, content: Buffer.from(stored.content) });
    const entry = inboxRowToEntry({ seq: 3, msg_id: input.msgId, conv_id: input.convId, conv_seq: 7, from_uid: 'alice', body: inboxValues[7] });
    assert.deepEqual({ ...entry, content: Buffer.from(entry.content) }, { ...stored, seq: 3, content: Buffer.from(stored.content) });
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
