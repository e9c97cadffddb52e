/**
 * The SDK's route handling over real TCP: it tries the listed gateways in order, asks the route
 * API again when all fail, paces rounds with full jitter inside the window the server announced,
 * sends its region, and respects a 429. The "gateways" are real listeners that accept and hang up
 * at once (a gateway dying under load), counting who was tried when. One suite also runs against
 * the real router (RouterService), whose ranking decides the order.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { Code } from '../common/errors';
import { RouterClient } from '../router/client';
import { RouterService } from '../router/service';
import { ImClient, ImClientError, ImClientOptions, ReconnectingEvent } from './sdk';

const HOST = '127.0.0.1';

/** Accepts and closes every connection, recording the order in a shared log. */
class DeadGateway {
  private constructor(private readonly server: net.Server, readonly addr: string) {}
  static async start(name: string, log: string[]): Promise<DeadGateway> {
    const server = net.createServer((s) => {
      log.push(name);
      s.on('error', () => undefined);
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    return new DeadGateway(server, `${HOST}:${(server.address() as net.AddressInfo).port}`);
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** A route API whose replies the test scripts; records each request's URL. */
class ScriptedRouteApi {
  readonly urls: string[] = [];
  private constructor(private readonly server: http.Server, readonly url: string) {}
  static async start(reply: (hit: number, res: http.ServerResponse) => void): Promise<ScriptedRouteApi> {
    let self: ScriptedRouteApi | undefined;
    const server = http.createServer((req, res) => {
      self!.urls.push(req.url ?? '');
      reply(self!.urls.length, res);
    });
    await new Promise<void>((r) => server.listen(0, HOST, r));
    self = new ScriptedRouteApi(server, `http://${HOST}:${(server.address() as net.AddressInfo).port}`);
    return self;
  }
  stop(): Promise<void> {
    return new Promise((r) => { this.server.close(() => r()); this.server.closeAllConnections(); });
  }
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Connects until the SDK gives up; returns the error and the delays it chose between rounds. */
async function connectUntilGiveUp(options: ImClientOptions): Promise<{ err: ImClientError; delays: number[] }> {
  const c = new ImClient(options);
  const delays: number[] = [];
  c.on('reconnecting', (e: ReconnectingEvent) => delays.push(e.delayMs));
  try {
    const err = await c.connect().then(() => assert.fail('connected to a dead gateway'), (e: ImClientError) => e);
    return { err, delays };
  } finally {
    await c.close();
  }
}

describe('client/sdk route failover', () => {
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const s of stops.splice(0)) await s();
  });

  async function deadGateways(names: string[], log: string[]): Promise<DeadGateway[]> {
    const gws = await Promise.all(names.map((n) => DeadGateway.start(n, log)));
    for (const g of gws) stops.push(() => g.stop());
    return gws;
  }

  it('tries the list in order, re-asks the route API each round, and keeps within the server\'s backoff', async () => {
    const log: string[] = [];
    const [a, b, c] = await deadGateways(['a', 'b', 'c'], log);
    const api = await ScriptedRouteApi.start((_hit, res) => json(res, 200, {
      region: 'eu',
      gateways: [a, b, c].map((g, i) => ({ node: `gw-${i}`, addr: g.addr, region: 'eu', zone: '', load: 0 })),
      heartbeatIntervalMs: 30_000,
      backoff: { baseMs: 10, maxMs: 40 },
    }));
    stops.push(() => api.stop());

    const rounds = 8;
    const { err, delays } = await connectUntilGiveUp({ routerUrl: api.url, token: 't', region: 'eu', maxReconnectAttempts: rounds - 1, connectTimeoutMs: 2000 });
    assert.equal(err.retryable, false);
    assert.match(err.message, new RegExp(`after ${rounds} round`));
    assert.equal(api.urls.length, rounds, 'one route request per round');
    assert.ok(api.urls.every((u) => u === '/v1/route?region=eu'), `urls: ${api.urls}`);
    assert.deepEqual(log, new Array<string[]>(rounds).fill(['a', 'b', 'c']).flat(), 'every gateway, in list order, every round');
    // Unbounded, the window would reach 10 * 2^6 = 640 ms by the last round; the SDK's own default
    // maximum is 30 s. Eight draws all within 40 ms means the server's window was used.
    assert.equal(delays.length, rounds - 1);
    for (const d of delays) assert.ok(d >= 0 && d <= 40, `delay ${d} outside the server's window [0, 40]`);
  });

  it('an explicit backoff option wins over the server\'s', async () => {
    const log: string[] = [];
    const [a] = await deadGateways(['a'], log);
    const api = await ScriptedRouteApi.start((_hit, res) => json(res, 200, {
      gateways: [{ node: 'gw', addr: a.addr }], backoff: { baseMs: 60_000, maxMs: 120_000 },
    }));
    stops.push(() => api.stop());
    const { delays } = await connectUntilGiveUp({ routerUrl: api.url, token: 't', backoffBaseMs: 5, backoffMaxMs: 20, maxReconnectAttempts: 3 });
    assert.equal(delays.length, 3);
    for (const d of delays) assert.ok(d <= 20, `delay ${d}`);
  });

  it('waits out a 429 as long as Retry-After says, capped by the backoff maximum', async () => {
    const api = await ScriptedRouteApi.start((_hit, res) =>
      json(res, 429, { error: { code: Code.RATE_LIMITED, message: 'slow down', retryAfterMs: 5000 } }, { 'retry-after': '5' }));
    stops.push(() => api.stop());
    const { err, delays } = await connectUntilGiveUp({ routerUrl: api.url, token: 't', backoffBaseMs: 1, backoffMaxMs: 150, maxReconnectAttempts: 1 });
    assert.equal(err.code, Code.RATE_LIMITED);
    assert.deepEqual(delays, [150], 'jitter alone would pick at most 1 ms; Retry-After (5 s) capped at the 150 ms maximum');
    assert.equal(api.urls.length, 2);
  });

  it('rejects a malformed region at construction', () => {
    assert.throws(() => new ImClient({ routerUrl: 'http://127.0.0.1:1', token: 't', region: 'eu west' }), /ImClientOptions.region/);
  });

  describe('against the real router', () => {
    it('its region ranking decides the order tried, and its configured backoff paces the rounds', async () => {
      const router = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0, backoffBaseMs: 5, backoffMaxMs: 25 });
      const ports = await router.start();
      stops.push(() => router.stop());
      const link = new RouterClient({ address: `${HOST}:${ports.grpcPort}` });
      stops.push(async () => link.close());
      const log: string[] = [];
      const [eu, us] = await deadGateways(['eu', 'us'], log);
      // The eu gateway is emptier: ranked on load alone it would come first four times in five.
      await link.heartbeat({ node: 'gw-eu', addr: eu.addr, region: 'eu', zone: 'eu-1', connections: 0, capacity: 100, draining: false });
      await link.heartbeat({ node: 'gw-us', addr: us.addr, region: 'us', zone: 'us-1', connections: 50, capacity: 100, draining: false });

      const rounds = 4;
      const { delays } = await connectUntilGiveUp({ routerUrl: `http://${HOST}:${ports.httpPort}`, token: 't', region: 'us', maxReconnectAttempts: rounds - 1 });
      assert.deepEqual(log, new Array<string[]>(rounds).fill(['us', 'eu']).flat());
      for (const d of delays) assert.ok(d <= 25, `delay ${d} outside the router's window [0, 25]`);
    });
  });
});
