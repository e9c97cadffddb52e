import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Code } from '../common/errors';
import { ConfigError } from '../common/config';
import { newId, peerConvId } from '../common/ids';
import { storeContract } from './contract';
import { MIGRATIONS, migrate, schemaVersion } from './sqlite-schema';
import { SqliteStore } from './sqlite';
import type { AppendInput, Store } from './store';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'im-sqlite-'));
let fileCounter = 0;
function freshPath(): string {
  // A directory that does not exist yet: open() must create it.
  return path.join(tmpRoot, `db${++fileCounter}`, 'im.sqlite');
}

after(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

storeContract('sqlite', async () => SqliteStore.open({ path: freshPath() }), {
  reopen: async (store) => {
    const file = (store as SqliteStore).path;
    await store.close();
    return SqliteStore.open({ path: file });
  },
});

storeContract('sqlite :memory:', async () => SqliteStore.open({ path: ':memory:' }));

function msg(from: string, to: string, over: Partial<AppendInput> = {}): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: Buffer.from('x'), sentAtMs: 1_000_000, recipients: [from, to],
    dedupWindowMs: 60_000, ...over,
  };
}

describe('SqliteStore', () => {
  const open: Store[] = [];
  function openStore(options: Partial<Parameters<typeof SqliteStore.open>[0]> = {}): SqliteStore {
    const s = SqliteStore.open({ path: freshPath(), ...options });
    open.push(s);
    return s;
  }
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });

  describe('schema migrations', () => {
    it('applies every migration once, and opening again changes nothing', async () => {
      const store = openStore();
      const file = store.path;
      await store.appendMessage(msg('a', 'b'));
      await store.close();
      const again = openStore({ path: file });
      assert.equal(await again.maxSeq('a'), 1);
      await again.close();
      const db = new Database(file, { readonly: true });
      try {
        const rows = db.prepare('SELECT version FROM schema_version ORDER BY version').all() as { version: number }[];
        assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
      } finally {
        db.close();
      }
    });

    it('upgrades a database left at an older version', async () => {
      const file = freshPath();
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const db = new Database(file);
      assert.equal(migrate(db, MIGRATIONS.slice(0, 1)), 1);
      db.close();
      const store = openStore({ path: file });
      const g = await store.createGroup({ groupId: 'g1', name: 'n', owner: 'o', members: [], createdAtMs: 1 }, 10);
      assert.deepEqual(g.members, ['o']);
      const check = new Database(file, { readonly: true });
      try {
        assert.equal(schemaVersion(check), MIGRATIONS.length);
      } finally {
        check.close();
      }
    });

    it('refuses a database from a newer release', () => {
      const file = freshPath();
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const db = new Database(file);
      migrate(db);
      db.prepare('INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)')
        .run(MIGRATIONS.length + 1, 'from the future', 0);
      db.close();
      assert.throws(() => SqliteStore.open({ path: file }), (err: unknown) => (err as { code?: number }).code === Code.INTERNAL);
    });
  });

  describe('options', () => {
    it('names the bad field', () => {
      assert.throws(() => SqliteStore.open({ path: '' }), (e: unknown) => e instanceof ConfigError && e.field === 'path');
      assert.throws(() => SqliteStore.open({ path: freshPath(), maxBatchAppends: 0 }),
        (e: unknown) => e instanceof ConfigError && e.field === 'maxBatchAppends');
    });
  });

  describe('append batching', () => {
    it('commits all appends of one tick in one transaction', async () => {
      const store = openStore();
      const before = store.appendStats().batches;
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => store.appendMessage(msg(`s${i}`, 'bob'))));
      assert.equal(store.appendStats().batches - before, 1);
      assert.deepEqual(results.map((r) => r.seqs.get('bob')), Array.from({ length: 40 }, (_, i) => i + 1));
    });

    it('splits a tick larger than maxBatchAppends into several transactions', async () => {
      const store = openStore({ maxBatchAppends: 8 });
      await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendMessage(msg(`s${i}`, 'bob'))));
      assert.equal(store.appendStats().batches, 3);
      assert.equal(await store.maxSeq('bob'), 20);
    });

    it('fails only the bad item of a batch and rolls back all of its writes', async () => {
      const store = openStore();
      const taken = await store.appendMessage(msg('alice', 'bob'));
      // Same msgId as a stored message: fails on insert, after its conv seq was taken.
      const outcomes = await Promise.allSettled([
        store.appendMessage(msg('alice', 'bob')),
        store.appendMessage(msg('alice', 'bob', { msgId: taken.message.msgId })),
        store.appendMessage(msg('alice', 'bob')),
      ]);
      assert.deepEqual(outcomes.map((o) => o.status), ['fulfilled', 'rejected', 'fulfilled']);
      assert.equal(((outcomes[1] as PromiseRejectedResult).reason as { code?: number }).code, Code.INTERNAL);
      const page = await store.sync('bob', 0, 10);
      assert.deepEqual(page.items.map((e) => e.seq), [1, 2, 3]);
      const hist = await store.history(peerConvId('alice', 'bob'), 0, 10);
      assert.deepEqual(hist.items.map((m) => m.convSeq), [3, 2, 1], 'no gap left by the failed item');
      assert.equal(await store.maxSeq('alice'), 3);
    });

    it('refuses appends beyond maxPendingAppends with OVERLOADED', async () => {
      const store = openStore({ maxPendingAppends: 5 });
      const outcomes = await Promise.allSettled(Array.from({ length: 7 }, () => store.appendMessage(msg('alice', 'bob'))));
      assert.deepEqual(outcomes.map((o) => o.status), [...Array(5).fill('fulfilled'), 'rejected', 'rejected']);
      assert.equal(((outcomes[5] as PromiseRejectedResult).reason as { code?: number }).code, Code.OVERLOADED);
      assert.equal(await store.maxSeq('bob'), 5);
    });

    it('refuses calls after close with UNAVAILABLE', async () => {
      const store = openStore();
      await store.close();
      await assert.rejects(store.appendMessage(msg('a', 'b')), (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE);
      await assert.rejects(store.sync('a', 0, 1), (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE);
    });
  });

  describe('dedup purge', () => {
    it('deletes expired records in bounded chunks, keeping live ones', async () => {
      const store = openStore({ dedupPurgeBatch: 2 });
      for (let i = 0; i < 5; i++) await store.appendMessage(msg('alice', 'bob', { sentAtMs: 1000 + i, dedupWindowMs: 10 }));
      const countDedup = () => {
        const db = new Database(store.path, { readonly: true });
        try {
          return (db.prepare('SELECT COUNT(*) AS n FROM dedup').get() as { n: number }).n;
        } finally {
          db.close();
        }
      };
      assert.equal(countDedup(), 5);
      const live = msg('alice', 'bob', { sentAtMs: 5000 });
      await store.appendMessage(live);
      assert.equal(countDedup(), 6 - 2, 'at most dedupPurgeBatch removed per transaction');
      await store.appendMessage(msg('alice', 'bob', { sentAtMs: 5001 }));
      await store.appendMessage(msg('alice', 'bob', { sentAtMs: 5002 }));
      assert.equal(countDedup(), 3, 'only the three live records remain');
      const retry = await store.appendMessage({ ...live, msgId: newId(), sentAtMs: 5003 });
      assert.equal(retry.duplicate, true);
    });
  });
});
