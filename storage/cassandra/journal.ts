/**
 * Idempotent send without a per-message LWT (docs/sequencer.md): the owner of the SENDER's shard
 * keeps the dedup journal of (sender, clientMsgId). Being the only writer of those rows, it needs
 * no conditional write: it looks the pair up (memory, else one point read) and either answers
 * with the stored original, tells the caller to re-drive an earlier attempt that did not finish
 * (same msgId; appends are idempotent by msgId), or writes a new journal row and lets the send go
 * ahead. Calls for one pair are serialized here, so two racing attempts see one journal row.
 */
import type { Client } from 'cassandra-driver';
import type { Lease } from './lease';
import { NotOwnerError, type OwnedShard, type Shards } from './shards';
import { KeyedMutex, LruMap, num } from './util';
import type { LogOrder, OwnerLog } from './log';
import { routingKey } from './writer';
import { packValues, unpackValues } from './values';
import { checkSameSend, sendDigest } from '../send-digest';
import { hash32, KeyHeads, type HeadBudget, type PackedHeads } from './heads';
import type { AppendInput } from '../store';

export type JournalAnswer =
  | { state: 'new'; createdMs: number }
  | { state: 'redrive'; msgId: string; sinceMs: number }
  | { state: 'done'; msgId: string; convId: string; convSeq: number; senderSeq: number };

export interface Completion {
  from: string;
  clientMsgId: string;
  msgId: string;
  convId: string;
  convSeq: number;
  senderSeq: number;
}

interface Record {
  from: string;
  shard: number;
  msgId: string;
  expiresAtMs: number;
  createdMs: number;
  digest: Buffer | null;
  done?: { convId: string; convSeq: number; senderSeq: number };
}

export interface JournalOptions {
  client: Client;
  keyspace: string;
  lease: Lease;
  shards: Shards;
  writer: OwnerLog;
  maxCached: number;
  ttlSlackSeconds: number;
  /** Sends journaled before this time (ms) may be in the older dedup table (schema version 4). */
  journalSinceMs: number;
  /** Heads (heads.ts) of senders that left memory, shared with the store's timelines. */
  heads: HeadBudget;
}

export class Journal {
  private readonly mem: LruMap<string, Record>;
  /** Per sender: every clientMsgId with a journal row, so a new one needs no read (see known()). */
  private readonly senders: LruMap<string, Sent>;
  /** Senders of this epoch that left `senders`: hashes of their clientMsgIds (heads.ts). */
  private readonly heads: KeyHeads;
  private readonly mutex = new KeyedMutex();
  private readonly q: { get: string; getLegacy: string; sent: string; open: string };

  constructor(private readonly o: JournalOptions) {
    // Records are forgotten in LRU order: read() makes the sender's logged rows reach the table
    // before it looks there. (Pinning a record while its sender had rows pending kept every record
    // of a sender who never paused for a window: unbounded, and each set() scanned pinned ones.)
    this.mem = new LruMap(o.maxCached);
    // A sender's list stays while its rows are pending: it is read from the table only when absent.
    this.heads = new KeyHeads(o.heads);
    this.senders = new LruMap(o.maxCached, (x) => o.writer.pendingFor(x.from), (_, x) => this.keepHead(x));
    const t = `${o.keyspace}.journal`;
    const cols = 'msg_id, expires_at_ms, claimed_at_ms, conv_id, conv_seq, sender_seq, digest';
    this.q = {
      // body (schema version 8) and, for rows written before it, the separate columns; the newer
      // of the two wins (an older release may have written the row again since).
      get: `SELECT body, WRITETIME(body) AS body_wt, ${cols}, WRITETIME(msg_id) AS cols_wt FROM ${t} WHERE from_uid = ? AND client_msg_id = ?`,
      getLegacy: `SELECT ${cols} FROM ${o.keyspace}.dedup WHERE from_uid = ? AND client_msg_id = ?`,
      sent: `SELECT client_msg_id FROM ${t} WHERE from_uid = ? LIMIT ${MAX_SENT + 1}`,
      // One packed cell: a late write of an older attempt (lower timestamp) loses it whole.
      open: `INSERT INTO ${t} (from_uid, client_msg_id, body) VALUES (?, ?, ?) USING TTL ?`,
    };
  }

  /** Senders whose head is kept here (out of memory otherwise). */
  get keptHeads(): number {
    return this.heads.size;
  }

  ttlSeconds(input: Pick<AppendInput, 'dedupWindowMs'>): number {
    return Math.max(1, Math.ceil(input.dedupWindowMs / 1000) + this.o.ttlSlackSeconds);
  }

  forget(shard?: number): void {
    this.mem.deleteWhere((r) => shard === undefined || r.shard === shard);
    this.senders.deleteWhere((x) => shard === undefined || x.shard === shard);
    this.heads.forget(shard);
  }

  /**
   * A sender's list forgotten for room (never while its rows are pending) keeps the hashes of its
   * clientMsgIds when it was read in the shard's current epoch: a clientMsgId whose hash is not
   * among them has no journal row, one whose hash is (a retry, or rarely another with the same
   * hash) is looked up in the table.
   */
  private keepHead(x: Sent): void {
    if (this.o.shards.mine(x.shard)?.epoch !== x.epoch) return;
    const hashes = hashesOf(x);
    if (hashes) this.heads.putPacked(x.shard, x.epoch, x.from, hashes);
  }

  /**
   * The heads of the senders these shards' owners read in their epochs (lists in memory and heads
   * kept), packed per shard, for the shards' next owners, once every row of the shards is in its
   * table (handoff.ts).
   */
  handOff(owned: ReadonlyMap<number, OwnedShard>): Map<number, PackedHeads> {
    return this.heads.handOff(owned, this.senders.values(), (x) => x.from, hashesOf, (from) => this.senders.has(from));
  }

  /**
   * Senders' heads handed off by the previous owner at a clean release (handoff.ts), as this
   * epoch's: the previous epoch's rows were all in the table at the release and nobody wrote the
   * senders' rows since, so the hashes still cover every clientMsgId with a row.
   */
  adopt(st: OwnedShard, heads: Iterable<[string, number[]]>): void {
    for (const [from, hashes] of heads) this.heads.putPacked(st.shard, st.epoch, from, hashes);
  }

  /**
   * `order.queued` hears a new send's answer once its journal row is queued for the log (the
   * pair stays locked until the row is logged, so a second attempt still waits for it).
   */
  open(input: AppendInput, order?: LogOrder<JournalAnswer>): Promise<JournalAnswer> {
    const shard = this.owned(input.from);
    const key = pairKey(input.from, input.clientMsgId);
    return this.mutex.run(key, async () => {
      const digest = sendDigest(input);
      const { check: stillMine, epoch } = this.guard(input.from);
      let rec = this.mem.get(key);
      let sent: Sent | undefined;
      if (!rec) {
        sent = await this.known(input.from, shard, epoch);
        const legacy = Date.now() < this.o.journalSinceMs + input.dedupWindowMs;
        if (!sent.cmids || sent.cmids.has(input.clientMsgId) || sent.older?.includes(hash32(input.clientMsgId)) || legacy) {
          rec = await this.read(shard, input.from, input.clientMsgId, input.dedupWindowMs);
        }
      }
      if (rec && rec.expiresAtMs > input.sentAtMs) {
        checkSameSend(rec.digest, input, digest);
        this.mem.set(key, rec);
        if (rec.done) return { state: 'done', msgId: rec.msgId, ...rec.done };
        return { state: 'redrive', msgId: rec.msgId, sinceMs: rec.createdMs };
      }
      const fresh: Record = { from: input.from, shard, msgId: input.msgId, expiresAtMs: input.sentAtMs + input.dedupWindowMs, createdMs: Date.now(), digest };
      // Listed before the write: if the write fails, a retry reads the table instead of trusting the list.
      sent?.cmids?.add(input.clientMsgId);
      const answer: JournalAnswer = { state: 'new', createdMs: fresh.createdMs };
      const logged = this.o.writer.enqueue([{
        query: this.q.open,
        params: [input.from, input.clientMsgId, packValues(BODY_TAG, [fresh.msgId, fresh.expiresAtMs, fresh.createdMs, digest]), this.ttlSeconds(input)],
        routingKey: sent?.routingKey ?? routingKey(input.from), bytes: 160, key: input.from, shard, epoch,
      }], stillMine);
      order?.queued?.(answer, logged);
      await logged.done;
      this.o.lease.check(0, 'send journal');
      stillMine();
      this.mem.set(key, fresh);
      return answer;
    });
  }

  /**
   * Records, in this owner's memory, where the message went: later attempts here answer with it
   * at once. Nothing is written: a partition write costs as much as one of the message's own rows
   * (docs/sequencer.md, Cost), and a retry that finds the journal row without it (after a change
   * of owner, or once memory forgot it) re-drives, which the idempotent appends answer with the
   * seqs the message already has. Ignores a replaced record.
   */
  complete(c: Completion): Promise<void> {
    const shard = this.owned(c.from);
    const key = pairKey(c.from, c.clientMsgId);
    return this.mutex.run(key, async () => {
      const rec = this.mem.get(key) ?? (await this.read(shard, c.from, c.clientMsgId, 0));
      if (!rec || rec.msgId !== c.msgId) return;
      rec.done ??= { convId: c.convId, convSeq: c.convSeq, senderSeq: c.senderSeq };
      this.mem.set(key, rec);
    });
  }

  /**
   * The clientMsgIds `from` has journal rows for, read once per sender and epoch (one partition
   * read, instead of a point read per send): in this epoch this process is the only writer of
   * the sender's rows, the table held every earlier row when the epoch began (a takeover replays
   * the previous owner's log first), and every row opened here is added as it is written. A
   * sender whose list left memory in this epoch starts from its head (the hashes), reading nothing.
   */
  private async known(from: string, shard: number, epoch: number): Promise<Sent> {
    let x = this.senders.get(from);
    if (!x || x.epoch !== epoch) {
      const older = this.heads.takePacked(shard, epoch, from);
      const fresh: Sent = { from, shard, epoch, cmids: new Set(), older, loaded: older !== undefined, ready: Promise.resolve(), routingKey: routingKey(from) };
      if (!older) {
        fresh.ready = (async () => {
          const rs = await this.o.client.execute(this.q.sent, [from], { prepare: true, fetchSize: MAX_SENT + 1 });
          if (rs.rows.length > MAX_SENT) fresh.cmids = undefined;
          else for (const r of rs.rows) fresh.cmids!.add(r.client_msg_id as string);
          fresh.loaded = true;
        })();
      }
      fresh.ready.catch(() => { if (this.senders.get(from) === fresh) this.senders.delete(from); });
      this.senders.set(from, fresh);
      x = fresh;
    }
    await x.ready;
    return x;
  }

  /** A check that the sender's shard is still owned here in the epoch it is owned in now. */
  private guard(from: string): { check: () => void; epoch: number } {
    const shard = this.o.shards.of(from);
    const epoch = this.o.shards.mine(shard)?.epoch;
    const check = () => {
      if (epoch === undefined || this.o.shards.mine(shard)?.epoch !== epoch) {
        throw new NotOwnerError(`send journal of ${from}: shard ${shard} changed owner`);
      }
    };
    check();
    return { check, epoch: epoch! };
  }

  private owned(from: string): number {
    const shard = this.o.shards.of(from);
    if (!this.o.shards.mine(shard)) throw new NotOwnerError(`send journal of ${from}: shard ${shard} is not owned here`);
    return shard;
  }

  private async read(shard: number, from: string, clientMsgId: string, windowMs: number): Promise<Record | undefined> {
    // The sender's journal rows logged here and not yet written behind go first: the row may be one.
    await this.o.writer.flushKey(from);
    let r = (await this.o.client.execute(this.q.get, [from, clientMsgId], { prepare: true })).first();
    // Within a window of the upgrade to the journal table, a send may have been journaled in dedup.
    if (!r && windowMs > 0 && Date.now() < this.o.journalSinceMs + windowMs) r = (await this.o.client.execute(this.q.getLegacy, [from, clientMsgId], { prepare: true })).first();
    if (!r) return undefined;
    const body = r.body as Buffer | null | undefined;
    if (body && (num(r.body_wt) ?? 0) >= (num(r.cols_wt) ?? 0)) {
      const [msgId, expiresAtMs, createdMs, packedDigest] = unpackValues(BODY_TAG, body);
      return {
        from, shard, msgId: msgId as string, expiresAtMs: expiresAtMs as number, createdMs: createdMs as number,
        digest: (packedDigest as Buffer | null) ?? null,
      };
    }
    const convId = (r.conv_id as string | null) ?? null;
    const convSeq = num(r.conv_seq);
    const senderSeq = num(r.sender_seq);
    return {
      from, shard, msgId: String(r.msg_id), expiresAtMs: num(r.expires_at_ms) ?? 0, createdMs: num(r.claimed_at_ms) ?? 0,
      digest: (r.digest as Buffer | null) ?? null,
      ...(convId !== null && convSeq !== null && senderSeq !== null && { done: { convId, convSeq, senderSeq } }),
    };
  }
}

/** The journal row's packed body: msgId, expiresAtMs, claimedAtMs (createdMs), digest. */
const BODY_TAG = 0x02;

/** Journal rows of one sender read into memory at most; a sender with more is looked up per send. */
const MAX_SENT = 10_000;

interface Sent {
  from: string;
  shard: number;
  epoch: number;
  /** undefined: more than MAX_SENT rows (each send reads its own row). */
  cmids: Set<string> | undefined;
  /** Hashes (hash32) of the clientMsgIds listed before the list last left memory, from its head. */
  older?: number[];
  /** The list is complete (read, or taken from a head). */
  loaded: boolean;
  ready: Promise<void>;
  /** The sender's partition's routing key, computed once. */
  routingKey: Buffer;
}

/**
 * Hashes of every clientMsgId a complete list holds (a clientMsgId is listed before its row is
 * written, so one whose write failed is still there); none for a list still being read or one
 * over MAX_SENT (such a sender is read per send anyway).
 */
function hashesOf(x: Sent): number[] | undefined {
  if (!x.cmids || !x.loaded) return undefined;
  const hashes = x.older ? [...x.older] : [];
  for (const c of x.cmids) hashes.push(hash32(c));
  return hashes.length <= MAX_SENT ? hashes : undefined;
}

function pairKey(from: string, clientMsgId: string): string {
  return `${from}\n${clientMsgId}`;
}
