/**
 * The distributed Store: Apache Cassandra through cassandra-driver. Any number of processes may
 * open it over one keyspace at once; everything the contract promises "atomically" is settled
 * by single-partition lightweight transactions, never by this process's memory:
 * - inbox and history seqs: SeqLog (allocation and rows in one conditional write per partition),
 * - idempotent send: Dedup (an LWT claim on (sender, clientMsgId) before anything is written),
 * - group member cap: Groups (a conditional batch guarded by the group's version).
 * See docs/storage.md for the tables and why their partitions are shaped as they are.
 */
import { Client } from 'cassandra-driver';
import { BadRequestError, InternalError, OverloadedError, TimeoutError, UnavailableError } from '../common/errors';
import type { AppendInput, AppendResult, GroupInfo, InboxEntry, Page, Store, StoredMessage, UnreadInfo } from './store';
import { migrate, readSettings } from './cassandra-schema';
import { consistencyLevels, resolveCassandraOptions, type CassandraStoreOptions, type ResolvedCassandraOptions } from './cassandra-options';
import { SeqLog } from './cassandra-seqlog';
import { Dedup } from './cassandra-dedup';
import { Groups } from './cassandra-groups';
import { historyRowToMessage, historySpec, inboxRowToEntry, inboxSpec, INBOX_COLUMNS, HISTORY_COLUMNS, toStoredMessage } from './cassandra-rows';
import { Gate, num, toStoreError } from './cassandra-util';
import { checkSameSend, sendDigest } from './send-digest';
import { validateAppend, validateLimit, validateMaxMembers, validateNewGroup, validateSeq, validateUids } from './validate';

export type { CassandraStoreOptions } from './cassandra-options';
export { migrate } from './cassandra-schema';

interface LocalSend {
  expiresAtMs: number;
  digest: Buffer;
  result: Promise<AppendResult>;
}

export class CassandraStore implements Store {
  readonly keyspace: string;
  private readonly o: ResolvedCassandraOptions;
  private readonly gate: Gate;
  private readonly inbox: SeqLog<StoredMessage>;
  private readonly historyLog: SeqLog<AppendInput>;
  private readonly dedup: Dedup;
  private readonly groups: Groups;
  private readonly q: Record<string, string>;
  /** Sends of this process still running, by sender and clientMsgId: a local retry waits for it. */
  private readonly localSends = new Map<string, LocalSend>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;

  /** Connects, creates or upgrades the schema, and returns a ready store. */
  static async open(options: CassandraStoreOptions): Promise<CassandraStore> {
    const o = resolveCassandraOptions(options);
    const levels = consistencyLevels(o.consistency);
    const client = new Client({
      contactPoints: o.contactPoints,
      // With localDataCenter set, the default policy is token-aware within that data center:
      // prepared statements carry their routing key, so each goes straight to a replica.
      localDataCenter: o.localDataCenter,
      ...(o.credentials && { credentials: o.credentials }),
      socketOptions: { connectTimeout: o.connectTimeoutMs, readTimeout: o.requestTimeoutMs },
      queryOptions: { consistency: levels.consistency, serialConsistency: levels.serial, prepare: true },
    });
    client.on('log', (level: string, className: string, message: string) => {
      if (level === 'warning' || level === 'error') o.logger.warn('cassandra driver', { level, className, message });
    });
    try {
      await client.connect();
      await migrate(client, o.keyspace, {
        replication: o.replication, localDataCenter: o.localDataCenter,
        inboxBucketSize: o.inboxBucketSize, historyBucketSize: o.historyBucketSize,
      });
      const settings = await readSettings(client, o.keyspace);
      if (settings.inboxBucketSize !== o.inboxBucketSize || settings.historyBucketSize !== o.historyBucketSize) {
        o.logger.info('cassandra store: keyspace keeps the bucket sizes it was created with', { ...settings });
      }
      return new CassandraStore(client, { ...o, ...settings }, levels.serial);
    } catch (err) {
      await client.shutdown().catch(() => undefined);
      throw err instanceof Error && err.name === 'ConfigError' ? err : toStoreError(err, 'cassandra store open');
    }
  }

  private constructor(private readonly client: Client, o: ResolvedCassandraOptions, serial: number) {
    this.o = o;
    this.keyspace = o.keyspace;
    this.gate = new Gate(o.maxInFlight);
    const ks = o.keyspace;
    const logOptions = {
      client, keyspace: ks, gate: this.gate, serialConsistency: serial, logger: o.logger,
      maxBatchEntries: o.maxBatchEntries, maxBatchBytes: o.maxBatchBytes, maxCasAttempts: o.maxCasAttempts,
      maxPendingEntries: o.maxPendingAppends * 4, maxCachedKeys: o.maxCachedHeads,
    };
    this.inbox = new SeqLog(inboxSpec(o.inboxBucketSize), logOptions);
    this.historyLog = new SeqLog(historySpec(o.historyBucketSize), logOptions);
    this.dedup = new Dedup({
      client, keyspace: ks, serialConsistency: serial, waitMs: o.dedupWaitMs, pollMs: o.dedupPollMs,
      claimLeaseMs: o.claimLeaseMs, ttlSlackSeconds: o.dedupTtlSlackSeconds,
    });
    this.groups = new Groups({ client, keyspace: ks, serialConsistency: serial, maxCasAttempts: o.maxCasAttempts });
    this.q = {
      sync: `SELECT seq, ${INBOX_COLUMNS.join(', ')} FROM ${ks}.inbox WHERE uid = ? AND bucket = ? AND seq > ? LIMIT ?`,
      history: `SELECT seq, ${HISTORY_COLUMNS.join(', ')} FROM ${ks}.history WHERE conv_id = ? AND bucket = ? AND seq < ? LIMIT ?`,
      historyOne: `SELECT seq, ${HISTORY_COLUMNS.join(', ')} FROM ${ks}.history WHERE conv_id = ? AND bucket = ? AND seq = ?`,
      convOwn: `UPDATE ${ks}.user_convs USING TIMESTAMP ? SET last_seq = ? WHERE uid = ? AND conv_id = ?`,
      convIncoming: `UPDATE ${ks}.user_convs USING TIMESTAMP ? SET last_seq = ?, last_incoming_seq = ? WHERE uid = ? AND conv_id = ?`,
      unreadPut: `INSERT INTO ${ks}.conv_unread (uid, conv_id, bucket, seq) VALUES (?, ?, ?, ?)`,
      unreadCount: `SELECT COUNT(*) AS n FROM ${ks}.conv_unread WHERE uid = ? AND conv_id = ? AND bucket = ? AND seq > ?`,
      cursorPut: `UPDATE ${ks}.user_convs USING TIMESTAMP ? SET read_seq = ? WHERE uid = ? AND conv_id = ?`,
      convGet: `SELECT last_seq, last_incoming_seq, read_seq FROM ${ks}.user_convs WHERE uid = ? AND conv_id = ?`,
      convList: `SELECT conv_id, last_seq, last_incoming_seq, read_seq FROM ${ks}.user_convs WHERE uid = ? LIMIT ?`,
    };
  }

  appendMessage(input: AppendInput): Promise<AppendResult> {
    try {
      this.checkOpen();
      validateAppend(input);
      if (this.inFlight.size >= this.o.maxPendingAppends) {
        throw new OverloadedError(`cassandra store: ${this.inFlight.size} appends already in flight`);
      }
    } catch (err) {
      return Promise.reject(err);
    }
    // Registered before the first await, so close() always waits for it.
    return this.track(this.appendDeduped(input));
  }

  async sync(uid: string, afterSeq: number, limit: number): Promise<Page<InboxEntry>> {
    this.checkOpen();
    validateSeq('afterSeq', afterSeq);
    const n = Math.min(validateLimit(limit), this.o.maxPageItems);
    const items: InboxEntry[] = [];
    // Seqs are gap-free, so a bucket read that ends exactly at the bucket's last seq means the
    // timeline continues in the next bucket; anything shorter is the end of it.
    for (let bucket = this.inbox.bucketOf(afterSeq + 1), after = afterSeq; items.length <= n; bucket++) {
      const rs = await this.read(this.q.sync, [uid, bucket, after, n + 1 - items.length], 'sync');
      items.push(...rs.map(inboxRowToEntry));
      after = items.length > 0 ? items[items.length - 1].seq : after;
      if (after !== this.inbox.bucketEnd(bucket)) break;
    }
    return { items: items.slice(0, n), hasMore: items.length > n };
  }

  async maxSeq(uid: string): Promise<number> {
    this.checkOpen();
    return (await this.wrap(this.inbox.readHead(uid), 'maxSeq')).maxSeq;
  }

  async history(convId: string, beforeConvSeq: number, limit: number): Promise<Page<StoredMessage>> {
    this.checkOpen();
    validateSeq('beforeConvSeq', beforeConvSeq);
    const n = Math.min(validateLimit(limit), this.o.maxPageItems);
    const head = await this.wrap(this.historyLog.readHead(convId), 'history');
    // Clamped to the newest seq, so a huge cursor never walks empty future buckets.
    const before = beforeConvSeq === 0 ? head.maxSeq + 1 : Math.min(beforeConvSeq, head.maxSeq + 1);
    const items: StoredMessage[] = [];
    for (let bucket = this.historyLog.bucketOf(before - 1); bucket >= 0 && before > 1 && items.length <= n; bucket--) {
      const rs = await this.read(this.q.history, [convId, bucket, before, n + 1 - items.length], 'history');
      items.push(...rs.map((r) => historyRowToMessage(convId, r)));
    }
    return { items: items.slice(0, n), hasMore: items.length > n };
  }

  async createGroup(group: GroupInfo, maxMembers: number): Promise<GroupInfo> {
    this.checkOpen();
    const members = validateNewGroup(group, maxMembers);
    return this.wrap(this.groups.create(group, members), 'createGroup');
  }

  async getGroup(groupId: string): Promise<GroupInfo | undefined> {
    this.checkOpen();
    return this.wrap(this.groups.get(groupId), 'getGroup');
  }

  async addMembers(groupId: string, uids: string[], maxMembers: number): Promise<GroupInfo> {
    this.checkOpen();
    validateMaxMembers(maxMembers);
    validateUids('uids', uids);
    return this.wrap(this.groups.add(groupId, uids, maxMembers), 'addMembers');
  }

  async removeMembers(groupId: string, uids: string[], newOwner?: string): Promise<GroupInfo> {
    this.checkOpen();
    validateUids('uids', uids);
    return this.wrap(this.groups.remove(groupId, uids, newOwner), 'removeMembers');
  }

  async setReadCursor(uid: string, convId: string, seq: number): Promise<UnreadInfo> {
    this.checkOpen();
    validateSeq('seq', seq);
    // Written at timestamp = seq: a smaller cursor arriving later loses to the larger one.
    await this.wrap(this.client.execute(this.q.cursorPut, [seq, seq, uid, convId], { prepare: true }), 'setReadCursor');
    return this.unreadOne(uid, convId);
  }

  async unread(uid: string, convIds?: string[]): Promise<UnreadInfo[]> {
    this.checkOpen();
    if (convIds !== undefined) {
      const unique = [...new Set(convIds)];
      if (unique.length > this.o.maxUnreadConvs) {
        throw new BadRequestError(`at most ${this.o.maxUnreadConvs} conversations per unread call, got ${unique.length}`);
      }
      return Promise.all(unique.map((c) => this.unreadOne(uid, c)));
    }
    const rows = await this.read(this.q.convList, [uid, this.o.maxUnreadScanConvs], 'unread');
    const candidates = rows
      .map((r) => ({ convId: r.conv_id as string, lastSeq: num(r.last_seq) ?? 0, lastIncoming: num(r.last_incoming_seq) ?? 0, readSeq: num(r.read_seq) ?? 0 }))
      .filter((c) => c.lastIncoming > c.readSeq)
      .sort((a, b) => b.lastIncoming - a.lastIncoming)
      .slice(0, this.o.maxUnreadConvs);
    const out = await Promise.all(candidates.map(async (c) => ({
      convId: c.convId, count: await this.countUnread(uid, c.convId, c.readSeq, c.lastIncoming), readSeq: c.readSeq, lastSeq: c.lastSeq,
    })));
    return out.filter((u) => u.count > 0);
  }

  /** Waits for appends in flight, then closes the driver. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      await this.client.shutdown();
    })();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new UnavailableError('cassandra store is closed');
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    const done = () => this.inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  private async wrap<T>(p: Promise<T>, what: string): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw toStoreError(err, what);
    }
  }

  private async read(query: string, params: unknown[], what: string): Promise<Record<string, unknown>[]> {
    const rs = await this.wrap(this.gate.run(() => this.client.execute(query, params, { prepare: true })), what);
    return rs.rows;
  }

  /** In-process retries of a send still running wait for it instead of racing it through LWTs. */
  private async appendDeduped(input: AppendInput): Promise<AppendResult> {
    const key = `${input.from}\n${input.clientMsgId}`;
    const local = this.localSends.get(key);
    const digest = sendDigest(input);
    if (local && local.expiresAtMs > input.sentAtMs) {
      checkSameSend(local.digest, input, digest);
      const original = await local.result.catch(() => undefined);
      if (original) return { message: original.message, senderSeq: original.senderSeq, seqs: new Map(), duplicate: true };
    }
    const mine: LocalSend = { expiresAtMs: input.sentAtMs + input.dedupWindowMs, digest, result: this.appendClaimed(input) };
    this.localSends.set(key, mine);
    try {
      return await mine.result;
    } finally {
      if (this.localSends.get(key) === mine) this.localSends.delete(key);
    }
  }

  private async appendClaimed(input: AppendInput): Promise<AppendResult> {
    const claim = await this.wrap(this.dedup.claim(input), 'append dedup');
    if (!claim.won) {
      const r = claim.record;
      const rows = await this.read(this.q.historyOne, [r.convId, this.historyLog.bucketOf(r.convSeq), r.convSeq], 'append dedup');
      if (rows.length === 0) throw new InternalError(`dedup record of ${input.clientMsgId} points at missing ${r.convId}#${r.convSeq}`);
      return { message: historyRowToMessage(r.convId, rows[0]), senderSeq: r.senderSeq, seqs: new Map(), duplicate: true };
    }
    let convSeq: number;
    try {
      convSeq = await this.historyLog.append(input.convId, input);
    } catch (err) {
      // Definitely nothing written: free the claim so the client's retry goes ahead at once.
      // (After a timeout the write may have landed; the claim then stays until its lease ends.)
      if (!(err instanceof TimeoutError)) await this.dedup.release(input).catch(() => undefined);
      throw err;
    }
    const message = toStoredMessage(input, convSeq);
    // Every recipient's timeline is its own SeqLog lane: they proceed concurrently, each
    // coalescing with other sends to the same user.
    const seqList = await Promise.all(input.recipients.map((uid) => this.inbox.append(uid, message)));
    const seqs = new Map(input.recipients.map((uid, i) => [uid, seqList[i]]));
    await Promise.all(input.recipients.map((uid, i) => this.indexForUnread(uid, input, seqList[i])));
    const senderSeq = seqs.get(input.from)!;
    await this.dedup.complete(input, convSeq, senderSeq).catch((err) => {
      // The message is stored; a duplicate arriving now waits, then takes the claim over after its lease.
      this.o.logger.warn('cassandra store: could not complete dedup record', { from: input.from, clientMsgId: input.clientMsgId, err });
    });
    return { message, senderSeq, seqs, duplicate: false };
  }

  private async indexForUnread(uid: string, input: AppendInput, seq: number): Promise<void> {
    const x = (query: string, params: unknown[]) => this.gate.run(() => this.client.execute(query, params, { prepare: true }));
    if (uid === input.from) {
      await this.wrap(x(this.q.convOwn, [seq, seq, uid, input.convId]), 'append index');
      return;
    }
    await this.wrap(Promise.all([
      x(this.q.convIncoming, [seq, seq, seq, uid, input.convId]),
      x(this.q.unreadPut, [uid, input.convId, this.inbox.bucketOf(seq), seq]),
    ]), 'append index');
  }

  private async unreadOne(uid: string, convId: string): Promise<UnreadInfo> {
    const [r] = await this.read(this.q.convGet, [uid, convId], 'unread');
    const readSeq = num(r?.read_seq) ?? 0;
    const lastSeq = num(r?.last_seq) ?? 0;
    const lastIncoming = num(r?.last_incoming_seq) ?? 0;
    const count = lastIncoming > readSeq ? await this.countUnread(uid, convId, readSeq, lastIncoming) : 0;
    return { convId, count, readSeq, lastSeq };
  }

  /** Incoming messages in (readSeq, lastIncoming], bucket by bucket, stopping at maxUnreadCount. */
  private async countUnread(uid: string, convId: string, readSeq: number, lastIncoming: number): Promise<number> {
    let count = 0;
    for (let b = this.inbox.bucketOf(lastIncoming); b >= this.inbox.bucketOf(readSeq + 1) && count < this.o.maxUnreadCount; b--) {
      const [r] = await this.read(this.q.unreadCount, [uid, convId, b, readSeq], 'unread');
      count += num(r?.n) ?? 0;
    }
    return Math.min(count, this.o.maxUnreadCount);
  }
}
