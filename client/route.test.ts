import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Code } from '../common/errors';
import { fetchRoute, parseRouteAnswer, routeUrl } from './route';

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

  it('ignores a nonsensical backoff and rejects a reply without gateways', () => {
    assert.equal(parseRouteAnswer({ gateways: [], backoff: { baseMs: 10, maxMs: 1 } }).backoff, undefined);
    assert.throws(() => parseRouteAnswer({ nodes: [] }), (e: { code: number; retryable: boolean }) => e.code === Code.UNAVAILABLE && e.retryable);
  });

  it('builds the URL with or without a trailing slash', () => {
    assert.equal(routeUrl('http://h:1/'), 'http://h:1/v1/route');
    assert.equal(routeUrl('http://h:1'), 'http://h:1/v1/route');
  });

  describe('over HTTP', () => {
    let server: http.Server;
    let base: string;
    let reply: (res: http.ServerResponse) => void;
    before(async () => {
      server = http.createServer((req, res) => {
        if (req.url !== '/v1/route') { res.statusCode = 404; res.end(); return; }
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
