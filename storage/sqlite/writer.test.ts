import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Code } from '../../common/errors';
import { migrate } from './schema';
import { encodeRecord, maxEncodedSize, type LogRecord } from './log-record';
import { WriterEngine, type WriteBatch, type WriteOp, type WriterOptions, type WriterStats } from './writer';

const OPTIONS: WriterOptions = { maxIndexBatch: 12, maxPendingIndex: 1000, maxSummaryBatch: 256, maxPendingSummaries: 50_000, maxCachedSeqs: 1000 };

/** Records lsn from..to, each a message from s<lsn> to bob, bob's seq = lsn. */
function records(from: number, to: number): LogRecord[] {
  const out: LogRecord[] = [];
  for (let lsn = from; lsn <= to; lsn++) {
    out.push({
      lsn, msgId: `m${lsn}`, convId: `c${lsn}`, convSeq: 1, from: `s${lsn}`, to: 'bob', groupId: '', clientMsgId: `k${lsn}`,
      contentType: 'text/plain', content: Buffer.from(`x${lsn}`), sentAtMs: 1000, senderSeq: 1, dedupUntilMs: 61_000, dedupGen: 0,
      recipients: [`s${lsn}`, 'bob'], seqs: [1, lsn],
    });
  }
  return out;
}

let nextId = 1;
/** One batch: an index op per group of records, then the other ops. */
function batch(groups: LogRecord[][], ...others: WriteOp[]): WriteBatch {
  const size = groups.flat().reduce((n, r) => n + maxEncodedSize(r), 0);
  const buf = Buffer.alloc(size);
  let at = 0;
  const ops: WriteOp[] = groups.map((g) => {
    const start = at;
    for (const r of g) at = encodeRecord(r, buf, at);
    return { k: 'index', firstLsn: g[0].lsn, count: g.length, contentOff: start, contentLen: at - start };
  });
  return { id: nextId++, ops: [...ops, ...others], contents: buf.buffer.slice(buf.byteOffset, buf.byteOffset + at) };
}

describe('SQLite writer engine', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
    migrate(db);
  });
  afterEach(() => db.close());

  const bobSeqs = () => (db.prepare("SELECT seq FROM inbox WHERE uid = 'bob' ORDER BY seq").all() as { seq: number }[]).map((r) => r.seq);

  it('indexes received records on indexFlush, about maxIndexBatch rows per transaction, with the indexed lsn', () => {
    const engine = new WriterEngine(db, OPTIONS);
    const held = engine.handle(batch([records(1, 3), records(4, 10)]));
    assert.deepEqual([held.stats.pendingIndex, held.stats.indexedLsn, bobSeqs()], [10, 0, []]);
    const done = engine.handle(batch([], { k: 'indexFlush' })).stats;
    assert.deepEqual([done.pendingIndex, done.indexedLsn, done.batches, done.rowsWritten.messages, done.rowsWritten.inbox], [0, 10, 3, 10, 20]);
    assert.deepEqual(bobSeqs(), Array.from({ length: 10 }, (_, i) => i + 1));
    assert.equal((db.prepare('SELECT indexed_lsn AS l FROM log_state').get() as { l: number }).l, 10);
  });

  it('skips records already indexed and waits at a gap until the records before it arrive', () => {
    const engine = new WriterEngine(db, OPTIONS);
    engine.handle(batch([records(1, 4)], { k: 'indexFlush' }));
    // A new writer gets the records again (a resubmission) and later ones before the ones between.
    let stats: WriterStats = engine.handle(batch([records(3, 6), records(9, 10)], { k: 'indexFlush' })).stats;
    assert.deepEqual([stats.indexedLsn, stats.pendingIndex, stats.skippedRecords], [6, 2, 2]);
    stats = engine.handle(batch([records(7, 8)], { k: 'indexFlush' })).stats;
    assert.deepEqual([stats.indexedLsn, stats.pendingIndex], [10, 0]);
    assert.deepEqual(bobSeqs(), Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('keeps records whose index transaction failed and indexes them once the connection can write', () => {
    const engine = new WriterEngine(db, OPTIONS);
    engine.handle(batch([records(1, 2)]));
    db.pragma('query_only = 1');
    const failed = engine.handle(batch([], { k: 'indexFlush' },
      { k: 'createGroup', group: { groupId: 'g', name: 'n', owner: 'o', members: [], createdAtMs: 1 }, members: [] }));
    assert.deepEqual(failed.outcomes.map((o) => !o.ok && o.code), [Code.INTERNAL, Code.INTERNAL]);
    assert.equal(failed.stats.pendingIndex, 2);
    db.pragma('query_only = 0');
    const ok = engine.handle(batch([], { k: 'indexFlush' }));
    assert.deepEqual([ok.stats.indexedLsn, bobSeqs()], [2, [1, 2]]);
  });

  it('indexes without waiting for indexFlush once maxPendingIndex records wait', () => {
    const engine = new WriterEngine(db, { ...OPTIONS, maxPendingIndex: 8 });
    assert.equal(engine.handle(batch([records(1, 7)])).stats.indexedLsn, 0);
    assert.equal(engine.handle(batch([records(8, 9)])).stats.indexedLsn, 9);
  });
});
