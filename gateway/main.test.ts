/**
 * The gateway process as an operator runs it: `node dist/gateway/main.js` with env settings, next
 * to the router and logic processes it talks to.
 */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { needs, NATS_URL } from '../test/infra';
import { expectConfigExit, killAll, launchMain, launchRouterAndLogic, type Launched } from '../test/launch';
import { eventually } from '../test/wait';

const SECRET = 'main-test-secret-0123456789abcdef';

async function route(httpAddr: string): Promise<Array<{ node: string; addr: string }>> {
  const res = await fetch(`http://${httpAddr}/v1/route`);
  return ((await res.json()) as { gateways: Array<{ node: string; addr: string }> }).gateways;
}

describe('gateway main (process)', () => {
  const badValues: Array<[string, Record<string, string>]> = [
    ['IM_AUTH_SECRET', {}],
    ['IM_BUS', { IM_AUTH_SECRET: SECRET, IM_BUS: 'kafka' }],
    ['IM_BUS', { IM_AUTH_SECRET: SECRET, IM_BUS: 'inprocess' }],
    ['IM_NATS_URL', { IM_AUTH_SECRET: SECRET, IM_NATS_URL: 'nats://host:123456' }],
    ['IM_GATEWAY_ADDR', { IM_AUTH_SECRET: SECRET, IM_GATEWAY_ADDR: ':::' }],
    ['IM_LOGIC_ADDRS', { IM_AUTH_SECRET: SECRET, IM_LOGIC_ADDRS: '127.0.0.1:7190,logic' }],
    ['IM_LOG_LEVEL', { IM_AUTH_SECRET: SECRET, IM_LOG_LEVEL: 'chatty' }],
  ];
  for (const [field, env] of badValues) {
    it(`exits 2 naming ${field} when it is bad (${JSON.stringify(env)})`, async () => {
      await expectConfigExit('gateway', env, field);
    });
  }

  describe('with NATS, next to router and logic processes', () => {
    let dir: string;
    const procs: Launched[] = [];
    before(async function () { await needs(this, 'nats'); });
    beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-gateway-main-')); });
    afterEach(async () => {
      await killAll(procs);
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('registers with the router, and on SIGTERM drains, leaves the route list and exits 0', async () => {
      const { router, logic, r, l } = await launchRouterAndLogic(procs, dir, { IM_NATS_URL: NATS_URL });
      const gw = launchMain('gateway', {
        IM_AUTH_SECRET: SECRET, IM_NODE_ID: 'gw-main-test', IM_GATEWAY_ADDR: '127.0.0.1:0', IM_NATS_URL: NATS_URL,
        IM_LOGIC_ADDRS: String(l.addr), IM_ROUTER_GRPC_ADDR: String(r.grpc), IM_LOG_LEVEL: 'warn',
      });
      procs.push(gw);
      const g = await gw.firstLine;
      assert.equal(g.msg, 'gateway listening');
      assert.equal(g.node, 'gw-main-test');
      assert.match(String(g.addr), /^127\.0\.0\.1:[1-9]\d*$/);

      // The first heartbeat is sent as the gateway starts; wait for it to land.
      const listed = await eventually(async () => {
        const l = await route(String(r.http));
        return l.length > 0 && l;
      }, 'the gateway in the route list');
      assert.deepEqual(listed.map((x) => [x.node, x.addr]), [['gw-main-test', g.addr]]);

      gw.child.kill('SIGTERM');
      const e = await gw.exit;
      assert.equal(e.code, 0, e.stderr);
      assert.deepEqual(await route(String(r.http)), [], 'a drained gateway is no longer offered to clients');
      for (const p of [logic, router]) {
        p.child.kill('SIGTERM');
        assert.equal((await p.exit).code, 0);
      }
    });
  });
});
