/**
 * The SQLite store's write side: every write to the tables runs here, in the order the store
 * posted it, on one connection. In a file-backed store this runs on the writer thread
 * (storage/sqlite/writer-worker.ts, its own connection) so no statement or commit of a write holds
 * the event loop; a ':memory:' store (one connection: another could not see it) runs it on the
 * loop. The store (storage/sqlite/store.ts) batches a tick's writes into one WriteBatch; the engine
 * answers each op with an outcome, after the transaction that wrote it committed.
 *
 * Messages are acknowledged by the message log (storage/sqlite/message-log.ts), not here: the
 * store posts each log write's records as an 'index' op, and the engine writes them into the
 * tables behind, many at once (storage/sqlite/log-indexer.ts), when the store asks ('indexFlush',
 * every indexFlushMs), when maxPendingIndex records wait, and before anything that reads the
 * summaries. Conversation summaries follow the index (storage/sqlite/summaries.ts).
 */
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import {
  BadRequestError, GroupFullError, GroupNotFoundError, IdempotencyConflictError, ImError, InternalError,
  OverloadedError, UnavailableError, type ImErrorClass,
} from '../../common/errors';
import type { GroupInfo, UnreadInfo } from '../store';
import type { RestartCheckpoint, WriterCheckpointStats } from './checkpoint';
import { SeqCache } from './seqs';
import { Summaries } from './summaries';
import { decodeRecords, type LogRecord } from './log-record';
import { LogIndexer } from './log-indexer';
import { prepareStatements, type Statements } from './statements';

/**
 * Records of the message log to index: `count` records from `firstLsn` on, encoded
 * (storage/sqlite/log-record.ts) as `contentLen` bytes at `contentOff` of the batch's buffer.
 */
export interface IndexOp {
  k: 'index';
  firstLsn: number;
  count: number;
  contentOff: number;
  contentLen: number;
}

export type WriteOp =
  | IndexOp
  /** Indexes every record received so far (bounded transactions of maxIndexBatch records each). */
  | { k: 'indexFlush' }
  | { k: 'createGroup'; group: GroupInfo; members: string[] }
  | { k: 'addMembers'; groupId: string; uids: string[]; maxMembers: number }
  | { k: 'removeMembers'; groupId: string; uids: string[]; newOwner?: string }
  | { k: 'setCursor'; uid: string; convId: string; seq: number }
  /** Before a read of uid's summaries: every received record is indexed, and every queued summary written. */
  | { k: 'summarize'; uid: string }
  /** One bounded write-behind transaction of queued summaries (of indexed messages). */
  | { k: 'summaries' }
  /** Test hook (fault drills): the engine throws out of its handler, as a crashing writer would. */
  | { k: 'crash' };

export type OpOutcome = { ok: true; value: unknown } | { ok: false; code: number; message: string };

export interface WriteBatch {
  id: number;
  ops: WriteOp[];
  /** Every op's bytes (the index ops' records), packed: one copy on the loop, moved (transferred) to the writer thread. */
  contents: ArrayBuffer;
}

export interface WriterStats {
  /** Index transactions committed so far. */
  batches: number;
  /** The last log record indexed (every record up to it is in the tables), and records received and not yet indexed. */
  indexedLsn: number;
  pendingIndex: number;
  pendingSummaries: number;
  rowsWritten: { messages: number; inbox: number; userConvs: number; unreadMarks: number };
  /** Records the index already held (a replay or a resubmission after a writer restart that overlapped): not written again. */
  skippedRecords: number;
  longestIndexBatchMs: number;
  indexBatchesOver50Ms: number;
  longestSummaryBatchMs: number;
  summaryBatches: number;
  summaryBatchesOver5Ms: number;
  /** The writer's own WAL checkpoints before the log starts over (a file-backed store's; none for ':memory:'). */
  checkpoints?: WriterCheckpointStats;
}

export interface WriteReply {
  id: number;
  outcomes: OpOutcome[];
  stats: WriterStats;
  /** The batch's contents buffer, handed back (transferred) for the next batch to reuse. */
  contents: ArrayBuffer;
}

export interface WriterOptions {
  /** Rows (a message's, and one per recipient) one index transaction writes at most, in whole messages. */
  maxIndexBatch: number;
  /** Records received and not yet indexed past which the writer indexes them without waiting for an indexFlush. */
  maxPendingIndex: number;
  maxSummaryBatch: number;
  maxPendingSummaries: number;
  maxCachedSeqs: number;
}

export interface ConnectionOptions {
  busyTimeoutMs: number;
  cacheSizeKiB: number;
  /** The store's walRestartFrames: the WAL file is kept a quarter above it (journal_size_limit). */
  walRestartFrames: number;
}

/** Opens a connection to the store's file with the store's settings (the loop's reader and the writer thread alike). */
export function openConnection(file: string, options: ConnectionOptions): Database.Database {
  const db = new Database(file, { timeout: options.busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
    // WAL: readers never block the writer and a commit is one sequential append to the log.
    db.pragma('journal_mode = WAL');
    // NORMAL in WAL mode fsyncs at checkpoints, not at every commit. A process crash loses
    // nothing committed; a power loss or kernel crash can lose the last few commits but never
    // corrupts the file. Those lost messages lose their dedup records with them, so a client
    // that retries (it got no ack, or its ack raced the crash) re-creates them rather than
    // seeing a phantom duplicate; their seqs are reissued and sync still returns a gap-free
    // timeline. FULL would add an fsync per batch, a cost the single-machine default does not
    // pay; operators who need power-loss durability run the Cassandra store.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = OFF');
    // Checkpoints run on their own worker and, before the log starts over, between the writer's
    // batches (storage/sqlite/checkpoint.ts), never inside a commit.
    db.pragma('wal_autocheckpoint = 0');
    // After a checkpoint lets the WAL restart, its file is cut back to this size, a quarter above
    // walRestartFrames of 4 KiB pages (640 MiB for the default 512 MiB), so a restart reuses the
    // file rather than cut and regrow it.
    db.pragma(`journal_size_limit = ${Math.ceil(options.walRestartFrames * 4096 * 1.25)}`);
    db.pragma(`cache_size = -${options.cacheSizeKiB}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** Marks the engine's own fault drill, so it escapes the per-op error handling. */
class WriterCrash extends Error {}

const ERROR_CLASSES = new Map<number, ImErrorClass<number>>([
  BadRequestError, GroupFullError, GroupNotFoundError, IdempotencyConflictError, InternalError, OverloadedError, UnavailableError,
].map((cls) => [cls.code, cls]));

/** An outcome's error as the store's error class of its code (ImError for any other code). */
export function errorOf(code: number, message: string): ImError {
  const cls = ERROR_CLASSES.get(code);
  return cls ? new cls(message) : new ImError(code, message);
}

function failure(err: unknown): OpOutcome {
  const e = err instanceof ImError ? err : new InternalError(`sqlite write failed: ${String(err)}`);
  return { ok: false, code: e.code, message: e.message };
}

/** Records of one index op, decoded (their contents are views into a copy the engine owns). */
interface Received {
  firstLsn: number;
  records: LogRecord[];
}

export class WriterEngine {
  private readonly sql: Statements;
  private readonly index: LogIndexer;
  /**
   * Users whose summaries were checked against their inbox since the engine started: the first
   * record indexed for a user loads its newest inbox seq, and Summaries.noteLoaded schedules a
   * re-read of the inbox when the summaries lag it (after a crash or a replay).
   */
  private readonly seenUsers: SeqCache;
  private readonly summaries: Summaries;
  private received: Received[] = [];
  private receivedRecords = 0;
  private readonly stats: Omit<WriterStats, 'indexedLsn' | 'pendingIndex' | 'pendingSummaries' | 'summaryBatches' | 'longestSummaryBatchMs' | 'summaryBatchesOver5Ms'>;

  constructor(
    private readonly db: Database.Database,
    private readonly options: WriterOptions,
    /** A file-backed store's checkpoint before the log starts over (see restartCheckpoint). */
    private readonly checkpoints?: RestartCheckpoint,
  ) {
    this.sql = prepareStatements(db);
    this.summaries = new Summaries(db, { maxFlushEntries: options.maxSummaryBatch });
    this.seenUsers = new SeqCache((uid) => {
      const max = this.sql.userMaxSeq.get(uid)?.s ?? 0;
      this.summaries.noteLoaded(uid, max);
      return max;
    }, options.maxCachedSeqs);
    this.index = new LogIndexer(db, (uid) => this.seenUsers.current(uid));
    this.stats = {
      batches: 0, rowsWritten: { messages: 0, inbox: 0, userConvs: 0, unreadMarks: 0 }, skippedRecords: 0,
      longestIndexBatchMs: 0, indexBatchesOver50Ms: 0,
    };
  }

  /** Runs a batch's ops in order. Throws only for the 'crash' drill. */
  handle(batch: WriteBatch): WriteReply {
    const contents = Buffer.from(batch.contents);
    const outcomes: OpOutcome[] = [];
    for (const op of batch.ops) {
      if (op.k === 'crash') throw new WriterCrash('writer fault drill');
      try {
        outcomes.push({ ok: true, value: op.k === 'index' ? this.receive(op, contents) : this.other(op) });
      } catch (err) {
        outcomes.push(failure(err));
      }
    }
    return { id: batch.id, outcomes, stats: this.snapshot(), contents: batch.contents };
  }

  /** Between two batches, when the checkpoint worker says the log is due to start over: copies the rest of it. */
  restartCheckpoint(): void {
    this.checkpoints?.run();
  }

  /** Indexes every received record and writes every queued summary (a clean close leaves nothing to replay or rebuild). */
  flushAll(): void {
    this.indexAll();
    this.summaries.flushAll();
  }

  private snapshot(): WriterStats {
    const s = this.summaries;
    return {
      ...this.stats, indexedLsn: this.index.indexedLsn, pendingIndex: this.receivedRecords, pendingSummaries: s.pending,
      rowsWritten: { ...this.stats.rowsWritten, ...s.rowsWritten },
      longestSummaryBatchMs: s.longestFlushMs, summaryBatches: s.flushes, summaryBatchesOver5Ms: s.flushesOver5Ms,
      checkpoints: this.checkpoints && { ...this.checkpoints.stats },
    };
  }

  /** Keeps an index op's records (copied: the batch buffer goes back) until the next index transaction. */
  private receive(op: IndexOp, contents: Buffer): null {
    const bytes = Buffer.from(contents.subarray(op.contentOff, op.contentOff + op.contentLen));
    const { records } = decodeRecords(bytes);
    if (records.length !== op.count || (records.length > 0 && records[0].lsn !== op.firstLsn)) {
      throw new InternalError(`index: ${op.count} records from lsn ${op.firstLsn} posted, ${records.length} decoded`);
    }
    this.received.push({ firstLsn: op.firstLsn, records });
    this.receivedRecords += records.length;
    if (this.receivedRecords >= this.options.maxPendingIndex) this.indexAll();
    return null;
  }

  /**
   * Writes the received records, in log order, in transactions of about maxIndexBatch rows.
   * Records at or below the indexed lsn are skipped; records past a gap (a resubmission after a
   * writer restart that has not arrived yet) wait for it.
   */
  private indexAll(): void {
    if (this.received.length === 0) return;
    this.received.sort((a, b) => a.firstLsn - b.firstLsn);
    let next = this.index.indexedLsn + 1;
    let run: LogRecord[] = [];
    let rows = 0;
    let used = 0;
    for (; used < this.received.length; used++) {
      const { records } = this.received[used];
      if (records.length > 0 && records[0].lsn > next) break;
      for (const r of records) {
        if (r.lsn < next) {
          this.stats.skippedRecords++;
          continue;
        }
        run.push(r);
        rows += 1 + r.recipients.length;
        next = r.lsn + 1;
        if (rows >= this.options.maxIndexBatch) {
          this.writeIndex(run);
          run = [];
          rows = 0;
        }
      }
    }
    if (run.length > 0) this.writeIndex(run);
    const left = this.received.slice(used);
    this.received = left;
    this.receivedRecords = left.reduce((n, r) => n + r.records.length, 0);
  }

  private writeIndex(records: LogRecord[]): void {
    // Bounded memory: summaries that fell this far behind are written first.
    while (this.summaries.pending >= this.options.maxPendingSummaries && this.summaries.flushSome());
    const t0 = performance.now();
    const written = this.index.write(records);
    const tookMs = performance.now() - t0;
    const st = this.stats;
    st.batches++;
    st.longestIndexBatchMs = Math.max(st.longestIndexBatchMs, tookMs);
    if (tookMs > 50) st.indexBatchesOver50Ms++;
    st.rowsWritten.messages += written.messages;
    st.rowsWritten.inbox += written.inbox;
    this.summaries.add(written.entries);
  }

  private other(op: Exclude<WriteOp, IndexOp | { k: 'crash' }>): unknown {
    const s = this.sql;
    switch (op.k) {
      case 'indexFlush':
        this.indexAll();
        return null;
      case 'createGroup': {
        const { group, members } = op;
        return this.db.transaction(() => {
          if (s.groupGet.get(group.groupId)) throw new BadRequestError(`group ${group.groupId} already exists`);
          s.groupPut.run(group.groupId, group.name, group.owner, group.createdAtMs, members.length + 1);
          members.forEach((uid, i) => s.memberPut.run(group.groupId, uid, i + 1));
          return this.readGroup(group.groupId)!;
        }).immediate();
      }
      case 'addMembers':
        return this.db.transaction(() => {
          const group = this.mustReadGroup(op.groupId);
          const current = new Set(group.members);
          const added = [...new Set(op.uids)].filter((uid) => !current.has(uid));
          if (current.size + added.length > op.maxMembers) {
            throw new GroupFullError(`group ${op.groupId} has ${current.size} members; adding ${added.length} exceeds ${op.maxMembers}`);
          }
          for (const uid of added) {
            const { join_order } = s.groupTakeJoin.get(op.groupId)!;
            s.memberPut.run(op.groupId, uid, join_order);
          }
          return added.length === 0 ? group : this.readGroup(op.groupId)!;
        }).immediate();
      case 'removeMembers':
        return this.db.transaction(() => {
          const group = this.mustReadGroup(op.groupId);
          const removing = new Set(op.uids);
          if (op.newOwner !== undefined && (removing.has(op.newOwner) || !group.members.includes(op.newOwner))) {
            throw new BadRequestError(`new owner ${op.newOwner} is not a remaining member of group ${op.groupId}`);
          }
          for (const uid of removing) s.memberDelete.run(op.groupId, uid);
          if (op.newOwner !== undefined) s.groupSetOwner.run(op.newOwner, op.groupId);
          return this.readGroup(op.groupId)!;
        }).immediate();
      case 'setCursor':
        this.summarizeFor(op.uid);
        return this.db.transaction(() => {
          s.cursorPut.run(op.uid, op.convId, op.seq);
          return unreadOne(s, op.uid, op.convId);
        }).immediate();
      case 'summarize':
        this.summarizeFor(op.uid);
        return null;
      case 'summaries':
        // Only what is indexed is queued: indexing here would cut the index's batches short.
        this.summaries.flushSome();
        return null;
    }
  }

  private summarizeFor(uid: string): void {
    this.indexAll();
    this.seenUsers.current(uid);
    this.summaries.flushAll();
  }

  private readGroup(groupId: string): GroupInfo | undefined {
    return readGroup(this.sql, groupId);
  }

  private mustReadGroup(groupId: string): GroupInfo {
    const g = this.readGroup(groupId);
    if (!g) throw new GroupNotFoundError(`group ${groupId} not found`);
    return g;
  }
}

export function readGroup(sql: Statements, groupId: string): GroupInfo | undefined {
  const g = sql.groupGet.get(groupId);
  if (!g) return undefined;
  return {
    groupId: g.group_id, name: g.name, owner: g.owner, createdAtMs: g.created_at_ms,
    members: sql.membersGet.all(groupId).map((m) => m.uid),
  };
}

/** uid's unread count, read cursor and newest seq in one conversation. */
export function unreadOne(sql: Statements, uid: string, convId: string): UnreadInfo {
  const readSeq = sql.cursorGet.get(uid, convId)?.read_seq ?? 0;
  const lastSeq = sql.userConvLastSeq.get(uid, convId)?.last_seq ?? 0;
  const count = lastSeq > readSeq ? sql.unreadCount.get(uid, convId, readSeq)!.n : 0;
  return { convId, count, readSeq, lastSeq };
}
