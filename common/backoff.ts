/**
 * Full-jitter exponential backoff: sleep = random(0, min(max, base * 2^attempt)).
 * Jitter spreads a reconnect storm (a gateway draining 100k clients) over the whole window instead
 * of synchronising it into waves.
 */
import { checkNumber, OptionError } from './options';

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Source of randomness in [0, 1); injectable so tests can check the bounds exactly. */
  random?: () => number;
}

export const DEFAULT_BACKOFF_BASE_MS = 500;
export const DEFAULT_BACKOFF_MAX_MS = 30_000;

/** The ceiling of the jitter window for an attempt (0-based), without overflowing for large attempts. */
export function backoffCeilingMs(attempt: number, baseMs: number, maxMs: number): number {
  if (attempt < 0 || !Number.isFinite(attempt)) attempt = 0;
  // 2^31 * any sane base already exceeds every sane max; capping the exponent avoids Infinity.
  const exp = Math.min(Math.floor(attempt), 31);
  return Math.min(maxMs, baseMs * 2 ** exp);
}

export function fullJitterDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeilingMs(attempt, baseMs, maxMs));
}

export function validateBackoff(baseMs: number, maxMs: number, owner = 'Backoff'): void {
  checkNumber(owner, 'backoffBaseMs', baseMs, { min: 0 });
  if (!(maxMs >= baseMs)) throw new OptionError(owner, 'backoffMaxMs', `must be >= backoffBaseMs (${baseMs}), got ${maxMs}`);
}

/** Counts attempts and hands out the next delay; reset() after a success. */
export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private options: BackoffOptions) {
    validateBackoff(options.baseMs, options.maxMs);
    this.random = options.random ?? Math.random;
  }

  get attempts(): number {
    return this.attempt;
  }

  /** Changes the window (the route API may announce one) without losing the attempt count. */
  configure(baseMs: number, maxMs: number): void {
    validateBackoff(baseMs, maxMs);
    this.options = { ...this.options, baseMs, maxMs };
  }

  nextDelayMs(): number {
    return fullJitterDelayMs(this.attempt++, this.options.baseMs, this.options.maxMs, this.random);
  }

  reset(): void {
    this.attempt = 0;
  }
}
