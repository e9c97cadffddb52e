import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ConfigError, Settings } from '../common/config';
import { Code } from '../common/errors';
import { silentLogger } from '../common/log';
import { AdminTokens, MIN_ADMIN_TOKEN_CHARS } from './admin-auth';
import { loadAdminAuth } from './config';
import { eventually } from '../test/wait';

const tok = (c: string) => c.repeat(MIN_ADMIN_TOKEN_CHARS);
const A = tok('a');
const B = tok('b');
const C = tok('c');

function md(header?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (header !== undefined) m.set('authorization', header);
  return m;
}

/** The app code check() refuses `token` with, or 0 when it accepts it. */
const verdict = (auth: AdminTokens, token: string) => auth.check(md(`Bearer ${token}`))?.code ?? 0;

describe('admin tokens', () => {
  const load = (env: Record<string, string>, files: Record<string, string> = {}) => loadAdminAuth(new Settings(env), (p) => {
    if (!(p in files)) throw new Error('ENOENT');
    return files[p];
  });
  const field = (name: string, msg: RegExp) => (e: unknown) => e instanceof ConfigError && e.field === name && msg.test(e.message);

  it('is off by default and reads the env list and the file', () => {
    assert.deepEqual(load({}), { tokens: [], tokenFile: undefined });
    assert.deepEqual(load({ IM_LOGIC_ADMIN_TOKENS: ` ${A} , ${B} `, IM_LOGIC_ADMIN_TOKEN_FILE: '/s/t' }, { '/s/t': `# rotated 2024-05\n${C}\n\n` }),
      { tokens: [A, B], tokenFile: { path: '/s/t', tokens: [C] } });
  });

  it('refuses short tokens, unreadable or empty files with a ConfigError naming the setting', () => {
    assert.throws(() => load({ IM_LOGIC_ADMIN_TOKENS: `${A},short` }), field('IM_LOGIC_ADMIN_TOKENS', /token 2 has 5 characters; at least 32/));
    assert.throws(() => load({ IM_LOGIC_ADMIN_TOKEN_FILE: '/nope' }), field('IM_LOGIC_ADMIN_TOKEN_FILE', /cannot read \/nope/));
    assert.throws(() => load({ IM_LOGIC_ADMIN_TOKEN_FILE: '/e' }, { '/e': '\n# none yet\n' }), field('IM_LOGIC_ADMIN_TOKEN_FILE', /holds no token/));
    assert.throws(() => load({ IM_LOGIC_ADMIN_TOKEN_FILE: '/s' }, { '/s': `${tok('x').slice(1)}\n` }), field('IM_LOGIC_ADMIN_TOKEN_FILE', /at least 32/));
  });

  it('tells a missing or malformed credential (1003) from a wrong token (1004)', () => {
    const auth = new AdminTokens({ tokens: [A, B] });
    assert.equal(verdict(auth, A), 0);
    assert.equal(verdict(auth, B), 0);
    assert.equal(verdict(auth, C), Code.TOKEN_INVALID);
    assert.equal(verdict(auth, A.slice(1)), Code.TOKEN_INVALID);
    assert.equal(auth.check(md())?.code, Code.NOT_AUTHENTICATED);
    assert.equal(auth.check(md(A))?.code, Code.NOT_AUTHENTICATED);
    assert.equal(auth.check(md(`Basic ${A}`))?.code, Code.NOT_AUTHENTICATED);
    assert.equal(auth.check(md(`bearer ${A}`)), undefined);
  });

  describe('IM_LOGIC_ADMIN_TOKEN_FILE', () => {
    let dir: string;
    let auth: AdminTokens | undefined;
    beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-admin-tokens-')); });
    afterEach(() => {
      auth?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('is re-read on change (rotation with overlap, then removal); the env tokens stay', async () => {
      const file = path.join(dir, 'tokens');
      fs.writeFileSync(file, `${A}\n`);
      auth = new AdminTokens(loadAdminAuth(new Settings({ IM_LOGIC_ADMIN_TOKENS: C, IM_LOGIC_ADMIN_TOKEN_FILE: file })), { pollMs: 20 });
      assert.equal(verdict(auth, B), Code.TOKEN_INVALID);
      fs.writeFileSync(file, `${A}\n${B}\n`);
      await eventually(() => verdict(auth!, B) === 0, 'the new token to be accepted', 10_000);
      assert.equal(verdict(auth, A), 0);
      fs.writeFileSync(file, `${B}\n`);
      await eventually(() => verdict(auth!, A) !== 0, 'the old token to be refused', 10_000);
      assert.equal(verdict(auth, B), 0);
      assert.equal(verdict(auth, C), 0);
    });

    it('keeps the tokens in use when the file becomes unusable', async () => {
      const file = path.join(dir, 'tokens');
      fs.writeFileSync(file, `${A}\n`);
      const errors: string[] = [];
      const logger = { ...silentLogger, error: (msg: string) => { errors.push(msg); } };
      auth = new AdminTokens(loadAdminAuth(new Settings({ IM_LOGIC_ADMIN_TOKEN_FILE: file })), { pollMs: 20, logger });
      fs.writeFileSync(file, 'short\n');
      await eventually(() => errors.length > 0, 'the bad file to be seen', 10_000);
      fs.rmSync(file);
      await eventually(() => errors.length > 1, 'the removed file to be seen', 10_000);
      assert.equal(verdict(auth, A), 0);
    });
  });
});
