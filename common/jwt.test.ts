import * as assert from 'node:assert/strict';
import { Code } from './errors';
import { signToken, verifyToken } from './jwt';

describe('jwt', () => {
  const secret = 'test-secret-0123456789';
  it('round-trips the uid', () => {
    assert.equal(verifyToken(secret, signToken(secret, 'alice', 60)).sub, 'alice');
  });
  it('rejects a wrong secret, a tampered payload and garbage with TOKEN_INVALID', () => {
    const t = signToken(secret, 'alice', 60);
    const [h, , s] = t.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'mallory', exp: 9e9 })).toString('base64url')}.${s}`;
    for (const bad of [signToken('other-secret-0123456', 'alice', 60), forged, 'garbage', 'a.b.c', '']) {
      assert.throws(() => verifyToken(secret, bad), (e: any) => e.code === Code.TOKEN_INVALID, bad);
    }
  });
  it('rejects an expired token with TOKEN_EXPIRED', () => {
    const t = signToken(secret, 'alice', 60, Date.now() - 120_000);
    assert.throws(() => verifyToken(secret, t), (e: any) => e.code === Code.TOKEN_EXPIRED);
  });
});
