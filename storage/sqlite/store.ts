/**
 * The embedded Store: one SQLite file through better-sqlite3. The default for a single machine
 * (`npm start`) and the developer loop; Cassandra takes over in distributed mode.
 *
 * Reads run on the event loop, on this connection (better-sqlite3 is synchronous; a read is a
 * few index probes). Every write runs on the writer thread (storage/sqlite/writer*.ts, its own
 * connection): a tick's writes are posted as one batch, run in the order they were made, and
 * each call resolves after its transaction committed, so a read after an acknowledged write
 * sees it (WAL: readers see every commit). No write statement, commit or WAL checkpoint
 * (storage/sqlite/checkpoint.ts) runs on the loop. A ':memory:' store cannot share its database
 * with a second connection, so its writer runs on the loop (tests and throw-away stores).
 *
 * This process is the file's only writer, which is what lets an append write only what must be
 * durable before its ack (storage/sqlite/schema-v4.ts): seqs come from the writer's memory
 * (storage/sqlite/seqs.ts), and conversation summaries follow in their own batches
 * (storage/sqlite/summaries.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { BadRequestError, UnavailableError } from '../../common/errors';
import { ConfigError } from '../../common/config';
import type { AppendInput, AppendResult, GroupInfo, InboxEntry, Page, Store, StoredMessage, UnreadInfo } from '../store';
import { migrate } from './schema';
import { Checkpointer, emptyWriterCheckpointStats, type CheckpointStats } from './checkpoint';
import { SqliteWriterLock } from './lock';
import { prepareStatements, toInboxEntry, toMessage, type Statements } from './statements';
import { openConnection, readGroup, unreadOne, WriterEngine, type AppendOutcome, type WriterOptions, type WriterStats } from './writer';
import { inThreadLink, workerLink, WriterClient } from './writer-client';
import { validateAppend, validateLimit, validateMaxMembers, validateNewGroup, validateSeq, validateUids } from '../validate';

export interface SqliteStoreOptions {
  /** Database file; ':memory:' for a throw-away store. The parent directory is created. */
  path: string;
  /** How long a statement waits for another process's lock before failing. Default 5000. */
  busyTimeoutMs?: number;
  /** Appends committed in one transaction at most. Default 512. */
  maxBatchAppends?: number;
  /**
   * Bytes of message content posted to the writer in one batch at most (at least one message):
   * the loop copies them into the buffer it hands over, about 1 ms per MiB. A batch is committed
   * in its own transactions. Default 1048576.
   */
  maxBatchBytes?: number;
  /**
   * Time one append transaction's statements may take on the writer thread before it stops taking
   * items (the rest go in the next). Its commit then writes the pages they dirtied, about three
   * times as much again, so 1 ms of statements is a transaction of ~4 ms: the most an ack waits
   * behind other items. Default 1.
   */
  maxBatchMs?: number;
  /** Writes (appends and the rest) queued or in flight to the writer; beyond it a write fails with OverloadedError. Default 20000. */
  maxPendingAppends?: number;
  /** Summary entries (one per recipient of a message) one write-behind transaction writes at most. Default 256. */
  maxSummaryBatch?: number;
  /** How long summaries wait to be written behind, collecting entries. Default 1000. */
  summaryFlushMs?: number;
  /** Queued summary entries beyond which an append batch first writes some of them. Default 50000. */
  maxPendingSummaries?: number;
  /** User inboxes and conversations whose newest seq is kept in memory. Default 1000000. */
  maxCachedSeqs?: number;
  /** How often the checkpoint worker copies the WAL into the database file. Default 200. */
  checkpointIntervalMs?: number;
  /**
   * WAL length in pages past which the log is made to start over (the writer copies the last few
   * ms of it, holding its writes meanwhile). Default 131072 (512 MiB, under journal_size_limit):
   * at 32768 (128 MiB) the log restarted about twice a second at half the 1:1 max rate, and 1:1
   * embedded ran at 88-90 µs per send against 77 (BENCHMARKS.md, 2026-12-06 14:29). The WAL file
   * stays at up to this size on disk.
   */
  walRestartFrames?: number;
  /** SQLite page cache, KiB. Default 65536: the hot ends of the indexes stay in memory as the file grows. */
  cacheSizeKiB?: number;
  /** Conversations unread() without convIds looks at, and accepts with them. Default 1000. */
  maxUnreadConvs?: number;
  /** Items one sync/history page returns at most (hasMore tells the caller to continue). Default 1000. */
  maxPageItems?: number;
}

type ResolvedOptions = Required<SqliteStoreOptions>;

export interface AppendStats {
  batches: number;
  pending: number;
  pendingSummaries: number;
  rowsWritten: { messages: number; inbox: number; userConvs: number; unreadMarks: number };
  /** The longest append transaction and write-behind transaction so far, ms of wall time on the writer (not the loop, except for ':memory:'). */
  longestAppendBatchMs: number;
  longestSummaryBatchMs: number;
  /** Transactions so far, and those that took over 5 ms (a busy machine's preemption counts too). */
  appendBatchesOver5Ms: number;
  summaryBatches: number;
  summaryBatchesOver5Ms: number;
  checkpoints?: CheckpointStats;
  /** Writer threads started again after one failed. */
  writerRestarts: number;
}

const DEFAULTS: Omit<ResolvedOptions, 'path'> = {
  busyTimeoutMs: 5000,
  maxBatchAppends: 512,
  maxBatchBytes: 1 << 20,
  maxBatchMs: 1,
  maxPendingAppends: 20000,
  maxSummaryBatch: 256,
  summaryFlushMs: 1000,
  maxPendingSummaries: 50000,
  maxCachedSeqs: 1_000_000,
  checkpointIntervalMs: 200,
  walRestartFrames: 131072,
  cacheSizeKiB: 65536,
  maxUnreadConvs: 1000,
  maxPageItems: 1000,
};

function resolveOptions(options: SqliteStoreOptions): ResolvedOptions {
  if (typeof options.path !== 'string' || options.path === '') {
    throw new ConfigError('path', 'expected a file path or ":memory:"');
  }
  const out: ResolvedOptions = { ...DEFAULTS, ...stripUndefined(options) } as ResolvedOptions;
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    const v = out[key];
    const min = key === 'busyTimeoutMs' ? 0 : 1;
    if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(key, `must be an integer >= ${min}, got ${v}`);
  }
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export class SqliteStore implements Store {
  readonly path: string;
  /** The loop's connection: reads only. */
  private readonly db: Database.Database;
  private readonly sql: Statements;
  private readonly options: ResolvedOptions;
  private readonly writer: WriterClient;
  private readonly checkpointer: Checkpointer | undefined;
  private writerStats: WriterStats | undefined;
  private summaryFlushScheduled = false;
  private closed = false;
  /** This process is the file's only writer: the seqs its writer keeps in memory are the file's. */
  private readonly writerLock: SqliteWriterLock;

  static open(options: SqliteStoreOptions): SqliteStore {
    return new SqliteStore(resolveOptions(options));
  }

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.path = options.path;
    if (options.path !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(options.path)), { recursive: true });
    this.writerLock = SqliteWriterLock.acquire(options.path);
    const connection = { busyTimeoutMs: options.busyTimeoutMs, cacheSizeKiB: options.cacheSizeKiB, walRestartFrames: options.walRestartFrames };
    try {
      this.db = openConnection(options.path, connection);
    } catch (err) {
      this.writerLock.release();
      throw err;
    }
    try {
      // Before the writer opens its connection: it finds the schema in place.
      migrate(this.db);
      this.sql = prepareStatements(this.db);
    } catch (err) {
      this.db.close();
      this.writerLock.release();
      throw err;
    }
    const writerOptions: WriterOptions = {
      maxBatchAppends: options.maxBatchAppends, maxBatchMs: options.maxBatchMs, maxSummaryBatch: options.maxSummaryBatch,
      maxPendingSummaries: options.maxPendingSummaries, maxCachedSeqs: options.maxCachedSeqs,
    };
    const inMemory = options.path === ':memory:';
    const checkpointer = inMemory ? undefined : new Checkpointer({
      file: options.path, intervalMs: options.checkpointIntervalMs, restartFrames: options.walRestartFrames,
    });
    this.checkpointer = checkpointer;
    this.writer = new WriterClient({
      name: 'sqlite store',
      maxPending: options.maxPendingAppends,
      maxBatch: options.maxBatchAppends,
      maxBatchBytes: options.maxBatchBytes,
      start: (on) => {
        if (checkpointer) {
          // Each writer thread gets its own port to the checkpoint worker (see checkpoint.ts).
          const { port1, port2 } = new MessageChannel();
          checkpointer.connectWriter(port1);
          return workerLink({ path: options.path, connection, writer: writerOptions, checkpointPort: port2 }, on, [port2]);
        }
        const engine = new WriterEngine(this.db, writerOptions);
        return inThreadLink((b) => engine.handle(b), () => engine.flushAll(), on);
      },
      onStats: (stats) => {
        this.writerStats = stats;
        if (stats.pendingSummaries > 0) this.scheduleSummaryFlush();
      },
    });
  }

  /**
   * Append transactions committed so far, writes waiting for one, summary entries not yet
   * written, rows written per table, and the writer's WAL checkpoint counts (for metrics, tests and
   * the bench, which turns rows into B-tree entries: see storage/sqlite/schema-v4.ts).
   */
  appendStats(): AppendStats {
    const w = this.writerStats;
    return {
      batches: w?.batches ?? 0, pending: this.writer.pending, pendingSummaries: w?.pendingSummaries ?? 0,
      rowsWritten: { ...(w?.rowsWritten ?? { messages: 0, inbox: 0, userConvs: 0, unreadMarks: 0 }) },
      longestAppendBatchMs: w?.longestAppendBatchMs ?? 0, longestSummaryBatchMs: w?.longestSummaryBatchMs ?? 0,
      appendBatchesOver5Ms: w?.appendBatchesOver5Ms ?? 0,
      summaryBatches: w?.summaryBatches ?? 0, summaryBatchesOver5Ms: w?.summaryBatchesOver5Ms ?? 0,
      checkpoints: this.checkpointer && {
        ...this.checkpointer.stats, ...(w?.checkpoints ?? emptyWriterCheckpointStats()),
      },
      writerRestarts: this.writer.restarts,
    };
  }

  /**
   * Fault drill (tests): the writer fails as if its thread crashed, failing what is in flight
   * with UNAVAILABLE; it is started again (see storage/sqlite/writer-client.ts for the limit).
   */
  async injectWriterFailure(): Promise<void> {
    await this.writer.submit({ k: 'crash' }, undefined, false).catch(() => undefined);
  }

  async appendMessage(input: AppendInput): Promise<AppendResult> {
    this.checkOpen();
    validateAppend(input);
    const o = await this.writer.submit<AppendOutcome>({
      k: 'append', msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
      clientMsgId: input.clientMsgId, contentType: input.contentType, sentAtMs: input.sentAtMs,
      recipients: input.recipients, dedupWindowMs: input.dedupWindowMs, contentOff: 0, contentLen: 0,
    }, input.content);
    if (o.duplicate) {
      const c = o.duplicate.content;
      const message = { ...o.duplicate, content: Buffer.from(c.buffer, c.byteOffset, c.byteLength) };
      return { message, senderSeq: o.senderSeq, seqs: new Map(), duplicate: true };
    }
    const seqs = new Map<string, number>();
    input.recipients.forEach((uid, i) => seqs.set(uid, o.seqs[i]));
    return {
      message: {
        msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
        clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
        sentAtMs: input.sentAtMs, convSeq: o.convSeq,
      },
      senderSeq: o.senderSeq, seqs, duplicate: false,
    };
  }

  async sync(uid: string, afterSeq: number, limit: number): Promise<Page<InboxEntry>> {
    this.checkOpen();
    validateSeq('afterSeq', afterSeq);
    const n = Math.min(validateLimit(limit), this.options.maxPageItems);
    const rows = this.sql.sync.all(uid, afterSeq, n + 1);
    return { items: rows.slice(0, n).map(toInboxEntry), hasMore: rows.length > n };
  }

  /** The newest committed seq of uid's inbox: every acknowledged append is in it. */
  async maxSeq(uid: string): Promise<number> {
    this.checkOpen();
    return this.sql.userMaxSeq.get(uid)?.s ?? 0;
  }

  async history(convId: string, beforeConvSeq: number, limit: number): Promise<Page<StoredMessage>> {
    this.checkOpen();
    validateSeq('beforeConvSeq', beforeConvSeq);
    const n = Math.min(validateLimit(limit), this.options.maxPageItems);
    const before = beforeConvSeq === 0 ? Number.MAX_SAFE_INTEGER : beforeConvSeq;
    const rows = this.sql.history.all(convId, before, n + 1);
    return { items: rows.slice(0, n).map(toMessage), hasMore: rows.length > n };
  }

  async createGroup(group: GroupInfo, maxMembers: number): Promise<GroupInfo> {
    this.checkOpen();
    const members = validateNewGroup(group, maxMembers);
    const { groupId, name, owner, createdAtMs } = group;
    return this.writer.submit({ k: 'createGroup', group: { groupId, name, owner, createdAtMs, members: [] }, members });
  }

  async getGroup(groupId: string): Promise<GroupInfo | undefined> {
    this.checkOpen();
    return readGroup(this.sql, groupId);
  }

  async addMembers(groupId: string, uids: string[], maxMembers: number): Promise<GroupInfo> {
    this.checkOpen();
    validateMaxMembers(maxMembers);
    validateUids('uids', uids);
    return this.writer.submit({ k: 'addMembers', groupId, uids, maxMembers });
  }

  async removeMembers(groupId: string, uids: string[], newOwner?: string): Promise<GroupInfo> {
    this.checkOpen();
    validateUids('uids', uids);
    return this.writer.submit({ k: 'removeMembers', groupId, uids, newOwner });
  }

  async setReadCursor(uid: string, convId: string, seq: number): Promise<UnreadInfo> {
    this.checkOpen();
    validateSeq('seq', seq);
    return this.writer.submit({ k: 'setCursor', uid, convId, seq });
  }

  async unread(uid: string, convIds?: string[]): Promise<UnreadInfo[]> {
    this.checkOpen();
    const unique = convIds === undefined ? undefined : [...new Set(convIds)];
    if (unique !== undefined && unique.length > this.options.maxUnreadConvs) {
      throw new BadRequestError(`at most ${this.options.maxUnreadConvs} conversations per unread call, got ${unique.length}`);
    }
    // The writer first writes uid's summaries the inbox is ahead of, and every queued one.
    await this.writer.submit({ k: 'summarize', uid });
    if (unique !== undefined) {
      // One read transaction: every count sees the same snapshot.
      return this.db.transaction(() => unique.map((convId) => unreadOne(this.sql, uid, convId)))();
    }
    return this.db.transaction(() =>
      this.sql.unreadCandidates.all(uid, this.options.maxUnreadConvs).map((r) => ({
        convId: r.conv_id,
        count: this.sql.unreadCount.get(uid, r.conv_id, r.read_seq)!.n,
        readSeq: r.read_seq,
        lastSeq: r.last_seq,
      })).filter((u) => u.count > 0))();
  }

  /** Commits queued writes and summaries, then closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Summaries are rebuilt from the inbox after any stop, but a clean one leaves nothing to do.
    await this.writer.close();
    await this.checkpointer?.stop();
    this.db.close();
    this.writerLock.release();
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('sqlite store is closed');
    const down = this.writer.failure;
    if (down) throw down;
  }

  /**
   * Summaries follow every summaryFlushMs rather than every tick: a commit costs its dirty pages,
   * and waiting lets one upsert and one page write cover many messages to the same user. Once
   * started, a flush continues (one bounded transaction per batch) until the queue is empty.
   */
  private scheduleSummaryFlush(now = false): void {
    if (this.summaryFlushScheduled || this.closed) return;
    this.summaryFlushScheduled = true;
    const run = () => {
      if (this.closed) return;
      this.writer.submit({ k: 'summaries' }, undefined, false).then(() => {
        this.summaryFlushScheduled = false;
        if ((this.writerStats?.pendingSummaries ?? 0) > 0) this.scheduleSummaryFlush(true);
      }, () => { this.summaryFlushScheduled = false; });
    };
    if (now) setImmediate(run);
    else setTimeout(run, this.options.summaryFlushMs).unref();
  }
}
