import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { Code } from '../../common/errors';
import { newId, peerConvId } from '../../common/ids';
import type { AppendInput } from '../store';
import { decodeRecords } from './log-record';
import type { LogSink } from './log-files';
import { MessageLog } from './message-log';
import { migrate } from './schema';
import { prepareStatements } from './statements';

/** A log on a disk that fails the writes it is told to (the log's side of EIO or ENOSPC). */
class FlakySink implements LogSink {
  bytesWritten = 0;
  failNext = 0;
  readonly written: Buffer[] = [];
  write(bufs: Buffer[], _first: number, _last: number, done: (err: Error | null) => void): void {
    setImmediate(() => {
      if (this.failNext > 0) {
        this.failNext--;
        done(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
        return;
      }
      const b = Buffer.concat(bufs);
      this.written.push(b);
      this.bytesWritten += b.length;
      done(null);
    });
  }
  indexed(): void {}
  close(): void {}
}

function msg(from: string, to: string, over: Partial<AppendInput> = {}): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: Buffer.from('x'), sentAtMs: 1_000_000, recipients: [from, to], dedupWindowMs: 60_000, ...over,
  };
}

describe('message log', () => {
  let db: Database.Database;
  let sink: FlakySink;
  let log: MessageLog;
  const posted: { firstLsn: number; count: number }[] = [];
  beforeEach(() => {
    db = new Database(':memory:');
    migrate(db);
    sink = new FlakySink();
    posted.length = 0;
    log = new MessageLog(sink, prepareStatements(db), 1, { maxPendingAppends: 100, maxUnindexed: 10, maxCachedSeqs: 1000 }, 1 << 20,
      (firstLsn, count) => posted.push({ firstLsn, count }));
  });
  afterEach(() => db.close());

  it('fails every append not yet written when a write fails, and gives their seqs and lsns to the next ones', async () => {
    await log.append(msg('alice', 'bob'));
    sink.failNext = 1;
    const retry = msg('alice', 'bob');
    const failed = await Promise.allSettled([log.append(retry), log.append(msg('alice', 'bob'))]);
    for (const f of failed) {
      assert.equal(f.status, 'rejected');
      assert.equal(((f as PromiseRejectedResult).reason as { code?: number }).code, Code.UNAVAILABLE);
    }
    assert.equal(log.unindexed.size, 1, 'the failed messages are not held');
    assert.equal(log.unindexed.lastDurableUserSeq('bob'), 1);
    // The retry is a new message (nothing of the failed one is stored), at the next seq.
    const again = await log.append(retry);
    assert.deepEqual([again.duplicate, again.senderSeq, again.seqs.get('bob'), again.message.convSeq], [false, 2, 2, 2]);
    assert.deepEqual(posted, [{ firstLsn: 1, count: 1 }, { firstLsn: 2, count: 1 }]);
    const lsns = sink.written.flatMap((b) => decodeRecords(b).records.map((r) => r.lsn));
    assert.deepEqual(lsns, [1, 2], 'the file holds no gap');
    assert.equal(log.stats().failedWrites, 1);
  });

  it('answers a retry of a message whose write is under way once that write is done, as a duplicate', async () => {
    const first = msg('alice', 'bob');
    const [a, b] = await Promise.all([log.append(first), log.append({ ...first, msgId: newId() })]);
    assert.deepEqual([a.duplicate, b.duplicate, b.message.msgId, b.senderSeq], [false, true, a.message.msgId, a.senderSeq]);
    sink.failNext = 1;
    const second = msg('alice', 'bob');
    const both = await Promise.allSettled([log.append(second), log.append(second)]);
    assert.deepEqual(both.map((r) => r.status), ['rejected', 'rejected'], 'the duplicate fails with the write it waited for');
  });

  it('refuses appends with OVERLOADED once maxUnindexed messages wait for the index, and takes them again once indexed', async () => {
    for (let i = 0; i < 10; i++) await log.append(msg('alice', 'bob'));
    await assert.rejects(log.append(msg('alice', 'bob')), (e: unknown) => (e as { code?: number }).code === Code.OVERLOADED);
    log.indexed(5);
    // Seqs are kept in memory: the next one follows whatever left the overlay.
    assert.equal((await log.append(msg('alice', 'bob'))).seqs.get('bob'), 11);
  });
});
