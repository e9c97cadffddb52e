import * as assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Code } from './errors';
import { Settings } from './config';
import { signToken, type TokenAuth, verifyToken } from './jwt';
import { loadSigningKey, loadTokenAuth, readSecretFromDataDir, SECRET_FILE } from './secret';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');

/** A token over exactly these header and claims texts, signed with `key`. */
function rawToken(key: string | Buffer, claims: string, header = '{"alg":"HS256","typ":"JWT"}'): string {
  const signed = `${b64(header)}.${b64(claims)}`;
  return `${signed}.${createHmac('sha256', key).update(signed).digest('base64url')}`;
}

const isCode = (code: number) => (e: unknown) => (e as { code?: number }).code === code;

describe('jwt', () => {
  const secret = 'test-secret-0123456789';
  const auth = { secret };
  it('round-trips the uid', () => {
    assert.equal(verifyToken(auth, signToken(secret, 'alice', 60)).sub, 'alice');
  });
  it('rejects a wrong secret, a tampered payload and garbage with TOKEN_INVALID', () => {
    const t = signToken(secret, 'alice', 60);
    const [h, , s] = t.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'mallory', exp: 9e9 })).toString('base64url')}.${s}`;
    for (const bad of [signToken('other-secret-0123456', 'alice', 60), forged, 'garbage', 'a.b.c', '']) {
      assert.throws(() => verifyToken(auth, bad), isCode(Code.TOKEN_INVALID), bad);
    }
  });
  it('rejects an expired token with TOKEN_EXPIRED', () => {
    const t = signToken(secret, 'alice', 60, Date.now() - 120_000);
    assert.throws(() => verifyToken(auth, t), isCode(Code.TOKEN_EXPIRED));
  });

  describe('a key set: kid in the header picks the key', () => {
    const [oldKey, newKey] = ['old-secret-0123456789', 'new-secret-0123456789'];
    const keys = new Map([['k1', oldKey], ['k2', newKey]]);
    const invalid = (a: TokenAuth, token: string, why: RegExp) =>
      assert.throws(() => verifyToken(a, token), (e: Error) => isCode(Code.TOKEN_INVALID)(e) && why.test(e.message));

    it('accepts a token of every key in the set, and none signed with another key under a known kid', () => {
      assert.equal(verifyToken({ keys }, signToken(oldKey, 'alice', 60, undefined, { kid: 'k1' })).sub, 'alice');
      assert.equal(verifyToken({ keys }, signToken(newKey, 'alice', 60, undefined, { kid: 'k2' })).sub, 'alice');
      invalid({ keys }, signToken(oldKey, 'alice', 60, undefined, { kid: 'k2' }), /signature/);
    });
    it('refuses an unknown kid, and a kid that is not a string', () => {
      invalid({ keys, secret }, signToken(secret, 'alice', 60, undefined, { kid: 'k3' }), /kid/);
      invalid({ keys, secret }, rawToken(secret, '{"sub":"alice","exp":9999999999}', '{"alg":"HS256","kid":1}'), /kid/);
    });
    it('checks a token without kid against the default key only', () => {
      assert.equal(verifyToken({ keys, secret }, signToken(secret, 'alice', 60)).sub, 'alice');
      invalid({ keys }, signToken(oldKey, 'alice', 60), /no kid/);
      invalid({ keys, secret }, signToken(oldKey, 'alice', 60), /signature/);
    });
    it('still says TOKEN_EXPIRED for an expired token of a known kid', () => {
      const t = signToken(newKey, 'alice', 60, Date.now() - 120_000, { kid: 'k2' });
      assert.throws(() => verifyToken({ keys }, t), isCode(Code.TOKEN_EXPIRED));
    });
  });

  describe('aud and iss, when configured', () => {
    const checked = { secret, audience: 'im', issuer: 'https://login.example.com' };
    const claims = (extra: string) => rawToken(secret, `{"sub":"alice","exp":9999999999${extra}}`);
    it('accepts aud as the audience or an array holding it, and iss equal to the issuer', () => {
      assert.equal(verifyToken(checked, signToken(secret, 'alice', 60, undefined, checked)).sub, 'alice');
      assert.equal(verifyToken(checked, claims(',"aud":["other","im"],"iss":"https://login.example.com"')).sub, 'alice');
    });
    for (const [what, extra] of [
      ['no aud', ',"iss":"https://login.example.com"'], ['another aud', ',"aud":"mail","iss":"https://login.example.com"'],
      ['an aud array without it', ',"aud":["mail"],"iss":"https://login.example.com"'],
      ['no iss', ',"aud":"im"'], ['another iss', ',"aud":"im","iss":"https://evil.example.com"'],
    ]) {
      it(`refuses ${what} with TOKEN_INVALID`, () => {
        assert.throws(() => verifyToken(checked, claims(extra)), isCode(Code.TOKEN_INVALID));
      });
    }
    it('ignores aud and iss when not configured', () => {
      assert.equal(verifyToken(auth, claims(',"aud":"mail","iss":"anyone"')).sub, 'alice');
    });
  });

  describe('settings (IM_AUTH_SECRET, IM_AUTH_KEYS, IM_AUTH_SIGNING_KID)', () => {
    const load = (env: Record<string, string>) => loadTokenAuth(new Settings(env));
    it('reads a key set and aud/iss', () => {
      const a = load({ IM_AUTH_KEYS: ' k1:old-secret-0123456789 , k2:new:secret-0123456789', IM_AUTH_AUDIENCE: 'im', IM_AUTH_ISSUER: 'me' });
      assert.deepEqual([...a.keys!], [['k1', 'old-secret-0123456789'], ['k2', 'new:secret-0123456789']]);
      assert.deepEqual([a.secret, a.audience, a.issuer], [undefined, 'im', 'me']);
    });
    it('refuses short secrets, bad entries and a kid given twice, naming the setting', () => {
      assert.throws(() => load({ IM_AUTH_SECRET: 'short' }), /config IM_AUTH_SECRET: secret shorter than 16/);
      for (const keys of ['k1:short', 'no-colon-0123456789', ':nokid-0123456789', 'k1:old-secret-0123456789,k1:new-secret-0123456789']) {
        assert.throws(() => load({ IM_AUTH_KEYS: keys }), /config IM_AUTH_KEYS:/, keys);
      }
    });
    it('signs with the key IM_AUTH_SIGNING_KID names, else the default secret', () => {
      const env = { IM_AUTH_KEYS: 'k1:old-secret-0123456789', IM_AUTH_AUDIENCE: 'im' };
      const k1 = loadSigningKey(new Settings({ ...env, IM_AUTH_SIGNING_KID: 'k1' }), () => secret);
      assert.deepEqual(k1, { secret: 'old-secret-0123456789', opts: { kid: 'k1', audience: 'im', issuer: undefined } });
      assert.equal(loadSigningKey(new Settings(env), () => secret).secret, secret);
      assert.throws(() => loadSigningKey(new Settings({ ...env, IM_AUTH_SIGNING_KID: 'k2' }), () => secret), /config IM_AUTH_SIGNING_KID:/);
    });
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
        assert.throws(() => verifyToken(auth, rawToken(secret, claims), now), isCode(Code.TOKEN_INVALID));
      });
    }
    it('accepts the largest exp, and an nbf in the past or within the clock-skew leeway', () => {
      assert.equal(verifyToken(auth, rawToken(secret, '{"sub":"alice","exp":253402300799}'), now).exp, 253402300799);
      const nbfPast = rawToken(secret, '{"sub":"alice","exp":1767229200,"iat":1767225600,"nbf":1767225600}');
      assert.equal(verifyToken(auth, nbfPast, now).iat, 1767225600);
      assert.equal(verifyToken(auth, rawToken(secret, '{"sub":"alice","exp":1767229200,"nbf":1767225630}'), now).sub, 'alice');
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
        assert.deepEqual(verifyToken({ secret: key }, token, iat * 1000), { sub: 'alice', iat, exp });
        // The natural misreading: the secret looks like hex, but the key is its text.
        const hexKeyed = rawToken(Buffer.from(key, 'hex'), claims, header);
        assert.throws(() => verifyToken({ secret: key }, hexKeyed, iat * 1000), isCode(Code.TOKEN_INVALID));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
