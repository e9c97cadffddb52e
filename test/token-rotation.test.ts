/**
 * Rotating the token signing key with no forced logout (docs/operations.md, Rotating the token
 * key), through the settings an operator sets on `npm start`: while both keys are in
 * IM_AUTH_KEYS, tokens of either authenticate; after a restart with only the new key, the old
 * key's tokens are TOKEN_INVALID and the new key's still work.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { tokenSigner } from '../cli/main';
import { Code } from '../common/errors';
import { loadEmbeddedConfig } from '../embedded/config';
import { startEmbedded } from '../embedded/system';
import { Op } from '../proto/wire';
import { embeddedMode, TestSystem, tempDir } from './harness';

const OLD = 'old:old-signing-key-0123456789';
const NEW = 'new:new-signing-key-0123456789';

describe('token key rotation (embedded)', function () {
  this.timeout(30_000);
  const dataDir = tempDir();
  let t: TestSystem | undefined;
  after(async () => {
    await t?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(keys: string): Promise<TestSystem> {
    const env = { IM_DATA_DIR: dataDir, IM_AUTH_KEYS: keys, IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0', IM_HTTP_ADDR: '127.0.0.1:0', IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off' };
    const sys = await startEmbedded(loadEmbeddedConfig(env, []));
    return new TestSystem({ ...sys, persist: dataDir, stop: () => sys.stop() }, embeddedMode, 'rot');
  }

  /** The Auth reply's error code (0 = authenticated). */
  async function authWith(sys: TestSystem, token: string): Promise<number> {
    const r = await sys.raw();
    const reply = await r.request(Op.AUTH, 'Auth', { token, deviceId: 'phone', lastSeq: 0 });
    return reply.error?.code ?? 0;
  }

  // Minted the way `im token` does, once, before the rotation: clients keep the tokens they hold.
  const mint = (kid: string) => tokenSigner({ IM_AUTH_KEYS: `${OLD},${NEW}`, IM_AUTH_SIGNING_KID: kid })('alice_rot', 3600);
  const [oldToken, newToken] = [mint('old'), mint('new')];

  it('accepts tokens of both keys while both are configured', async () => {
    t = await start(`${OLD},${NEW}`);
    assert.equal(await authWith(t, oldToken), 0);
    assert.equal(await authWith(t, newToken), 0);
    await t.stop();
    t = undefined;
  });

  it('refuses the old key after it is removed, and keeps accepting the new one', async () => {
    t = await start(NEW);
    assert.equal(await authWith(t, oldToken), Code.TOKEN_INVALID);
    assert.equal(await authWith(t, newToken), 0);
  });
});
