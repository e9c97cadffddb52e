import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CassandraStoreConfig } from './config';
import { ConfigError } from '../common/config';
import { openStore, SQLITE_DB_FILE } from './open';

describe('openStore', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-open-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens a working SQLite store in the data dir', async () => {
    const store = await openStore({ kind: 'sqlite', dataDir: path.join(dir, 'nested') });
    try {
      const r = await store.appendMessage({
        msgId: 'm1', convId: 'p:alice:bob', from: 'alice', to: 'bob', groupId: '', clientMsgId: 'c1',
        contentType: 'text/plain', content: Buffer.from('hi'), sentAtMs: Date.now(),
        recipients: ['alice', 'bob'], dedupWindowMs: 60_000,
      });
      assert.equal(r.duplicate, false);
      assert.equal(r.seqs.get('bob'), 1);
      assert.ok(fs.existsSync(path.join(dir, 'nested', SQLITE_DB_FILE)));
    } finally {
      await store.close();
    }
  });

  it("names the operator's setting when the Cassandra store rejects an option", async () => {
    const bad: CassandraStoreConfig = {
      kind: 'cassandra', contactPoints: ['127.0.0.1:9042'], localDataCenter: 'datacenter1', keyspace: 'im',
      consistency: 'ALL' as never, replication: 1, leaseMs: 10_000, writeBehindMs: 2000, maxKeyStates: 1000, maxKeyHeads: 1000, shedAfterMs: 2000,
    };
    await assert.rejects(openStore(bad), (e: unknown) => e instanceof ConfigError && e.field === 'IM_CASSANDRA_CONSISTENCY'
      && /ONE/.test(e.message));
    // The keys kept in full reach the store (its option is maxCachedHeads), before it connects.
    await assert.rejects(openStore({ ...bad, consistency: 'ONE', maxKeyStates: 0 }),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_CASSANDRA_MAX_KEY_STATES');
  });
});
