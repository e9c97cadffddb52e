/**
 * This store's process lease (docs/sequencer.md): a row in logic_leases renewed with a plain
 * write every lease/3. Shard owners trust only their own monotonic clock: the lease is valid until
 * `renewal sent + leaseMs - marginMs`, and every owner write must be acknowledged before then.
 * Other processes take a shard over only after the row's until_ms (wall clock) plus the skew
 * margin, which is later. When a renewal is missed past validity the lease LAPSES: every shard
 * this process owned is forgotten and it continues under a new process id (a new incarnation),
 * so nothing it believed before the lapse is ever acted on again.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { Client } from 'cassandra-driver';
import { UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';

export interface LeaseOptions {
  client: Client;
  keyspace: string;
  leaseMs: number;
  logger: Logger;
  /** Called when the lease lapsed and the process id changed. */
  onLapse: (oldId: string, newId: string) => void;
  /** Monotonic milliseconds; injectable for tests. */
  monoMs?: () => number;
  /** Wall-clock milliseconds (the lease rows' clock); injectable for tests. */
  wallMs?: () => number;
}

/**
 * How long an until_ms read of another process answers `untilOf` again, while it is still ahead
 * of the clock. Bounds how late a clean stop (its row deleted) is noticed by asks in between.
 */
export const SEEN_UNTIL_MS = 1000;

const mono = () => performance.now();

export function newProcessId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export class Lease {
  private id = newProcessId();
  private validUntilMono = 0;
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  private closed = false;
  private readonly monoMs: () => number;
  private readonly wallMs: () => number;
  /** Other processes' until_ms as last read, and when; and the reads in flight (see untilOf). */
  private readonly seen = new Map<string, { untilMs: number; readAtMs: number }>();
  private readonly reading = new Map<string, Promise<number>>();
  private readonly q: { put: string; del: string; get: string; all: string };

  constructor(private readonly o: LeaseOptions) {
    this.monoMs = o.monoMs ?? mono;
    this.wallMs = o.wallMs ?? Date.now;
    const t = `${o.keyspace}.logic_leases`;
    this.q = {
      put: `UPDATE ${t} USING TTL ? SET until_ms = ?, started_ms = ? WHERE process = ?`,
      del: `DELETE FROM ${t} WHERE process = ?`,
      get: `SELECT until_ms FROM ${t} WHERE process = ?`,
      // One row per store process: a scan of the whole (small) table.
      all: `SELECT process, until_ms FROM ${t}`,
    };
  }

  get processId(): string {
    return this.id;
  }

  /** Margin kept between the end of validity here and the wall-clock until_ms others see. */
  get marginMs(): number {
    return Math.floor(this.o.leaseMs / 5);
  }

  /** The longest an owner write may take: it must be acknowledged while the lease is valid. */
  get writeTimeoutMs(): number {
    return Math.max(50, Math.floor(this.o.leaseMs / 5));
  }

  async start(): Promise<void> {
    await this.renew();
    this.timer = setInterval(() => void this.renew().catch(() => undefined), Math.max(10, Math.floor(this.o.leaseMs / 3)));
    this.timer.unref();
  }

  /** Milliseconds of validity left (<= 0: lapsed or never held). Checks for a lapse first. */
  remainingMs(): number {
    const left = this.validUntilMono - this.monoMs();
    if (left <= 0 && this.validUntilMono > 0) this.lapse();
    return left;
  }

  /** Throws UNAVAILABLE unless the lease is valid for at least `needMs` more. */
  check(needMs: number, what: string): void {
    if (this.remainingMs() < needMs) throw new UnavailableError(`${what}: this process's shard lease is not valid long enough; retry`);
  }

  /**
   * The wall-clock until_ms of another process's lease; 0 when it has none (expired by TTL, or
   * deleted at a clean stop).
   *
   * Asked once per shard of a process (a store resolving the shards another one owns, a cold
   * start's 512) and for every forwarded call that waits long, so the answers are shared: a value
   * still ahead of the clock and read in the last SEEN_UNTIL_MS is given again without a read (a
   * lease is only ever extended while it is held, so a read now would say as much, but for a row
   * deleted at a clean stop since), and asks while a read is in flight wait for it. A value that
   * says the lease is over is never reused: whoever acts on it (a takeover) gets a read made after
   * its ask.
   */
  async untilOf(process: string): Promise<number> {
    const now = this.wallMs();
    const seen = this.seen.get(process);
    if (seen && seen.untilMs > now && now - seen.readAtMs < SEEN_UNTIL_MS) return seen.untilMs;
    const inFlight = this.reading.get(process);
    if (inFlight) {
      const untilMs = await inFlight;
      if (untilMs > this.wallMs()) return untilMs;
    }
    return this.readUntil(process);
  }

  private noteSeen(process: string, untilMs: number, readAtMs: number): void {
    const seen = this.seen.get(process);
    if (seen && seen.readAtMs > readAtMs) return;
    this.seen.set(process, { untilMs, readAtMs });
    // Old incarnations of restarted processes: forgotten once their reads are too old to be used.
    if (this.seen.size > 256) {
      for (const [p, s] of this.seen) if (readAtMs - s.readAtMs >= SEEN_UNTIL_MS) this.seen.delete(p);
    }
  }

  private readUntil(process: string): Promise<number> {
    const readAtMs = this.wallMs();
    const read = (async () => {
      const rs = await this.o.client.execute(this.q.get, [process], { prepare: true });
      const v = rs.first()?.until_ms;
      const untilMs = v === undefined || v === null ? 0 : Number(v);
      this.noteSeen(process, untilMs, readAtMs);
      return untilMs;
    })();
    // The latest read is the one later asks join.
    this.reading.set(process, read);
    const forget = () => {
      if (this.reading.get(process) === read) this.reading.delete(process);
    };
    read.then(forget, forget);
    return read;
  }

  /** Every process whose lease row says it holds a lease now (until_ms ahead of this clock). */
  async live(): Promise<{ process: string; untilMs: number }[]> {
    const now = this.wallMs();
    const rs = await this.o.client.execute(this.q.all, [], { prepare: true });
    const rows = rs.rows.map((r) => ({ process: String(r.process), untilMs: Number(r.until_ms ?? 0) }));
    for (const p of rows) this.noteSeen(p.process, p.untilMs, now);
    return rows.filter((p) => p.untilMs > now);
  }

  /**
   * Stops renewing. The row is deleted (others take this process's shards at once) unless
   * `keepRow`: then it expires at its until_ms, as after a crash.
   */
  async close(options: { keepRow?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.renewing?.catch(() => undefined);
    this.validUntilMono = 0;
    if (!options.keepRow) await this.o.client.execute(this.q.del, [this.id], { prepare: true }).catch(() => undefined);
  }

  private renew(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.renewing ??= (async () => {
      const sentMono = this.monoMs();
      const sentWall = Date.now();
      const id = this.id;
      try {
        // The row outlives its until_ms by a few leases so takers can still read when it ended.
        const ttl = Math.ceil((this.o.leaseMs * 4) / 1000);
        await this.o.client.execute(this.q.put, [ttl, sentWall + this.o.leaseMs, sentWall, id],
          { prepare: true, readTimeout: this.o.leaseMs });
        if (this.closed || id !== this.id) return;
        this.remainingMs(); // a renewal that comes back after validity ended does not revive it
        if (id !== this.id) return;
        this.validUntilMono = Math.max(this.validUntilMono, sentMono + this.o.leaseMs - this.marginMs);
      } catch (err) {
        this.o.logger.warn('cassandra store: lease renewal failed', { process: id, err });
        throw err;
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  private lapse(): void {
    const old = this.id;
    this.id = newProcessId();
    this.validUntilMono = 0;
    this.o.logger.warn('cassandra store: shard lease lapsed; giving up every shard', { old, now: this.id });
    this.o.onLapse(old, this.id);
    void this.renew().catch(() => undefined);
  }
}
