export { TokenBucket } from '../common/token-bucket';

/**
 * Counts events in fixed one-second windows; `add` reports whether the count in the current
 * window now exceeds `limit`. Tells a client that overshoots once from one that keeps flooding.
 */
export class WindowCounter {
  private windowStartMs = 0;
  private count = 0;

  constructor(readonly limit: number, readonly windowMs = 1000) {}

  add(nowMs: number = Date.now()): boolean {
    if (nowMs - this.windowStartMs >= this.windowMs) {
      this.windowStartMs = nowMs;
      this.count = 0;
    }
    this.count++;
    return this.count > this.limit;
  }

  /** Nothing counted in the current window: forgetting this counter changes nothing. */
  idle(nowMs: number): boolean {
    return this.count === 0 || nowMs - this.windowStartMs >= this.windowMs;
  }
}
