/**
 * The longest time the event loop was held, from perf_hooks.monitorEventLoopDelay: with a 1 ms
 * resolution its max is how late a 1 ms timer fired, i.e. the longest block (commit, checkpoint,
 * GC) plus at most the resolution.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { round2 } from './proc-stats';

export class LoopWatch {
  private readonly h: IntervalHistogram = monitorEventLoopDelay({ resolution: 1 });
  private maxNs = 0;

  constructor() {
    this.h.enable();
  }

  /** Starts a new window; the all-time max keeps what the last window saw. */
  reset(): void {
    this.maxNs = Math.max(this.maxNs, this.h.max);
    this.h.reset();
  }

  maxMsSinceReset(): number {
    return round2(this.h.max / 1e6);
  }

  maxMsSinceStart(): number {
    return round2(Math.max(this.maxNs, this.h.max) / 1e6);
  }

  /** Forgets everything seen so far. */
  restart(): void {
    this.maxNs = 0;
    this.h.reset();
  }

  stop(): void {
    this.h.disable();
  }
}
