/**
 * The owner log's write-behind is paced (log.ts flushDue): rows that come due together are
 * written over several looks, not in one burst that would hold up the log writes acknowledging
 * sends. On a real Cassandra.
 */
import assert from 'node:assert/strict';
import type { CassandraStore } from './store';
import { direct, suiteStore, uid } from './store.test-support';
import { waitFor } from '../../test/exactly-once';

type Log = { dueStats: { looks: number; largestRows: number }; unflushedRowCount: number };
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
