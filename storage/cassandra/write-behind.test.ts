/**
 * The owner log's write-behind is paced (log.ts flushDue): rows that come due together are
 * written over several looks, not in one burst that would hold up the log writes acknowledging
 * sends. Partitions of a row or two share requests, and a flush of one key looks at that key's
 * partitions only. On a real Cassandra.
 */
import assert from 'node:assert/strict';
import type { CassandraStore } from './store';
import { countRequests, direct, suiteStore, uid } from './store.test-support';
import { waitFor } from '../../test/exactly-once';

type Log = {
  dueStats: { looks: number; largestRows: number }; flushStats: { looked: number }; unflushedRowCount: number;
  flushKey(key: string): Promise<void>; flushAll(): Promise<void>;
};
const logOf = (store: CassandraStore) => (store as unknown as { log: Log }).log;

describe('owner log write-behind (real Cassandra)', function () {
  this.timeout(60_000);
  // A 1 s window (looks every 20 ms) and batches of at most 20 rows.
  const { store: opened } = suiteStore('writebehind', { writeBehindMs: 1000, maxWriteBatchRows: 20 });

  it('spreads rows that came due together over looks of at most its budget each, and writes them all', async () => {
    const senders = Array.from({ length: 100 }, (_, i) => uid(`s${i}`));
    const recipients = Array.from({ length: 100 }, (_, i) => uid(`r${i}`));
    // 100 sends at once between distinct users: ~400 rows in ~400 partitions of one row each
    // (history, two inboxes, journal), all logged within a few ms and so due together a window later.
    const acked = await Promise.all(recipients.map((r, i) => opened().appendMessage(direct(senders[i], r, 'hi'))));
    const log = logOf(opened());
    await waitFor('every row written behind', 20_000, () => log.unflushedRowCount === 0);
    const stats = log.dueStats;
    assert.ok(stats.looks >= 10, `${stats.looks} looks wrote rows`);
    // A look's budget: the batch size, or twice a look's share of the rows not yet written (a
    // window's worth over its 50 looks), whichever is larger; here well under a tenth of them.
    assert.ok(stats.largestRows <= 40, `a look wrote ${stats.largestRows} rows`);
    for (const [i, r] of recipients.entries()) {
      const page = await opened().sync(r, 0, 10);
      assert.deepEqual(page.items.map((e) => e.msgId), [acked[i].message.msgId]);
    }
  });
});

describe('owner log write-behind of sparse traffic (real Cassandra)', function () {
  this.timeout(60_000);
  // A window longer than the test: nothing is written behind unless asked.
  const { store: opened } = suiteStore('sparse', { writeBehindMs: 600_000 });

  it('flushes one key by looking at its own partitions, however many others wait', async () => {
    const senders = Array.from({ length: 100 }, (_, i) => uid(`fs${i}`));
    const recipients = Array.from({ length: 100 }, (_, i) => uid(`fr${i}`));
    await Promise.all(recipients.map((r, i) => opened().appendMessage(direct(senders[i], r, 'hi'))));
    const log = logOf(opened());
    const before = log.unflushedRowCount;
    assert.ok(before >= 300, `${before} rows waiting`);
    const looked = log.flushStats.looked;
    // One recipient's inbox (its key is the uid): its inbox partition and its seq_heads row.
    await log.flushKey(recipients[7]);
    assert.ok(log.flushStats.looked - looked <= 2, `a key's flush looked at ${log.flushStats.looked - looked} partitions`);
    assert.ok(log.unflushedRowCount >= before - 2, `${before - log.unflushedRowCount} rows written for one key`);
    await log.flushAll();
  });

  it('writes the partitions of one log write in shared requests, and every row reaches its table', async () => {
    const senders = Array.from({ length: 100 }, (_, i) => uid(`ps${i}`));
    const recipients = Array.from({ length: 100 }, (_, i) => uid(`pr${i}`));
    // 100 sends between distinct users: history, two inboxes and a journal row each, every row in
    // its own partition, logged in a few log writes.
    const acked = await Promise.all(recipients.map((r, i) => opened().appendMessage(direct(senders[i], r, 'sparse'))));
    const log = logOf(opened());
    const rows = log.unflushedRowCount;
    const count = countRequests(opened());
    try {
      await log.flushAll();
    } finally {
      count.restore();
    }
    assert.equal(log.unflushedRowCount, 0);
    // A request per partition would be at least `rows` requests (and more for the unread index).
    assert.ok(count.statements >= rows, `${count.statements} statements for ${rows} rows`);
    assert.ok(count.requests * 5 <= count.statements, `${count.requests} requests for ${count.statements} statements`);
    for (const [i, r] of recipients.entries()) {
      const page = await opened().sync(r, 0, 10);
      assert.deepEqual(page.items.map((e) => e.msgId), [acked[i].message.msgId]);
      const sent = await opened().sync(senders[i], 0, 10);
      assert.deepEqual(sent.items.map((e) => e.msgId), [acked[i].message.msgId]);
    }
  });
});
