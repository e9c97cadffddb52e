/**
 * The embedded Store: one SQLite file through better-sqlite3. The default for a single machine
 * (`npm start`) and the developer loop; Cassandra takes over in distributed mode.
 *
 * better-sqlite3 is synchronous, so each call runs to completion on the event loop and is
 * naturally atomic against every other call of this process; group and cursor updates are
 * still wrapped in transactions so a failure part-way leaves nothing behind. Appends, the hot
 * path, are batched: all appendMessage calls of one tick commit in one transaction.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { BadRequestError, GroupFullError, GroupNotFoundError, ImError, InternalError, UnavailableError } from '../common/errors';
import { ConfigError } from '../common/config';
import type { AppendInput, AppendResult, GroupInfo, InboxEntry, Page, Store, StoredMessage, UnreadInfo } from './store';
import { migrate } from './sqlite-schema';
import { checkSameSend, sendDigest } from './send-digest';
import { prepareStatements, toInboxEntry, toMessage, type Statements } from './sqlite-statements';
import { TickBatcher, type Settled } from './tick-batcher';
import { validateAppend, validateLimit, validateMaxMembers, validateNewGroup, validateSeq, validateUids } from './validate';

export interface SqliteStoreOptions {
  /** Database file; ':memory:' for a throw-away store. The parent directory is created. */
  path: string;
  /** How long a statement waits for another process's lock before failing. Default 5000. */
  busyTimeoutMs?: number;
  /** Appends committed in one transaction at most. Default 512. */
  maxBatchAppends?: number;
  /** Appends waiting for a transaction; beyond it appendMessage fails with OverloadedError. Default 20000. */
  maxPendingAppends?: number;
  /** Expired dedup records deleted per append transaction at most. Default 1000. */
  dedupPurgeBatch?: number;
  /** Conversations unread() without convIds looks at, and accepts with them. Default 1000. */
  maxUnreadConvs?: number;
  /** Items one sync/history page returns at most (hasMore tells the caller to continue). Default 1000. */
  maxPageItems?: number;
}

type ResolvedOptions = Required<SqliteStoreOptions>;

const DEFAULTS: Omit<ResolvedOptions, 'path'> = {
  busyTimeoutMs: 5000,
  maxBatchAppends: 512,
  maxPendingAppends: 20000,
  dedupPurgeBatch: 1000,
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
  private readonly db: Database.Database;
  private readonly sql: Statements;
  private readonly options: ResolvedOptions;
  private readonly appends: TickBatcher<AppendInput, AppendResult>;
  private readonly appendOne: (input: AppendInput) => AppendResult;
  private readonly appendBatch: (inputs: AppendInput[]) => Settled<AppendResult>[];
  private closed = false;
  private batches = 0;

  static open(options: SqliteStoreOptions): SqliteStore {
    return new SqliteStore(resolveOptions(options));
  }

  private constructor(options: ResolvedOptions) {
    this.options = options;
    this.path = options.path;
    if (options.path !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(options.path)), { recursive: true });
    this.db = new Database(options.path, { timeout: options.busyTimeoutMs });
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
      migrate(this.db);
      this.sql = prepareStatements(this.db);
    } catch (err) {
      this.db.close();
      throw err;
    }
    // A nested better-sqlite3 transaction is a SAVEPOINT: one failing item rolls back alone.
    this.appendOne = this.db.transaction((input: AppendInput) => this.appendSync(input));
    this.appendBatch = this.db.transaction((inputs: AppendInput[]) => this.appendBatchSync(inputs));
    this.appends = new TickBatcher<AppendInput, AppendResult>({
      name: 'sqlite store',
      maxBatch: options.maxBatchAppends,
      maxPending: options.maxPendingAppends,
      run: (inputs) => {
        this.batches++;
        return this.appendBatch(inputs);
      },
    });
  }

  /** Append transactions committed so far and appends waiting for one (for metrics and tests). */
  appendStats(): { batches: number; pending: number } {
    return { batches: this.batches, pending: this.appends.pending };
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
    return this.sql.maxSeq.get(uid)?.max_seq ?? 0;
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
    return this.db.transaction(() => {
      this.sql.cursorPut.run(uid, convId, seq);
      return this.unreadOne(uid, convId);
    }).immediate();
  }

  async unread(uid: string, convIds?: string[]): Promise<UnreadInfo[]> {
    this.checkOpen();
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
        count: this.sql.unreadCount.get(uid, r.conv_id, r.read_seq, uid)!.n,
        readSeq: r.read_seq,
        lastSeq: r.last_seq,
      })).filter((u) => u.count > 0))();
  }

  /** Commits queued appends, then closes the database. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.appends.close();
    this.closed = true;
    this.db.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new UnavailableError('sqlite store is closed');
  }

  private appendBatchSync(inputs: AppendInput[]): Settled<AppendResult>[] {
    const out = inputs.map((input): Settled<AppendResult> => {
      try {
        return { ok: true, value: this.appendOne(input) };
      } catch (err) {
        return { ok: false, error: err instanceof ImError ? err : new InternalError(`append failed: ${String(err)}`, { cause: err }) };
      }
    });
    // Purge only what every item of this batch (and the wall clock) already sees as expired, so
    // a retry carrying an older sentAtMs never loses a record it would still match.
    const nowMs = Math.min(Date.now(), ...inputs.map((i) => i.sentAtMs));
    this.sql.dedupPurge.run(nowMs, this.options.dedupPurgeBatch);
    return out;
  }

  private appendSync(input: AppendInput): AppendResult {
    const s = this.sql;
    const prior = s.dedupGet.get(input.from, input.clientMsgId);
    const digest = sendDigest(input);
    if (prior && prior.expires_at_ms > input.sentAtMs) {
      checkSameSend(prior.digest, input, digest);
      const original = s.messageGet.get(prior.msg_id);
      if (original) return { message: toMessage(original), senderSeq: prior.sender_seq, seqs: new Map(), duplicate: true };
    }
    const convSeq = s.convNextSeq.get(input.convId)!.max_conv_seq;
    const content = Buffer.from(input.content.buffer, input.content.byteOffset, input.content.byteLength);
    s.messagePut.run(input.msgId, input.convId, convSeq, input.from, input.to, input.groupId,
      input.clientMsgId, input.contentType, content, input.sentAtMs);
    const seqs = new Map<string, number>();
    for (const uid of input.recipients) {
      const seq = s.userNextSeq.get(uid)!.max_seq;
      s.inboxPut.run(uid, seq, input.msgId, input.convId, input.from);
      s.userConvPut.run(uid, input.convId, seq, uid === input.from ? 0 : seq);
      seqs.set(uid, seq);
    }
    const senderSeq = seqs.get(input.from)!;
    s.dedupPut.run(input.from, input.clientMsgId, input.msgId, senderSeq, input.sentAtMs + input.dedupWindowMs, digest);
    const message: StoredMessage = {
      msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
      clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
      sentAtMs: input.sentAtMs, convSeq,
    };
    return { message, senderSeq, seqs, duplicate: false };
  }

  private unreadOne(uid: string, convId: string): UnreadInfo {
    const readSeq = this.sql.cursorGet.get(uid, convId)?.read_seq ?? 0;
    const lastSeq = this.sql.userConvLastSeq.get(uid, convId)?.last_seq ?? 0;
    const count = lastSeq > readSeq ? this.sql.unreadCount.get(uid, convId, readSeq, uid)!.n : 0;
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
