import * as assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Code } from './errors';
import { signToken, verifyToken } from './jwt';
import { readSecretFromDataDir, SECRET_FILE } from './secret';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** A token over exactly these header and claims texts, signed with `key`. */
function rawToken(key: string | Buffer, claims: string, header = '{"alg":"HS256","typ":"JWT"}'): string {
  const signed = `${b64(header)}.${b64(claims)}`;
  return `${signed}.${createHmac('sha256', key).update(signed).digest('base64url')}`;
}

const isCode = (code: number) => (e: unknown) => (e as { code?: number }).code === code;

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
      assert.throws(() => verifyToken(secret, bad), isCode(Code.TOKEN_INVALID), bad);
    }
  });
  it('rejects an expired token with TOKEN_EXPIRED', () => {
    const t = signToken(secret, 'alice', 60, Date.now() - 120_000);
    assert.throws(() => verifyToken(secret, t), isCode(Code.TOKEN_EXPIRED));
  });

  describe('time claims must be integer seconds in a sane range', () => {
    const now = 1_767_225_600_000;
    for (const claims of [
      '{"sub":"alice","exp":1e999}', '{"sub":"alice","exp":"1767229200"}', '{"sub":"alice","exp":1767229200.5}',
      '{"sub":"alice","exp":-1}', '{"sub":"alice","exp":253402300800}', '{"sub":"alice","exp":null}',
      '{"sub":"alice","exp":1767229200,"iat":1e999}', '{"sub":"alice","exp":1767229200,"nbf":"0"}',
      '{"sub":"alice","exp":1767229200,"nbf":1767229100}', '["alice"]', 'null',
    ]) {
      it(`refuses ${claims} with TOKEN_INVALID`, () => {
        assert.throws(() => verifyToken(secret, rawToken(secret, claims), now), isCode(Code.TOKEN_INVALID));
      });
    }
    it('accepts the largest exp, and an nbf in the past or within the clock-skew leeway', () => {
      assert.equal(verifyToken(secret, rawToken(secret, '{"sub":"alice","exp":253402300799}'), now).exp, 253402300799);
      const nbfPast = rawToken(secret, '{"sub":"alice","exp":1767229200,"iat":1767225600,"nbf":1767225600}');
      assert.equal(verifyToken(secret, nbfPast, now).iat, 1767225600);
      assert.equal(verifyToken(secret, rawToken(secret, '{"sub":"alice","exp":1767229200,"nbf":1767225630}'), now).sub, 'alice');
    });
  });

  describe('the worked example in docs/protocol.md (Tokens)', () => {
    const doc = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs', 'protocol.md'), 'utf8');
    const block = /<!-- jwt-example -->\s*```text\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';
    const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(block)?.[1] ?? '';
    const fileText = field('auth.secret file').replace(/\\n$/, '\n');
    const [header, claims, token] = [field('header'), field('claims'), field('token')];
    const { iat, exp } = JSON.parse(claims) as { iat: number; exp: number };

    it('is on the page', () => {
      assert.ok(fileText.endsWith('\n') && header && claims && token, 'secret file, header, claims and token are listed');
    });

    it('is the token of those exact header and claims bytes, keyed by the secret file text without its newline', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-jwt-'));
      try {
        fs.writeFileSync(path.join(dir, SECRET_FILE), fileText);
        const key = readSecretFromDataDir(dir);
        assert.equal(key, fileText.trimEnd());
        assert.equal(rawToken(key, claims, header), token);
        assert.equal(signToken(key, 'alice', exp - iat, iat * 1000), token, 'what the server and the CLI mint');
        assert.deepEqual(verifyToken(key, token, iat * 1000), { sub: 'alice', iat, exp });
        // The natural misreading: the secret looks like hex, but the key is its text.
        const hexKeyed = rawToken(Buffer.from(key, 'hex'), claims, header);
        assert.throws(() => verifyToken(key, hexKeyed, iat * 1000), isCode(Code.TOKEN_INVALID));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
