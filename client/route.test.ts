import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Code } from '../common/errors';
import { fetchRoute, parseRouteAnswer, RouteRateLimitedError, routeUrl } from './route';

describe('client/route', () => {
  it('parses gateways in order and the backoff window', () => {
    const a = parseRouteAnswer({
      gateways: [
        { node: 'gw-1', addr: '10.0.0.1:7100', region: 'eu', zone: 'a', load: 0.2 },
        { addr: 'not an address' },
        { node: 'gw-2', addr: '10.0.0.2:7100' },
      ],
      backoff: { baseMs: 100, maxMs: 2000 },
    });
    assert.deepEqual(a.gateways.map((g) => g.node), ['gw-1', 'gw-2']);
    assert.deepEqual(a.backoff, { baseMs: 100, maxMs: 2000 });
    assert.equal(a.gateways[1].region, '');
  });

  it('reads each gateway\'s plaintext and TLS addresses; an entry with neither usable is skipped', () => {
    const a = parseRouteAnswer({
      gateways: [
        { node: 'both', addr: '10.0.0.1:7100', tls: true, tlsAddr: '10.0.0.1:7443' },
        { node: 'tls-only', addr: '', tls: true, tlsAddr: 'gw.example.com:443' },
        { node: 'old', addr: '10.0.0.3:7100' },
        { node: 'broken', addr: '', tlsAddr: 'no port' },
      ],
    });
    assert.deepEqual(a.gateways.map((g) => [g.node, g.addr, g.tlsAddr]), [
      ['both', '10.0.0.1:7100', '10.0.0.1:7443'], ['tls-only', '', 'gw.example.com:443'], ['old', '10.0.0.3:7100', ''],
    ]);
  });

  it('keeps a gateway\'s ws:// or wss:// URL and drops anything else', () => {
    const a = parseRouteAnswer({
      gateways: [
        { node: 'a', addr: '10.0.0.1:7100', wsUrl: 'ws://10.0.0.1:7101/' },
        { node: 'b', addr: '10.0.0.2:7100', wsUrl: 'wss://gw.example.com/im' },
        { node: 'c', addr: '10.0.0.3:7100', wsUrl: 'javascript:alert(1)' },
        { node: 'd', addr: '10.0.0.4:7100' },
      ],
    });
    assert.deepEqual(a.gateways.map((g) => g.wsUrl), ['ws://10.0.0.1:7101/', 'wss://gw.example.com/im', undefined, undefined]);
  });

  it('ignores a nonsensical backoff and rejects a reply without gateways', () => {
    assert.equal(parseRouteAnswer({ gateways: [], backoff: { baseMs: 10, maxMs: 1 } }).backoff, undefined);
    assert.throws(() => parseRouteAnswer({ nodes: [] }), (e: { code: number; retryable: boolean }) => e.code === Code.UNAVAILABLE && e.retryable);
  });

  it('builds the URL with or without a trailing slash, and with the region', () => {
    assert.equal(routeUrl('http://h:1/'), 'http://h:1/v1/route');
    assert.equal(routeUrl('http://h:1'), 'http://h:1/v1/route');
    assert.equal(routeUrl('http://h:1', { region: 'eu-west.2' }), 'http://h:1/v1/route?region=eu-west.2');
    assert.equal(routeUrl('http://h:1', { region: '' }), 'http://h:1/v1/route');
  });

  it('reads the announced heartbeat interval and region, ignoring nonsense', () => {
    const a = parseRouteAnswer({ gateways: [], heartbeatIntervalMs: 20_000, region: 'eu' });
    assert.equal(a.heartbeatIntervalMs, 20_000);
    assert.equal(a.region, 'eu');
    for (const hb of [0, 5, -1, 'soon', Infinity]) assert.equal(parseRouteAnswer({ gateways: [], heartbeatIntervalMs: hb }).heartbeatIntervalMs, undefined, String(hb));
  });

  describe('over HTTP', () => {
    let server: http.Server;
    let base: string;
    let reply: (res: http.ServerResponse) => void;
    let lastUrl = '';
    before(async () => {
      server = http.createServer((req, res) => {
        if (!req.url?.startsWith('/v1/route')) { res.statusCode = 404; res.end(); return; }
        lastUrl = req.url;
        reply(res);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(() => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }));

    it('fetches and parses the route', async () => {
      reply = (res) => res.end(JSON.stringify({ gateways: [{ node: 'n', addr: '127.0.0.1:1', region: '', zone: '', load: 0 }] }));
      const a = await fetchRoute(base, 2000);
      assert.equal(a.gateways[0].addr, '127.0.0.1:1');
    });

    it('sends the region as ?region=', async () => {
      reply = (res) => res.end(JSON.stringify({ gateways: [], region: 'us' }));
      const a = await fetchRoute(base, 2000, undefined, { region: 'us' });
      assert.equal(lastUrl, '/v1/route?region=us');
      assert.equal(a.region, 'us');
    });

    it('turns 429 into a retryable RATE_LIMITED error carrying Retry-After', async () => {
      reply = (res) => { res.writeHead(429, { 'retry-after': '7' }); res.end('{}'); };
      await assert.rejects(fetchRoute(base, 2000), (e: unknown) =>
        e instanceof RouteRateLimitedError && e.code === Code.RATE_LIMITED && e.retryable && e.retryAfterMs === 7000);
      reply = (res) => { res.statusCode = 429; res.end(); };
      await assert.rejects(fetchRoute(base, 2000), (e: unknown) => e instanceof RouteRateLimitedError && e.retryAfterMs === 1000);
    });

    it('turns HTTP errors, bad JSON and silence into retryable UNAVAILABLE', async () => {
      reply = (res) => { res.statusCode = 503; res.end('down'); };
      await assert.rejects(fetchRoute(base, 2000), /HTTP 503/);
      reply = (res) => res.end('<html>');
      await assert.rejects(fetchRoute(base, 2000), /not JSON/);
      reply = () => undefined; // never answers
      await assert.rejects(fetchRoute(base, 100), (e: { code: number; retryable: boolean; message: string }) =>
        e.code === Code.UNAVAILABLE && e.retryable && /within 100ms/.test(e.message));
    });
  });
});
