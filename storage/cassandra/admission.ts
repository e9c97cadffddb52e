/**
 * Admission of sends by how long they wait (docs/storage.md, Options; BENCHMARKS.md, "A cold start
 * of two logic processes"). A store past its capacity queues sends: in the gate, a lane, a peer.
 * Without a bound in time, a backlog outlives the gateway's call timeout (10 s), so the store spends
 * its capacity on sends whose callers have already been told TIMEOUT and sent again, and stays
 * there: two logic processes started cold under a steady 1,000 sends/s (below what they do once
 * warm) acknowledged 144–260 a second for as long as the load lasted.
 *
 * The rule (CoDel's, on completions): when even the quickest send that finished within an
 * interval took longer than `targetMs`, there is a standing queue, and new sends are refused at
 * once (1102 OVERLOADED, retryable, nothing written) until an interval's quickest is under the
 * target again. A few slow sends (a dead owner's shard waited out) do not trip it while others
 * finish quickly. Sends refused are not sent on to anything, so the queue drains.
 */
export interface AdmissionOptions {
  /** The quickest send of an interval above this: refuse new ones. */
  targetMs: number;
  /** The interval over which the quickest completion is taken. */
  intervalMs: number;
  /** Monotonic milliseconds; injectable for tests. */
  nowMs?: () => number;
}

export class Admission {
  private readonly now: () => number;
  private windowStart: number;
  private quickest = Infinity;
  private refusing = false;
  private refused = 0;

  constructor(private readonly o: AdmissionOptions) {
    this.now = o.nowMs ?? (() => performance.now());
    this.windowStart = this.now();
  }

  /** Whether a new send is to be refused now. */
  shed(): boolean {
    this.roll(this.now());
    if (this.refusing) this.refused++;
    return this.refusing;
  }

  /** A send finished (stored, or answered as a duplicate) `tookMs` after it was admitted. */
  done(tookMs: number): void {
    this.roll(this.now());
    if (tookMs < this.quickest) this.quickest = tookMs;
  }

  /** Sends refused so far. */
  get refusedCount(): number {
    return this.refused;
  }

  private roll(now: number): void {
    if (now - this.windowStart < this.o.intervalMs) return;
    // An interval with no completion says nothing about the queue: nothing to refuse on.
    this.refusing = this.quickest !== Infinity && this.quickest > this.o.targetMs;
    this.quickest = Infinity;
    this.windowStart = now;
  }
}
