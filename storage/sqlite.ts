/**
 * The embedded Store: one SQLite file through better-sqlite3. The default for a single machine
 * (`npm start`) and the developer loop; Cassandra takes over in distributed mode.
 *
 * better-sqlite3 is synchronous, so each call runs to completion on the event loop and is
 * naturally atomic against every other call of this process; group and cursor updates are
 * still wrapped in transactions so a failure part-way leaves nothing behind. Appends, the hot
 * path, are batched: all appendMessage calls of one tick commit in one bounded transaction.
 *
 * This process is the file's only writer, which is what lets an append write only what must be
 * durable before its ack (storage/sqlite-schema-v4.ts): seqs come from memory
 * (storage/sqlite-seqs.ts), conversation summaries follow in their own batches
 * (storage/sqlite-summaries.ts), and WAL checkpoints run on a worker thread
 * (storage/sqlite-checkpoint.ts), so no commit copies the log into the database file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { BadRequestError, GroupFullError, GroupNotFoundError, ImError, InternalError, UnavailableError } from '../common/errors';
import { ConfigError } from '../common/config';
import type { AppendInput, AppendResult, GroupInfo, InboxEntry, Page, Store, StoredMessage, UnreadInfo } from './store';
import { migrate } from './sqlite-schema';
import { Checkpointer, type CheckpointStats } from './sqlite-checkpoint';
import { SqliteWriterLock } from './sqlite-lock';
import { SeqCache } from './sqlite-seqs';
import { Summaries, type SummaryEntry } from './sqlite-summaries';
import { checkSameSend, sendDigest } from './send-digest';
import { prepareStatements, toInboxEntry, toMessage, type Statements } from './sqlite-statements';
import { TickBatcher, type Settled } from './tick-batcher';
import { validateAppend, validateLimit, validateMaxMembers, validateNewGroup, validateSeq, validateUids } from './validate';

export interface SqliteStoreOptions {
  /** Database file; ':memory:' for a throw-away store. The parent directory is created. */
  path: string;
  /** How long a statement waits for another process's lock before failing. Default 5000. */
  busyTimeoutMs?: number;
  /** Milliseconds for the batch time budget; tests inject one. Default performance.now. */
  clock?: () => number;
  /** Appends committed in one transaction at most. Default 512. */
  maxBatchAppends?: number;
  /**
   * Time one append transaction's statements may take before it stops taking items (the rest go
   * next). Its commit then writes the pages they dirtied, which costs about three times as much
   * again (profiles at 3,000 appends/s), so 1 ms of statements is a transaction of ~4 ms. Default 1.
   */
  maxBatchMs?: number;
  /** Appends waiting for a transaction; beyond it appendMessage fails with OverloadedError. Default 20000. */
  maxPendingAppends?: number;
  /** Summary entries (one per recipient of a message) one write-behind transaction writes at most. Default 256. */
  maxSummaryBatch?: number;
  /** How long summaries wait to be written behind, collecting entries. Default 1000. */
  summaryFlushMs?: number;
  /** Queued summary entries beyond which an append batch first writes some of them. Default 50000. */
  maxPendingSummaries?: number;
  /** User inboxes and conversations whose newest seq is kept in memory. Default 1000000. */
  maxCachedSeqs?: number;
  /** How often the worker thread checkpoints the WAL. Default 200. */
  checkpointIntervalMs?: number;
  /** WAL length in pages past which the checkpoint worker asks for a quiet window to restart it. Default 32768 (128 MiB, under journal_size_limit): every window holds appends, so fewer is better. */
  walRestartFrames?: number;
  /** SQLite page cache, KiB. Default 65536: the hot ends of the indexes stay in memory as the file grows. */
  cacheSizeKiB?: number;
  /** Conversations unread() without convIds looks at, and accepts with them. Default 1000. */
  maxUnreadConvs?: number;
  /** Items one sync/history page returns at most (hasMore tells the caller to continue). Default 1000. */
  maxPageItems?: number;
}

type ResolvedOptions = Required<Omit<SqliteStoreOptions, 'clock'>> & { clock: () => number };

export interface AppendStats {
  batches: number;
  pending: number;
  pendingSummaries: number;
  rowsWritten: { messages: number; inbox: number; userConvs: number; unreadMarks: number };
  /** The longest append transaction and write-behind transaction so far, ms of wall time on the event loop. */
  longestAppendBatchMs: number;
  longestSummaryBatchMs: number;
  /** Transactions so far, and those that held the loop over 5 ms (a busy machine's preemption counts too). */
  appendBatchesOver5Ms: number;
  summaryBatches: number;
  summaryBatchesOver5Ms: number;
  checkpoints?: CheckpointStats;
}

const DEFAULTS: Omit<ResolvedOptions, 'path' | 'clock'> = {
  busyTimeoutMs: 5000,
  maxBatchAppends: 512,
  maxBatchMs: 1,
  maxPendingAppends: 20000,
  maxSummaryBatch: 256,
  summaryFlushMs: 1000,
  maxPendingSummaries: 50000,
  maxCachedSeqs: 1_000_000,
  checkpointIntervalMs: 200,
  walRestartFrames: 32768,
  cacheSizeKiB: 65536,
  maxUnreadConvs: 1000,
  maxPageItems: 1000,
};

function resolveOptions(options: SqliteStoreOptions): ResolvedOptions {
  if (typeof options.path !== 'string' || options.path === '') {
    throw new ConfigError('path', 'expected a file path or ":memory:"');
  }
  const out: ResolvedOptions = { ...DEFAULTS, clock: () => performance.now(), ...stripUndefined(options) } as ResolvedOptions;
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

/** A write failed inside an append transaction without savepoints: it is rolled back and re-run with them. */
class WriteFailed extends Error {
  constructor(cause: unknown) {
    super('append write failed', { cause });
  }
}

export class SqliteStore implements Store {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly sql: Statements;
  private readonly options: ResolvedOptions;
  private readonly appends: TickBatcher<AppendInput, AppendResult>;
  private readonly appendOne: (input: AppendInput) => AppendResult;
  private readonly appendBatch: (inputs: AppendInput[], savepoints: boolean) => Settled<AppendResult>[];
  private readonly userSeqs: SeqCache;
  private readonly convSeqs: SeqCache;
  private readonly summaries: Summaries;
  private readonly checkpointer: Checkpointer | undefined;
  /** Summary entries of the append transaction being built; queued once it commits. */
  private batchEntries: SummaryEntry[] = [];
  private summaryFlushScheduled = false;
  /** A checkpoint's quiet window: appends and write-behind wait (reads that need summaries do not). */
  private writesHeld = false;
  /** Rows of committed appends; counted per batch, so rolled-back items are not in them. */
  private readonly rowsWritten = { messages: 0, inbox: 0 };
  private longestAppendBatchMs = 0;
  private appendBatchesOver5Ms = 0;
  private closed = false;
  private batches = 0;
  /** This process is the file's only writer: the seqs it keeps in memory are the file's. */
  private readonly writerLock: SqliteWriterLock;

  static open(options: SqliteStoreOptions): SqliteStore {
    return new SqliteStore(resolveOptions(options));
  }

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.path = options.path;
    if (options.path !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(options.path)), { recursive: true });
    this.writerLock = SqliteWriterLock.acquire(options.path);
    try {
      this.db = new Database(options.path, { timeout: options.busyTimeoutMs });
    } catch (err) {
      this.writerLock.release();
      throw err;
    }
    try {
      this.db.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
      // WAL: readers never block the writer and a commit is one sequential append to the log.
      this.db.pragma('journal_mode = WAL');
      // NORMAL in WAL mode fsyncs at checkpoints, not at every commit. A process crash loses
      // nothing committed; a power loss or kernel crash can lose the last few commits but never
      // corrupts the file. Those lost messages lose their dedup records with them, so a client
      // that retries (it got no ack, or its ack raced the crash) re-creates them rather than
      // seeing a phantom duplicate; their seqs are reissued and sync still returns a gap-free
      // timeline. FULL would add an fsync per batch, a cost the single-machine default does not
      // pay; operators who need power-loss durability run the Cassandra store.
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = OFF');
      // Checkpoints run on the worker (storage/sqlite-checkpoint.ts), never inside a commit here.
      this.db.pragma('wal_autocheckpoint = 0');
      // After a checkpoint lets the WAL restart, its file is cut back to this size: above the
      // default walRestartFrames' 128 MiB, so a restart reuses the file rather than cut and regrow it.
      this.db.pragma('journal_size_limit = 167772160');
      this.db.pragma(`cache_size = -${options.cacheSizeKiB}`);
      migrate(this.db);
      this.sql = prepareStatements(this.db);
    } catch (err) {
      this.db.close();
      this.writerLock.release();
      throw err;
    }
    this.summaries = new Summaries(this.db, { maxFlushEntries: options.maxSummaryBatch });
    this.convSeqs = new SeqCache((convId) => this.sql.convMaxSeq.get(convId)?.s ?? 0, options.maxCachedSeqs);
    this.userSeqs = new SeqCache((uid) => {
      const max = this.sql.userMaxSeq.get(uid)?.s ?? 0;
      this.summaries.noteLoaded(uid, max);
      return max;
    }, options.maxCachedSeqs);

    // A nested better-sqlite3 transaction is a SAVEPOINT: one failing item rolls back alone.
    this.appendOne = this.db.transaction((input: AppendInput) => this.appendSync(input));
    this.appendBatch = this.db.transaction((inputs: AppendInput[], savepoints: boolean) => this.appendBatchSync(inputs, savepoints));
    this.appends = new TickBatcher<AppendInput, AppendResult>({
      name: 'sqlite store',
      maxBatch: options.maxBatchAppends,
      maxPending: options.maxPendingAppends,
      run: (inputs) => this.runAppendBatch(inputs),
    });
    this.checkpointer = options.path === ':memory:' ? undefined : new Checkpointer({
      file: options.path, intervalMs: options.checkpointIntervalMs, restartFrames: options.walRestartFrames,
      maxQuietMs: 1000,
      hold: () => {
        this.writesHeld = true;
        this.appends.hold();
      },
      resume: () => {
        this.writesHeld = false;
        this.appends.resume();
        this.scheduleSummaryFlush();
      },
    });
  }

  /**
   * Append transactions committed so far, appends waiting for one, summary entries not yet
   * written, rows written per table, and the checkpoint worker's counts (for metrics, tests and
   * the bench, which turns rows into B-tree entries: see storage/sqlite-schema-v4.ts).
   */
  appendStats(): AppendStats {
    return {
      batches: this.batches, pending: this.appends.pending, pendingSummaries: this.summaries.pending,
      rowsWritten: { ...this.rowsWritten, ...this.summaries.rowsWritten },
      longestAppendBatchMs: this.longestAppendBatchMs, longestSummaryBatchMs: this.summaries.longestFlushMs,
      appendBatchesOver5Ms: this.appendBatchesOver5Ms,
      summaryBatches: this.summaries.flushes, summaryBatchesOver5Ms: this.summaries.flushesOver5Ms,
      checkpoints: this.checkpointer?.stats,
    };
  }

  /** Asks the worker for a checkpoint now and waits for it (tests and tools). */
  async checkpoint(): Promise<void> {
    await this.checkpointer?.runNow();
  }

  async appendMessage(input: AppendInput): Promise<AppendResult> {
    this.checkOpen();
    validateAppend(input);
    return this.appends.submit(input);
  }

  async sync(uid: string, afterSeq: number, limit: number): Promise<Page<InboxEntry>> {
    this.checkOpen();
    validateSeq('afterSeq', afterSeq);
    const n = Math.min(validateLimit(limit), this.options.maxPageItems);
    const rows = this.sql.sync.all(uid, afterSeq, n + 1);
    return { items: rows.slice(0, n).map(toInboxEntry), hasMore: rows.length > n };
  }

  async maxSeq(uid: string): Promise<number> {
    this.checkOpen();
    return this.userSeqs.current(uid);
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
    return this.db.transaction(() => {
      if (this.sql.groupGet.get(group.groupId)) throw new BadRequestError(`group ${group.groupId} already exists`);
      this.sql.groupPut.run(group.groupId, group.name, group.owner, group.createdAtMs, members.length + 1);
      members.forEach((uid, i) => this.sql.memberPut.run(group.groupId, uid, i + 1));
      return this.readGroup(group.groupId)!;
    }).immediate();
  }

  async getGroup(groupId: string): Promise<GroupInfo | undefined> {
    this.checkOpen();
    return this.readGroup(groupId);
  }

  async addMembers(groupId: string, uids: string[], maxMembers: number): Promise<GroupInfo> {
    this.checkOpen();
    validateMaxMembers(maxMembers);
    validateUids('uids', uids);
    return this.db.transaction(() => {
      const group = this.mustReadGroup(groupId);
      const current = new Set(group.members);
      const added = [...new Set(uids)].filter((uid) => !current.has(uid));
      if (current.size + added.length > maxMembers) {
        throw new GroupFullError(`group ${groupId} has ${current.size} members; adding ${added.length} exceeds ${maxMembers}`);
      }
      for (const uid of added) {
        const { join_order } = this.sql.groupTakeJoin.get(groupId)!;
        this.sql.memberPut.run(groupId, uid, join_order);
      }
      return added.length === 0 ? group : this.readGroup(groupId)!;
    }).immediate();
  }

  async removeMembers(groupId: string, uids: string[], newOwner?: string): Promise<GroupInfo> {
    this.checkOpen();
    validateUids('uids', uids);
    return this.db.transaction(() => {
      const group = this.mustReadGroup(groupId);
      const removing = new Set(uids);
      if (newOwner !== undefined && (removing.has(newOwner) || !group.members.includes(newOwner))) {
        throw new BadRequestError(`new owner ${newOwner} is not a remaining member of group ${groupId}`);
      }
      for (const uid of removing) this.sql.memberDelete.run(groupId, uid);
      if (newOwner !== undefined) this.sql.groupSetOwner.run(newOwner, groupId);
      return this.readGroup(groupId)!;
    }).immediate();
  }

  async setReadCursor(uid: string, convId: string, seq: number): Promise<UnreadInfo> {
    this.checkOpen();
    validateSeq('seq', seq);
    this.summarizeFor(uid);
    return this.db.transaction(() => {
      this.sql.cursorPut.run(uid, convId, seq);
      return this.unreadOne(uid, convId);
    }).immediate();
  }

  async unread(uid: string, convIds?: string[]): Promise<UnreadInfo[]> {
    this.checkOpen();
    this.summarizeFor(uid);
    if (convIds !== undefined) {
      const unique = [...new Set(convIds)];
      if (unique.length > this.options.maxUnreadConvs) {
        throw new BadRequestError(`at most ${this.options.maxUnreadConvs} conversations per unread call, got ${unique.length}`);
      }
      // One read transaction: every count sees the same snapshot.
      return this.db.transaction(() => unique.map((convId) => this.unreadOne(uid, convId)))();
    }
    return this.db.transaction(() =>
      this.sql.unreadCandidates.all(uid, this.options.maxUnreadConvs).map((r) => ({
        convId: r.conv_id,
        count: this.sql.unreadCount.get(uid, r.conv_id, r.read_seq)!.n,
        readSeq: r.read_seq,
        lastSeq: r.last_seq,
      })).filter((u) => u.count > 0))();
  }

  /** Commits queued appends, then closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.appends.close();
    this.closed = true;
    // Summaries are rebuilt from the inbox after any stop, but a clean one leaves nothing to do.
    this.summaries.flushAll();
    await this.checkpointer?.stop();
    this.db.close();
    this.writerLock.release();
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('sqlite store is closed');
  }

  private runAppendBatch(inputs: AppendInput[]): Settled<AppendResult>[] {
    // Bounded memory: summaries that fell this far behind are written before more appends.
    while (this.summaries.pending >= this.options.maxPendingSummaries && this.summaries.flushSome());
    const t0 = performance.now();
    let out: Settled<AppendResult>[];
    try {
      out = this.tryAppendBatch(inputs, false);
    } catch (err) {
      if (!(err instanceof WriteFailed)) throw err;
      // Rare: a write failed part-way. Again, with a savepoint per item so only that one fails.
      out = this.tryAppendBatch(inputs, true);
    }
    const tookMs = performance.now() - t0;
    this.longestAppendBatchMs = Math.max(this.longestAppendBatchMs, tookMs);
    if (tookMs > 5) this.appendBatchesOver5Ms++;
    this.batches++;
    for (const r of out) {
      if (r.ok && !r.value.duplicate) {
        this.rowsWritten.messages++;
        this.rowsWritten.inbox += r.value.seqs.size;
      }
    }
    this.summaries.add(this.batchEntries);
    this.batchEntries = [];
    this.scheduleSummaryFlush();
    return out;
  }

  /** One append transaction; on any failure of it, every seq it took is forgotten. */
  private tryAppendBatch(inputs: AppendInput[], savepoints: boolean): Settled<AppendResult>[] {
    this.batchEntries = [];
    try {
      return this.appendBatch(inputs, savepoints);
    } catch (err) {
      // Rolled back: forgetting keys it did not touch is harmless.
      this.forgetSeqs(inputs);
      this.batchEntries = [];
      throw err;
    }
  }

  private appendBatchSync(inputs: AppendInput[], savepoints: boolean): Settled<AppendResult>[] {
    // Past the budget the rest waits for the next transaction: I/O gets a turn in between.
    const deadline = this.options.clock() + this.options.maxBatchMs;
    const out: Settled<AppendResult>[] = [];
    for (const input of inputs) {
      if (out.length > 0 && this.options.clock() > deadline) break;
      const mark = this.batchEntries.length;
      try {
        // A savepoint is two more statements per item, so the first attempt goes without.
        out.push({ ok: true, value: savepoints ? this.appendOne(input) : this.appendSync(input) });
      } catch (err) {
        // Refusals (ImError) come before the first write; anything else may leave half an item.
        if (!savepoints && !(err instanceof ImError)) throw new WriteFailed(err);
        // Its savepoint rolled back (or it wrote nothing): so do its seqs and summary entries.
        this.forgetSeqs([input]);
        this.batchEntries.length = mark;
        out.push({ ok: false, error: err instanceof ImError ? err : new InternalError(`append failed: ${String(err)}`, { cause: err }) });
      }
    }
    return out;
  }

  private forgetSeqs(inputs: readonly AppendInput[]): void {
    for (const input of inputs) {
      this.convSeqs.forget([input.convId]);
      this.userSeqs.forget(input.recipients);
    }
  }

  private appendSync(input: AppendInput): AppendResult {
    // Nearly every send is new: its insert is the duplicate check (the dedup key is unique), so
    // the lookup below runs only when that key already exists.
    const fresh = this.writeMessage(input, 0, this.sql.messagePutNew);
    if (fresh) return fresh;
    const prior = this.sql.dedupGet.get(input.from, input.clientMsgId);
    if (!prior) throw new InternalError(`append: message row of ${input.msgId} refused, and no earlier send of it`);
    if (prior.dedup_until_ms > input.sentAtMs) {
      // The stored message is the accepted send: its digest is recomputed from it, not stored.
      checkSameSend(sendDigest(toMessage(prior)), input);
      return { message: toMessage(prior), senderSeq: prior.sender_seq, seqs: new Map(), duplicate: true };
    }
    // Past its window the id is free again, as a new generation of the key.
    return this.writeMessage(input, prior.dedup_gen + 1, this.sql.messagePut)!;
  }

  /** Takes the seqs and writes the message and its inbox rows; undefined (seqs handed back) when `put` wrote nothing. */
  private writeMessage(input: AppendInput, dedupGen: number, put: Statements['messagePut']): AppendResult | undefined {
    const s = this.sql;
    const convSeq = this.convSeqs.next(input.convId);
    const seqs = new Map<string, number>();
    for (const uid of input.recipients) seqs.set(uid, this.userSeqs.next(uid));
    const senderSeq = seqs.get(input.from)!;
    const content = Buffer.from(input.content.buffer, input.content.byteOffset, input.content.byteLength);
    const written = put.run(input.convId, convSeq, input.msgId, input.from, input.to, input.groupId, input.clientMsgId,
      input.contentType, content, input.sentAtMs, senderSeq, input.sentAtMs + input.dedupWindowMs, dedupGen).changes;
    if (written === 0) {
      this.convSeqs.giveBack(input.convId, convSeq);
      for (const [uid, seq] of seqs) this.userSeqs.giveBack(uid, seq);
      return undefined;
    }
    for (const [uid, seq] of seqs) {
      s.inboxPut.run(uid, seq, input.convId, convSeq, input.from);
      this.batchEntries.push({ uid, seq, convId: input.convId, from: input.from });
    }
    const message: StoredMessage = {
      msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
      clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
      sentAtMs: input.sentAtMs, convSeq,
    };
    return { message, senderSeq, seqs, duplicate: false };
  }

  /** Before reading uid's summaries: any the inbox is ahead of, and every queued one, are written. */
  private summarizeFor(uid: string): void {
    this.userSeqs.current(uid);
    this.summaries.flushAll();
  }

  /**
   * Summaries follow every summaryFlushMs rather than every tick: a commit costs its dirty pages,
   * and waiting lets one upsert and one page write cover many messages to the same user. Once
   * started, a flush continues turn by turn (one bounded transaction each) until the queue is empty.
   */
  private scheduleSummaryFlush(now = false): void {
    if (this.summaryFlushScheduled || this.closed) return;
    this.summaryFlushScheduled = true;
    const run = () => {
      this.summaryFlushScheduled = false;
      if (this.closed || this.writesHeld) return;
      if (this.summaries.flushSome()) this.scheduleSummaryFlush(true);
    };
    if (now) setImmediate(run);
    else setTimeout(run, this.options.summaryFlushMs).unref();
  }

  private unreadOne(uid: string, convId: string): UnreadInfo {
    const readSeq = this.sql.cursorGet.get(uid, convId)?.read_seq ?? 0;
    const lastSeq = this.sql.userConvLastSeq.get(uid, convId)?.last_seq ?? 0;
    const count = lastSeq > readSeq ? this.sql.unreadCount.get(uid, convId, readSeq)!.n : 0;
    return { convId, count, readSeq, lastSeq };
  }

  private readGroup(groupId: string): GroupInfo | undefined {
    const g = this.sql.groupGet.get(groupId);
    if (!g) return undefined;
    return {
      groupId: g.group_id, name: g.name, owner: g.owner, createdAtMs: g.created_at_ms,
      members: this.sql.membersGet.all(groupId).map((m) => m.uid),
    };
  }

  private mustReadGroup(groupId: string): GroupInfo {
    const g = this.readGroup(groupId);
    if (!g) throw new GroupNotFoundError(`group ${groupId} not found`);
    return g;
  }
}
