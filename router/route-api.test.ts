/**
 * The route API over real HTTP: region from the request or the client's IP (through a trusted
 * proxy's X-Forwarded-For), ranking, and the per-IP rate limit. Distinct loopback source addresses
 * (127.0.0.x, all local on Linux) stand in for distinct clients and proxies.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import { Code } from '../common/errors';
import type { GatewayStatus } from './api';
import { RouterClient } from './client';
import { RouterService, RouterServiceOptions } from './service';
import { seededRandom } from './router.test-support';

const HOST = '127.0.0.1';

interface Reply { status: number; headers: http.IncomingHttpHeaders; json: any }

function get(port: number, path: string, opts: { from?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, path, method: 'GET', headers: opts.headers, localAddress: opts.from, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: JSON.parse(body) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function gw(node: string, region: string, connections: number, over: Partial<GatewayStatus> = {}): GatewayStatus {
  return { node, addr: '10.0.0.1:7100', region, zone: `${region}-a`, connections, capacity: 100, draining: false, ...over };
}

async function startRouter(options: Partial<RouterServiceOptions>): Promise<{ service: RouterService; client: RouterClient; port: number }> {
  const service = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0, ...options });
  const ports = await service.start();
  const client = new RouterClient({ address: `${HOST}:${ports.grpcPort}` });
  return { service, client, port: ports.httpPort };
}

describe('route API', () => {
  describe('regions', () => {
    let service: RouterService;
    let client: RouterClient;
    let port: number;

    before(async () => {
      ({ service, client, port } = await startRouter({
        regionCidrs: [
          { cidr: '127.0.0.0/8', region: 'eu' },
          { cidr: '127.0.0.5/32', region: 'ap' }, // more specific than 127/8
          { cidr: '192.168.0.0/16', region: 'us' },
          { cidr: '2001:db8::/32', region: 'ap' },
        ],
        trustedProxies: ['127.0.0.2'],
        clientHeartbeatIntervalMs: 45_000,
        random: seededRandom(11),
      }));
      for (const g of [gw('eu-1', 'eu', 40), gw('eu-22', 'eu', 10), gw('us-333', 'us', 0), gw('ap-4444', 'ap', 0)]) await client.heartbeat(g);
    });
    after(async () => {
      client.close();
      await service.stop();
    });

    const regionsOf = (r: Reply) => r.json.gateways.map((g: { region: string }) => g.region);

    it('ranks the region of the client\'s IP first and says where it came from', async () => {
      const r = await get(port, '/v1/route');
      assert.equal(r.status, 200);
      assert.equal(r.json.region, 'eu');
      assert.equal(r.json.regionSource, 'ip');
      assert.deepEqual(regionsOf(r).slice(0, 2), ['eu', 'eu']);
      assert.equal(r.json.heartbeatIntervalMs, 45_000);
      assert.deepEqual(r.json.backoff, { baseMs: 500, maxMs: 30_000 });
      const specific = await get(port, '/v1/route', { from: '127.0.0.5' });
      assert.equal(specific.json.region, 'ap', 'the longest prefix wins');
      assert.equal(regionsOf(specific)[0], 'ap');
    });

    it('takes ?region= over X-IM-Region over the IP', async () => {
      const byParam = await get(port, '/v1/route?uid=alice&region=us', { headers: { 'X-IM-Region': 'ap' } });
      assert.deepEqual([byParam.json.region, byParam.json.regionSource, regionsOf(byParam)[0]], ['us', 'param', 'us']);
      const byHeader = await get(port, '/v1/route', { headers: { 'X-IM-Region': 'ap' } });
      assert.deepEqual([byHeader.json.region, byHeader.json.regionSource, regionsOf(byHeader)[0]], ['ap', 'header', 'ap']);
      const nowhere = await get(port, '/v1/route?region=mars');
      assert.deepEqual([nowhere.json.region, nowhere.json.regionSource], ['mars', 'param']);
      assert.equal(nowhere.json.gateways.length, 4, 'no gateway in the region: all are still offered');
    });

    it('answers a malformed region with 400 and a JSON error code', async () => {
      const r = await get(port, '/v1/route?region=eu%20west');
      assert.equal(r.status, 400);
      assert.equal(r.json.error.code, Code.BAD_REQUEST);
      assert.match(r.json.error.message, /region/);
      const h = await get(port, '/v1/route', { headers: { 'X-IM-Region': 'a/b' } });
      assert.equal(h.status, 400);
      assert.match(h.json.error.message, /X-IM-Region/);
    });

    it('believes X-Forwarded-For only from a trusted proxy', async () => {
      const viaProxy = await get(port, '/v1/route', { from: '127.0.0.2', headers: { 'X-Forwarded-For': '10.9.9.9, 192.168.4.4' } });
      assert.deepEqual([viaProxy.json.region, viaProxy.json.regionSource], ['us', 'ip']);
      const v6 = await get(port, '/v1/route', { from: '127.0.0.2', headers: { 'X-Forwarded-For': '2001:db8::42' } });
      assert.equal(v6.json.region, 'ap');
      const forged = await get(port, '/v1/route', { from: '127.0.0.3', headers: { 'X-Forwarded-For': '192.168.4.4' } });
      assert.deepEqual([forged.json.region, forged.json.regionSource], ['eu', 'ip'], 'an untrusted peer is its own address');
    });
  });

  describe('ranking over HTTP', () => {
    it('spreads a wave of requests over equal gateways, and excludes draining ones', async () => {
      const { service, client, port } = await startRouter({ random: seededRandom(12), routeRatePerSec: 0 });
      try {
        for (const g of [gw('a', 'eu', 20), gw('bb', 'eu', 20), gw('ccc', 'eu', 20), gw('dddd', 'eu', 0, { draining: true })]) await client.heartbeat(g);
        const first = new Map<string, number>();
        for (let i = 0; i < 150; i++) {
          const r = await get(port, '/v1/route');
          assert.deepEqual(r.json.gateways.map((g: { node: string }) => g.node).sort(), ['a', 'bb', 'ccc']);
          first.set(r.json.gateways[0].node, (first.get(r.json.gateways[0].node) ?? 0) + 1);
        }
        for (const node of ['a', 'bb', 'ccc']) assert.ok((first.get(node) ?? 0) >= 25, `${node} first ${first.get(node) ?? 0} of 150`);
      } finally {
        client.close();
        await service.stop();
      }
    });
  });

  describe('rate limit', () => {
    let service: RouterService;
    let port: number;
    before(async () => {
      let client: RouterClient;
      ({ service, client, port } = await startRouter({ routeRatePerSec: 0.01, routeRateBurst: 3, trustedProxies: ['127.0.0.2'] }));
      client.close();
    });
    after(() => service.stop());

    it('answers 429 with Retry-After and a JSON error once an IP spends its burst', async () => {
      for (let i = 0; i < 3; i++) assert.equal((await get(port, '/v1/route', { from: '127.0.0.7' })).status, 200);
      const r = await get(port, '/v1/route', { from: '127.0.0.7' });
      assert.equal(r.status, 429);
      assert.equal(r.json.error.code, Code.RATE_LIMITED);
      assert.ok(r.json.error.retryAfterMs > 0);
      // One token per 100 s: the next one is due in (0, 100] s.
      const retryAfterS = Number(r.headers['retry-after']);
      assert.ok(retryAfterS >= 1 && retryAfterS <= 100, `Retry-After ${r.headers['retry-after']}`);
      assert.equal((await get(port, '/v1/route', { from: '127.0.0.8' })).status, 200, 'another client is not affected');
      assert.equal((await get(port, '/healthz', { from: '127.0.0.7' })).status, 200, 'health probes are not limited');
      // A malformed request still spends a token: the limit cannot be dodged with bad input.
      assert.equal((await get(port, '/v1/route?region=%20', { from: '127.0.0.7' })).status, 429);
    });

    it('limits the client behind a trusted proxy, not the proxy', async () => {
      const via = (client: string) => get(port, '/v1/route', { from: '127.0.0.2', headers: { 'X-Forwarded-For': client } });
      for (let i = 0; i < 3; i++) assert.equal((await via('192.168.9.9')).status, 200);
      assert.equal((await via('192.168.9.9')).status, 429);
      assert.equal((await via('192.168.9.10')).status, 200, 'the proxy\'s other clients still get through');
    });
  });

  describe('WebSocket URLs', () => {
    it('lists each gateway\'s wsUrl (over gRPC heartbeats), omits it for TCP-only ones, and refuses a bad one', async () => {
      const { service, client, port } = await startRouter({});
      try {
        await client.heartbeat(gw('ws-1', 'eu', 0, { addr: '10.0.0.1:7100', wsUrl: 'wss://gw1.example.com/im' }));
        await client.heartbeat(gw('tcp-2', 'eu', 0, { addr: '10.0.0.2:7100' }));
        const r = await get(port, '/v1/route');
        const byNode = new Map(r.json.gateways.map((g: { node: string; wsUrl?: string }) => [g.node, g]));
        assert.equal((byNode.get('ws-1') as { wsUrl?: string }).wsUrl, 'wss://gw1.example.com/im');
        assert.equal('wsUrl' in (byNode.get('tcp-2') as object), false);
        await assert.rejects(client.heartbeat(gw('bad-3', 'eu', 0, { wsUrl: 'http://not-a-ws-url/' })), /wsUrl/);
      } finally {
        client.close();
        await service.stop();
      }
    });
  });
});
