/**
 * Shard ownership (docs/sequencer.md). Every inbox, history and dedup key hashes to one of
 * `shardCount` shards; a shard has at most one owner (a store process) under an epoch that grows
 * at every change of owner. Only LWTs on shard_owners change ownership: taking a shard (free, or
 * its owner's lease over), advancing its seq bound by `step`, releasing it on a clean stop.
 *
 * Seqs a shard's keys get in epoch e lie in (start_bound(e), bound(e)]; the next epoch starts at
 * the last persisted bound, so a seq is never handed out twice whatever the previous owner held
 * in memory or wrote late.
 */
import type { Client, types } from 'cassandra-driver';
import { UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { Lease } from './lease';
import { num, sleep } from './util';

export interface OwnedShard {
  shard: number;
  epoch: number;
  /** Every seq handed out for this shard before this epoch is <= startBound. */
  startBound: number;
  /** Persisted: seqs of this epoch stay <= bound. */
  bound: number;
  /** Write timestamp (µs) of this epoch's fences; every write of the epoch is later. */
  fenceTs: number;
  /** A write of the shard's keys failed in this epoch (it may still land): no heads are handed off. */
  failed?: boolean;
  advancing?: Promise<void>;
  /** Being handed over: no new call starts here; the running ones finish, then it is released. */
  leaving?: boolean;
  /** Settles when a handover ends (released, or called off and owned again). */
  handedOver?: Promise<void>;
}

/** `preferred`: not the owner but the process a free shard should go to (it takes it when called). */
export type Resolved = { mine: OwnedShard } | { owner: string; untilMs: number; preferred?: boolean };

/** Thrown (UNAVAILABLE, retryable) when a process is asked about a shard it does not own. */
export class NotOwnerError extends UnavailableError {
  readonly notOwner = true;
}

export interface ShardOptions {
  client: Client;
  keyspace: string;
  shardCount: number;
  /** Seqs per bound advance (seqsvr's section step). */
  step: number;
  /** Wall-clock skew allowed between processes: added to a lease's end before a takeover. */
  clockSkewMs: number;
  serialConsistency: number;
  lease: Lease;
  logger: Logger;
  /** Write timestamps (µs), strictly increasing in this process. */
  nextTs: () => number;
  /** Where a free shard should go instead of here (balance.ts); undefined: take it. */
  preferred?: (shard: number) => { owner: string; untilMs: number } | undefined;
  /**
   * Before taking a shard from a process that did not release it (dead, paused past its lease,
   * or an earlier incarnation of this one): writes what it logged for the shard in that epoch to
   * the tables (log.ts), so the new epoch starts from a complete timeline.
   */
  replay?: (owner: string, shard: number, epoch: number) => Promise<unknown>;
  /**
   * Before taking a shard its owner released at the end of `epoch`: what that owner handed off
   * for the next one (handoff.ts), as a function the new epoch is given to before any call can
   * use the shard; undefined when nothing was (the keys then read their tails at first touch).
   */
  handedOff?: (shard: number, epoch: number) => Promise<((st: OwnedShard) => void) | undefined>;
}

/** FNV-1a over UTF-16 code units: cheap, stable across processes and releases. */
export function shardOf(key: string, shardCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shardCount;
}

export class Shards {
  private readonly owned = new Map<number, OwnedShard>();
  /** Set by surrender() (a clean stop): no shard is taken again, not even one this process held. */
  private surrendered = false;
  private readonly remote = new Map<number, { owner: string; untilMs: number }>();
  /** Shards forgotten for a handover whose release has not landed yet (see forget). */
  private readonly releasing = new Map<number, Promise<void>>();
  /** Shards whose next resolve reads their row at the serial level from the first attempt (see resolveSlow). */
  private readonly readSerially = new Set<number>();
  private readonly resolving = new Map<string, Promise<Resolved>>();
  private readonly q: { get: string; insert: string; take: string; advance: string; release: string };

  constructor(private readonly o: ShardOptions) {
    const t = `${o.keyspace}.shard_owners`;
    this.q = {
      get: `SELECT owner, epoch, bound FROM ${t} WHERE shard = ?`,
      insert: `INSERT INTO ${t} (shard, owner, epoch, start_bound, bound, fence_ts) VALUES (?, ?, 1, 0, ?, ?) IF NOT EXISTS`,
      take: `UPDATE ${t} SET owner = ?, epoch = ?, start_bound = ?, bound = ?, fence_ts = ? WHERE shard = ? IF epoch = ? AND bound = ?`,
      advance: `UPDATE ${t} SET bound = ? WHERE shard = ? IF owner = ? AND epoch = ? AND bound = ?`,
      release: `UPDATE ${t} SET owner = null WHERE shard = ? IF epoch = ? AND owner = ?`,
    };
  }

  of(key: string): number {
    return shardOf(key, this.o.shardCount);
  }

  /** This process's state for a shard it owns now, or undefined. */
  mine(shard: number): OwnedShard | undefined {
    return this.owned.get(shard);
  }

  get ownedCount(): number {
    return this.owned.size;
  }

  /** The shards owned here now. */
  ownedList(): number[] {
    return [...this.owned.keys()];
  }

  /** Forgets a shard this process lost (a failed bound advance) or a stale idea of its owner. */
  /** The shard when it is owned here and not being handed over: work on it may start. */
  ready(shard: number): OwnedShard | undefined {
    const st = this.owned.get(shard);
    return st && !st.leaving ? st : undefined;
  }

  /** Drops what this process believed about another owner of the shard (it answered "not the owner"). */
  unlearn(shard: number): void {
    this.remote.delete(shard);
    // What named that owner may have been a stale plain read: the next one is serial.
    this.readSerially.add(shard);
  }

  /**
   * Stops owning the shard here. `released`: it is being handed over and this settles once its
   * release landed (or failed): until then a resolve here waits for it, since the row still names
   * this process and reading it now would take the shard back under a new epoch, cancelling the
   * release (a handover then repeats every balance round: 384 releases and 244 takes back in one
   * 40 s run of two logic processes).
   */
  forget(shard: number, released?: Promise<void>): void {
    this.owned.delete(shard);
    this.remote.delete(shard);
    if (released) {
      this.releasing.set(shard, released);
      void released.finally(() => {
        if (this.releasing.get(shard) === released) this.releasing.delete(shard);
      });
    }
  }

  /** After a lease lapse: nothing believed before counts. */
  forgetAll(): void {
    this.owned.clear();
    this.remote.clear();
  }

  /**
   * Who owns the shard: this process (taking it when it is free or its owner's lease is over)
   * or another, live one. With `preferOthers`, a shard that is free goes to its preferred
   * process instead when that is another one (the caller forwards the call there).
   */
  resolve(shard: number, preferOthers = false, read?: types.Row | null): Promise<Resolved> {
    const mine = this.owned.get(shard);
    if (mine?.leaving && mine.handedOver) return mine.handedOver.then(() => this.resolve(shard, preferOthers));
    if (mine) return Promise.resolve({ mine });
    const released = this.releasing.get(shard);
    if (released) return released.then(() => this.resolve(shard, preferOthers));
    const other = this.remote.get(shard);
    if (other) return Promise.resolve(other);
    const key = `${shard}${preferOthers ? 'p' : ''}`;
    let p = this.resolving.get(key);
    if (!p) {
      p = this.resolveSlow(shard, preferOthers, read).finally(() => this.resolving.delete(key));
      this.resolving.set(key, p);
    }
    return p;
  }

  /**
   * Takes the shard when it is free: no row yet, or released at a clean stop (its handed-off heads
   * adopted as at a first send). A shard with an owner, live or not, is left alone: false.
   */
  async takeFree(shard: number): Promise<boolean> {
    if (this.owned.has(shard)) return true;
    if (this.remote.has(shard) || this.releasing.has(shard) || this.resolving.has(`${shard}`) || this.resolving.has(`${shard}p`)) return false;
    // A plain read (see resolveSlow): a row that looks free but is not fails the take's condition.
    const row = (await this.o.client.execute(this.q.get, [shard], { prepare: true })).first();
    if (row && row.owner !== null && row.owner !== undefined) return false;
    // The take goes on from this read.
    const r = await this.resolve(shard, false, row);
    return 'mine' in r;
  }

  /** Makes sure `seq` fits the shard's persisted bound, advancing it (one LWT per `step` seqs). */
  async ensureBound(st: OwnedShard, seq: number): Promise<void> {
    while (seq > st.bound) {
      if (this.owned.get(st.shard) !== st) throw new NotOwnerError(`shard ${st.shard} is no longer owned here`);
      st.advancing ??= this.advance(st, seq).finally(() => { st.advancing = undefined; });
      await st.advancing;
    }
  }

  /** Stops owning every shard here (calls for them now get "not the owner"); returns them for release(). */
  surrender(): OwnedShard[] {
    this.surrendered = true;
    const all = [...this.owned.values()];
    this.owned.clear();
    return all;
  }

  /**
   * Hands surrendered shards back (a clean stop, after their last write): the next owner takes
   * them at once, without waiting out the lease.
   */
  async release(all: OwnedShard[]): Promise<void> {
    const me = this.o.lease.processId;
    for (let i = 0; i < all.length; i += 32) {
      await Promise.all(all.slice(i, i + 32).map((st) => this.o.client.execute(this.q.release, [st.shard, st.epoch, me],
        { prepare: true, serialConsistency: this.o.serialConsistency }).catch((err) => {
        this.o.logger.warn('cassandra store: could not release shard; its next owner waits for the lease', { shard: st.shard, err });
      })));
    }
  }

  private async advance(st: OwnedShard, seq: number): Promise<void> {
    const next = st.bound + Math.ceil((seq - st.bound) / this.o.step) * this.o.step;
    this.o.lease.check(this.o.lease.writeTimeoutMs, `shard ${st.shard} bound`);
    const me = this.o.lease.processId;
    const rs = await this.o.client.execute(this.q.advance, [next, st.shard, me, st.epoch, st.bound],
      { prepare: true, serialConsistency: this.o.serialConsistency, readTimeout: this.o.lease.writeTimeoutMs });
    const row = rs.first();
    if (row?.['[applied]'] !== true) {
      // An earlier advance of ours whose answer was lost (it timed out, then applied) leaves the
      // row ours, in this epoch, with the bound moved on: keep the shard at that bound. Dropping
      // it would have this process take its own shard again under a new epoch, over rows of this
      // one still waiting to be written behind.
      const bound = num(row?.bound);
      if (row?.owner === me && num(row?.epoch) === st.epoch && bound !== null && bound > st.bound) {
        this.o.lease.check(0, `shard ${st.shard} bound`);
        st.bound = bound;
        return;
      }
      this.forget(st.shard);
      throw new NotOwnerError(`shard ${st.shard} was taken over (epoch ${st.epoch})`);
    }
    this.o.lease.check(0, `shard ${st.shard} bound`);
    st.bound = next;
  }

  /**
   * The first attempt reads the shard's row at the plain level, later ones at the serial level (a
   * Paxos round, which also finishes one left in progress). A stale first answer costs a retry, never
   * a wrong owner: "owned by X" is forwarded to X, which answers "not the owner" (the caller
   * unlearns it and resolves again); "free" or "its owner's lease is over" leads to a take whose
   * condition (the epoch and bound read) fails, and the next attempt reads serially. Cold starts
   * resolve every shard another process owns (512 per process with two): plain reads there. After
   * an owner answered "not the owner" (unlearn) the first read is serial too, so a stale replica
   * cannot send calls round in a circle.
   * `read`: the row as the caller just read it (null: none), used for the first attempt.
   */
  private async resolveSlow(shard: number, preferOthers: boolean, read?: types.Row | null): Promise<Resolved> {
    const serialFirst = this.readSerially.delete(shard);
    for (let attempt = 1; ; attempt++) {
      const plain = attempt === 1 && !serialFirst;
      // Another resolve in this process (one with the other preferOthers) may have just taken it:
      // taking it again would only start a new epoch of our own (a gap in every key's seqs).
      const held = this.owned.get(shard);
      if (held) return { mine: held };
      const level = plain ? {} : { consistency: this.o.serialConsistency };
      const row = plain && read !== undefined ? read
        : (await this.o.client.execute(this.q.get, [shard], { prepare: true, ...level })).first();
      // Taken by another resolve here while the row was read: the row shows this process, and
      // taking it again would start a second epoch of our own over rows still being written.
      const justTaken = this.owned.get(shard);
      if (justTaken) return { mine: justTaken };
      const me = this.o.lease.processId;
      const elsewhere = preferOthers ? this.o.preferred?.(shard) : undefined;
      if (elsewhere && (!row || row.owner === null || row.owner === undefined)) return { ...elsewhere, preferred: true };
      if (!row) {
        const taken = await this.take(shard, null, me);
        if (taken) return { mine: taken };
      } else {
        const owner = (row.owner as string | null) ?? null;
        const epoch = num(row.epoch) ?? 0;
        const bound = num(row.bound) ?? 0;
        if (owner !== null && owner !== me) {
          const untilMs = await this.o.lease.untilOf(owner);
          const freeAt = untilMs + this.o.clockSkewMs;
          if (Date.now() <= freeAt) {
            const other = { owner, untilMs };
            this.remote.set(shard, other);
            return other;
          }
        }
        // Free (released), or its owner's lease is over (a dead or paused process), or an old
        // incarnation of this process that lapsed: a new epoch (keys are fenced at first touch).
        if (elsewhere && owner !== me) return { ...elsewhere, preferred: true };
        // Replayed before the take: once taken, nothing may read the shard's tables incomplete.
        // Replaying twice (a racing taker) writes the same rows again.
        if (owner !== null && owner !== me) {
          await this.o.replay?.(owner, shard, epoch);
          const tookMeanwhile = this.owned.get(shard);
          if (tookMeanwhile) return { mine: tookMeanwhile };
        }
        // Released: what its last owner handed off is read first and given to the new epoch
        // before anything here can use the shard.
        const adopt = owner === null ? await this.o.handedOff?.(shard, epoch) : undefined;
        const taken = await this.take(shard, { epoch, bound }, me, adopt);
        if (taken) return { mine: taken };
      }
      if (attempt >= 5) throw new UnavailableError(`shard ${shard}: ownership still contended after ${attempt} attempts`);
      await sleep(5 * attempt);
    }
  }

  private async take(shard: number, prev: { epoch: number; bound: number } | null, me: string,
    adopt?: (st: OwnedShard) => void): Promise<OwnedShard | undefined> {
    // A send still running on a stopping store would otherwise take back a shard it surrendered
    // (the row still names this process until the release), which then stays with a stopped process.
    if (this.surrendered) throw new UnavailableError(`shard ${shard}: this store is stopping; it takes no shard`);
    this.o.lease.check(this.o.lease.writeTimeoutMs, `take shard ${shard}`);
    const fenceTs = this.o.nextTs();
    const opts = { prepare: true, serialConsistency: this.o.serialConsistency, readTimeout: this.o.lease.writeTimeoutMs };
    const st: OwnedShard = prev === null
      ? { shard, epoch: 1, startBound: 0, bound: this.o.step, fenceTs }
      : { shard, epoch: prev.epoch + 1, startBound: prev.bound, bound: prev.bound + this.o.step, fenceTs };
    const rs = prev === null
      ? await this.o.client.execute(this.q.insert, [shard, me, st.bound, fenceTs], opts)
      : await this.o.client.execute(this.q.take, [me, st.epoch, st.startBound, st.bound, fenceTs, shard, prev.epoch, prev.bound], opts);
    if (rs.first()?.['[applied]'] !== true) return undefined;
    if (me !== this.o.lease.processId) return undefined; // lapsed meanwhile: the new incarnation starts over
    this.o.lease.check(0, `take shard ${shard}`);
    // In the same turn as `owned` learns the shard: no call sees the epoch without its heads.
    adopt?.(st);
    this.remote.delete(shard);
    this.owned.set(shard, st);
    this.o.logger.debug('cassandra store: took shard', { shard, epoch: st.epoch, startBound: st.startBound });
    return st;
  }
}
