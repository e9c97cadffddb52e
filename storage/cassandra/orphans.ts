/**
 * The orphan sweep (docs/sequencer.md, "Owner log"): the log of a process that died holds rows it
 * acknowledged and had not yet written to their tables. A shard of it is replayed when the shard
 * is next taken over (shards.ts), but a shard nobody uses would keep its rows only in
 * the log, whose rows live 7 days. So every dead process's log is written out and deleted soon
 * after its lease ends, whether or not its shards are used again:
 *
 * - each log is listed in `log_marks` before its first row (log.ts register());
 * - with each list of live processes the balancer reads, the sweep looks at the listed logs of
 *   processes not in it, when the list changed, when a deferred log became due, and every
 *   `everyRounds` rounds as a backstop;
 * - one live process does each dead log: the preferred one for it (rendezvous hashing, as for
 *   shards), so two processes rarely do the same one, and if they do it is harmless (a replay
 *   writes rows with their logged timestamps, each shard's epoch apart: a later owner's newer
 *   writes still win; docs/sequencer.md, "The orphan sweep under races");
 * - only after the dead process's lease ended plus the skew margin (its writes had deadlines
 *   inside its lease, so none can land after); a log not yet due is retried when it is;
 * - one sweep at a time; a list that changes while one runs starts another after it.
 */
import type { Logger } from '../../common/log';
import { preferredOwner } from './balance';
import type { Lease } from './lease';
import type { OwnerLog } from './log';
import { shardOf } from './shards';

export interface OrphanSweepOptions {
  log: Pick<OwnerLog, 'listed' | 'replayAll'>;
  lease: Pick<Lease, 'processId' | 'untilOf'>;
  logger: Logger;
  clockSkewMs: number;
  /** A sweep at least every this many balancer rounds, whatever the list does. */
  everyRounds: number;
}

export class OrphanSweep {
  private running: Promise<void> | undefined;
  private again = false;
  private names: readonly string[] = [];
  private rounds = 0;
  /** When a dead log seen last time becomes safe to replay (Infinity: none waiting). */
  private dueAtMs = Infinity;
  private closed = false;
  /**
   * Tests only: awaited at each step of each dead log's sweep ('due': its lease is over and it is
   * about to be read; 'read'; 'written': its rows are in the tables, the log not yet deleted).
   */
  pause: ((process: string, step: 'due' | 'read' | 'written') => Promise<void>) | undefined;

  constructor(private readonly o: OrphanSweepOptions) {}

  /** Called with each list of live processes the balancer reads. */
  onList(names: readonly string[], changed: boolean): void {
    this.names = names;
    const due = this.rounds++ % this.o.everyRounds === 0 || changed || Date.now() >= this.dueAtMs;
    if (!due || this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.loop().finally(() => { this.running = undefined; });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.sweep(this.names);
      } catch (err) {
        this.o.logger.warn('cassandra store: orphan log sweep failed (the next round tries again)', { err });
        this.dueAtMs = Date.now();
      }
    } while (this.again && !this.closed);
  }

  private async sweep(names: readonly string[]): Promise<void> {
    const me = this.o.lease.processId;
    const all = names.includes(me) ? names : [...names, me];
    let dueAtMs = Infinity;
    for (const process of await this.o.log.listed()) {
      if (this.closed) return;
      if (all.includes(process) || preferredOwner(all, shardOf(process, 0x7fffffff)) !== me) continue;
      const safeAtMs = (await this.o.lease.untilOf(process)) + this.o.clockSkewMs + 1;
      if (Date.now() < safeAtMs) {
        dueAtMs = Math.min(dueAtMs, safeAtMs);
        continue;
      }
      const pause = this.pause;
      await pause?.(process, 'due');
      await this.o.log.replayAll(process, pause && ((step) => pause(process, step)));
    }
    this.dueAtMs = dueAtMs;
  }
}
