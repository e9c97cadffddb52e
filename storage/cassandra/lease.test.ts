/**
 * Other processes' leases as a store reads them (lease.ts, untilOf): a live lease is read once for
 * many asks, a stop is seen within SEEN_UNTIL_MS, and a lease that is over is never answered from
 * an earlier read.
 */
import assert from 'node:assert/strict';
import type { Client } from 'cassandra-driver';
import { silentLogger } from '../../common/log';
import { Lease, SEEN_UNTIL_MS } from './lease';
import { suiteStore } from './store.test-support';

describe('cassandra store: other processes\' leases (untilOf)', function () {
  this.timeout(30_000);
  const { keyspace, store } = suiteStore('lease');

  /** A lease on the suite's keyspace; its reads of lease rows are counted, and its wall clock runs `ahead` ms early. */
  function lease(): { lease: Lease; reads: () => number; ahead: (ms: number) => void } {
    const client = (store() as unknown as { client: Client }).client;
    let reads = 0;
    let offset = 0;
    const counting = {
      execute: (...a: Parameters<Client['execute']>) => {
        if (String(a[0]).includes('logic_leases WHERE process')) reads++;
        return client.execute(...a);
      },
    } as unknown as Client;
    const l = new Lease({
      client: counting, keyspace, leaseMs: 10_000, logger: silentLogger, onLapse: () => undefined,
      wallMs: () => Date.now() + offset,
    });
    return { lease: l, reads: () => reads, ahead: (ms) => { offset += ms; } };
  }

  it('answers many asks about a live process from one read, and reads again after SEEN_UNTIL_MS', async () => {
    const owner = lease();
    await owner.lease.start();
    try {
      const asker = lease();
      const answers = await Promise.all(Array.from({ length: 50 }, () => asker.lease.untilOf(owner.lease.processId)));
      assert.equal(asker.reads(), 1, 'one read for 50 asks in flight together');
      assert.ok(answers[0] > Date.now(), 'the owner holds its lease');
      assert.ok(answers.every((u) => u === answers[0]));
      assert.equal(await asker.lease.untilOf(owner.lease.processId), answers[0]);
      assert.equal(asker.reads(), 1, 'asked again at once: the same read');
      asker.ahead(SEEN_UNTIL_MS);
      assert.ok(await asker.lease.untilOf(owner.lease.processId) >= answers[0]);
      assert.equal(asker.reads(), 2, 'a read older than SEEN_UNTIL_MS is not used');
    } finally {
      await owner.lease.close();
    }
  });

  it('sees a clean stop within SEEN_UNTIL_MS, and never answers from a read that says a lease is over', async () => {
    const owner = lease();
    await owner.lease.start();
    const asker = lease();
    assert.ok(await asker.lease.untilOf(owner.lease.processId) > Date.now());
    await owner.lease.close(); // deletes its row: others may take its shards at once
    asker.ahead(SEEN_UNTIL_MS);
    assert.equal(await asker.lease.untilOf(owner.lease.processId), 0, 'the stop is seen');
    const before = asker.reads();
    assert.equal(await asker.lease.untilOf(owner.lease.processId), 0);
    assert.equal(await asker.lease.untilOf(owner.lease.processId), 0);
    assert.equal(asker.reads(), before + 2, 'each ask about a lease that is over reads the row again');
  });

  it('counts a balance round\'s read of every lease as a read of each', async () => {
    const owner = lease();
    await owner.lease.start();
    try {
      const asker = lease();
      const live = await asker.lease.live();
      const row = live.find((p) => p.process === owner.lease.processId);
      assert.ok(row, 'the owner is live');
      assert.equal(await asker.lease.untilOf(owner.lease.processId), row.untilMs);
      assert.equal(asker.reads(), 0, 'no read of its own row');
    } finally {
      await owner.lease.close();
    }
  });
});
