/**
 * A bucketed, gap-free, strictly increasing log per key (a user's inbox, a conversation's history)
 * whose appends are safe against any number of processes writing the same key at once.
 *
 * Layout: partition (key, bucket) holds seqs [bucket*B, (bucket+1)*B) (seq 0 is never used) and a
 * static column max_seq, the partition's allocation cursor. An append is ONE conditional
 * single-partition write: "set max_seq = m+n and write rows m+1..m+n IF max_seq = m". Allocation
 * and data commit together in one Paxos round, so a seq never exists without its row (no gaps,
 * and a reader never sees seq m+2 while m+1 is still being written), and two processes can never
 * take the same seq. A loser learns the current max_seq from the LWT's answer and retries.
 *
 * Appends for one key within this process are coalesced: while one round is in flight, later
 * appends queue, and the next round takes all of them (up to maxBatchEntries), so a burst for
 * one user costs one LWT, not one per message. The last known max_seq per key is cached, so the
 * common case needs no read before the LWT.
 */
import type { Client } from 'cassandra-driver';
import { OverloadedError, TimeoutError, UnavailableError } from '../common/errors';
import type { Logger } from '../common/log';
import { backoffMs, Gate, LruMap, num, outcomeUnknown, sleep, toStoreError } from './cassandra-util';

export interface SeqLogSpec<E> {
  /** seq_heads.kind and error text. */
  kind: string;
  table: string;
  keyColumn: string;
  /** Columns written per entry, in the order values() returns them. */
  columns: readonly string[];
  values(entry: E): unknown[];
  /** msg_id of an entry: identifies our row when an LWT's outcome must be checked. */
  idOf(entry: E): string;
  /** Bytes an entry adds to a round (bounds one mutation's size). */
  sizeOf(entry: E): number;
  bucketSize: number;
}

export interface SeqLogOptions {
  client: Client;
  keyspace: string;
  gate: Gate;
  serialConsistency: number;
  logger: Logger;
  maxBatchEntries: number;
  maxBatchBytes: number;
  maxCasAttempts: number;
  maxPendingEntries: number;
  maxCachedKeys: number;
}

/** Where a key's log ends: its newest bucket and newest seq. */
export interface Head {
  bucket: number;
  maxSeq: number;
}

interface Pending<E> {
  entry: E;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

export class SeqLog<E> {
  private readonly lanes = new Map<string, Pending<E>[]>();
  private readonly heads: LruMap<string, Head>;
  private pending = 0;
  private readonly q: { cas: string; row: string; maxSeq: string; rowId: string; hint: string; hintSet: string };

  constructor(private readonly spec: SeqLogSpec<E>, private readonly o: SeqLogOptions) {
    this.heads = new LruMap(o.maxCachedKeys);
    const t = `${o.keyspace}.${spec.table}`;
    const k = spec.keyColumn;
    const sets = spec.columns.map((c) => `${c} = ?`).join(', ');
    this.q = {
      row: `UPDATE ${t} SET ${sets} WHERE ${k} = ? AND bucket = ? AND seq = ?`,
      cas: `UPDATE ${t} SET ${sets}, max_seq = ? WHERE ${k} = ? AND bucket = ? AND seq = ? IF max_seq = ?`,
      maxSeq: `SELECT max_seq FROM ${t} WHERE ${k} = ? AND bucket = ? LIMIT 1`,
      rowId: `SELECT msg_id FROM ${t} WHERE ${k} = ? AND bucket = ? AND seq = ?`,
      hint: `SELECT bucket FROM ${o.keyspace}.seq_heads WHERE kind = ? AND id = ?`,
      hintSet: `UPDATE ${o.keyspace}.seq_heads USING TIMESTAMP ? SET bucket = ? WHERE kind = ? AND id = ?`,
    };
  }

  bucketOf(seq: number): number {
    return Math.floor(seq / this.spec.bucketSize);
  }

  /** The last seq a bucket can hold. */
  bucketEnd(bucket: number): number {
    return (bucket + 1) * this.spec.bucketSize - 1;
  }

  /** max_seq of a bucket that has no row yet: everything before it is full. */
  private emptyMax(bucket: number): number {
    return bucket === 0 ? 0 : bucket * this.spec.bucketSize - 1;
  }

  /** Appends one entry to key's log; resolves with its seq once it is durably written. */
  append(key: string, entry: E): Promise<number> {
    if (this.pending >= this.o.maxPendingEntries) {
      return Promise.reject(new OverloadedError(`${this.spec.kind} log: ${this.pending} appends already queued`));
    }
    this.pending++;
    return new Promise<number>((resolve, reject) => {
      const lane = this.lanes.get(key);
      const p = { entry, resolve, reject };
      if (lane) {
        lane.push(p); // a round for this key is running; the next one takes this entry
        return;
      }
      this.lanes.set(key, [p]);
      void this.drain(key);
    });
  }

  /** Reads where key's log ends (follows full buckets past a lagging hint). */
  async readHead(key: string, serial = false): Promise<Head> {
    const opts = serial ? { prepare: true, consistency: this.o.serialConsistency } : { prepare: true };
    const hint = await this.o.client.execute(this.q.hint, [this.spec.kind, key], { prepare: true });
    let bucket = num(hint.first()?.bucket) ?? 0;
    for (;;) {
      const rs = await this.o.client.execute(this.q.maxSeq, [key, bucket], opts);
      const max = num(rs.first()?.max_seq);
      if (max === null) return { bucket, maxSeq: this.emptyMax(bucket) };
      if (max < this.bucketEnd(bucket)) return { bucket, maxSeq: max };
      bucket++;
    }
  }

  private async drain(key: string): Promise<void> {
    const lane = this.lanes.get(key)!;
    while (lane.length > 0) {
      const batch = this.takeBatch(lane);
      try {
        const seqs = await this.o.gate.run(() => this.writeRound(key, batch.map((p) => p.entry)));
        batch.forEach((p, i) => p.resolve(seqs[i]));
      } catch (err) {
        this.heads.delete(key); // whatever we believed about this key may be stale now
        const e = toStoreError(err, `${this.spec.kind} append`);
        for (const p of batch) p.reject(e);
      } finally {
        this.pending -= batch.length;
      }
    }
    this.lanes.delete(key);
  }

  private takeBatch(lane: Pending<E>[]): Pending<E>[] {
    let bytes = 0;
    let n = 0;
    while (n < lane.length && n < this.o.maxBatchEntries) {
      bytes += this.spec.sizeOf(lane[n].entry);
      if (n > 0 && bytes > this.o.maxBatchBytes) break;
      n++;
    }
    return lane.splice(0, n);
  }

  /**
   * Writes `entries` in order at increasing seqs; returns each one's seq. A round never crosses a
   * bucket end: entries that do not fit go into the next bucket in a further round, and another
   * writer may get seqs in between, so the seqs are consecutive only within one round.
   */
  private async writeRound(key: string, entries: E[]): Promise<number[]> {
    let head = this.heads.get(key) ?? (await this.readHead(key));
    const seqs: number[] = [];
    let done = 0;
    for (let attempt = 1; done < entries.length; attempt++) {
      if (attempt > this.o.maxCasAttempts) {
        throw new UnavailableError(`${this.spec.kind} ${key}: seq allocation still contended after ${this.o.maxCasAttempts} attempts`);
      }
      if (head.maxSeq >= this.bucketEnd(head.bucket)) {
        head = { bucket: head.bucket + 1, maxSeq: head.maxSeq };
        await this.o.client.execute(this.q.hintSet, [head.bucket, head.bucket, this.spec.kind, key], { prepare: true });
      }
      const room = this.bucketEnd(head.bucket) - head.maxSeq;
      const part = entries.slice(done, done + room);
      const expected = head.maxSeq === this.emptyMax(head.bucket) ? null : head.maxSeq;
      const outcome = await this.tryRound(key, head, part, expected);
      if (outcome === true) {
        part.forEach((_, i) => seqs.push(head.maxSeq + 1 + i));
        head = { bucket: head.bucket, maxSeq: head.maxSeq + part.length };
        this.heads.set(key, head);
        done += part.length;
        attempt = 0;
        continue;
      }
      // Another writer got there first: where it left the log is our new start.
      head = outcome;
      if (attempt > 2) await sleep(backoffMs(attempt));
    }
    return seqs;
  }

  /** true when applied; otherwise where the log ends now. */
  private async tryRound(key: string, head: Head, part: E[], expected: number | null): Promise<true | Head> {
    const first = head.maxSeq + 1;
    const last = head.maxSeq + part.length;
    const rowParams = (e: E, seq: number) => [...this.spec.values(e), key, head.bucket, seq];
    const lastEntry = part[part.length - 1];
    const cas = { query: this.q.cas, params: [...this.spec.values(lastEntry), last, key, head.bucket, last, expected] };
    try {
      const rs = part.length === 1
        ? await this.o.client.execute(cas.query, cas.params, { prepare: true })
        : await this.o.client.batch([
          ...part.slice(0, -1).map((e, i) => ({ query: this.q.row, params: rowParams(e, first + i) })),
          cas,
        ], { prepare: true, logged: true });
      const row = rs.first();
      if (row?.['[applied]'] === true) return true;
      return { bucket: head.bucket, maxSeq: num(row?.max_seq) ?? this.emptyMax(head.bucket) };
    } catch (err) {
      if (!outcomeUnknown(err)) throw err;
      // The Paxos round may or may not have committed. A serial read finishes any round in
      // progress, so after it the row at `first` either is ours or will never be.
      this.o.logger.warn('seq log: LWT outcome unknown; checking', { kind: this.spec.kind, key, seq: first, err });
      const rs = await this.o.client.execute(this.q.rowId, [key, head.bucket, first],
        { prepare: true, consistency: this.o.serialConsistency }).catch((checkErr: unknown) => {
        // Still unknown: say so (a TimeoutError), so the caller keeps its dedup claim instead of
        // releasing it for a retry that could store the message twice.
        throw new TimeoutError(`${this.spec.kind} append: outcome unknown, check failed: ${String(checkErr)}`, { cause: err });
      });
      if (rs.first()?.msg_id === this.spec.idOf(part[0])) return true;
      return this.readHead(key, true);
    }
  }
}
