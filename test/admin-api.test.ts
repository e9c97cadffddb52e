/**
 * The internal admin API as `npm start` serves it: settings read by loadEmbeddedConfig from the
 * environment, called by a plain grpc-js client built from admin.proto.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadEmbeddedConfig } from '../embedded/config';
import { startEmbedded, type EmbeddedSystem } from '../embedded/system';
import { adminClient, bearerMetadata, failedStatus, unary } from '../logic/admin-client.test-support';
import { tempDir } from './harness';

const TOKEN = 'embedded-admin-token-0123456789abcdef';
const FILE_TOKEN = 'embedded-file-token-0123456789abcdef';

describe('admin API in embedded mode', () => {
  const systems: EmbeddedSystem[] = [];
  const dirs: string[] = [];
  after(async () => {
    for (const s of systems) await s.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** Starts a system with `env`, given a data dir that holds the file `admin-tokens` (FILE_TOKEN). */
  async function start(env: (dir: string) => Record<string, string>): Promise<{ system: EmbeddedSystem; admin: grpc.Client }> {
    const dir = tempDir('im-admin-api-');
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, 'admin-tokens'), `${FILE_TOKEN}\n`);
    const config = loadEmbeddedConfig({
      IM_DATA_DIR: dir, IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0', IM_HTTP_ADDR: '127.0.0.1:0', IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off', ...env(dir),
    }, []);
    const system = await startEmbedded(config);
    systems.push(system);
    return { system, admin: adminClient(system.logicAddr) };
  }

  it('serves LogicAdmin to the tokens of IM_LOGIC_ADMIN_TOKENS and IM_LOGIC_ADMIN_TOKEN_FILE only', async () => {
    const { system, admin } = await start((dir) => ({ IM_LOGIC_ADMIN_TOKENS: TOKEN, IM_LOGIC_ADMIN_TOKEN_FILE: path.join(dir, 'admin-tokens') }));
    try {
      assert.equal(system.adminApi, true);
      const req = { owner: 'emb-owner', name: 'ops', members: ['emb-a'] };
      assert.equal((await failedStatus(admin, 'CreateGroup', req, new grpc.Metadata())).code, grpc.status.UNAUTHENTICATED);
      assert.equal((await failedStatus(admin, 'CreateGroup', req, bearerMetadata(`${TOKEN}0`))).code, grpc.status.UNAUTHENTICATED);
      const g = await unary(admin, 'CreateGroup', req, bearerMetadata(TOKEN));
      const read = await unary(admin, 'GetGroup', { group_id: g.group_id }, bearerMetadata(FILE_TOKEN));
      assert.deepEqual(read.members, ['emb-owner', 'emb-a']);
    } finally {
      admin.close();
    }
  });

  it('does not serve LogicAdmin by default', async () => {
    const { system, admin } = await start(() => ({}));
    try {
      assert.equal(system.adminApi, false);
      const err = await failedStatus(admin, 'GetGroup', { group_id: 'g' }, bearerMetadata(TOKEN));
      assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    } finally {
      admin.close();
    }
  });
});
