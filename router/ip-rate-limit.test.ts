import * as assert from 'node:assert/strict';
import { parseIp } from './cidr';
import { IpRateLimiter, rateLimitKey } from './ip-rate-limit';

const ip = (s: string) => parseIp(s)!;

describe('IpRateLimiter', () => {
  let clock: number;
  beforeEach(() => { clock = 1_000_000; });
  const limiter = (over: Partial<{ ratePerSec: number; burst: number; maxTrackedIps: number }> = {}) =>
    new IpRateLimiter({ ratePerSec: 2, burst: 3, maxTrackedIps: 100, now: () => clock, ...over });

  it('admits a burst, then refuses with the time until the next token', () => {
    const l = limiter();
    for (let i = 0; i < 3; i++) assert.deepEqual(l.take(ip('10.0.0.1')), { allowed: true });
    assert.deepEqual(l.take(ip('10.0.0.1')), { allowed: false, retryAfterMs: 500 });
    clock += 200;
    assert.deepEqual(l.take(ip('10.0.0.1')), { allowed: false, retryAfterMs: 300 });
    clock += 300;
    assert.deepEqual(l.take(ip('10.0.0.1')), { allowed: true });
    assert.deepEqual(l.take(ip('10.0.0.2')), { allowed: true }, 'another IP has its own bucket');
  });

  it('refills up to the burst, not beyond', () => {
    const l = limiter();
    l.take(ip('10.0.0.1'));
    clock += 60_000;
    for (let i = 0; i < 3; i++) assert.equal(l.take(ip('10.0.0.1')).allowed, true);
    assert.equal(l.take(ip('10.0.0.1')).allowed, false);
  });

  it('shares one bucket across an IPv6 /64, and treats mapped IPv4 as IPv4', () => {
    const l = limiter({ burst: 2 });
    assert.equal(l.take(ip('2001:db8:1:2::1')).allowed, true);
    assert.equal(l.take(ip('2001:db8:1:2:ffff::9')).allowed, true);
    assert.equal(l.take(ip('2001:db8:1:2::77')).allowed, false);
    assert.equal(l.take(ip('2001:db8:1:3::1')).allowed, true);
    assert.equal(rateLimitKey(ip('::ffff:10.0.0.1')), rateLimitKey(ip('10.0.0.1')));
    assert.equal(rateLimitKey(undefined), 'unknown');
  });

  it('tracks at most maxTrackedIps, forgetting the least recently seen', () => {
    const l = limiter({ burst: 1, maxTrackedIps: 2 });
    assert.equal(l.take(ip('10.0.0.1')).allowed, true);
    assert.equal(l.take(ip('10.0.0.2')).allowed, true);
    assert.equal(l.take(ip('10.0.0.1')).allowed, false); // .1 is now the most recent
    assert.equal(l.take(ip('10.0.0.3')).allowed, true);  // evicts .2
    assert.equal(l.trackedIps, 2);
    assert.equal(l.take(ip('10.0.0.1')).allowed, false, '.1 was kept, still empty');
    assert.equal(l.take(ip('10.0.0.2')).allowed, true, '.2 was forgotten: a fresh bucket');
  });

  it('rejects nonsensical settings, naming them', () => {
    assert.throws(() => limiter({ ratePerSec: 0 }), /ratePerSec/);
    assert.throws(() => limiter({ burst: 1.5 }), /burst/);
    assert.throws(() => limiter({ maxTrackedIps: 0 }), /maxTrackedIps/);
  });
});
