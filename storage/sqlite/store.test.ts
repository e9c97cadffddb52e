import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { Code } from '../../common/errors';
import { ConfigError } from '../../common/config';
import { newId, peerConvId } from '../../common/ids';
import { storeContract } from '../contract.test-support';
import { MIGRATIONS, migrate, schemaVersion } from './schema';
import { SqliteStore } from './store';
import { MAX_RESTARTS } from './writer-client';
import { listSegments } from './log-files';
import type { AppendInput, Store } from '../store';

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
  seqsFromOne: true,
});

storeContract('sqlite :memory:', async () => SqliteStore.open({ path: ':memory:' }), { seqsFromOne: true });

function msg(from: string, to: string, over: Partial<AppendInput> = {}): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: Buffer.from('x'), sentAtMs: 1_000_000, recipients: [from, to],
    dedupWindowMs: 60_000, ...over,
  };
}

/** What kill -9 leaves: the database, its WAL and its message log as they are between two ticks. */
function crashImage(store: SqliteStore): string {
  const copy = freshPath();
  fs.mkdirSync(path.dirname(copy), { recursive: true });
  for (const suffix of ['', '-wal']) {
    if (fs.existsSync(store.path + suffix)) fs.copyFileSync(store.path + suffix, copy + suffix);
  }
  for (const s of listSegments(store.path)) fs.copyFileSync(s.file, copy + s.file.slice(store.path.length));
  return copy;
}

function logFiles(dbPath: string): string[] {
  return listSegments(dbPath).map((s) => s.file);
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

  describe('message log', () => {
    it('writes all appends of one tick in one log write', async () => {
      const store = openStore();
      const before = store.appendStats().logWrites;
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => store.appendMessage(msg(`s${i}`, 'bob'))));
      assert.equal(store.appendStats().logWrites - before, 1);
      assert.deepEqual(results.map((r) => r.seqs.get('bob')), Array.from({ length: 40 }, (_, i) => i + 1));
    });

    it('answers reads from memory until the writer indexes, then from the tables, the same', async () => {
      for (const file of [freshPath(), ':memory:']) {
        // No index flush on its own during the test: indexNow() decides when.
        const store = openStore({ path: file, indexFlushMs: 3_600_000 });
        const ab = peerConvId('alice', 'bob');
        for (let i = 0; i < 5; i++) await store.appendMessage(msg(i % 2 ? 'bob' : 'alice', i % 2 ? 'alice' : 'bob'));
        const retry = msg('alice', 'bob');
        const first = await store.appendMessage(retry);
        const read = async () => ({
          sync: (await store.sync('bob', 2, 10)).items.map((e) => [e.seq, e.convSeq, e.msgId]),
          page: await store.sync('bob', 0, 2).then((p) => [p.items.map((e) => e.seq), p.hasMore]),
          history: (await store.history(ab, 5, 3)).items.map((m) => m.convSeq),
          maxSeq: await store.maxSeq('alice'),
          dup: await store.appendMessage(retry).then((r) => [r.duplicate, r.message.msgId, r.senderSeq]),
        });
        assert.ok(store.appendStats().unindexed >= 6, `${file}: held in memory before indexing`);
        const before = await read();
        await store.indexNow();
        assert.equal(store.appendStats().unindexed, 0, `${file}: all indexed`);
        assert.deepEqual(await read(), before, file);
        assert.deepEqual(before.dup, [true, first.message.msgId, first.senderSeq]);
        assert.deepEqual(before.history, [4, 3, 2]);
        assert.deepEqual(before.page, [[1, 2], true]);
        // Half in the tables, half in memory: one page spans both.
        await store.appendMessage(msg('alice', 'bob'));
        assert.deepEqual((await store.sync('bob', 4, 10)).items.map((e) => e.seq), [5, 6, 7], file);
        assert.deepEqual((await store.history(ab, 0, 3)).items.map((m) => m.convSeq), [7, 6, 5], file);
      }
    });

    it('replays what a crash left unindexed at open, and deletes the log once indexed', async () => {
      const store = openStore({ indexFlushMs: 3_600_000 });
      const ab = peerConvId('alice', 'bob');
      const sent = [];
      for (let i = 0; i < 30; i++) sent.push(await store.appendMessage(msg('alice', 'bob', { content: Buffer.from(`m${i}`) })));
      const reopened = openStore({ path: crashImage(store) });
      assert.equal(reopened.appendStats().replay.replayed, 30);
      assert.deepEqual((await reopened.sync('bob', 0, 100)).items.map((e) => [e.seq, e.msgId, Buffer.from(e.content).toString()]),
        sent.map((r, i) => [i + 1, r.message.msgId, `m${i}`]));
      const dup = await reopened.appendMessage({ ...msg('alice', 'bob'), clientMsgId: sent[29].message.clientMsgId, content: Buffer.from('m29') });
      assert.deepEqual([dup.duplicate, dup.message.msgId], [true, sent[29].message.msgId]);
      const next = await reopened.appendMessage(msg('alice', 'bob'));
      assert.deepEqual([next.message.convSeq, next.seqs.get('bob')], [31, 31]);
      assert.deepEqual((await reopened.history(ab, 0, 1)).items.map((m) => m.convSeq), [31]);
      const file = reopened.path;
      await reopened.close();
      assert.deepEqual(logFiles(file), [], 'a clean close leaves no log');
    });

    it('stops a replay at a torn record and keeps every record before it', async () => {
      const store = openStore({ indexFlushMs: 3_600_000 });
      for (let i = 0; i < 3; i++) await store.appendMessage(msg('alice', 'bob'));
      const image = crashImage(store);
      const [segment] = logFiles(image);
      // The half of a fourth record a crash cut off mid-write.
      const whole = fs.readFileSync(segment);
      fs.appendFileSync(segment, whole.subarray(0, Math.floor(whole.length / 3 / 2)));
      const reopened = openStore({ path: image });
      assert.deepEqual([reopened.appendStats().replay.replayed, reopened.appendStats().replay.tornSegments], [3, 1]);
      assert.equal((await reopened.appendMessage(msg('alice', 'bob'))).seqs.get('bob'), 4);
    });

    it('keeps the log at close when the last index transaction fails, and replays it at the next open', async () => {
      const store = openStore({ indexFlushMs: 3_600_000 });
      await store.appendMessage(msg('alice', 'bob'));
      const other = new Database(store.path);
      other.exec(`CREATE TRIGGER refuse_carol BEFORE INSERT ON inbox WHEN NEW.uid = 'carol'
        BEGIN SELECT RAISE(ABORT, 'injected'); END`);
      await store.appendMessage(msg('alice', 'carol'));
      const file = store.path;
      await store.close();
      assert.equal(logFiles(file).length, 1, 'the log is kept');
      other.exec('DROP TRIGGER refuse_carol');
      other.close();
      const reopened = openStore({ path: file });
      assert.equal(reopened.appendStats().replay.replayed, 2);
      assert.deepEqual((await reopened.sync('carol', 0, 10)).items.map((e) => e.seq), [1]);
      await reopened.close();
      assert.deepEqual(logFiles(file), []);
    });

    it('keeps messages readable when an index transaction fails, and indexes them once the tables accept them', async () => {
      const store = openStore({ indexFlushMs: 3_600_000 });
      await store.appendMessage(msg('alice', 'bob'));
      await store.indexNow();
      // carol's inbox refuses rows: the index transaction fails after writing part of its records.
      const other = new Database(store.path);
      other.exec(`CREATE TRIGGER refuse_carol BEFORE INSERT ON inbox WHEN NEW.uid = 'carol'
        BEGIN SELECT RAISE(ABORT, 'injected'); END`);
      const acked = await Promise.all([
        store.appendMessage(msg('alice', 'bob')), store.appendMessage(msg('alice', 'carol')), store.appendMessage(msg('alice', 'bob'))]);
      assert.deepEqual(acked.map((r) => r.senderSeq), [2, 3, 4], 'acknowledged from the log, before any index');
      await assert.rejects(store.indexNow(), (e: unknown) => (e as { code?: number }).code === Code.INTERNAL);
      assert.deepEqual((await store.sync('alice', 0, 10)).items.map((e) => e.seq), [1, 2, 3, 4], 'still read from memory');
      other.exec('DROP TRIGGER refuse_carol');
      other.close();
      await store.indexNow();
      assert.equal(store.appendStats().unindexed, 0);
      const file = store.path;
      await store.close();
      const reopened = openStore({ path: file });
      assert.deepEqual((await reopened.sync('alice', 0, 10)).items.map((e) => e.seq), [1, 2, 3, 4]);
      assert.deepEqual((await reopened.history(peerConvId('alice', 'carol'), 0, 10)).items.map((m) => m.convSeq), [1]);
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

  describe('writer thread', () => {
    it('bounds the work of each turn of the event loop while 64 MiB of appends are written and indexed', async () => {
      // 1024 appends of 64 KiB (64 MiB) in one tick: the store before the writer thread committed
      // them in one transaction on the loop, holding it 205-565 ms on a shared 2-core box. Now the
      // loop encodes at most maxBatchBytes (a MiB) of records per turn into a log write, and copies
      // at most that per turn into the batch it hands to the writer for indexing: about 1 ms each.
      // Checked by the bytes of each turn, not by a clock (a shared box stretches any one turn);
      // the longest block is a bench figure (`store-cost`, eventLoopMaxMs).
      const store = openStore();
      // Eight distinct contents, reused: memory the test holds is not the store's to collect.
      const contents = Array.from({ length: 8 }, (_, i) => Buffer.alloc(64 * 1024, i + 1));
      const results = await Promise.all(Array.from({ length: 1024 },
        (_, i) => store.appendMessage(msg(`s${i}`, 'bob', { content: contents[i % 8] }))));
      assert.deepEqual(results.map((r) => r.seqs.get('bob')), Array.from({ length: 1024 }, (_, i) => i + 1));
      await store.indexNow();
      const stats = store.appendStats();
      const MiB = 1 << 20;
      const oneMessage = 64 * 1024 + 1024;
      assert.ok(stats.logWrites >= 64, `64 MiB in writes of about a MiB: ${stats.logWrites} writes`);
      assert.ok(stats.largestLogWriteBytes > MiB / 2 && stats.largestLogWriteBytes <= MiB + oneMessage, `largest log write ${stats.largestLogWriteBytes} B`);
      assert.ok(stats.largestWriterPostBytes > MiB / 2 && stats.largestWriterPostBytes <= MiB, `largest batch to the writer ${stats.largestWriterPostBytes} B`);
      const last = (await store.sync('bob', 1023, 1)).items[0];
      assert.ok(Buffer.from(last.content).equals(contents[1023 % 8]), 'an acknowledged append is readable at once');
    });

    it('acknowledges appends while the writer fails and restarts, fails its writes in flight, and indexes every message', async () => {
      for (const file of [freshPath(), ':memory:']) {
        const store = openStore({ path: file });
        await store.appendMessage(msg('alice', 'bob'));
        await store.indexNow();
        // One tick: 20 appends, a group write, the writer's failure, 5 more appends.
        const before = Array.from({ length: 20 }, () => store.appendMessage(msg('alice', 'bob')));
        const group = store.createGroup({ groupId: 'g', name: 'n', owner: 'alice', members: [], createdAtMs: 1 }, 10);
        const drill = store.injectWriterFailure();
        const after = Array.from({ length: 5 }, () => store.appendMessage(msg('alice', 'carol')));
        const acked = await Promise.all([...before, ...after]);
        assert.deepEqual(acked.map((r) => r.senderSeq), Array.from({ length: 25 }, (_, i) => i + 2), file);
        await assert.rejects(group, (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE);
        await drill;
        assert.equal(store.appendStats().writerRestarts, 1);
        await store.indexNow();
        assert.equal(store.appendStats().unindexed, 0, `${file}: the new writer indexed every message`);
        assert.deepEqual((await store.sync('alice', 0, 100)).items.map((e) => e.seq), Array.from({ length: 26 }, (_, i) => i + 1));
        assert.deepEqual((await store.history(peerConvId('alice', 'carol'), 0, 10)).items.map((m) => m.convSeq), [5, 4, 3, 2, 1]);
      }
    });

    it('reports UNAVAILABLE for every call once the writer keeps failing, and still closes', async () => {
      for (const path of [freshPath(), ':memory:']) {
        const store = openStore({ path });
        for (let i = 0; i <= MAX_RESTARTS; i++) await store.injectWriterFailure();
        const unavailable = (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE;
        await assert.rejects(store.appendMessage(msg('alice', 'bob')), unavailable, path);
        await assert.rejects(store.createGroup({ groupId: 'g', name: 'n', owner: 'o', members: [], createdAtMs: 1 }, 10), unavailable);
        await assert.rejects(store.sync('alice', 0, 10), unavailable);
        await store.close();
      }
    });
  });

  describe('seqs in memory', () => {
    it('keeps every inbox and conversation gap-free with far more of them than maxCachedSeqs', async () => {
      const store = openStore({ maxCachedSeqs: 4 });
      const users = Array.from({ length: 12 }, (_, i) => `u${i}`);
      // Rounds over more users than the cache holds: every key is dropped and reloaded many times.
      for (let round = 0; round < 5; round++) {
        for (const [i, from] of users.entries()) await store.appendMessage(msg(from, users[(i + 1) % users.length]));
      }
      for (const uid of users) {
        const items = (await store.sync(uid, 0, 100)).items;
        assert.deepEqual(items.map((e) => e.seq), Array.from({ length: 10 }, (_, k) => k + 1), uid);
      }
      const history = (await store.history(peerConvId('u0', 'u1'), 0, 100)).items;
      assert.deepEqual(history.map((m) => m.convSeq).sort((a, b) => a - b), [1, 2, 3, 4, 5]);
    });
  });

  describe('WAL checkpoints', () => {
    it('keeps the WAL file a quarter above walRestartFrames (journal_size_limit), whatever it is set to', () => {
      const limit = (st: SqliteStore) => (st as unknown as { db: { pragma(p: string, o: { simple: true }): unknown } }).db.pragma('journal_size_limit', { simple: true });
      assert.equal(limit(openStore({ walRestartFrames: 1000 })), 1000 * 4096 * 1.25);
      assert.equal(limit(openStore()), 640 * 1024 * 1024, 'the default 512 MiB restart: 640 MiB, as before');
    });

    it('starts the log over under appends that never pause, and loses nothing', async () => {
      // Indexed at once: the tables (and so the WAL) grow with every tick.
      const store = openStore({ walRestartFrames: 64, checkpointIntervalMs: 5, indexFlushMs: 1 });
      const file = store.path;
      let n = 0;
      // No pause between ticks: the worker has to catch up, then the writer copies the rest between
      // two batches. (A round of the worker's that ends while the writer is idle restarts the log
      // too: both ways count, and the writer's must have run at least once.)
      const done = () => {
        const cp = store.appendStats().checkpoints;
        return (cp?.restarts ?? 0) >= 3 && (cp?.writerRuns ?? 0) >= 1;
      };
      while (!done()) {
        if (n >= 100_000) assert.fail(`no three restarts and a writer checkpoint in ${n} appends: ${JSON.stringify(store.appendStats().checkpoints)}`);
        await Promise.all(Array.from({ length: 20 }, () => store.appendMessage(msg('alice', `p${n++ % 50}`))));
        // Acks come from the message log: the index (and so the WAL) is kept from falling behind.
        while (store.appendStats().unindexed > 4000) await new Promise((resolve) => setTimeout(resolve, 1));
      }
      const cp = store.appendStats().checkpoints!;
      // A log that never restarted is as long as everything written to it.
      assert.ok(cp.framesWritten > cp.walFrames, `the log started over: ${JSON.stringify(cp)}`);
      assert.ok(cp.writerLongestMs > 0, JSON.stringify(cp));
      await store.close();
      const again = openStore({ path: file });
      assert.equal(await again.maxSeq('alice'), n);
      assert.equal(await again.maxSeq('p7'), Math.ceil((n - 7) / 50));
    });
  });

  describe('WAL checkpoints with the writer never idle', () => {
    it('starts the log over through the writer (100-recipient appends, 40 always in flight)', async () => {
      const store = openStore({ walRestartFrames: 64, checkpointIntervalMs: 5, indexFlushMs: 1 });
      const members = Array.from({ length: 100 }, (_, i) => `m${i}`);
      let n = 0;
      // Each append is ~100 inbox rows, and the writer indexes them without pause: a round of the
      // worker's cannot restart the log, only the writer's own checkpoint can.
      const restarts = () => store.appendStats().checkpoints?.restarts ?? 0;
      await new Promise<void>((resolve, reject) => {
        let inFlight = 0;
        const pump = (): void => {
          if (restarts() >= 3) {
            if (inFlight === 0) resolve();
            return;
          }
          if (n >= 20_000) {
            reject(new Error(`the log did not start over three times in ${n} appends: ${JSON.stringify(store.appendStats().checkpoints)}`));
            return;
          }
          // Acks come from the message log: the index is kept from falling far behind, so the
          // writer indexes all the time rather than for seconds after the last ack.
          if (store.appendStats().unindexed > 4000) {
            setTimeout(pump, 1);
            return;
          }
          while (inFlight < 40 && n < 20_000) {
            inFlight++;
            const from = members[n++ % members.length];
            store.appendMessage(msg(from, '', { convId: 'g:big', groupId: 'big', recipients: members }))
              .then(() => { inFlight--; pump(); }, reject);
          }
        };
        pump();
      });
      assert.equal(await store.maxSeq('m0'), n);
      await store.close();
    });
  });

  describe('summaries written behind', () => {
    it('rebuilds unread counts and last seqs from the inbox after a crash', async () => {
      const store = openStore();
      const conv = peerConvId('alice', 'bob');
      await store.appendMessage(msg('alice', 'bob'));
      await store.unread('bob'); // summaries up to here are written
      await store.appendMessage(msg('alice', 'bob'));
      const last = await store.appendMessage(msg('bob', 'alice'));
      assert.ok(store.appendStats().pendingSummaries + store.appendStats().unindexed > 0, 'the crash image must lack some summaries');
      const reopened = openStore({ path: crashImage(store) });
      assert.deepEqual(await reopened.unread('bob'), [{ convId: conv, count: 2, readSeq: 0, lastSeq: 3 }]);
      assert.deepEqual(await reopened.unread('alice', [conv]), [{ convId: conv, count: 1, readSeq: 0, lastSeq: last.senderSeq }]);
      const next = await reopened.appendMessage(msg('alice', 'bob'));
      assert.equal(next.seqs.get('bob'), 4);
      assert.deepEqual(await reopened.setReadCursor('bob', conv, 1), { convId: conv, count: 2, readSeq: 1, lastSeq: 4 });
    });
  });

  describe('version 3 data', () => {
    it('opens a version-3 data dir and keeps its messages, seqs, dedup records and unread state', async () => {
      // storage/fixtures/schema-v3.sqlite was written by the version-3 store (see storage/fixtures/README.md).
      const file = freshPath();
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.copyFileSync(path.join(__dirname, '..', '..', '..', 'storage', 'fixtures', 'schema-v3.sqlite'), file);
      const store = openStore({ path: file });
      const ab = peerConvId('alice', 'bob');
      const bob = await store.sync('bob', 0, 10);
      assert.deepEqual(bob.items.map((e) => [e.seq, e.msgId, e.convSeq, Buffer.from(e.content).toString()]), [
        [1, 'm1', 1, 'hi bob'], [2, 'm2', 2, 'hi alice'], [3, 'm3', 1, 'hello group'], [4, 'm4', 3, 'first'], [5, 'm5', 4, 'second']]);
      assert.deepEqual((await store.history('g:g1', 0, 10)).items.map((m) => m.msgId), ['m3']);
      assert.deepEqual(await store.unread('bob', [ab]), [{ convId: ab, count: 2, readSeq: 1, lastSeq: 5 }]);
      const dup = await store.appendMessage({ ...msg('alice', 'bob'), clientMsgId: 'c5', content: Buffer.from('second'), sentAtMs: 7000 });
      assert.deepEqual([dup.duplicate, dup.message.msgId, dup.senderSeq], [true, 'm5', 5], 'the newest reuse answers');
      await assert.rejects(store.appendMessage({ ...msg('alice', 'bob'), clientMsgId: 'c5', content: Buffer.from('other'), sentAtMs: 7000 }),
        (e: unknown) => (e as { code?: number }).code === Code.IDEMPOTENCY_CONFLICT);
      const next = await store.appendMessage(msg('carol', 'bob', { sentAtMs: 8000 }));
      assert.deepEqual([next.senderSeq, next.seqs.get('bob')], [2, 6]);
      assert.equal(await store.maxSeq('alice'), 5);
    });
  });
});
