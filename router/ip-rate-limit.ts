/**
 * Per-client-IP token buckets for the route API. The route API is the one endpoint every client
 * hits before it can connect, so one misbehaving client (or a retry loop without backoff) must
 * not be able to crowd out everyone else's reconnects.
 *
 * Bounded: at most maxTrackedIps buckets, least recently seen evicted first. An evicted IP starts
 * again with a full bucket, so the bound trades a little precision under a flood from very many
 * addresses for memory that cannot grow without limit.
 */
import { LruMap } from '../common/lru';
import { TokenBucket } from '../common/token-bucket';
import type { IpAddr } from './cidr';
import { checkNumber } from '../common/options';

export interface IpRateLimiterOptions {
  /** Tokens refilled per second per IP. */
  ratePerSec: number;
  /** Bucket size: requests an idle IP may make at once. */
  burst: number;
  /** Buckets held at once; beyond it the least recently seen IP is forgotten. */
  maxTrackedIps: number;
  /** Clock in milliseconds; injected so tests need not wait. */
  now?: () => number;
}

export type RateDecision = { allowed: true } | { allowed: false; retryAfterMs: number };

export class IpRateLimiter {
  private readonly ratePerSec: number;
  private readonly burst: number;
  private readonly maxTrackedIps: number;
  private readonly now: () => number;
  private readonly buckets: LruMap<string, TokenBucket>;

  constructor(options: IpRateLimiterOptions) {
    this.ratePerSec = checkNumber('IpRateLimiter', 'ratePerSec', options.ratePerSec);
    this.burst = checkNumber('IpRateLimiter', 'burst', options.burst, { integer: true });
    this.maxTrackedIps = checkNumber('IpRateLimiter', 'maxTrackedIps', options.maxTrackedIps, { integer: true });
    this.now = options.now ?? Date.now;
    this.buckets = new LruMap(this.maxTrackedIps);
  }

  /** Takes one token for this client; when none is left, says how long until one is. */
  take(ip: IpAddr | undefined): RateDecision {
    return this.takeKey(rateLimitKey(ip));
  }

  /** The same for any client key (logic's HTTP API limits per authenticated uid). */
  takeKey(key: string): RateDecision {
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(this.ratePerSec, this.burst, now);
      this.buckets.set(key, b);
    }
    return b.take(now) ? { allowed: true } : { allowed: false, retryAfterMs: b.nextTokenInMs() };
  }

  get trackedIps(): number {
    return this.buckets.size;
  }
}

/**
 * IPv4: the address. IPv6: its /64, because one subscriber is usually handed a whole /64 and
 * could otherwise get a fresh bucket per address.
 */
export function rateLimitKey(ip: IpAddr | undefined): string {
  if (!ip) return 'unknown';
  if (ip.family === 4) return `4:${ip.value}`;
  return `6:${ip.value >> 64n}`;
}
