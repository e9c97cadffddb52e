/**
 * A token bucket: `ratePerSec` tokens refill continuously up to `burst`; each admitted event costs
 * one token. Used per connection to bound how many frames a client may send.
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(readonly ratePerSec: number, readonly burst: number, nowMs: number = Date.now()) {
    this.tokens = burst;
    this.lastMs = nowMs;
  }

  /** Takes one token if available. */
  take(nowMs: number = Date.now()): boolean {
    const elapsedMs = nowMs - this.lastMs;
    if (elapsedMs > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsedMs * this.ratePerSec) / 1000);
      this.lastMs = nowMs;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** When the bucket will be full again if nothing more is taken. */
  fullAtMs(): number {
    return this.lastMs + Math.ceil(((this.burst - this.tokens) * 1000) / this.ratePerSec);
  }

  /** Tokens and refill clock, so a connection handed to another process keeps its budget. */
  snapshot(): { tokens: number; lastMs: number } {
    return { tokens: this.tokens, lastMs: this.lastMs };
  }

  /** Takes over a snapshot() (clamped to the burst; bad numbers leave the bucket full). */
  restore(tokens: number, lastMs: number): void {
    if (!Number.isFinite(tokens) || !Number.isFinite(lastMs)) return;
    this.tokens = Math.min(this.burst, Math.max(0, tokens));
    this.lastMs = lastMs;
  }
}

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
