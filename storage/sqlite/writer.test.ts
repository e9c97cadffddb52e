import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Code } from '../../common/errors';
import { migrate } from './schema';
import { WriterEngine, type AppendOp, type AppendOutcome, type WriteBatch, type WriterOptions } from './writer';

const OPTIONS: WriterOptions = { maxBatchAppends: 512, maxBatchMs: 1, maxSummaryBatch: 256, maxPendingSummaries: 50_000, maxCachedSeqs: 1000 };

/** A batch of n appends from s<i> to bob, each with a one-byte content. */
function appends(n: number, id = 1): WriteBatch {
  const ops: AppendOp[] = Array.from({ length: n }, (_, i) => ({
    k: 'append', msgId: `m${id}-${i}`, convId: `c${i}`, from: `s${i}`, to: 'bob', groupId: '', clientMsgId: `k${id}-${i}`,
    contentType: 'text/plain', sentAtMs: 1000, recipients: [`s${i}`, 'bob'], dedupWindowMs: 60_000, contentOff: i, contentLen: 1,
  }));
  return { id, ops, contents: new Uint8Array(n).fill(120).buffer };
}

describe('SQLite writer engine', () => {
  let db: Database.Database;
  beforeEach(() => {
    db = new Database(':memory:');
    migrate(db);
  });
  afterEach(() => db.close());

  it('ends a transaction at its time budget and commits the rest in the next', () => {
    let nowMs = 0;
    // Each item reads the clock once: 1 ms per item against a 3 ms budget.
    const engine = new WriterEngine(db, { ...OPTIONS, maxBatchMs: 3 }, () => nowMs++);
    const reply = engine.handle(appends(10));
    assert.ok(reply.stats.batches >= 3, `${reply.stats.batches} transactions`);
    assert.deepEqual(reply.outcomes.map((o) => o.ok && (o.value as AppendOutcome).seqs[1]), Array.from({ length: 10 }, (_, i) => i + 1));
    assert.equal(reply.contents.byteLength, 10, 'the contents buffer goes back');
  });

  it('fails every write of a connection that cannot write with INTERNAL, and takes no seq for them', () => {
    const engine = new WriterEngine(db, OPTIONS);
    db.pragma('query_only = 1');
    const failed = engine.handle(appends(5));
    assert.deepEqual(failed.outcomes.map((o) => !o.ok && o.code), Array(5).fill(Code.INTERNAL));
    const group = engine.handle({ id: 2, ops: [{ k: 'createGroup', group: { groupId: 'g', name: 'n', owner: 'o', members: [], createdAtMs: 1 }, members: [] }], contents: new ArrayBuffer(0) });
    assert.deepEqual(group.outcomes.map((o) => !o.ok && o.code), [Code.INTERNAL]);
    db.pragma('query_only = 0');
    const ok = engine.handle(appends(2, 3));
    assert.deepEqual(ok.outcomes.map((o) => o.ok && (o.value as AppendOutcome).seqs), [[1, 1], [1, 2]]);
  });
});
