/**
 * Timelines (inboxes and conversation histories) under owned sequencers (docs/sequencer.md).
 *
 * TimelineReader serves any process: rows live in (key, bucket) partitions of `bucketSize` seqs,
 * and seq_heads.buckets lists the buckets a timeline has rows in (seqs jump across an ownership
 * change, so buckets may be skipped).
 *
 * OwnedTimelines runs on the owner of a key's shard only. Per key it keeps the newest seq and the
 * recent msgIds in memory and serializes the key's writes: the next rows of a key are sent only
 * after the previous ones are acknowledged, so seq n+1 is never visible before n (the committed
 * watermark every reader relies on). Appends are idempotent by msgId. On its first touch of a key
 * in an epoch, the owner reads the key's tail and writes a range tombstone, at the epoch's fence
 * timestamp, over every seq a previous owner may still have in flight: such a write, landing
 * late, is shadowed for good.
 */
import type { Client } from 'cassandra-driver';
import { TimeoutError, UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { Lease } from './lease';
import { NotOwnerError, type OwnedShard, type Shards } from './shards';
import { LruMap, num, sleep, toStoreError } from './util';
import { LogOrderError, loggedOrQueued, type LogOrder, type LoggedRow, type LogTicket, type OwnerLog } from './log';
import { routingKey } from './writer';
import { hash32, KeyHeads, packHead, unpackHead, type Head, type HeadBudget, type PackedHeads } from './heads';

export interface TimelineSpec<E> {
  kind: 'inbox' | 'history';
  table: string;
  keyColumn: string;
  /** The columns a row is written with (after key, bucket, seq), in row() order. */
  columns: readonly string[];
  /** The columns a reader selects: these and those of rows written by earlier versions. */
  readColumns: readonly string[];
  bucketSize: number;
  /** A row's bound values: key, bucket, seq, then the columns (one array, built once). */
  row: (key: string, bucket: number, seq: number, e: E) => unknown[];
  idOf: (e: E) => string;
  sizeOf: (e: E) => number;
}

type DbRow = Record<string, unknown>;

/** Clock difference allowed between the journal owner (sinceMs) and a timeline owner. */
export const CLOCK_MARGIN_MS = 5000;

/** The insert of a timeline row: key, bucket, seq, then the spec's columns (the values row() gives). */
export function insertQuery(keyspace: string, spec: Pick<TimelineSpec<unknown>, 'table' | 'keyColumn' | 'columns'>): string {
  return `INSERT INTO ${keyspace}.${spec.table} (${spec.keyColumn}, bucket, seq, ${spec.columns.join(', ')}) VALUES (?, ?, ?, ${spec.columns.map(() => '?').join(', ')})`;
}

/** The buckets a key may have rows in, from its seq_heads row (TimelineReader.buckets). */
function bucketsOf({ listed, legacy }: { listed: number[]; legacy: number }): number[] {
  const out = new Set<number>(listed);
  out.add(0);
  for (let b = 0; b <= legacy; b++) out.add(b);
  return [...out].sort((a, b) => a - b);
}

export class TimelineReader<E> {
  private readonly q: Record<string, string>;

  constructor(readonly spec: TimelineSpec<E>, private readonly client: Client, keyspace: string) {
    const t = `${keyspace}.${spec.table}`;
    const k = spec.keyColumn;
    const read = spec.readColumns.join(', ');
    this.q = {
      heads: `SELECT bucket, buckets FROM ${keyspace}.seq_heads WHERE kind = ? AND id = ?`,
      addBucket: `UPDATE ${keyspace}.seq_heads SET buckets = buckets + ? WHERE kind = ? AND id = ?`,
      after: `SELECT seq, ${read} FROM ${t} WHERE ${k} = ? AND bucket = ? AND seq > ? ORDER BY seq ASC LIMIT ?`,
      before: `SELECT seq, ${read} FROM ${t} WHERE ${k} = ? AND bucket = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
      at: `SELECT seq, ${read} FROM ${t} WHERE ${k} = ? AND bucket = ? AND seq IN ?`,
      tail: `SELECT seq, msg_id, WRITETIME(msg_id) AS wt FROM ${t} WHERE ${k} = ? AND bucket = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
      insert: insertQuery(keyspace, spec),
      fence: `DELETE FROM ${t} USING TIMESTAMP ? WHERE ${k} = ? AND bucket = ? AND seq > ? AND seq <= ?`,
    };
  }

  get queries(): Readonly<Record<string, string>> {
    return this.q;
  }

  bucketOf(seq: number): number {
    return Math.floor(seq / this.spec.bucketSize);
  }

  /**
   * Buckets the key may have rows in, ascending: the listed ones, bucket 0 (v1 timelines that
   * never left it wrote no hint) and, for v1 timelines, every bucket up to the hint.
   */
  async buckets(key: string, client: Client = this.client): Promise<number[]> {
    return bucketsOf(await this.listed(key, client));
  }

  /**
   * The buckets recorded in seq_heads (the owner adds to this list) and the v1 hint (-1: none).
   * `client`: an owner's first touch passes its gated client (the store's in-flight bound).
   */
  async listed(key: string, client: Client = this.client): Promise<{ listed: number[]; legacy: number }> {
    const rs = await client.execute(this.q.heads, [this.spec.kind, key], { prepare: true });
    const r = rs.first();
    return { listed: (r?.buckets as number[] | null | undefined) ?? [], legacy: num(r?.bucket) ?? -1 };
  }

  /** Rows with seq > after, ascending, at most limit. */
  async after(key: string, after: number, limit: number): Promise<DbRow[]> {
    const rows: DbRow[] = [];
    const first = this.bucketOf(after + 1);
    const read = async (b: number) => {
      const rs = await this.client.execute(this.q.after, [key, b, after, limit - rows.length], { prepare: true });
      rows.push(...rs.rows);
    };
    await read(first);
    if (rows.length >= limit) return rows;
    for (const b of await this.buckets(key)) {
      if (b <= first) continue;
      await read(b);
      if (rows.length >= limit) break;
    }
    return rows;
  }

  /** Rows with seq < before (0: newest), descending, at most limit. */
  async before(key: string, before: number, limit: number): Promise<DbRow[]> {
    const rows: DbRow[] = [];
    const lt = before === 0 ? Number.MAX_SAFE_INTEGER : before;
    for (const b of (await this.buckets(key)).reverse()) {
      if (b > this.bucketOf(lt - 1)) continue;
      const rs = await this.client.execute(this.q.before, [key, b, lt, limit - rows.length], { prepare: true });
      rows.push(...rs.rows);
      if (rows.length >= limit) break;
    }
    return rows;
  }

  /** The rows at these seqs (those that exist), one read per bucket. */
  async at(key: string, seqs: Iterable<number>): Promise<DbRow[]> {
    const byBucket = new Map<number, number[]>();
    for (const seq of seqs) {
      const b = this.bucketOf(seq);
      const list = byBucket.get(b);
      if (list) list.push(seq);
      else byBucket.set(b, [seq]);
    }
    const pages = await Promise.all([...byBucket].map(([b, list]) => this.client.execute(this.q.at, [key, b, list], { prepare: true })));
    return pages.flatMap((rs) => rs.rows);
  }

  /** The newest seq (0 when empty). */
  async newest(key: string): Promise<number> {
    const rows = await this.before(key, 0, 1);
    return rows.length > 0 ? num(rows[0].seq) ?? 0 : 0;
  }
}

interface Pending<E> {
  entry: E;
  /**
   * When the send was journaled (ms, the journal owner's clock): the entry cannot have been
   * written to this key before then, so memory answers "not written yet" when it holds every
   * append since then; otherwise the tail is read back to this time.
   */
  sinceMs?: number;
  order?: LogOrder<number>;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

/** An entry given a new seq in this round, and an entry of this round that repeats one of them. */
interface Fresh<E> { p: Pending<E>; seq: number }
interface Dupe<E> { p: Pending<E>; id: string }

interface Lane<E> {
  key: string;
  shard: number;
  epoch: number;
  loaded: boolean;
  /** Memory (`recent`) holds every append of this key written since this time (ms). */
  coveredFromMs: number;
  cur: number;
  buckets: Set<number>;
  /** msgId -> seq of the entries of the last `recentMs` (at least `recentPerKey`). */
  recent: Map<string, number>;
  /**
   * The same entries oldest first, as msgIds and append times (ms) from `recentHead` on: plain
   * arrays, not an object per entry, since a busy key holds a couple of minutes of them.
   */
  recentIds: string[];
  recentAts: number[];
  recentHead: number;
  /**
   * Hashes of msgIds appended in the previous owner's epoch since coveredFromMs (a handed-off head):
   * memory vouches for those only as hashes, so an append whose hash is here looks in the tail.
   */
  carried?: number[];
  queue: Pending<E>[];
  busy: boolean;
  /** The routing key of the bucket last written (rows of a round are mostly in one bucket). */
  rk?: { bucket: number; key: Buffer };
}

export interface OwnedOptions {
  lease: Lease;
  shards: Shards;
  writer: OwnerLog;
  logger: Logger;
  maxBatchEntries: number;
  maxBatchBytes: number;
  maxPending: number;
  maxLanes: number;
  /** msgIds remembered per key at least, whatever their age. */
  recentPerKey: number;
  /** msgIds appended this recently are all remembered (a retried or raced append is answered from memory). */
  recentMs: number;
  /** Heads (heads.ts) of keys that left memory, shared by the store's timelines. */
  heads: HeadBudget;
  /** CLOCK_MARGIN_MS (a test with one clock sets less, as if its sends were further apart). */
  clockMarginMs: number;
}

/** Appends handed off with a head as hashes, at most; a key with more in the window searches its tail. */
const MAX_CARRIED = 256;
/** How much further back than the clock margin a handed-off head carries its appends. */
const CARRY_SLACK_MS = 1000;

export class OwnedTimeline<E> {
  private readonly lanes: LruMap<string, Lane<E>>;
  /** Keys of this epoch that left `lanes`: a touch starts from their head, without a read. */
  private readonly heads: KeyHeads;
  private readonly busy = new Set<Lane<E>>();
  private pending = 0;

  constructor(private readonly reader: TimelineReader<E>, private readonly client: Client, private readonly o: OwnedOptions) {
    this.heads = new KeyHeads(o.heads);
    // A lane whose rows are logged but not yet in the table stays: a reload would read an old tail.
    this.lanes = new LruMap(o.maxLanes, (lane) => lane.busy || o.writer.pendingFor(lane.key), (_, lane) => this.keepHead(lane));
  }

  /** Timeline keys whose head is kept here (out of memory otherwise). */
  get keptHeads(): number {
    return this.heads.size;
  }

  /** Whether a key of the shard has a round running (or a write being retried) here. */
  busyIn(shard: number): boolean {
    for (const lane of this.busy) if (lane.shard === shard) return true;
    return false;
  }

  /** Forgets every key (after a lease lapse or a lost shard). */
  forget(shard?: number): void {
    this.lanes.deleteWhere((lane) => shard === undefined || lane.shard === shard);
    this.heads.forget(shard);
  }

  /**
   * A lane forgotten for room keeps its head when it was loaded in the shard's current epoch (a
   * lane is forgotten only while idle with none of its rows pending). Memory held its appends
   * since coveredFromMs; it holds none of them now, and none happens until the key is touched
   * again, so it vouches for the time after the newest one it had.
   */
  private keepHead(lane: Lane<E>): void {
    if (this.o.shards.mine(lane.shard)?.epoch !== lane.epoch) return;
    const head = this.headOf(lane);
    if (head) this.heads.put(lane.shard, lane.epoch, lane.key, head);
  }

  /**
   * An idle lane's head, when it was loaded (its epoch is the caller's to check). With `carryMs`
   * (a handoff), the msgIds appended in the last carryMs go with it as hashes, so the head covers
   * from then on instead of from after its newest append: a send coming on the next owner within
   * the clock margin of that append needs no tail search unless it repeats one of them.
   */
  private headOf(lane: Lane<E>, carryMs = 0): Head | undefined {
    if (!lane.loaded || lane.busy || lane.queue.length > 0) return undefined;
    const bucket = this.reader.bucketOf(lane.cur);
    const head: Head = { cur: lane.cur, coveredFromMs: lane.coveredFromMs, listedBucket: lane.buckets.has(bucket) ? bucket : -1 };
    let newest = -1;
    for (let i = lane.recentHead; i < lane.recentAts.length; i++) newest = Math.max(newest, lane.recentAts[i]);
    if (carryMs > 0) {
      // Memory holds every append since lane.coveredFromMs, so those since `from` are all here.
      const from = Math.max(lane.coveredFromMs, Math.min(Date.now() - carryMs, newest + 1));
      const carried = lane.carried ? [...lane.carried] : [];
      for (let i = lane.recentHead; i < lane.recentAts.length; i++) if (lane.recentAts[i] >= from) carried.push(hash32(lane.recentIds[i]));
      if (carried.length <= MAX_CARRIED) {
        head.coveredFromMs = from;
        if (carried.length > 0) head.carried = carried;
        return head;
      }
    }
    head.coveredFromMs = Math.max(lane.coveredFromMs, newest + 1);
    if (lane.carried) head.carried = lane.carried;
    return head;
  }

  /**
   * The heads of the keys these shards' owners loaded in their epochs (idle lanes in memory and
   * heads kept), packed per shard, for the shards' next owners: called once every row of the
   * shards is in its table and before they are released (handoff.ts).
   */
  handOff(owned: ReadonlyMap<number, OwnedShard>): Map<number, PackedHeads> {
    return this.heads.handOff(owned, this.lanes.values(), (lane) => lane.key, (lane) => {
      const h = this.headOf(lane, this.o.clockMarginMs + CARRY_SLACK_MS);
      return h && packHead(h);
    }, (key) => this.lanes.has(key));
  }

  /**
   * Heads the previous owner handed off at a clean release of the shard (handoff.ts), kept as
   * this epoch's before any key of it is touched: a key goes on at the epoch's start bound (every
   * seq of the previous epochs is at or below it), with the same coverage, reading nothing.
   */
  adopt(st: OwnedShard, heads: Iterable<[string, number[]]>): void {
    const startBucket = this.reader.bucketOf(st.startBound);
    for (const [key, packed] of heads) {
      const h = unpackHead(packed);
      if (!(h.cur <= st.startBound)) continue; // not from the epoch before this one: never used
      this.heads.put(st.shard, st.epoch, key, { ...h, cur: st.startBound, listedBucket: h.listedBucket === startBucket ? startBucket : -1 });
    }
  }

  /**
   * Appends entry to key's timeline (this process must own the key's shard); resolves with its
   * seq once durably written. An entry whose msgId the key already has answers with that seq.
   * `order`: its rows are logged only if `order.after`'s were, and `order.queued` hears the seq
   * once they are queued for the log (not for an entry answered from what is already written).
   */
  append(key: string, entry: E, sinceMs?: number, order?: LogOrder<number>): Promise<number> {
    const shard = this.o.shards.of(key);
    const st = this.o.shards.mine(shard);
    if (!st) return Promise.reject(new NotOwnerError(`${this.reader.spec.kind} ${key}: shard ${shard} is not owned here`));
    if (this.pending >= this.o.maxPending) {
      return Promise.reject(new UnavailableError(`${this.reader.spec.kind} owner: ${this.pending} appends already queued`));
    }
    let lane = this.lanes.get(key);
    if (lane && lane.epoch !== st.epoch && !lane.busy) lane = undefined;
    if (!lane) {
      // A key this epoch already loaded starts from its head; any other reads its tail first (load()).
      const head = this.heads.take(shard, st.epoch, key);
      lane = {
        key, shard, epoch: st.epoch, loaded: head !== undefined, coveredFromMs: head?.coveredFromMs ?? Number.MAX_SAFE_INTEGER,
        cur: head?.cur ?? 0, buckets: new Set(head && head.listedBucket >= 0 ? [head.listedBucket] : []),
        recent: new Map(), recentIds: [], recentAts: [], recentHead: 0, carried: head?.carried, queue: [], busy: false,
      };
      this.lanes.set(key, lane);
    }
    this.pending++;
    const l = lane;
    return new Promise<number>((resolve, reject) => {
      l.queue.push({ entry, sinceMs, order, resolve, reject });
      if (!l.busy) this.drain(l);
    });
  }

  private settle(p: Pending<E>, seq: number | undefined, err?: unknown): void {
    this.pending--;
    if (seq !== undefined) p.resolve(seq);
    else p.reject(err);
  }

  /**
   * Runs the lane's rounds one after another until its queue is empty. Driven by callbacks, not
   * an async loop: a send in flight waits in three lanes (its history and two inboxes), and each
   * suspended async function is a frame that every scavenge copies (BENCHMARKS.md, "Logic's young
   * generation at 128 MiB"). Only the rare steps (first load, dedup look-ups, a new bound or
   * bucket, a retried write) run as async functions.
   */
  private drain(lane: Lane<E>): void {
    if (!lane.busy) {
      lane.busy = true;
      this.busy.add(lane);
    }
    try {
      while (lane.queue.length > 0) {
        const st = this.o.shards.mine(lane.shard);
        if (!st || st.epoch !== lane.epoch) throw new NotOwnerError(`${this.reader.spec.kind} ${lane.key}: shard ${lane.shard} changed owner`);
        const next = lane.loaded ? this.round(lane, st, this.takeBatch(lane.queue)) : this.load(lane, st);
        if (next) {
          next.then(() => this.drain(lane), (err: unknown) => this.stop(lane, err));
          return;
        }
      }
    } catch (err) {
      this.stop(lane, err);
      return;
    }
    lane.busy = false;
    this.busy.delete(lane);
  }

  /** Whatever this lane believed is stale: fail what waits and start over on the next append. */
  private stop(lane: Lane<E>, err: unknown): void {
    const e = toStoreError(err, `${this.reader.spec.kind} append`);
    // A failed round may still land: this epoch hands no heads off (the next owner reads and fences).
    const st = this.o.shards.mine(lane.shard);
    if (st?.epoch === lane.epoch) st.failed = true;
    for (const p of lane.queue.splice(0)) this.settle(p, undefined, e);
    this.lanes.delete(lane.key);
    lane.busy = false;
    this.busy.delete(lane);
  }

  private takeBatch(queue: Pending<E>[]): Pending<E>[] {
    let bytes = 0;
    let n = 0;
    while (n < queue.length && n < this.o.maxBatchEntries) {
      bytes += this.reader.spec.sizeOf(queue[n].entry);
      if (n > 0 && bytes > this.o.maxBatchBytes) break;
      n++;
    }
    return queue.splice(0, n);
  }

  /** Remembers an entry of the key (one it did not hold: a new seq, or one found in the table). */
  private remember(lane: Lane<E>, id: string, seq: number, atMs = Date.now()): void {
    if (lane.recent.has(id)) {
      lane.recent.set(id, seq);
      return;
    }
    lane.recent.set(id, seq);
    lane.recentIds.push(id);
    lane.recentAts.push(atMs);
    const oldestKept = Date.now() - this.o.recentMs;
    let head = lane.recentHead;
    while (lane.recent.size > this.o.recentPerKey && lane.recentAts[head] <= oldestKept) {
      lane.recent.delete(lane.recentIds[head]);
      lane.coveredFromMs = Math.max(lane.coveredFromMs, lane.recentAts[head]);
      head++;
    }
    if (head > 256 && head * 2 > lane.recentIds.length) {
      lane.recentIds = lane.recentIds.slice(head);
      lane.recentAts = lane.recentAts.slice(head);
      head = 0;
    }
    lane.recentHead = head;
  }

  /**
   * Whether memory can say an entry journaled at sinceMs was never appended here: it holds every
   * append written since coveredFromMs (with a clock-skew margin between the two owners' clocks).
   */
  private memoryCovers(lane: Lane<E>, sinceMs: number): boolean {
    return sinceMs - this.o.clockMarginMs >= lane.coveredFromMs;
  }

  /**
   * One round: answers known msgIds, allocates seqs for the rest, writes them, acknowledges.
   * Undefined when it ended at once (every entry answered from memory).
   */
  private round(lane: Lane<E>, st: OwnedShard, batch: Pending<E>[]): Promise<void> | undefined {
    return this.classify(lane, st, batch, 0, [], []);
  }

  /**
   * Takes batch[i..] in order: an entry memory cannot vouch for is looked up in the table first
   * (findSince; a failed look-up fails that entry alone), then the round is written.
   */
  private classify(lane: Lane<E>, st: OwnedShard, batch: Pending<E>[], i: number, fresh: Fresh<E>[], dupes: Dupe<E>[]): Promise<void> | undefined {
    const spec = this.reader.spec;
    for (; i < batch.length; i++) {
      const p = batch[i];
      const id = spec.idOf(p.entry);
      const seq = lane.recent.get(id);
      if (seq === undefined && p.sinceMs !== undefined && (!this.memoryCovers(lane, p.sinceMs) || lane.carried?.includes(hash32(id)))) {
        const after = i + 1;
        return this.findSince(lane, id, p.sinceMs).then((found) => {
          if (found !== undefined) this.remember(lane, id, found);
          this.take(lane, p, id, found, fresh, dupes);
          return this.classify(lane, st, batch, after, fresh, dupes);
        }, (err: unknown) => {
          this.settle(p, undefined, toStoreError(err, `${spec.kind} append`));
          return this.classify(lane, st, batch, after, fresh, dupes);
        });
      }
      this.take(lane, p, id, seq, fresh, dupes);
    }
    return this.write(lane, st, fresh, dupes);
  }

  /** An entry with the seq it has already (answered once the batch is durable if this batch wrote it), or with the next one. */
  private take(lane: Lane<E>, p: Pending<E>, id: string, seq: number | undefined, fresh: Fresh<E>[], dupes: Dupe<E>[]): void {
    if (seq !== undefined) {
      if (fresh.some((f) => f.seq === seq)) dupes.push({ p, id });
      else this.settle(p, seq);
      return;
    }
    const next = lane.cur + 1;
    lane.cur = next;
    this.remember(lane, id, next);
    fresh.push({ p, seq: next });
  }

  /** Writes the round's new entries and answers its callers; first a new bound or bucket when one is needed (rare). */
  private write(lane: Lane<E>, st: OwnedShard, fresh: Fresh<E>[], dupes: Dupe<E>[]): Promise<void> | undefined {
    if (fresh.length === 0) {
      for (const d of dupes) this.settle(d.p, lane.recent.get(d.id));
      return undefined;
    }
    const newBuckets = this.newBuckets(lane, fresh);
    if (lane.cur > st.bound || newBuckets.length > 0) return this.prepareAndLog(lane, st, fresh, dupes, newBuckets);
    return this.logRows(lane, fresh, dupes);
  }

  private newBuckets(lane: Lane<E>, fresh: Fresh<E>[]): number[] {
    const out: number[] = [];
    for (const { seq } of fresh) {
      const bucket = this.reader.bucketOf(seq);
      if (!lane.buckets.has(bucket) && !out.includes(bucket)) out.push(bucket);
    }
    return out;
  }

  private async prepareAndLog(lane: Lane<E>, st: OwnedShard, fresh: Fresh<E>[], dupes: Dupe<E>[], newBuckets: number[]): Promise<void> {
    const spec = this.reader.spec;
    try {
      if (lane.cur > st.bound) await this.o.shards.ensureBound(st, lane.cur);
      if (newBuckets.length > 0) {
        // Listed (and acknowledged) before any row in them exists: a fence or a reader that
        // reads the list sees every bucket a row can be in.
        await this.durably(lane, [{
          query: this.reader.queries.addBucket, params: [newBuckets, spec.kind, lane.key],
          routingKey: routingKey(spec.kind, lane.key), bytes: 64, key: lane.key, shard: lane.shard, epoch: lane.epoch,
        }], []);
        for (const b of newBuckets) lane.buckets.add(b);
      }
    } catch (err) {
      this.failRound(fresh, dupes, err);
      throw err;
    }
    await this.logRows(lane, fresh, dupes);
  }

  /** The round's rows through the owner log; its callers answered once they are durable. */
  private logRows(lane: Lane<E>, fresh: Fresh<E>[], dupes: Dupe<E>[]): Promise<void> {
    const spec = this.reader.spec;
    const insert = this.reader.queries.insert;
    const rows: LoggedRow[] = [];
    for (const { p, seq } of fresh) {
      const bucket = this.reader.bucketOf(seq);
      rows.push({
        query: insert, params: spec.row(lane.key, bucket, seq, p.entry), routingKey: this.routingKeyOf(lane, bucket),
        bytes: spec.sizeOf(p.entry), key: lane.key, shard: lane.shard, epoch: lane.epoch,
      });
    }
    return this.durably(lane, rows, fresh, (t) => {
      for (const f of fresh) f.p.order?.queued?.(f.seq, t);
      for (const d of dupes) d.p.order?.queued?.(lane.recent.get(d.id)!, t);
    }).then(() => {
      for (const { p, seq } of fresh) {
        if (this.settledEarly.delete(p)) continue;
        this.settle(p, seq);
      }
      for (const d of dupes) this.settle(d.p, lane.recent.get(d.id));
    }, (err: unknown) => {
      this.failRound(fresh, dupes, err);
      throw err;
    });
  }

  private failRound(fresh: Fresh<E>[], dupes: Dupe<E>[], err: unknown): void {
    for (const { p } of fresh) if (!this.settledEarly.delete(p)) this.settle(p, undefined, err);
    for (const d of dupes) this.settle(d.p, undefined, err);
  }

  private routingKeyOf(lane: Lane<E>, bucket: number): Buffer {
    if (lane.rk?.bucket !== bucket) lane.rk = { bucket, key: routingKey(lane.key, bucket) };
    return lane.rk.key;
  }

  /** Callers told of a failed first attempt while the lane kept retrying their rows. */
  private readonly settledEarly = new WeakSet<Pending<E>>();

  /** Rows of this epoch only: after a lapse or a lost shard (even if the lease is valid again under a new incarnation) they must never be sent, nor count if acknowledged. */
  private stillMine(lane: Lane<E>): void {
    const st = this.o.shards.mine(lane.shard);
    if (!st || st.epoch !== lane.epoch) throw new NotOwnerError(`${this.reader.spec.kind} ${lane.key}: shard ${lane.shard} changed owner`);
  }

  /**
   * Writes rows and resolves once they are acknowledged within the lease. A failed attempt fails
   * the callers at once (their clients retry) but the lane keeps trying the SAME rows until they
   * are durable or the lease is gone: a later seq of this key is never written while an earlier
   * one might still land. The first attempt is not an async function (see drain()).
   */
  private durably(lane: Lane<E>, rows: LoggedRow[], callers: readonly { p: Pending<E> }[], queued?: (t: LogTicket) => void): Promise<void> {
    // Only after the rows each caller's rows follow (a send's journal or history rows).
    const check = callers.some((c) => c.p.order?.after) ? () => {
      this.stillMine(lane);
      for (const c of callers) loggedOrQueued(c.p.order?.after, `${this.reader.spec.kind} ${lane.key}`);
    } : () => this.stillMine(lane);
    let t: LogTicket;
    try {
      t = this.o.writer.enqueue(rows, check);
    } catch (err) {
      return this.retry(lane, rows, callers, check, err);
    }
    queued?.(t);
    return t.done.then(() => this.acknowledged(lane)).catch((err: unknown) => this.retry(lane, rows, callers, check, err));
  }

  /** A write acknowledged: it counts only within the lease and this epoch. */
  private acknowledged(lane: Lane<E>): void {
    this.o.lease.check(0, `${this.reader.spec.kind} ${lane.key}`);
    this.stillMine(lane);
  }

  private async retry(lane: Lane<E>, rows: LoggedRow[], callers: readonly { p: Pending<E> }[], check: () => void, err: unknown): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      // Rows that followed rows which were not logged are never written: the lane starts over.
      if (err instanceof NotOwnerError || err instanceof LogOrderError) throw err;
      this.stillMine(lane);
      if (attempt === 1) {
        this.o.logger.warn('cassandra store: timeline write failed; retrying it before anything later', { kind: this.reader.spec.kind, key: lane.key, err });
        for (const { p } of callers) {
          this.settledEarly.add(p);
          this.settle(p, undefined, err instanceof TimeoutError || err instanceof UnavailableError ? err : toStoreError(err, 'timeline write'));
        }
      }
      await sleep(Math.min(1000, 20 * 2 ** Math.min(attempt, 6)));
      try {
        await this.o.writer.enqueue(rows, check).done;
        this.acknowledged(lane);
        return;
      } catch (e) {
        err = e;
      }
    }
  }

  /** First touch in this epoch: where the key ends, its recent msgIds, and the fence. */
  private async load(lane: Lane<E>, st: OwnedShard): Promise<void> {
    // A lane dropped after a failed round may leave rows logged here and not yet in the table.
    await this.o.writer.flushKey(lane.key);
    const heads = await this.reader.listed(lane.key, this.client);
    const { listed } = heads;
    const buckets = bucketsOf(heads);
    let tail = 0;
    // Memory covers the whole timeline when it is empty or all of it was read; else from the
    // oldest row read on (seqs, and so rows, are written in time order).
    lane.coveredFromMs = 0;
    for (const [i, b] of [...buckets].reverse().entries()) {
      const rs = await this.client.execute(this.reader.queries.tail, [lane.key, b, Number.MAX_SAFE_INTEGER, this.o.recentPerKey], { prepare: true });
      if (rs.rows.length === 0) continue;
      tail = num(rs.rows[0].seq) ?? 0;
      const rows = [...rs.rows].reverse();
      for (const r of rows) this.remember(lane, r.msg_id as string, num(r.seq) ?? 0, Math.floor((num(r.wt) ?? 0) / 1000));
      const whole = rs.rows.length < this.o.recentPerKey && i === buckets.length - 1;
      lane.coveredFromMs = whole ? 0 : Math.floor((num(rows[0].wt) ?? Date.now() * 1000) / 1000);
      break;
    }
    if (tail < st.startBound) {
      // Any row a previous owner still has in flight lies in (tail, startBound], in a listed bucket.
      const fence = buckets.filter((b) => b >= this.reader.bucketOf(tail + 1) && b <= this.reader.bucketOf(st.startBound));
      this.o.lease.check(this.o.lease.writeTimeoutMs, `${this.reader.spec.kind} fence`);
      await Promise.all(fence.map((b) => this.client.execute(this.reader.queries.fence, [st.fenceTs, lane.key, b, tail, st.startBound],
        { prepare: true, readTimeout: this.o.lease.writeTimeoutMs })));
      this.o.lease.check(0, `${this.reader.spec.kind} fence`);
    }
    lane.buckets = new Set(listed);
    lane.cur = Math.max(tail, st.startBound);
    lane.loaded = true;
  }

  /** Was msgId written to this key since sinceMs (memory could not tell)? Pages back through the tail. */
  private async findSince(lane: Lane<E>, msgId: string, sinceMs: number): Promise<number | undefined> {
    await this.o.writer.flushKey(lane.key);
    const sinceUs = (sinceMs - 60_000) * 1000; // generous: write timestamps come from other clocks
    let before = Number.MAX_SAFE_INTEGER;
    for (const b of (await this.reader.buckets(lane.key, this.client)).reverse()) {
      for (;;) {
        const rs = await this.client.execute(this.reader.queries.tail, [lane.key, b, before, 256], { prepare: true });
        for (const r of rs.rows) {
          if (r.msg_id === msgId) return num(r.seq) ?? undefined;
          if ((num(r.wt) ?? 0) < sinceUs) return undefined;
        }
        if (rs.rows.length < 256) break;
        before = num(rs.rows[rs.rows.length - 1].seq) ?? 0;
      }
      before = Number.MAX_SAFE_INTEGER;
    }
    return undefined;
  }
}
