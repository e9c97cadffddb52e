/**
 * The SQLite store's write side: every write the store makes runs here, in the order the store
 * posted it, on one connection. In a file-backed store this runs on the writer thread
 * (storage/sqlite/writer-worker.ts, its own connection) so no statement or commit of a write holds
 * the event loop; a ':memory:' store (one connection: another could not see it) runs it on the
 * loop. The store (storage/sqlite/store.ts) batches a tick's writes into one WriteBatch; the engine
 * answers each op with an outcome, after the transaction that wrote it committed.
 *
 * Seqs are kept in memory here (storage/sqlite/seqs.ts): the writer is the file's only writer,
 * and an append's dedup check (the unique dedup key) must run in the transaction that takes its
 * seqs, or a duplicate would leave a gap. Conversation summaries are written behind from here too
 * (storage/sqlite/summaries.ts), one bounded transaction per 'summaries' op the store posts.
 */
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import {
  BadRequestError, GroupFullError, GroupNotFoundError, IdempotencyConflictError, ImError, InternalError,
  OverloadedError, UnavailableError, type ImErrorClass,
} from '../../common/errors';
import type { GroupInfo, StoredMessage, UnreadInfo } from '../store';
import type { RestartCheckpoint, WriterCheckpointStats } from './checkpoint';
import { SeqCache } from './seqs';
import { Summaries, type SummaryEntry } from './summaries';
import { checkSameSend, sendDigest } from '../send-digest';
import { prepareStatements, toMessage, type Statements } from './statements';

/** An append as posted: the input without its content, which is `contentLen` bytes at `contentOff` of the batch's buffer. */
export interface AppendOp {
  k: 'append';
  msgId: string; convId: string; from: string; to: string; groupId: string; clientMsgId: string;
  contentType: string; sentAtMs: number; recipients: string[]; dedupWindowMs: number;
  contentOff: number; contentLen: number;
}

export type WriteOp =
  | AppendOp
  | { k: 'createGroup'; group: GroupInfo; members: string[] }
  | { k: 'addMembers'; groupId: string; uids: string[]; maxMembers: number }
  | { k: 'removeMembers'; groupId: string; uids: string[]; newOwner?: string }
  | { k: 'setCursor'; uid: string; convId: string; seq: number }
  /** Before a read of uid's summaries: any the inbox is ahead of, and every queued one, are written. */
  | { k: 'summarize'; uid: string }
  /** One bounded write-behind transaction of queued summaries. */
  | { k: 'summaries' }
  /** Test hook (fault drills): the engine throws out of its handler, as a crashing writer would. */
  | { k: 'crash' };

/** What an append answers: seqs in the order of its recipients; a duplicate carries the accepted message. */
export interface AppendOutcome {
  convSeq: number;
  senderSeq: number;
  seqs: number[];
  duplicate?: StoredMessage;
}

export type OpOutcome = { ok: true; value: unknown } | { ok: false; code: number; message: string };

export interface WriteBatch {
  id: number;
  ops: WriteOp[];
  /** Every append's content, packed: one copy on the loop, moved (transferred) to the writer thread. */
  contents: ArrayBuffer;
}

export interface WriterStats {
  batches: number;
  pendingSummaries: number;
  rowsWritten: { messages: number; inbox: number; userConvs: number; unreadMarks: number };
  longestAppendBatchMs: number;
  appendBatchesOver5Ms: number;
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
  maxBatchAppends: number;
  maxBatchMs: number;
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

/** A write failed inside an append transaction without savepoints: it is rolled back and re-run with them. */
class WriteFailed extends Error {
  constructor(cause: unknown) {
    super('append write failed', { cause });
  }
}

/** Marks the engine's own fault drill, so it escapes the per-op error handling. */
class WriterCrash extends Error {}

type AppendResultOf = { ok: true; value: AppendOutcome } | { ok: false; error: ImError };

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

export class WriterEngine {
  private readonly sql: Statements;
  private readonly userSeqs: SeqCache;
  private readonly convSeqs: SeqCache;
  private readonly summaries: Summaries;
  private readonly appendOne: (input: AppendOp, content: Buffer) => AppendOutcome;
  private readonly appendTx: (ops: AppendOp[], contents: Buffer, savepoints: boolean) => AppendResultOf[];
  /** Summary entries of the append transaction being built; queued once it commits. */
  private batchEntries: SummaryEntry[] = [];
  private readonly stats: WriterStats;

  constructor(
    private readonly db: Database.Database,
    private readonly options: WriterOptions,
    /** Milliseconds for the transaction time budget; unit tests inject one. */
    private readonly clock: () => number = () => performance.now(),
    /** A file-backed store's checkpoint before the log starts over (see restartCheckpoint). */
    private readonly checkpoints?: RestartCheckpoint,
  ) {
    this.sql = prepareStatements(db);
    this.summaries = new Summaries(db, { maxFlushEntries: options.maxSummaryBatch });
    this.convSeqs = new SeqCache((convId) => this.sql.convMaxSeq.get(convId)?.s ?? 0, options.maxCachedSeqs);
    this.userSeqs = new SeqCache((uid) => {
      const max = this.sql.userMaxSeq.get(uid)?.s ?? 0;
      this.summaries.noteLoaded(uid, max);
      return max;
    }, options.maxCachedSeqs);
    // A nested better-sqlite3 transaction is a SAVEPOINT: one failing item rolls back alone.
    this.appendOne = db.transaction((op: AppendOp, content: Buffer) => this.appendSync(op, content));
    this.appendTx = db.transaction((ops: AppendOp[], contents: Buffer, savepoints: boolean) => this.appendBatchSync(ops, contents, savepoints));
    this.stats = {
      batches: 0, pendingSummaries: 0, rowsWritten: { messages: 0, inbox: 0, userConvs: 0, unreadMarks: 0 },
      longestAppendBatchMs: 0, appendBatchesOver5Ms: 0, longestSummaryBatchMs: 0, summaryBatches: 0, summaryBatchesOver5Ms: 0,
    };
  }

  /** Runs a batch's ops in order; consecutive appends share transactions. Throws only for the 'crash' drill. */
  handle(batch: WriteBatch): WriteReply {
    const contents = Buffer.from(batch.contents);
    const outcomes: OpOutcome[] = [];
    const ops = batch.ops;
    for (let i = 0; i < ops.length;) {
      const op = ops[i];
      if (op.k !== 'append') {
        outcomes.push(this.runOther(op));
        i++;
        continue;
      }
      let end = i;
      while (end < ops.length && ops[end].k === 'append') end++;
      this.runAppends(ops.slice(i, end) as AppendOp[], contents, outcomes);
      i = end;
    }
    return { id: batch.id, outcomes, stats: this.snapshot(), contents: batch.contents };
  }

  /** Between two batches, when the checkpoint worker says the log is due to start over: copies the rest of it. */
  restartCheckpoint(): void {
    this.checkpoints?.run();
  }

  /** Writes every queued summary (a clean close leaves nothing to rebuild). */
  flushAll(): void {
    this.summaries.flushAll();
  }

  private snapshot(): WriterStats {
    const s = this.summaries;
    return {
      ...this.stats, pendingSummaries: s.pending,
      rowsWritten: { ...this.stats.rowsWritten, ...s.rowsWritten },
      longestSummaryBatchMs: s.longestFlushMs, summaryBatches: s.flushes, summaryBatchesOver5Ms: s.flushesOver5Ms,
      checkpoints: this.checkpoints && { ...this.checkpoints.stats },
    };
  }

  private runOther(op: Exclude<WriteOp, AppendOp>): OpOutcome {
    if (op.k === 'crash') throw new WriterCrash('writer fault drill');
    try {
      return { ok: true, value: this.other(op) };
    } catch (err) {
      return failure(err);
    }
  }

  private other(op: Exclude<WriteOp, AppendOp | { k: 'crash' }>): unknown {
    const s = this.sql;
    switch (op.k) {
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
        this.summaries.flushSome();
        return null;
    }
  }

  private runAppends(ops: AppendOp[], contents: Buffer, outcomes: OpOutcome[]): void {
    // Bounded memory: summaries that fell this far behind are written before more appends.
    while (this.summaries.pending >= this.options.maxPendingSummaries && this.summaries.flushSome());
    for (let done = 0; done < ops.length;) {
      const chunk = ops.slice(done, done + this.options.maxBatchAppends);
      let out: AppendResultOf[];
      try {
        out = this.runAppendTx(chunk, contents);
      } catch (err) {
        // The transaction itself failed (its commit, the disk): every item of it fails, none half-written.
        const f = failure(err);
        out = [];
        for (const _ of chunk) outcomes.push(f);
        done += chunk.length;
        continue;
      }
      for (const r of out) outcomes.push(r.ok ? r : failure(r.error));
      done += out.length;
    }
  }

  /** One append transaction (retried with savepoints when a write failed part-way); returns a prefix's outcomes. */
  private runAppendTx(ops: AppendOp[], contents: Buffer): AppendResultOf[] {
    const t0 = performance.now();
    let out: AppendResultOf[];
    try {
      out = this.tryAppendTx(ops, contents, false);
    } catch (err) {
      if (!(err instanceof WriteFailed)) throw err;
      // Rare: a write failed part-way. Again, with a savepoint per item so only that one fails.
      out = this.tryAppendTx(ops, contents, true);
    }
    const tookMs = performance.now() - t0;
    const st = this.stats;
    st.longestAppendBatchMs = Math.max(st.longestAppendBatchMs, tookMs);
    if (tookMs > 5) st.appendBatchesOver5Ms++;
    st.batches++;
    for (const r of out) {
      if (r.ok && !r.value.duplicate) {
        st.rowsWritten.messages++;
        st.rowsWritten.inbox += r.value.seqs.length;
      }
    }
    this.summaries.add(this.batchEntries);
    this.batchEntries = [];
    return out;
  }

  /** One append transaction; on any failure of it, every seq it took is forgotten. */
  private tryAppendTx(ops: AppendOp[], contents: Buffer, savepoints: boolean): AppendResultOf[] {
    this.batchEntries = [];
    try {
      return this.appendTx(ops, contents, savepoints);
    } catch (err) {
      // Rolled back: forgetting keys it did not touch is harmless.
      this.forgetSeqs(ops);
      this.batchEntries = [];
      throw err;
    }
  }

  private appendBatchSync(ops: AppendOp[], contents: Buffer, savepoints: boolean): AppendResultOf[] {
    // Past the budget the rest go to the next transaction: a checkpoint's quiet window waits for
    // the open one, and acks of this one are not held back by items after it.
    const deadline = this.clock() + this.options.maxBatchMs;
    const out: AppendResultOf[] = [];
    for (const op of ops) {
      if (out.length > 0 && this.clock() > deadline) break;
      const mark = this.batchEntries.length;
      const content = contents.subarray(op.contentOff, op.contentOff + op.contentLen);
      try {
        // A savepoint is two more statements per item, so the first attempt goes without.
        out.push({ ok: true, value: savepoints ? this.appendOne(op, content) : this.appendSync(op, content) });
      } catch (err) {
        // Refusals (ImError) come before the first write; anything else may leave half an item.
        if (!savepoints && !(err instanceof ImError)) throw new WriteFailed(err);
        // Its savepoint rolled back (or it wrote nothing): so do its seqs and summary entries.
        this.forgetSeqs([op]);
        this.batchEntries.length = mark;
        out.push({ ok: false, error: err instanceof ImError ? err : new InternalError(`append failed: ${String(err)}`, { cause: err }) });
      }
    }
    return out;
  }

  private forgetSeqs(ops: readonly AppendOp[]): void {
    for (const op of ops) {
      this.convSeqs.forget([op.convId]);
      this.userSeqs.forget(op.recipients);
    }
  }

  private appendSync(op: AppendOp, content: Buffer): AppendOutcome {
    // Nearly every send is new: its insert is the duplicate check (the dedup key is unique), so
    // the lookup below runs only when that key already exists.
    const fresh = this.writeMessage(op, content, 0, this.sql.messagePutNew);
    if (fresh) return fresh;
    const prior = this.sql.dedupGet.get(op.from, op.clientMsgId);
    if (!prior) throw new InternalError(`append: message row of ${op.msgId} refused, and no earlier send of it`);
    if (prior.dedup_until_ms > op.sentAtMs) {
      // The stored message is the accepted send: its digest is recomputed from it, not stored.
      const message = toMessage(prior);
      checkSameSend(sendDigest(message), { ...op, content });
      return { convSeq: message.convSeq, senderSeq: prior.sender_seq, seqs: [], duplicate: message };
    }
    // Past its window the id is free again, as a new generation of the key.
    return this.writeMessage(op, content, prior.dedup_gen + 1, this.sql.messagePut)!;
  }

  /** Takes the seqs and writes the message and its inbox rows; undefined (seqs handed back) when `put` wrote nothing. */
  private writeMessage(op: AppendOp, content: Buffer, dedupGen: number, put: Statements['messagePut']): AppendOutcome | undefined {
    const convSeq = this.convSeqs.next(op.convId);
    const seqs = op.recipients.map((uid) => this.userSeqs.next(uid));
    const senderSeq = seqs[op.recipients.lastIndexOf(op.from)];
    const written = put.run(op.convId, convSeq, op.msgId, op.from, op.to, op.groupId, op.clientMsgId,
      op.contentType, content, op.sentAtMs, senderSeq, op.sentAtMs + op.dedupWindowMs, dedupGen).changes;
    if (written === 0) {
      this.convSeqs.giveBack(op.convId, convSeq);
      for (let i = seqs.length - 1; i >= 0; i--) this.userSeqs.giveBack(op.recipients[i], seqs[i]);
      return undefined;
    }
    op.recipients.forEach((uid, i) => {
      this.sql.inboxPut.run(uid, seqs[i], op.convId, convSeq, op.from);
      this.batchEntries.push({ uid, seq: seqs[i], convId: op.convId, from: op.from });
    });
    return { convSeq, senderSeq, seqs };
  }

  private summarizeFor(uid: string): void {
    this.userSeqs.current(uid);
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
