/**
 * A token bucket: `ratePerSec` tokens refill continuously up to `burst`; each admitted event costs
 * one token. Used per gateway connection for
 * its frames, and per client IP (or uid) by the route and HTTP APIs.
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

  /** How long until the next token, after a take() that found none. */
  nextTokenInMs(): number {
    return Math.ceil(((1 - this.tokens) * 1000) / this.ratePerSec);
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
