/**
 * The owner log (docs/sequencer.md, "Owner log"): every row an owner writes is made durable by
 * ONE write per round of this process — a row of `store_log` in the process's own partition that
 * carries all the rows of that round — and is written to its own table (inbox, history, journal,
 * unread index) later, behind, with the rows of the same partition gathered over
 * `writeBehindMs` into one single-partition batch.
 *
 * Why: on Cassandra a partition mutation costs ~100-200 µs of CPU however it is batched, a row
 * inside one ~12 µs (BENCHMARKS.md). A 1:1 message touches seven partitions; here it touches the
 * log (shared by every message of the round) at once and each of its partitions once per window,
 * whatever number of messages that window brings to it.
 *
 * What keeps this correct:
 * - Acknowledged means logged: write() resolves only when the log row is acknowledged within the
 *   lease. One log write is in flight at a time, so a log row whose acknowledgement counted was
 *   stored before the next one was even sent.
 * - Readers see the owner's rows: a read of a key asks its owner to flush that key first
 *   (flushKey); the owner's own first-touch and dedup reads never see a table without rows it
 *   still holds, because it keeps what it has not flushed pinned in memory.
 * - A takeover replays: before a process takes a shard whose owner died (or lapsed), it writes
 *   that owner's logged rows of the shard's epoch to their tables (replay()). Rows a process has
 *   logged but not flushed are dropped when its lease lapses: the next owner replays them.
 * - The log is bounded: `log_marks` records how far a process has flushed; replay reads only what
 *   comes after, and partitions wholly behind the mark are deleted (a TTL is the backstop).
 */
import type { Client } from 'cassandra-driver';
import { OverloadedError, UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { Lease } from './lease';
import { Gate, num, sleep, toStoreError } from './util';
import { decodeBody, encodeBody } from './log-body';
import { tableOf, type DeriveRows, type Row, type TableRow } from './writer';

/** A row with what the log needs to route it: the key whose reads wait for it, and its shard and epoch. */
export interface LoggedRow extends Row {
  key: string;
  shard: number;
  epoch: number;
}

interface Tracked extends TableRow {
  /** Its partition: table and routing key (latin1), computed once. */
  where: string;
  /** When it was logged (ms): it is written behind writeBehindMs later. */
  at: number;
  routingKeyText: string;
  key: string;
  shard: number;
  epoch: number;
  pos: number;
  /** The key's generation when it was logged (KeyRows). */
  kgen: number;
}

interface Waiter {
  check?: () => void;
  rows: LoggedRow[];
  ticket: LogTicket;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * One write of rows to the log: `done` settles when they are logged (or not), and `state` says so
 * at once, set by the round that took them. Rounds are logged one after another, so rows written
 * after these and checked with `loggedOrQueued` are never logged unless these are, in the same
 * round or an earlier one: a send's history and inbox rows are never durable without its journal
 * row (docs/sequencer.md, "One round per send").
 */
export interface LogTicket {
  state: 'queued' | 'logged' | 'failed';
  done: Promise<void>;
}

/** A later write's rows went out without those of an earlier write they depend on (it failed). */
export class LogOrderError extends UnavailableError {}

/**
 * How a call's rows are placed in the log: `after` an earlier write (they are not logged if its
 * rows failed), and whom to tell, with the call's answer, once they are queued (before they are
 * logged), so the next step of a send can queue its own rows for the same round.
 */
export interface LogOrder<A> {
  after?: LogTicket;
  queued?: (answer: A, ticket: LogTicket) => void;
}

/** A step's answer as soon as its rows are queued for the log (with their ticket), or once it ended without queuing any; and how the step ends. */
export class Queued<A> {
  constructor(readonly answer: A, readonly ticket: LogTicket | undefined, readonly settled: Promise<A>) {}
}

/** Starts a step that takes a LogOrder's `queued` hook; resolves at the earlier of its hook and its end. */
export function untilQueued<A>(start: (queued: (answer: A, ticket: LogTicket) => void) => Promise<A>): Promise<Queued<A>> {
  return new Promise<Queued<A>>((resolve, reject) => {
    let settled: Promise<A> | undefined;
    let early: { answer: A; ticket: LogTicket } | undefined;
    // The hook may run before start() has returned the promise.
    settled = start((answer, ticket) => {
      if (settled) resolve(new Queued(answer, ticket, settled));
      else early = { answer, ticket };
    });
    if (early) resolve(new Queued(early.answer, early.ticket, settled));
    const s = settled;
    s.then((answer) => resolve(new Queued(answer, undefined, s)), reject);
  });
}

/** A check for a later write: fails it when the earlier write's rows failed to be logged. */
export function loggedOrQueued(earlier: LogTicket | undefined, what: string): void {
  if (earlier?.state === 'failed') throw new LogOrderError(`${what}: the rows it follows were not logged; retry`);
}

export interface OwnerLogOptions {
  client: Client;
  keyspace: string;
  gate: Gate;
  lease: Lease;
  logger: Logger;
  /** Write timestamps (µs), strictly increasing in this process. */
  nextTs: () => number;
  /** Rows wait this long for others of their partition before they are written to their table. */
  writeBehindMs: number;
  maxRows: number;
  maxBytes: number;
  /** Bytes of rows one log write carries at most (one round's rows always go, whatever their size). */
  maxLogBytes: number;
  /**
   * Log positions per partition of store_log: a partition is deleted once its last row is in the
   * tables, so fewer positions per partition delete rows sooner (while still in Cassandra's memtable,
   * they are then never written to disk). Recorded with the log, so replay reads any layout.
   */
  partRows: number;
  /** Bytes of rows logged and not yet in their tables at most; beyond it a write fails OVERLOADED. */
  maxUnflushedBytes: number;
  /** Batches written behind in flight at once (their own limit, apart from `gate`). */
  writeBehindConcurrency: number;
  /** Rows implied by the rows written (the inbox's unread index): written with them, never logged. */
  derive?: DeriveRows;
  what: string;
}

/** Positions per log partition of logs written before the layout was recorded in log_marks. */
const LEGACY_PART_ROWS = 1000;

const stampedQueries = new Map<string, boolean>();
/** Whether a write statement sets its own timestamp (then a batch must not set one). */
function stamped(query: string): boolean {
  let s = stampedQueries.get(query);
  if (s === undefined) {
    s = /USING\s+(?:TTL\s+\?\s+AND\s+)?TIMESTAMP/i.test(query);
    stampedQueries.set(query, s);
  }
  return s;
}

/**
 * A row's partition as the log groups it (table and routing key), and its routing key as text,
 * kept per routing-key buffer: the callers reuse one buffer for a key's rows (timeline.ts caches
 * it per bucket, the journal per sender), so most rows find theirs without building strings.
 */
const partitions = new Map<string, WeakMap<Buffer, { where: string; text: string; stamped: boolean }>>();
function partitionOf(r: Row): { where: string; text: string; stamped: boolean } {
  let byKey = partitions.get(r.query);
  if (!byKey) partitions.set(r.query, byKey = new WeakMap());
  let p = byKey.get(r.routingKey);
  if (!p) {
    const text = r.routingKey.toString('latin1');
    p = { where: `${tableOf(r.query)}\0${text}`, text, stamped: stamped(r.query) };
    byKey.set(r.routingKey, p);
  }
  return p;
}

interface Replayable extends TableRow { shard: number; epoch: number }
/** A log read from its mark: its rows, and the partitions they came from. */
interface ReadLog { rows: Replayable[]; firstPart: number; parts: number }

/** Counts of rows not yet in their tables, per key and per shard, with who waits for them to reach 0. */
class Counter<K> {
  private readonly n = new Map<K, number>();
  private readonly waiters = new Map<K, (() => void)[]>();
  add(k: K, d: number): void {
    const v = (this.n.get(k) ?? 0) + d;
    if (v > 0) {
      this.n.set(k, v);
      return;
    }
    this.n.delete(k);
    const w = this.waiters.get(k);
    this.waiters.delete(k);
    for (const f of w ?? []) f();
  }
  has(k: K): boolean {
    return this.n.has(k);
  }
  /** Whether someone waits for k to drain. */
  waited(k: K): boolean {
    return this.waiters.has(k);
  }
  /** Every k someone waits for. */
  waitedKeys(): IterableIterator<K> {
    return this.waiters.keys();
  }
  /** Resolves once k has nothing left (at once when it has nothing now). */
  drained(k: K): Promise<void> {
    if (!this.n.has(k)) return Promise.resolve();
    return new Promise<void>((r) => {
      const w = this.waiters.get(k);
      if (w) w.push(r);
      else this.waiters.set(k, [r]);
    });
  }
  clear(): void {
    this.n.clear();
    for (const w of this.waiters.values()) for (const f of w) f();
    this.waiters.clear();
  }
  get size(): number {
    return this.n.size;
  }
}

/**
 * Rows not yet in their tables, per key and by generation: flushKey() waits for the key's rows
 * logged before it was called, not for the key to have none left at all. A key that takes rows in
 * every round (a busy inbox) while its batches take longer than a round may never have none, and a
 * reader waiting for that would wait as long as the traffic lasts. A reader needs only the rows
 * acknowledged before it asked, and those were counted (in logOnce) before their acknowledgement.
 */
class KeyRows {
  private readonly keys = new Map<string, { gen: number; counts: Map<number, number>; waiters: { gen: number; resolve: () => void }[] }>();
  /** The keys with waiters. */
  private readonly waitedSet = new Set<string>();

  /** Counts a row of key; returns the generation it is counted in. */
  add(key: string): number {
    let k = this.keys.get(key);
    if (!k) this.keys.set(key, (k = { gen: 0, counts: new Map(), waiters: [] }));
    k.counts.set(k.gen, (k.counts.get(k.gen) ?? 0) + 1);
    return k.gen;
  }

  /** A row of key counted in gen is in its table. */
  done(key: string, gen: number): void {
    const k = this.keys.get(key);
    if (!k) return;
    const n = (k.counts.get(gen) ?? 1) - 1;
    if (n > 0) {
      k.counts.set(gen, n);
      return;
    }
    k.counts.delete(gen);
    if (k.waiters.length > 0) {
      let oldest = Infinity;
      for (const g of k.counts.keys()) oldest = Math.min(oldest, g);
      // A waiter of generation g waits for every row counted in g or before.
      k.waiters = k.waiters.filter((w) => {
        if (w.gen >= oldest) return true;
        w.resolve();
        return false;
      });
      if (k.waiters.length === 0) this.waitedSet.delete(key);
    }
    if (k.counts.size === 0 && k.waiters.length === 0) this.keys.delete(key);
  }

  has(key: string): boolean {
    return (this.keys.get(key)?.counts.size ?? 0) > 0;
  }

  /** Whether someone waits for rows of key. */
  waited(key: string): boolean {
    return (this.keys.get(key)?.waiters.length ?? 0) > 0;
  }

  /** Every key someone waits for rows of. */
  waitedKeys(): IterableIterator<string> {
    return this.waitedSet.values();
  }

  /** Resolves once every row of key counted so far is in its table; rows counted later are not waited for. */
  drained(key: string): Promise<void> {
    const k = this.keys.get(key);
    if (!k || k.counts.size === 0) return Promise.resolve();
    const gen = k.gen++;
    this.waitedSet.add(key);
    return new Promise<void>((resolve) => { k.waiters.push({ gen, resolve }); });
  }

  clear(): void {
    for (const k of this.keys.values()) for (const w of k.waiters) w.resolve();
    this.keys.clear();
    this.waitedSet.clear();
  }
}

export class OwnerLog {
  private readonly q: Record<string, string>;
  private queue: Waiter[] = [];
  private logging = false;
  private pos = 0;
  /** Rows logged, not yet written to their table, by partition (table + routing key). */
  private pending = new Map<string, Tracked[]>();
  /**
   * The partitions in `pending` holding rows of each key and of each shard: a flush of one key or
   * shard takes its own partitions instead of looking at every pending one (with sparse traffic,
   * a window holds a partition or two for every user written to, and reads flush keys often).
   */
  private pendingOf = { key: new Map<string, Set<string>>(), shard: new Map<number, Set<string>>() };
  private readonly byKey = new KeyRows();
  private readonly byShard = new Counter<number>();
  private readonly all = new Counter<0>();
  private unflushedBytes = 0;
  /** Rows logged and not yet acknowledged by their table (pending or being written). */
  private unflushedRows = 0;
  /** How often flushDue looks (ms). */
  private readonly tickMs: number;
  /** Looks that wrote rows, and the most rows one of them wrote (tests; the pacing). */
  readonly dueStats = { looks: 0, largestRows: 0 };
  /** Partitions flushes of keys, shards or everything looked at (tests: a key's flush looks at its own only). */
  readonly flushStats = { looked: 0 };
  /** Log positions with rows still unflushed, and how many: the mark is the position before the oldest. */
  private readonly unflushedAt = new Map<number, number>();
  private markWritten = 0;
  /** When this incarnation's log_marks row was last written by register() (0: not yet). */
  private registeredAtMs = 0;
  private logProcess = '';
  /** The position of the log write in flight (its rows are not tracked yet), or 0. */
  private loggingPos = 0;
  private partsDeletedBelow = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;
  /** Bumped by drop(): a batch in flight from before it does not count its rows again. */
  private generation = 0;

  constructor(private readonly o: OwnerLogOptions) {
    this.behind = new Gate(o.writeBehindConcurrency);
    const ks = o.keyspace;
    this.q = {
      log: `INSERT INTO ${ks}.store_log (process, part, pos, body) VALUES (?, ?, ?, ?)`,
      read: `SELECT pos, body FROM ${ks}.store_log WHERE process = ? AND part = ? AND pos > ?`,
      mark: `INSERT INTO ${ks}.log_marks (process, flushed) VALUES (?, ?)`,
      register: `INSERT INTO ${ks}.log_marks (process, flushed, part_rows) VALUES (?, ?, ?)`,
      getMark: `SELECT flushed, part_rows FROM ${ks}.log_marks WHERE process = ?`,
      marks: `SELECT process FROM ${ks}.log_marks`,
      dropMark: `DELETE FROM ${ks}.log_marks WHERE process = ?`,
      dropPart: `DELETE FROM ${ks}.store_log WHERE process = ? AND part = ?`,
    };
    // Fifty looks per window, each writing a paced share of the rows that have waited a window
    // (flushDue): the tables get a steady stream instead of a whole window's rows at once.
    this.tickMs = Math.max(10, Math.floor(o.writeBehindMs / 50));
    this.timer = setInterval(() => { void this.flushDue(); }, this.tickMs);
    this.timer.unref();
  }

  /** Rows logged here and not yet in their tables. */
  get unflushedRowCount(): number {
    return this.unflushedRows;
  }

  /** Whether rows of the shard are logged here and not yet in their tables. */
  pendingIn(shard: number): boolean {
    return this.byShard.has(shard);
  }

  /** Whether rows of the key are logged here and not yet in their tables (their memory must stay). */
  pendingFor(key: string): boolean {
    return this.byKey.has(key);
  }

  /**
   * Logs rows (with the other rows of this round, one log write); resolves when the log row is
   * acknowledged. `check` runs just before the log write; if it throws, these rows are left out
   * and the call fails with its error.
   */
  write(rows: LoggedRow[], check?: () => void): Promise<void> {
    return this.enqueue(rows, check).done;
  }

  /** write(), with a ticket whose state later writes can check (loggedOrQueued) before they are logged. */
  enqueue(rows: LoggedRow[], check?: () => void): LogTicket {
    if (rows.length === 0) return { state: 'logged', done: Promise.resolve() };
    if (this.unflushedBytes >= this.o.maxUnflushedBytes) {
      // The tables fall behind the log (Cassandra slower than the sends): refuse rather than hold
      // more in memory; the client retries.
      void this.flush();
      return { state: 'failed', done: Promise.reject(new OverloadedError(
        `${this.o.what}: ${Math.round(this.unflushedBytes / 1048576)} MiB logged and not yet written to the tables (maxUnflushedBytes)`)) };
    }
    const ticket = { state: 'queued' } as LogTicket;
    ticket.done = new Promise<void>((resolve, reject) => {
      this.queue.push({ check, rows, ticket, resolve, reject });
      if (!this.logging) {
        this.logging = true;
        setImmediate(() => { void this.logLoop(); });
      }
    });
    return ticket;
  }

  /** Writes the key's rows to their tables now; resolves when those logged before the call are there. */
  flushKey(key: string): Promise<void> {
    if (!this.byKey.has(key)) return Promise.resolve();
    const drained = this.byKey.drained(key);
    void this.flush(this.pendingOf.key.get(key) ?? []);
    return drained;
  }

  /** Writes the shard's rows to their tables now (before it is released); resolves when none are left. */
  flushShard(shard: number): Promise<void> {
    if (!this.byShard.has(shard)) return Promise.resolve();
    const drained = this.byShard.drained(shard);
    void this.flush(this.pendingOf.shard.get(shard) ?? []);
    return drained;
  }

  /** Writes everything now; resolves when nothing is left (a clean stop). */
  async flushAll(): Promise<void> {
    const drained = this.all.drained(0);
    await this.flush();
    await drained;
    await this.writeMark();
  }

  /**
   * After a lease lapse: nothing logged here may be written by this process any more (the
   * shards' next owners replay it from the log). Calls waiting to be logged fail.
   */
  drop(): void {
    this.generation++;
    this.pending = new Map();
    this.pendingOf = { key: new Map(), shard: new Map() };
    this.unflushedBytes = 0;
    this.unflushedRows = 0;
    this.unflushedAt.clear();
    this.byKey.clear();
    this.byShard.clear();
    this.all.clear();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  // --- logging -------------------------------------------------------------------------------

  private async logLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.logOnce();
    } finally {
      this.logging = false;
      if (this.queue.length > 0) {
        this.logging = true;
        setImmediate(() => { void this.logLoop(); });
      }
    }
  }

  private async logOnce(): Promise<void> {
    const take: Waiter[] = [];
    let bytes = 0;
    while (this.queue.length > 0) {
      const w = this.queue[0];
      const b = w.rows.reduce((s, r) => s + r.bytes, 0);
      if (take.length > 0 && bytes + b > this.o.maxLogBytes) break;
      this.queue.shift();
      try {
        w.check?.();
      } catch (err) {
        w.ticket.state = 'failed';
        w.reject(err);
        continue;
      }
      take.push(w);
      bytes += b;
    }
    if (take.length === 0) return;
    const process = this.o.lease.processId;
    if (process !== this.logProcess) {
      // A new incarnation (after a lapse) starts its own log at position 1.
      this.logProcess = process;
      this.pos = 0;
      this.markWritten = 0;
      this.partsDeletedBelow = 0;
      this.registeredAtMs = 0;
    }
    const generation = this.generation;
    const pos = ++this.pos;
    this.loggingPos = pos;
    let rows: Tracked[] = [];
    try {
      this.o.lease.check(this.o.lease.writeTimeoutMs, this.o.what);
      await this.register(process);
      const ts = this.o.nextTs();
      for (const w of take) {
        for (const r of w.rows) {
          const p = partitionOf(r);
          rows.push({
            query: r.query, params: r.params, routingKey: r.routingKey, routingKeyText: p.text, where: p.where,
            bytes: r.bytes, ts: p.stamped ? undefined : ts, key: r.key, shard: r.shard, epoch: r.epoch, pos, at: 0, kgen: 0,
          });
        }
      }
      const body = encodeBody(rows);
      await this.o.gate.run(() => this.o.client.execute(this.q.log, [process, Math.floor(pos / this.o.partRows), pos, body],
        { prepare: true, timestamp: ts, readTimeout: this.o.lease.writeTimeoutMs }));
      this.o.lease.check(0, this.o.what);
    } catch (err) {
      this.loggingPos = 0;
      // The next round takes this position again: a replay reads the log partition by partition
      // up to the first empty one, so a run of failed rounds must not leave a whole partition
      // empty before rows acknowledged later. (Had this write landed after all, the next one
      // replaces it: same key, a later timestamp; nothing of it was acknowledged.)
      if (this.pos === pos && process === this.logProcess) this.pos = pos - 1;
      const e = toStoreError(err, this.o.what);
      for (const w of take) {
        w.ticket.state = 'failed';
        w.reject(e);
      }
      return;
    }
    this.loggingPos = 0;
    if (generation === this.generation && process === this.o.lease.processId) {
      const at = Date.now();
      for (const r of rows) {
        r.at = at;
        this.track(r);
      }
      this.unflushedAt.set(pos, rows.length);
    }
    for (const w of take) {
      w.ticket.state = 'logged';
      w.resolve();
    }
  }

  /**
   * Lists this log in `log_marks` before its first row (and again daily, ahead of the row's TTL),
   * so a process that dies before it ever wrote a mark is still found by the orphan sweep.
   */
  private async register(process: string): Promise<void> {
    const now = Date.now();
    if (now - this.registeredAtMs < 86_400_000) return;
    await this.o.gate.run(() => this.o.client.execute(this.q.register, [process, this.markWritten, this.o.partRows],
      { prepare: true, readTimeout: this.o.lease.writeTimeoutMs }));
    this.registeredAtMs = now;
  }

  private track(r: Tracked): void {
    this.pend(r);
    r.kgen = this.byKey.add(r.key);
    this.byShard.add(r.shard, 1);
    this.all.add(0, 1);
    this.unflushedRows++;
    this.unflushedBytes += r.bytes;
    // A reader, a handover or a stop waits for this key or shard: its rows go now, not at the
    // next window (a log write in flight when it asked lands its rows after the ask).
    if (this.byKey.waited(r.key) || this.byShard.waited(r.shard) || this.all.waited(0)) this.flushWaitedSoon();
  }

  private waitedScheduled = false;

  private flushWaitedSoon(): void {
    if (this.waitedScheduled) return;
    this.waitedScheduled = true;
    setImmediate(() => {
      this.waitedScheduled = false;
      if (this.all.waited(0)) return void this.flush();
      const wheres = new Set<string>();
      for (const key of this.byKey.waitedKeys()) for (const w of this.pendingOf.key.get(key) ?? []) wheres.add(w);
      for (const shard of this.byShard.waitedKeys()) for (const w of this.pendingOf.shard.get(shard) ?? []) wheres.add(w);
      void this.flush(wheres);
    });
  }

  /** Queues a row in its partition's pending rows; `first`: in front (a failed write's rows, in order). */
  private pend(t: Tracked, first = false): void {
    const list = this.pending.get(t.where);
    if (!list) this.pending.set(t.where, [t]);
    else if (first) list.unshift(t);
    else list.push(t);
    indexAdd(this.pendingOf.key, t.key, t.where);
    indexAdd(this.pendingOf.shard, t.shard, t.where);
  }

  /** Takes a partition's pending rows out of the queue (undefined: none pending). */
  private take(where: string): Tracked[] | undefined {
    const list = this.pending.get(where);
    if (!list) return undefined;
    this.pending.delete(where);
    for (const t of list) {
      indexDelete(this.pendingOf.key, t.key, where);
      indexDelete(this.pendingOf.shard, t.shard, where);
    }
    return list;
  }

  // --- writing behind --------------------------------------------------------------------------

  private dueRunning = false;
  /** Writes behind in flight at most, apart from the log writes' gate: a call's log write never queues behind them. */
  private readonly behind: Gate;

  /**
   * Writes the partitions whose oldest pending row has waited `writeBehindMs` (pending is in the
   * order partitions got their oldest row, so the look stops at the first younger one), then
   * moves the mark. One at a time: while the tables are slow, rows wait for the next look.
   *
   * Paced: a look writes at most twice its share of the unflushed rows (a window's worth spread
   * over its looks), oldest partitions first. Without it the partitions stay in step: a busy
   * partition gets its next row just after its write, so all of them came due together again a
   * window later, and each window's rows hit Cassandra as one burst that held up the owner-log
   * writes acknowledging sends behind it (acks stalled 1-3 s every 10 s with 10,000 users).
   * Rows may then wait somewhat longer than a window; the log keeps them durable meanwhile.
   */
  private async flushDue(): Promise<void> {
    if (this.dueRunning || this.closed) return;
    this.dueRunning = true;
    try {
      const dueBefore = Date.now() - this.o.writeBehindMs;
      const budget = Math.max(this.o.maxRows, Math.ceil((2 * this.unflushedRows * this.tickMs) / this.o.writeBehindMs));
      const groups: Tracked[][] = [];
      let rows = 0;
      for (const [where, list] of this.pending) {
        if (list[0].at > dueBefore || (rows > 0 && rows + list.length > budget)) break;
        this.take(where);
        groups.push(list);
        rows += list.length;
      }
      if (rows > 0) {
        this.dueStats.looks++;
        this.dueStats.largestRows = Math.max(this.dueStats.largestRows, rows);
      }
      await this.sendGroups(groups);
      await this.writeMark();
    } finally {
      this.dueRunning = false;
    }
  }

  /** Sends the pending rows of these partitions (or all) to their tables; failed ones are pending again. */
  private async flush(wheres?: Iterable<string>): Promise<void> {
    const groups: Tracked[][] = [];
    // A copy: taking a partition changes the index sets `wheres` may be.
    for (const where of [...(wheres ?? this.pending.keys())]) {
      this.flushStats.looked++;
      const list = this.take(where);
      if (list) groups.push(list);
    }
    if (groups.length === 0) return;
    await this.sendGroups(groups);
    if (!wheres) await this.writeMark();
  }

  /**
   * Partitions' rows to their tables, several partitions per call: writeRows cuts a partition's
   * rows into batches of maxRows / maxBytes and puts partitions of a row or two together. A call
   * that fails is written again whole, so a call holds at most 16 requests' worth of rows; the
   * loop yields between calls, so a whole backlog (close, a handover) is not prepared in one turn.
   */
  private async sendGroups(groups: Tracked[][]): Promise<void> {
    const generation = this.generation;
    const calls: Promise<void>[] = [];
    let call: Tracked[] = [];
    for (const g of groups) {
      if (call.length > 0 && call.length + g.length > 16 * this.o.maxRows) {
        calls.push(this.sendBatch(call, generation));
        call = [];
        await new Promise<void>((r) => setImmediate(r));
        // A lapse meanwhile: the rest is the next owners' to replay.
        if (generation !== this.generation) break;
      }
      for (const t of g) call.push(t);
    }
    if (call.length > 0 && generation === this.generation) calls.push(this.sendBatch(call, generation));
    await Promise.all(calls);
  }

  private async sendBatch(batch: Tracked[], generation: number): Promise<void> {
    // Written whatever became of the shard since: a later owner replayed the same rows (and this
    // process stops writing when its lease lapses), and a later epoch of this process flushes a
    // key before it reads its tail.
    try {
      await this.writeRows(this.behind, batch, () => {
        this.o.lease.check(this.o.lease.writeTimeoutMs, `${this.o.what} (write behind)`);
        return this.o.lease.writeTimeoutMs;
      });
    } catch (err) {
      // Closed (a stop that gave up on the backlog leaves it to the next owners' replay) or lapsed: no retry.
      if (generation !== this.generation || this.closed) return;
      this.o.logger.warn('cassandra store: write behind failed; retrying', { rows: batch.length, err: toStoreError(err, 'write behind') });
      await sleep(50);
      if (generation !== this.generation || this.closed) return;
      // Back in front of their partitions, in their order, and written again at once.
      for (let i = batch.length - 1; i >= 0; i--) this.pend(batch[i], true);
      void this.flush(new Set(batch.map((t) => t.where)));
      return;
    }
    if (generation !== this.generation) return;
    for (const t of batch) this.done(t);
  }

  private done(t: Tracked): void {
    const left = (this.unflushedAt.get(t.pos) ?? 1) - 1;
    if (left > 0) this.unflushedAt.set(t.pos, left);
    else this.unflushedAt.delete(t.pos);
    this.byKey.done(t.key, t.kgen);
    this.byShard.add(t.shard, -1);
    this.all.add(0, -1);
    this.unflushedRows--;
    this.unflushedBytes -= t.bytes;
  }

  /** Records how far this process's log is in the tables; deletes log partitions wholly behind that. */
  private async writeMark(): Promise<void> {
    // Not past a log write in flight: its rows reach the tables only after it is acknowledged.
    let mark = this.loggingPos > 0 ? this.loggingPos - 1 : this.pos;
    for (const p of this.unflushedAt.keys()) mark = Math.min(mark, p - 1);
    if (mark <= this.markWritten) return;
    try {
      this.o.lease.check(this.o.lease.writeTimeoutMs, 'log mark');
      const process = this.o.lease.processId;
      await this.o.client.execute(this.q.mark, [process, mark], { prepare: true, readTimeout: this.o.lease.writeTimeoutMs });
      this.markWritten = Math.max(this.markWritten, mark);
      const below = Math.floor((mark + 1) / this.o.partRows);
      for (; this.partsDeletedBelow < below; this.partsDeletedBelow++) {
        await this.o.client.execute(this.q.dropPart, [process, this.partsDeletedBelow], { prepare: true });
      }
    } catch (err) {
      this.o.logger.debug('cassandra store: log mark not written (next round tries again)', { err });
    }
  }

  // --- replay ----------------------------------------------------------------------------------

  /** Decoded logs of other processes, read once per takeover wave (every shard of a dead process replays from one read). */
  private readonly replayCache = new Map<string, { at: number; rows: Promise<ReadLog> }>();

  /**
   * Writes to their tables the rows `process` logged for `shard` in `epoch` that it may not have
   * written itself (everything after its mark). Called before this process takes the shard over.
   */
  async replay(process: string, shard: number, epoch: number): Promise<number> {
    const now = Date.now();
    for (const [p, c] of this.replayCache) if (now - c.at > this.o.lease.writeTimeoutMs) this.replayCache.delete(p);
    let cached = this.replayCache.get(process);
    if (!cached) {
      cached = { at: now, rows: this.readLog(process) };
      this.replayCache.set(process, cached);
      cached.rows.catch(() => this.replayCache.delete(process));
    }
    const rows = (await cached.rows).rows.filter((r) => r.shard === shard && r.epoch === epoch);
    if (rows.length > 0) {
      await this.writeRows(this.o.gate, rows, () => this.o.lease.writeTimeoutMs);
      this.o.logger.info('cassandra store: replayed a previous owner\'s log', { process, shard, epoch, rows: rows.length });
    }
    return rows.length;
  }

  /**
   * The logs listed in `log_marks` (every process that logged in the last 7 days and was not
   * swept since), for the orphan sweep (orphans.ts).
   */
  async listed(): Promise<string[]> {
    const out: string[] = [];
    let pageState: string | undefined;
    do {
      const page = await this.o.client.execute(this.q.marks, [], { prepare: true, fetchSize: 1000, pageState });
      for (const r of page.rows) out.push(String(r.process));
      pageState = page.pageState ?? undefined;
    } while (pageState);
    return out;
  }

  /**
   * Writes to their tables every row a dead process logged after its mark, whatever shard or
   * epoch, then deletes its log and its mark. Only for a process whose lease is over (past the
   * skew margin). `pause` (tests) is awaited after the read and after the writes.
   *
   * Each (shard, epoch)'s rows are written apart: a batch takes the newest timestamp of its rows,
   * and within one epoch that is still older than any later owner's write, but the log may also
   * hold rows of an epoch the process handed over since (written, then possibly overwritten by
   * the next owner: a journal row re-opened after its window) and rows of its epoch of the same
   * shard taken back later; one batch of both would rewrite the old row at the later epoch's
   * timestamp, over the intermediate owner's.
   */
  async replayAll(process: string, pause?: (step: 'read' | 'written') => Promise<void>): Promise<number> {
    this.replayCache.delete(process);
    const { rows, firstPart, parts } = await this.readLog(process);
    await pause?.('read');
    if (rows.length > 0) {
      const byEpoch = new Map<string, Replayable[]>();
      for (const r of rows) {
        const k = `${r.shard}:${r.epoch}`;
        const list = byEpoch.get(k);
        if (list) list.push(r);
        else byEpoch.set(k, [r]);
      }
      await Promise.all([...byEpoch.values()].map((list) => this.writeRows(this.o.gate, list, () => this.o.lease.writeTimeoutMs)));
      this.o.logger.info('cassandra store: replayed the log of a process that is gone', { process, rows: rows.length });
    }
    await pause?.('written');
    for (let part = firstPart; part < firstPart + parts; part++) {
      await this.o.client.execute(this.q.dropPart, [process, part], { prepare: true });
    }
    await this.o.client.execute(this.q.dropMark, [process], { prepare: true });
    return rows.length;
  }

  /**
   * Rows and the rows they imply (derive) to their tables; rejects when any request failed (the
   * caller writes them all again: rows implied by rows that were written would otherwise be lost).
   */
  private writeRows(gate: Gate, rows: (TableRow & { where?: string })[], prepare: () => number): Promise<void> {
    const all = this.o.derive ? [...rows, ...this.o.derive(rows)] : rows;
    return writeRows(this.o.client, gate, all, prepare, this.o.maxRows, this.o.maxBytes);
  }

  private async readLog(process: string): Promise<ReadLog> {
    const rs = await this.o.client.execute(this.q.getMark, [process], { prepare: true });
    const mark = num(rs.first()?.flushed) ?? 0;
    // The layout that process wrote its log in (logs older than the part_rows column: 1,000).
    const partRows = num(rs.first()?.part_rows) ?? LEGACY_PART_ROWS;
    const out: Replayable[] = [];
    const firstPart = Math.floor((mark + 1) / partRows);
    let parts = 0;
    // Log rows carry a whole round each (up to maxLogBytes): a few per page.
    for (let part = firstPart; ; part++, parts++) {
      let rows = 0;
      let pageState: string | undefined;
      do {
        const page = await this.o.client.execute(this.q.read, [process, part, mark], { prepare: true, fetchSize: 16, pageState });
        for (const r of page.rows) out.push(...decodeBody(r.body as Buffer));
        rows += page.rows.length;
        pageState = page.pageState ?? undefined;
      } while (pageState);
      if (rows === 0) break;
    }
    return { rows: out, firstPart, parts };
  }
}

function indexAdd<K>(index: Map<K, Set<string>>, k: K, where: string): void {
  const s = index.get(k);
  if (s) s.add(where);
  else index.set(k, new Set([where]));
}

function indexDelete<K>(index: Map<K, Set<string>>, k: K, where: string): void {
  const s = index.get(k);
  if (s?.delete(where) && s.size === 0) index.delete(k);
}

/** A request's rows, their bytes, and the timestamp they are written at (undefined: each query sets its own). */
interface Chunk { rows: TableRow[]; bytes: number; ts: number | undefined }

/**
 * Writes rows to their tables in unlogged batches, all concurrently; once every request settled,
 * rejects with the first error if any failed (the caller writes them all again).
 *
 * A partition's rows go together (cut at maxRows / maxBytes), at the newest timestamp among them
 * unless their queries carry their own. Partitions whose rows get the same timestamp (rows of one
 * log write, usually) and have the same primary replica share a request, up to the same bounds: with
 * sparse traffic most partitions have a row or two in a window, and a request per partition cost
 * more than the rows in it on both sides (BENCHMARKS.md, "Sparse traffic"). Every row is written at
 * the timestamp it would get alone in its partition's batch: a request never mixes timestamps.
 * `prepare` runs before each request and returns its timeout.
 */
async function writeRows(
  client: Client, gate: Gate, rows: (TableRow & { where?: string })[], prepare: () => number, maxRows = 200, maxBytes = 48 * 1024,
): Promise<void> {
  // By partition, and apart those that carry their own timestamp (the batch must not set one).
  const groups = new Map<string, { own: TableRow[]; logged: TableRow[] }>();
  for (const r of rows) {
    const where = r.where ?? `${tableOf(r.query)}\0${r.routingKey.toString('latin1')}`;
    let g = groups.get(where);
    if (!g) groups.set(where, (g = { own: [], logged: [] }));
    (r.ts === undefined ? g.own : g.logged).push(r);
  }
  const requests: Chunk[] = [];
  // Per (timestamp, primary replica): the request still taking partitions.
  const open = new Map<string, Chunk>();
  for (const { own, logged } of groups.values()) for (const g of [own, logged]) {
    for (let i = 0; i < g.length;) {
      let bytes = 0;
      let j = i;
      while (j < g.length && j - i < maxRows && (j === i || bytes + g[j].bytes <= maxBytes)) {
        bytes += g[j].bytes;
        j++;
      }
      const part = g.slice(i, j);
      const ts = part.reduce<number | undefined>((m, r) => (r.ts === undefined ? m : Math.max(m ?? 0, r.ts)), undefined);
      i = j;
      if (part.length >= maxRows) {
        requests.push({ rows: part, bytes, ts });
        continue;
      }
      const key = `${ts ?? 'own'}\0${primaryReplica(client, part[0].routingKey)}`;
      const o = open.get(key);
      if (o && o.rows.length + part.length <= maxRows && o.bytes + bytes <= maxBytes) {
        for (const r of part) o.rows.push(r);
        o.bytes += bytes;
        continue;
      }
      const c = { rows: part, bytes, ts };
      requests.push(c);
      open.set(key, c);
    }
  }
  let failed = false;
  let firstErr: unknown;
  await Promise.all(requests.map((c) => gate.run(async () => {
    try {
      const timeout = prepare();
      // The first partition's routing key as computed when its row was made (the driver need not
      // encode it again): the request goes to that partition's primary replica, every partition's.
      const options = { prepare: true, readTimeout: timeout, routingKey: c.rows[0].routingKey, ...(c.ts !== undefined && { timestamp: c.ts }) };
      if (c.rows.length === 1) await client.execute(c.rows[0].query, c.rows[0].params, options);
      else await client.batch(c.rows.map((r) => ({ query: r.query, params: r.params })), { ...options, logged: false });
    } catch (err) {
      if (!failed) firstErr = err;
      failed = true;
    }
  })));
  if (failed) throw firstErr;
}

/** The address of the node holding the first replica of a routing key ('' before the driver knows the ring). */
function primaryReplica(client: Client, routingKey: Buffer): string {
  const hosts = client.getReplicas(null as unknown as string, routingKey) as { address: string }[] | null;
  return hosts?.[0]?.address ?? '';
}
