/**
 * The gateway registry end to end: real Gateways (gateway/server.ts) heartbeat a real router over
 * gRPC, and what a client sees is the route API. A gateway whose heartbeats stop (its link to the
 * router is cut, the process itself keeps running) leaves the list within the TTL, with its
 * sessions; a draining gateway leaves it at once.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import { InProcessBus } from '../bus/bus';
import { signToken } from '../common/jwt';
import { Gateway } from '../gateway/server';
import { eventually, LogicTestServer, startLogicServer, TestClient } from '../gateway/gateway.test-support';
import { RouterClient } from './client';
import { RouterService } from './service';

const HOST = '127.0.0.1';
const SECRET = 'registry-test-secret';
const TTL_MS = 2000;
const GATEWAY_HEARTBEAT_MS = 200;

interface Listed { node: string; addr: string; tls: boolean; tlsAddr: string; region: string; zone: string; load: number }

function route(port: number): Promise<Listed[]> {
  return new Promise((resolve, reject) => {
    http.get({ host: HOST, port, path: '/v1/route', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve((JSON.parse(body) as { gateways: Listed[] }).gateways));
    }).on('error', reject);
  });
}

/** Polls the route API until `pred` holds; generous deadline, never a speed assertion. */
async function until(port: number, what: string, pred: (gs: Listed[]) => boolean, timeoutMs = TTL_MS + 10_000): Promise<Listed[]> {
  let last: Listed[] = [];
  return eventually(async () => {
    last = await route(port);
    return pred(last) && last;
  }, what, timeoutMs).catch((err: Error) => { throw new Error(`${err.message}; last route list: ${JSON.stringify(last)}`); });
}

const byNode = (gs: Listed[], node: string) => gs.find((g) => g.node === node);

/** How far the router's clock runs ahead of real time (the test moves it on). */
let clockAheadMs = 0;

describe('gateway registry (real gateways, real router)', function () {
  let router: RouterService;
  let httpPort: number;
  let grpcAddr: string;
  let logic: LogicTestServer;
  const bus = new InProcessBus();
  const cleanups: Array<() => unknown> = [];

  before(async () => {
    router = new RouterService({
      grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0,
      gatewayTtlMs: TTL_MS, gatewayHeartbeatIntervalMs: GATEWAY_HEARTBEAT_MS, now: () => Date.now() + clockAheadMs,
    });
    const ports = await router.start();
    httpPort = ports.httpPort;
    grpcAddr = `${HOST}:${ports.grpcPort}`;
    logic = await startLogicServer();
  });

  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    logic.stop();
    bus.close();
    await router.stop();
  });

  async function startGateway(node: string, region: string, capacity: number): Promise<{ gateway: Gateway; link: RouterClient; port: number }> {
    const link = new RouterClient({ address: grpcAddr, callTimeoutMs: 1000 });
    const gateway = new Gateway({
      node, host: HOST, port: 0, auth: { secret: SECRET }, logicAddresses: [`${HOST}:${logic.port}`],
      router: link, bus, region, zone: `${region}-1a`, capacity, routerHeartbeatMs: GATEWAY_HEARTBEAT_MS, drainTimeoutMs: 1000,
    });
    const { port } = await gateway.start();
    cleanups.push(() => link.close(), () => gateway.stop());
    return { gateway, link, port };
  }

  it('lists heartbeating gateways with their address, region and load; drops a silent one within the TTL', async () => {
    const eu = await startGateway('reg-eu', 'eu', 4);
    const us = await startGateway('reg-us', 'us', 100);
    await until(httpPort, 'both gateways', (gs) => !!byNode(gs, 'reg-eu') && !!byNode(gs, 'reg-us'));

    // A connection raises the load the gateway reports, and its session is registered.
    const phone = await TestClient.connect(eu.port);
    cleanups.push(() => phone.close());
    await phone.authOk(signToken(SECRET, 'reg-alice', 600));
    const gs = await until(httpPort, 'reg-eu at 1 of 4', (l) => byNode(l, 'reg-eu')?.load === 0.25);
    assert.deepEqual(byNode(gs, 'reg-eu'), { node: 'reg-eu', addr: `${HOST}:${eu.port}`, tls: false, tlsAddr: '', region: 'eu', zone: 'eu-1a', load: 0.25 });
    assert.deepEqual(router.table.lookup(['reg-alice']).map((s) => s.node), ['reg-eu']);

    // Heartbeats keep a gateway listed well past the TTL of its first registration: the router's
    // clock jumps half a TTL at a time, and after each jump a heartbeat renews the gateway.
    const registeredAt = router.table.gateways().find((g) => g.node === 'reg-eu')!.lastSeenMs;
    for (let i = 0; i < 3; i++) {
      clockAheadMs += TTL_MS / 2;
      const jumpedTo = Date.now() + clockAheadMs;
      await until(httpPort, `reg-eu renewed after jump ${i + 1}`, () =>
        (router.table.gateways().find((g) => g.node === 'reg-eu')?.lastSeenMs ?? 0) >= jumpedTo);
    }
    assert.ok(Date.now() + clockAheadMs - registeredAt >= TTL_MS * 1.5, 'the router saw 1.5 TTL pass');
    assert.ok(byNode(await route(httpPort), 'reg-eu'), 'still listed while heartbeating');

    // Cut reg-eu's link to the router: the gateway keeps running, its heartbeats stop arriving.
    eu.link.close();
    // Most of a TTL passes at once on the router's clock; a gateway that heartbeats every
    // GATEWAY_HEARTBEAT_MS stays inside it, the silent one leaves within two heartbeats of real time.
    clockAheadMs += TTL_MS - 2 * GATEWAY_HEARTBEAT_MS;
    const after = await until(httpPort, 'reg-eu gone', (l) => !byNode(l, 'reg-eu'));
    assert.ok(byNode(after, 'reg-us'), 'the gateway that still heartbeats stays');
    assert.equal(eu.gateway.connectionCount, 1, 'the silent gateway itself is still up');
    // Its sessions went with it: logic no longer routes messages to a gateway it cannot reach.
    assert.deepEqual(router.table.lookup(['reg-alice']), []);

    // A draining gateway leaves at once: stop() reports draining before it returns.
    await us.gateway.stop();
    assert.equal(byNode(await route(httpPort), 'reg-us'), undefined);
  });
});
