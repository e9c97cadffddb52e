/** The logic process as an operator runs it: `node dist/logic/main.js` with env settings. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { needs, NATS_URL } from '../test/infra';
import { expectConfigExit, launchMain } from '../test/launch';

describe('logic main (process)', () => {
  const badValues: Array<[string, Record<string, string>]> = [
    ['IM_STORE', { IM_STORE: 'mongodb' }],
    ['IM_CASSANDRA_CONSISTENCY', { IM_STORE: 'cassandra', IM_CASSANDRA_CONSISTENCY: 'SOMETIMES' }],
    ['IM_BUS', { IM_BUS: 'inprocess' }],
    ['IM_NATS_URL', { IM_NATS_URL: 'http://example.com/nats' }],
    ['IM_LOGIC_ADDR', { IM_LOGIC_ADDR: 'nowhere' }],
    ['IM_ROUTER_GRPC_ADDR', { IM_ROUTER_GRPC_ADDR: 'router' }],
    ['IM_LOG_LEVEL', { IM_LOG_LEVEL: 'chatty' }],
    ['IM_LOGIC_ADMIN_TOKENS', { IM_LOGIC_ADMIN_TOKENS: 'too-short-for-an-admin-token' }],
    ['IM_LOGIC_ADMIN_TOKEN_FILE', { IM_LOGIC_ADMIN_TOKEN_FILE: '/nonexistent/admin-tokens' }],
    ['IM_CASSANDRA_TLS_CA', { IM_STORE: 'cassandra', IM_CASSANDRA_TLS: 'true', IM_CASSANDRA_TLS_CA: '/nonexistent/ca.pem' }],
  ];
  for (const [field, env] of badValues) {
    it(`exits 2 naming ${field} when it is bad`, async () => {
      await expectConfigExit('logic', env, field);
    });
  }

  describe('with NATS and a SQLite store', () => {
    let dir: string;
    before(async function () { await needs(this, 'nats'); });
    beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-logic-main-')); });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('prints one listening line, serves the port, and exits 0 on SIGTERM', async () => {
      const { child, exit, firstLine } = launchMain('logic', {
        IM_STORE: 'sqlite', IM_DATA_DIR: dir, IM_BUS: 'nats', IM_NATS_URL: NATS_URL,
        IM_LOGIC_ADDR: '127.0.0.1:0', IM_LOG_LEVEL: 'warn',
      });
      try {
        const rec = (await firstLine) as Record<string, string>;
        assert.equal(rec.msg, 'logic listening');
        assert.equal(rec.store, `sqlite ${dir}`);
        const port = Number(/:(\d+)$/.exec(rec.addr)?.[1]);
        assert.ok(port > 0, rec.addr);
        await new Promise<void>((resolve, reject) => {
          const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(); });
          s.once('error', reject);
        });
        assert.ok(fs.existsSync(path.join(dir, 'im.db')));
        child.kill('SIGTERM');
        const r = await exit;
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout.trim().split('\n').length, 1, 'exactly one stdout line');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    });
  });
});
