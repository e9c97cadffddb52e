/**
 * The embedded Store: one SQLite file through better-sqlite3, and a message log beside it. The
 * default for a single machine (`npm start`) and the developer loop; Cassandra takes over in
 * distributed mode.
 *
 * A message is accepted on the event loop into an append-only log (storage/sqlite/message-log.ts):
 * its dedup decision and seqs come from memory, a tick's messages are one write to the log file,
 * and the append is acknowledged once that write returned. The writer thread indexes the log
 * into the tables behind, many messages per transaction (storage/sqlite/writer*.ts); until then
 * reads find a message in memory (storage/sqlite/unindexed.ts), and after a crash the log is
 * replayed at open. Every other write (groups, read cursors, summaries) runs on the writer
 * thread and resolves after its transaction committed.
 *
 * Reads run on the event loop, on this connection (better-sqlite3 is synchronous; a read is a
 * few index probes), merged with the messages not yet indexed. No write statement, commit or WAL
 * checkpoint (storage/sqlite/checkpoint.ts) runs on the loop. A ':memory:' store cannot share its
 * database with a second connection, so its writer runs on the loop, and its log is memory only.
 *
 * This process is the file's only writer (storage/sqlite/lock.ts), which is what lets seqs and
 * the newest messages live in its memory.
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
import { openConnection, readGroup, unreadOne, WriterEngine, type WriterOptions, type WriterStats } from './writer';
import { FileSink, MemorySink, replayLog, type LogSink, type ReplayResult } from './log-files';
import { LogIndexer, readIndexedLsn } from './log-indexer';
import { MessageLog } from './message-log';
import { inThreadLink, workerLink, WriterClient } from './writer-client';
import { validateAppend, validateLimit, validateMaxMembers, validateNewGroup, validateSeq, validateUids } from '../validate';

export interface SqliteStoreOptions {
  /** Database file; ':memory:' for a throw-away store. The parent directory is created. */
  path: string;
  /** How long a statement waits for another process's lock before failing. Default 5000. */
  busyTimeoutMs?: number;
  /** Ops posted to the writer thread in one batch at most. Default 512. */
  maxBatchAppends?: number;
  /**
   * Bytes of message log one write carries, and bytes posted to the writer in one batch, at most
   * (at least one message): the loop encodes the one and copies the other, about 1 ms per MiB
   * each, in one turn. Default 1048576.
   */
  maxBatchBytes?: number;
  /** How long written messages wait to be indexed into the tables, collecting more (one transaction, many per page). Default 250. */
  indexFlushMs?: number;
  /** Rows one index transaction writes, about (a message's row and one per recipient; whole messages). Default 16384. */
  maxIndexBatch?: number;
  /** Messages waiting on the writer to be indexed past which it indexes without waiting for indexFlushMs. Default 32768. */
  maxPendingIndex?: number;
  /** Messages held in memory until indexed, at most; beyond it an append fails with OVERLOADED. Default 200000. */
  maxUnindexed?: number;
  /** Message log segment size past which a new segment starts (a segment is deleted once indexed). Default 67108864. */
  logSegmentBytes?: number;
  /** Appends waiting for their log write, and other writes queued or in flight to the writer; beyond it a write fails with OVERLOADED. Default 20000. */
  maxPendingAppends?: number;
  /**
   * Summary entries (one per recipient of a message) one write-behind transaction writes at most.
   * Default 65536: no ack waits for it, and every commit makes the loop's connection drop its page
   * cache (SQLite resets a reader's cache when the database changed), so few large ones are cheaper.
   */
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
  /** Message log writes (each acknowledges the appends of one or more ticks), bytes written, and writes that failed. */
  logWrites: number;
  logBytes: number;
  logFailedWrites: number;
  /**
   * The most bytes the loop encoded into one log write and copied into one batch for the writer:
   * each is one turn's work, bounded by maxBatchBytes (plus one message).
   */
  largestLogWriteBytes: number;
  largestWriterPostBytes: number;
  /** Messages held in memory until indexed, and those of them the writer has received. */
  unindexed: number;
  pendingIndex: number;
  /** What the log replay at open found. */
  replay: ReplayResult;
  /** Index transactions committed so far. */
  batches: number;
  /** Other writes queued or in flight to the writer. */
  pending: number;
  pendingSummaries: number;
  rowsWritten: { messages: number; inbox: number; userConvs: number; unreadMarks: number };
  /** The longest index transaction and write-behind transaction so far, ms of wall time on the writer (not the loop, except for ':memory:'). */
  longestIndexBatchMs: number;
  longestSummaryBatchMs: number;
  /** Index transactions over 50 ms, summary transactions over 5 ms (a busy machine's preemption counts too). */
  indexBatchesOver50Ms: number;
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
  indexFlushMs: 250,
  maxIndexBatch: 16384,
  maxPendingIndex: 32768,
  maxUnindexed: 200_000,
  logSegmentBytes: 64 << 20,
  maxPendingAppends: 20000,
  maxSummaryBatch: 65536,
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
  private readonly log: MessageLog;
  private readonly sink: LogSink;
  private readonly replay: ReplayResult;
  private writerStats: WriterStats | undefined;
  private summaryFlushScheduled = false;
  private indexFlushScheduled = false;
  private closed = false;
  /** This process is the file's only writer: the seqs kept in memory are the file's. */
  private readonly writerLock: SqliteWriterLock;

  static open(options: SqliteStoreOptions): SqliteStore {
    return new SqliteStore(resolveOptions(options));
  }

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.path = options.path;
    const inMemory = options.path === ':memory:';
    if (!inMemory) fs.mkdirSync(path.dirname(path.resolve(options.path)), { recursive: true });
    this.writerLock = SqliteWriterLock.acquire(options.path);
    const connection = { busyTimeoutMs: options.busyTimeoutMs, cacheSizeKiB: options.cacheSizeKiB, walRestartFrames: options.walRestartFrames };
    try {
      this.db = openConnection(options.path, connection);
    } catch (err) {
      this.writerLock.release();
      throw err;
    }
    try {
      // Before the writer opens its connection: it finds the schema in place and the log indexed.
      migrate(this.db);
      this.sql = prepareStatements(this.db);
      const indexer = new LogIndexer(this.db);
      this.replay = inMemory
        ? { replayed: 0, tornSegments: 0, nextLsn: indexer.indexedLsn + 1 }
        : replayLog(options.path, indexer.indexedLsn, (records) => indexer.write(records), options.maxIndexBatch);
      this.sink = inMemory ? new MemorySink() : new FileSink(options.path, this.replay.nextLsn, options.logSegmentBytes);
    } catch (err) {
      this.db.close();
      this.writerLock.release();
      throw err;
    }
    const writerOptions: WriterOptions = {
      maxIndexBatch: options.maxIndexBatch, maxPendingIndex: options.maxPendingIndex, maxSummaryBatch: options.maxSummaryBatch,
      maxPendingSummaries: options.maxPendingSummaries, maxCachedSeqs: options.maxCachedSeqs,
    };
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
        this.log.indexed(stats.indexedLsn);
        if (stats.pendingIndex > 0) this.scheduleIndexFlush();
        if (stats.pendingSummaries > 0) this.scheduleSummaryFlush();
      },
      // The dead writer's index ops are lost: the new one gets every written message not yet indexed.
      onRestart: () => this.log.repost(),
    });
    this.log = new MessageLog(this.sink, this.sql, this.replay.nextLsn, {
      maxPendingAppends: options.maxPendingAppends, maxUnindexed: options.maxUnindexed, maxCachedSeqs: options.maxCachedSeqs,
    }, options.maxBatchBytes, (firstLsn, count, bytes) => {
      // Settled by the writer's stats; a writer that fails loses it, and the restart posts it again.
      this.writer.submit({ k: 'index', firstLsn, count, contentOff: 0, contentLen: 0 }, bytes, false).catch(() => undefined);
    });
  }

  /**
   * Log writes, messages waiting to be indexed, index and summary transactions, writes waiting for
   * the writer, rows written per table, and the writer's WAL checkpoint counts (for metrics, tests
   * and the bench, which turns rows into B-tree entries: see storage/sqlite/schema-v4.ts).
   */
  appendStats(): AppendStats {
    const w = this.writerStats;
    const log = this.log.stats();
    return {
      logWrites: log.writes, logBytes: log.bytes, logFailedWrites: log.failedWrites, unindexed: log.unindexed,
      largestLogWriteBytes: log.largestWriteBytes, largestWriterPostBytes: this.writer.largestPostBytes,
      pendingIndex: w?.pendingIndex ?? 0, replay: { ...this.replay },
      batches: w?.batches ?? 0, pending: this.writer.pending, pendingSummaries: w?.pendingSummaries ?? 0,
      rowsWritten: { ...(w?.rowsWritten ?? { messages: 0, inbox: 0, userConvs: 0, unreadMarks: 0 }) },
      longestIndexBatchMs: w?.longestIndexBatchMs ?? 0, longestSummaryBatchMs: w?.longestSummaryBatchMs ?? 0,
      indexBatchesOver50Ms: w?.indexBatchesOver50Ms ?? 0,
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

  /** Indexes every message written so far (tests: what a read of the tables alone sees). */
  async indexNow(): Promise<void> {
    await this.writer.submit({ k: 'indexFlush' }, undefined, false);
  }

  async appendMessage(input: AppendInput): Promise<AppendResult> {
    this.checkOpen();
    validateAppend(input);
    return this.log.append(input);
  }

  async sync(uid: string, afterSeq: number, limit: number): Promise<Page<InboxEntry>> {
    this.checkOpen();
    validateSeq('afterSeq', afterSeq);
    const n = Math.min(validateLimit(limit), this.options.maxPageItems);
    // The indexed part of the inbox comes first; what is held in memory follows it.
    const items = this.sql.sync.all(uid, afterSeq, n + 1).map(toInboxEntry);
    if (items.length <= n) this.log.unindexed.inboxAfter(uid, items.length > 0 ? items[items.length - 1].seq : afterSeq, n + 1, items);
    return { items: items.slice(0, n), hasMore: items.length > n };
  }

  /** The newest acknowledged seq of uid's inbox. */
  async maxSeq(uid: string): Promise<number> {
    this.checkOpen();
    return this.log.unindexed.lastDurableUserSeq(uid) ?? this.sql.userMaxSeq.get(uid)?.s ?? 0;
  }

  async history(convId: string, beforeConvSeq: number, limit: number): Promise<Page<StoredMessage>> {
    this.checkOpen();
    validateSeq('beforeConvSeq', beforeConvSeq);
    const n = Math.min(validateLimit(limit), this.options.maxPageItems);
    const before = beforeConvSeq === 0 ? Number.MAX_SAFE_INTEGER : beforeConvSeq;
    // Newest first: what is held in memory, then the indexed part below it.
    const items: StoredMessage[] = [];
    this.log.unindexed.convBefore(convId, before, n + 1, items);
    if (items.length <= n) {
      const below = items.length > 0 ? items[items.length - 1].convSeq : before;
      for (const r of this.sql.history.all(convId, below, n + 1 - items.length)) items.push(toMessage(r));
    }
    return { items: items.slice(0, n), hasMore: items.length > n };
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

  /** Writes and indexes every accepted message, commits queued writes and summaries, then closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.log.close();
    // The writer indexes everything and writes the summaries before it ends: a clean stop leaves
    // nothing to replay or rebuild (the log's files go).
    await this.writer.close();
    // The log's files go only if the tables hold every record in them (a writer that failed, or
    // whose last index transaction failed, leaves them for the replay at the next open).
    this.sink.close(readIndexedLsn(this.db) >= this.log.lastWrittenLsn);
    await this.checkpointer?.stop();
    this.db.close();
    this.writerLock.release();
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('sqlite store is closed');
    const down = this.writer.failure;
    if (down) throw down;
  }

  /** Written messages are indexed every indexFlushMs: one transaction covers many messages per page. */
  private scheduleIndexFlush(): void {
    if (this.indexFlushScheduled || this.closed) return;
    this.indexFlushScheduled = true;
    setTimeout(() => {
      if (this.closed) return;
      this.writer.submit({ k: 'indexFlush' }, undefined, false).then(
        () => { this.indexFlushScheduled = false; if ((this.writerStats?.pendingIndex ?? 0) > 0) this.scheduleIndexFlush(); },
        () => { this.indexFlushScheduled = false; });
    }, this.options.indexFlushMs).unref();
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
