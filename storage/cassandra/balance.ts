/**
 * Spreading shards over the live store processes (docs/sequencer.md, "Balance"). Ownership is
 * taken by whoever needs a free shard first, so without this a process started after the others
 * (the last one of a rolling restart) would own nothing and forward every call. Each shard has a
 * PREFERRED owner among the processes with a lease: rendezvous hashing over (process, shard), so
 * every process computes the same answer from the same list and a process joining or leaving
 * moves only its own share. Two rules use it:
 *
 * - a store that finds a shard free (or its owner's lease over) sends the call to the preferred
 *   process, which takes the shard, instead of taking it itself (a hint: the last attempts take it
 *   anyway, so a preferred process that is stopping or unreachable never blocks a send);
 * - every `intervalMs` an owner hands back, a few at a time, the shards another process is
 *   preferred for, once the list of live processes has stayed the same for one interval: each
 *   handover refuses new calls for the shard, waits for its running writes, and releases it;
 * - in the same rounds a process takes, a few dozen at a time, the FREE shards it is preferred for
 *   (no row yet, or released at a clean stop), so a cold start or a restart pays those LWTs while
 *   it is idle, not at each shard's first send under load. A shard with an owner, live or dead, is
 *   left to its first send (a dead owner's log is replayed per shard taken; the orphan sweep writes
 *   the rest at once).
 */
import type { Logger } from '../../common/log';
import type { Lease } from './lease';

/** A well-mixed 32-bit score of (process, shard): the highest score among live processes wins. */
export function rendezvousScore(process: string, shard: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < process.length; i++) {
    h ^= process.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= Math.imul(shard + 1, 0x9e3779b1);
  // murmur3's finalizer: every input bit reaches every output bit.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The preferred owner of shard among processes (undefined when there is none). */
export function preferredOwner(processes: readonly string[], shard: number): string | undefined {
  let best: string | undefined;
  let bestScore = -1;
  for (const p of processes) {
    const s = rendezvousScore(p, shard);
    if (s > bestScore || (s === bestScore && best !== undefined && p < best)) {
      best = p;
      bestScore = s;
    }
  }
  return best;
}

export interface BalancerOptions {
  lease: Lease;
  logger: Logger;
  /** How often the list of live processes is read (and shards handed over). */
  intervalMs: number;
  /** Shards handed over per interval at most; 0 turns handovers off (the preference stays). */
  maxMoves: number;
  /** Shards this process owns now. */
  owned: () => number[];
  /** Shards in all (shards are 0 … shardCount − 1); 0 or absent: free shards are not taken ahead. */
  shardCount?: number;
  /** Takes the shard if it is free; true when it is owned here after. */
  takeFree?: (shard: number) => Promise<boolean>;
  /** Hands a shard back; false when it could not be done now (busy, lost, closing). */
  handover: (shard: number) => Promise<boolean>;
  /** Told each list of live processes read, and whether it differs from the one before. */
  onList?: (names: readonly string[], changed: boolean) => void;
}

export class Balancer {
  private live: { process: string; untilMs: number }[] = [];
  private names: string[] = [];
  /** Rounds in a row that read the same list of processes. */
  private sameRounds = 0;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** Preferred shards found not free since the list last changed: not looked at again until it does. */
  private notFree = new Set<number>();

  constructor(private readonly o: BalancerOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /**
   * The process a free shard should go to, with its lease end; undefined when that is this
   * process, or the list is not known yet.
   */
  preferred(shard: number): { owner: string; untilMs: number } | undefined {
    const me = this.o.lease.processId;
    const names = this.names.includes(me) ? this.names : [...this.names, me];
    const owner = preferredOwner(names, shard);
    if (owner === undefined || owner === me) return undefined;
    const untilMs = this.live.find((p) => p.process === owner)?.untilMs ?? 0;
    // A lease that ended since the list was read: the process is presumed gone.
    return untilMs > Date.now() ? { owner, untilMs } : undefined;
  }

  /** One refresh of the list and, when it is stable, one round of handovers. Exposed for tests. */
  tick(): Promise<void> {
    this.running ??= this.round().catch((err: unknown) => {
      this.o.logger.warn('cassandra store: shard balance round failed', { err });
    }).finally(() => { this.running = undefined; });
    return this.running;
  }

  private async round(): Promise<void> {
    if (this.closed) return;
    const live = await this.o.lease.live();
    const names = live.map((p) => p.process).sort();
    const same = names.join('\n') === this.names.join('\n');
    this.sameRounds = same ? this.sameRounds + 1 : 0;
    this.live = live;
    this.names = names;
    this.o.onList?.(names, !same);
    // Shards found not free are looked at again when the list changes, and every 10 rounds (a
    // shard released by a handover since).
    if (!same || this.sameRounds % 10 === 0) this.notFree.clear();
    // Nothing moves while processes come and go (a rolling restart): only once the list held still.
    if (this.o.maxMoves === 0 || this.sameRounds < 1) return;
    const me = this.o.lease.processId;
    if (!names.includes(me)) return;
    const moves = this.o.owned().filter((s) => preferredOwner(names, s) !== me).slice(0, this.o.maxMoves);
    if (moves.length > 0) {
      let moved = 0;
      for (let i = 0; i < moves.length && !this.closed; i += 8) {
        const done = await Promise.all(moves.slice(i, i + 8).map((s) => this.o.handover(s)));
        moved += done.filter(Boolean).length;
      }
      this.o.logger.info('cassandra store: handed shards to their preferred owners', { moved, tried: moves.length, processes: names.length });
    }
    await this.takeFree(names, me);
  }

  /** Takes up to 4 × maxMoves of the free shards this process is preferred for, 16 at a time. */
  private async takeFree(names: readonly string[], me: string): Promise<void> {
    const { shardCount = 0, takeFree } = this.o;
    if (!takeFree || shardCount === 0) return;
    const owned = new Set(this.o.owned());
    const wanted: number[] = [];
    for (let s = 0; s < shardCount && wanted.length < 4 * this.o.maxMoves; s++) {
      if (!owned.has(s) && !this.notFree.has(s) && preferredOwner(names, s) === me) wanted.push(s);
    }
    let taken = 0;
    for (let i = 0; i < wanted.length && !this.closed && this.o.lease.processId === me; i += 16) {
      const done = await Promise.all(wanted.slice(i, i + 16).map((s) => takeFree(s).catch(() => false)));
      done.forEach((ok, j) => { if (ok) taken++; else this.notFree.add(wanted[i + j]); });
    }
    if (taken > 0) this.o.logger.info('cassandra store: took free shards this process is preferred for', { taken, looked: wanted.length });
  }
}
