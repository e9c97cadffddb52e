import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import { Code, ImError } from '../common/errors';
import type { GatewayStatus, SessionRef } from './api';
import * as grpc from '@grpc/grpc-js';
import { bindServer } from '../common/grpc';
import { silentLogger } from '../common/log';
import { loadRouterProto } from '../proto/load';
import type { RouterHandlers } from '../proto/gen/im/internal/v1/Router';
import { RouterClient } from './client';
import { routerHandlers } from './grpc-server';
import { RouterService } from './service';
import { RouteTable } from './table';

const HOST = '127.0.0.1';

function sess(uid: string, node: string, connId: string, deviceId = 'd'): SessionRef {
  return { uid, deviceId, node, connId };
}

function gw(node: string, over: Partial<GatewayStatus> = {}): GatewayStatus {
  return { node, addr: '127.0.0.1:7100', region: 'eu', zone: 'eu-1a', connections: 10, capacity: 100, draining: false, ...over };
}

function keys(sessions: SessionRef[]): string[] {
  return sessions.map((s) => `${s.uid}@${s.node}/${s.connId}`).sort();
}

interface HttpReply { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, method, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes raw bytes and returns the status line of whatever comes back. */
function rawStatusLine(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, HOST, () => sock.write(data));
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (got += c));
    sock.on('close', () => resolve(got.split('\r\n')[0]));
    sock.on('error', reject);
  });
}

/** Counts how often the table is asked, to observe the client's batching from the server side. */
function countCalls(service: RouterService, method: 'lookup' | 'bind' | 'unbind'): { n: number } {
  const counter = { n: 0 };
  const table = service.table as unknown as Record<string, (...args: unknown[]) => unknown>;
  const original = table[method].bind(service.table);
  table[method] = (...args: unknown[]) => {
    counter.n++;
    return original(...args);
  };
  return counter;
}

async function assertRejectsRetryable(p: Promise<unknown>): Promise<ImError> {
  let caught: unknown;
  await p.then(() => assert.fail('expected a rejection'), (err) => (caught = err));
  assert.ok(caught instanceof ImError, `expected ImError, got ${String(caught)}`);
  assert.ok(caught.retryable, `expected retryable, got code ${caught.code}`);
  assert.ok(caught.code === Code.UNAVAILABLE || caught.code === Code.TIMEOUT, `unexpected code ${caught.code}`);
  return caught;
}

describe('RouterService + RouterClient', () => {
  let service: RouterService;
  let client: RouterClient;
  let httpPort: number;

  beforeEach(async () => {
    service = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0, backoffBaseMs: 250, backoffMaxMs: 8000 });
    const ports = await service.start();
    httpPort = ports.httpPort;
    client = new RouterClient({ address: `${HOST}:${ports.grpcPort}`, callTimeoutMs: 2000 });
  });

  afterEach(async () => {
    client.close();
    await service.stop();
  });

  describe('gRPC', () => {
    it('binds then looks up sessions', async () => {
      await client.bind([sess('alice', 'gw1', 'c1', 'phone'), sess('alice', 'gw2', 'c2'), sess('bob', 'gw1', 'c3')]);
      const found = await client.lookup(['alice', 'nobody']);
      assert.deepEqual(keys(found), ['alice@gw1/c1', 'alice@gw2/c2']);
      assert.deepEqual(found.find((s) => s.connId === 'c1'), sess('alice', 'gw1', 'c1', 'phone'));
    });

    it('merges concurrent lookups into one RPC and gives each caller only its own uids', async () => {
      await client.bind([sess('alice', 'gw1', 'c1'), sess('bob', 'gw1', 'c2'), sess('carol', 'gw2', 'c3'), sess('dave', 'gw2', 'c4')]);
      const lookups = countCalls(service, 'lookup');
      const [a, b, c, none] = await Promise.all([
        client.lookup(['alice', 'bob']),
        client.lookup(['bob', 'carol']),
        client.lookup(['dave', 'dave']),
        client.lookup(['zed']),
      ]);
      assert.equal(lookups.n, 1);
      assert.deepEqual(keys(a), ['alice@gw1/c1', 'bob@gw1/c2']);
      assert.deepEqual(keys(b), ['bob@gw1/c2', 'carol@gw2/c3']);
      assert.deepEqual(keys(c), ['dave@gw2/c4']);
      assert.deepEqual(none, []);
    });

    it('merges binds made together into one RPC, and keeps bind/unbind order', async () => {
      const binds = countCalls(service, 'bind');
      await Promise.all([client.bind([sess('alice', 'gw1', 'c1')]), client.bind([sess('bob', 'gw1', 'c2')])]);
      assert.equal(binds.n, 1);
      assert.deepEqual(keys(await client.lookup(['alice', 'bob'])), ['alice@gw1/c1', 'bob@gw1/c2']);
      // A connection that comes and goes within one tick must not be left bound.
      const s = sess('carol', 'gw1', 'c3');
      await Promise.all([client.bind([s]), client.unbind([s]), client.bind([sess('carol', 'gw1', 'c4')])]);
      assert.deepEqual(keys(await client.lookup(['carol'])), ['carol@gw1/c4']);
    });

    it('unbinds sessions', async () => {
      await client.bind([sess('alice', 'gw1', 'c1'), sess('alice', 'gw1', 'c2')]);
      await client.unbind([sess('alice', 'gw1', 'c1')]);
      assert.deepEqual(keys(await client.lookup(['alice'])), ['alice@gw1/c2']);
    });

    it('snapshot replaces the node\'s sessions', async () => {
      await client.bind([sess('alice', 'gw1', 'c1'), sess('bob', 'gw1', 'c2'), sess('bob', 'gw2', 'c9')]);
      await client.snapshot('gw1', [sess('carol', 'gw1', 'c3')]);
      assert.deepEqual(keys(await client.lookup(['alice', 'bob', 'carol'])), ['bob@gw2/c9', 'carol@gw1/c3']);
    });

    it('splits a snapshot larger than one RPC without losing sessions', async () => {
      const small = new RouterClient({ address: `${HOST}:${(await service.start()).grpcPort}`, maxSessionsPerRpc: 3 });
      try {
        await small.bind([sess('old', 'gw1', 'c0')]);
        const many = Array.from({ length: 10 }, (_, i) => sess(`u${i}`, 'gw1', `c${i + 1}`));
        await small.snapshot('gw1', many);
        assert.deepEqual(keys(await small.lookup(['old', ...many.map((s) => s.uid)])), keys(many));
      } finally {
        small.close();
      }
    });

    it('heartbeat says known=false for a new gateway, then true, with the interval', async () => {
      assert.deepEqual(await client.heartbeat(gw('gw1')), { known: false, heartbeatIntervalMs: 3000 });
      assert.deepEqual(await client.heartbeat(gw('gw1')), { known: true, heartbeatIntervalMs: 3000 });
    });

    it('rejects bad input with BAD_REQUEST, not a retryable error', async () => {
      const results = await Promise.allSettled([
        client.bind([sess('alice', '', 'c1')]), client.unbind([sess('alice', 'gw1', '')]), client.heartbeat(gw('')),
      ]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        const err = (r as PromiseRejectedResult).reason;
        assert.ok(err instanceof ImError && err.code === Code.BAD_REQUEST && !err.retryable, String(err));
      }
      // The bad batch did not poison the queue behind it.
      await client.bind([sess('alice', 'gw1', 'c1')]);
      assert.equal((await client.lookup(['alice'])).length, 1);
    });

    it('rejects calls after close() without contacting the router', async () => {
      client.close();
      await assertRejectsRetryable(client.lookup(['alice']));
      await assertRejectsRetryable(client.bind([sess('alice', 'gw1', 'c1')]));
    });
  });

  describe('HTTP route API', () => {
    it('lists live gateways ranked by load, with their TLS listener, and excludes draining ones', async () => {
      await client.heartbeat(gw('gw-busy', { addr: '10.0.0.1:7100', connections: 99, capacity: 100 }));
      // TLS only (IM_GATEWAY_PLAINTEXT=false): no plaintext address.
      await client.heartbeat(gw('gw-idle', { addr: '', tlsAddr: '10.0.0.2:7443', region: 'us', zone: 'us-1b', connections: 25, capacity: 100 }));
      await client.heartbeat(gw('gw-drain', { addr: '10.0.0.3:7100', connections: 0, draining: true }));
      const res = await request(httpPort, 'GET', '/v1/route?uid=alice');
      assert.equal(res.status, 200);
      assert.match(String(res.headers['content-type']), /^application\/json/);
      assert.equal(res.headers['cache-control'], 'no-store');
      // Readable from a web page on another origin (web/: the page asks here, then opens a WebSocket).
      assert.equal(res.headers['access-control-allow-origin'], '*');
      const body = JSON.parse(res.body);
      // The order is a weighted random draw (rank.test.ts, route-api.test.ts); here only the contents matter.
      body.gateways.sort((a: { node: string }, b: { node: string }) => a.node.localeCompare(b.node));
      assert.deepEqual(body, {
        region: '',
        regionSource: 'none',
        gateways: [
          { node: 'gw-busy', addr: '10.0.0.1:7100', tls: false, tlsAddr: '', region: 'eu', zone: 'eu-1a', load: 0.99 },
          { node: 'gw-idle', addr: '', tls: true, tlsAddr: '10.0.0.2:7443', region: 'us', zone: 'us-1b', load: 0.25 },
        ],
        heartbeatIntervalMs: 30_000,
        backoff: { baseMs: 250, maxMs: 8000 },
      });
    });

    it('answers /healthz', async () => {
      const res = await request(httpPort, 'GET', '/healthz');
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.body), { ok: true });
    });

    it('answers unknown paths with 404 and other methods with 405, as JSON errors', async () => {
      const missing = await request(httpPort, 'GET', '/v1/nope');
      assert.equal(missing.status, 404);
      const body = JSON.parse(missing.body);
      assert.equal(typeof body.error.code, 'number');
      assert.equal(typeof body.error.message, 'string');
      const post = await request(httpPort, 'POST', '/v1/route');
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, 'GET');
      assert.ok(JSON.parse(post.body).error.message);
    });

    it('survives malformed and oversized requests', async () => {
      assert.match(await rawStatusLine(httpPort, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
      assert.match(await rawStatusLine(httpPort, `GET /v1/route HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431/);
      assert.match(await rawStatusLine(httpPort, 'GET http://elsewhere/v1/route HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400/);
      assert.equal((await request(httpPort, 'GET', '/healthz')).status, 200);
    });
  });

  describe('lookups over one stream', () => {
    let server: grpc.Server | undefined;
    let streamClient: RouterClient | undefined;
    afterEach(async () => {
      streamClient?.close();
      streamClient = undefined;
      server?.forceShutdown();
      server = undefined;
    });

    /** A Router server on `table` whose LookupStream and Lookup calls are counted; `withStream: false` is a router of the release before. */
    async function countingRouter(table: RouteTable, withStream = true) {
      const counts = { streams: 0, unary: 0 };
      const handlers = routerHandlers({ table, heartbeatIntervalMs: 3000, logger: silentLogger });
      const served: Partial<RouterHandlers> = {
        ...handlers,
        Lookup: (call, cb) => {
          counts.unary++;
          handlers.Lookup(call, cb);
        },
        LookupStream: (call) => {
          counts.streams++;
          handlers.LookupStream(call);
        },
      };
      if (!withStream) delete served.LookupStream;
      server = new grpc.Server();
      server.addService(loadRouterProto().im.internal.v1.Router.service, served as RouterHandlers);
      const port = await bindServer(server, HOST, 0);
      return { counts, address: `${HOST}:${port}` };
    }

    it('sends the lookups of separate turns over one LookupStream, not one call each', async () => {
      const table = new RouteTable({});
      table.bind([sess('alice', 'gw1', 'c1'), sess('bob', 'gw2', 'c2')]);
      const { counts, address } = await countingRouter(table);
      streamClient = new RouterClient({ address });
      for (let i = 0; i < 5; i++) assert.deepEqual(keys(await streamClient.lookup(['alice', 'bob', 'zed'])), ['alice@gw1/c1', 'bob@gw2/c2']);
      const [a, b] = await Promise.all([streamClient.lookup(['alice']), streamClient.lookup(['bob'])]);
      assert.deepEqual([keys(a), keys(b)], [['alice@gw1/c1'], ['bob@gw2/c2']]);
      assert.deepEqual(counts, { streams: 1, unary: 0 });
    });

    it('a request the router refuses fails alone, with its code; the stream carries the next', async () => {
      const table = new RouteTable({ maxUidsPerLookup: 2 });
      table.bind([sess('alice', 'gw1', 'c1')]);
      const { counts, address } = await countingRouter(table);
      streamClient = new RouterClient({ address, maxUidsPerRpc: 10 });
      const err = await streamClient.lookup(['a', 'b', 'c']).then(() => assert.fail('expected BAD_REQUEST'), (e: unknown) => e);
      assert.ok(err instanceof ImError && err.code === Code.BAD_REQUEST && !err.retryable, String(err));
      assert.deepEqual(keys(await streamClient.lookup(['alice'])), ['alice@gw1/c1']);
      assert.deepEqual(counts, { streams: 1, unary: 0 });
    });

    it('uses unary Lookup with a router of the release before (no LookupStream)', async () => {
      const table = new RouteTable({});
      table.bind([sess('alice', 'gw1', 'c1')]);
      const { counts, address } = await countingRouter(table, false);
      streamClient = new RouterClient({ address });
      // The first lookup meets UNIMPLEMENTED and is answered unary; the next go unary at once.
      for (let i = 0; i < 3; i++) assert.deepEqual(keys(await streamClient.lookup(['alice'])), ['alice@gw1/c1']);
      assert.equal(counts.unary, 3);
    });

    it('a stopping router ends the open stream instead of waiting out its shutdown timeout', async function () {
      // The shutdown timeout is far beyond the test's: stop() resolves only because the stream is ended.
      this.timeout(10_000);
      const slow = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0, shutdownTimeoutMs: 60_000 });
      const { grpcPort } = await slow.start();
      streamClient = new RouterClient({ address: `${HOST}:${grpcPort}`, callTimeoutMs: 2000 });
      assert.deepEqual(await streamClient.lookup(['alice']), []);
      await slow.stop();
      await assertRejectsRetryable(streamClient.lookup(['alice']));
    });
  });

  describe('failures', () => {
    it('rejects with a retryable error when the router is stopped, instead of hanging', async () => {
      const { grpcPort } = await service.start();
      await client.heartbeat(gw('gw1')); // connected before the router goes away
      await service.stop();
      const down = new RouterClient({ address: `${HOST}:${grpcPort}`, callTimeoutMs: 1000 });
      try {
        await assertRejectsRetryable(down.lookup(['alice']));
        await assertRejectsRetryable(down.bind([sess('alice', 'gw1', 'c1')]));
        await assertRejectsRetryable(down.heartbeat(gw('gw1')));
        await assertRejectsRetryable(client.lookup(['alice']));
      } finally {
        down.close();
      }
    });

    it('times out with a retryable error when the router accepts but never answers', async () => {
      const sockets = new Set<net.Socket>();
      const blackhole = net.createServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      await new Promise<void>((r) => blackhole.listen(0, HOST, r));
      const port = (blackhole.address() as net.AddressInfo).port;
      const stuck = new RouterClient({ address: `${HOST}:${port}`, callTimeoutMs: 300 });
      try {
        const err = await assertRejectsRetryable(Promise.all([stuck.lookup(['alice']), stuck.bind([sess('a', 'gw1', 'c1')])]));
        assert.ok(err.code === Code.TIMEOUT || err.code === Code.UNAVAILABLE);
      } finally {
        stuck.close();
        for (const s of sockets) s.destroy();
        await new Promise((r) => blackhole.close(r));
      }
    });

    it('stop() is idempotent: concurrent and repeated stops all resolve, and both listeners are closed', async () => {
      const { grpcPort } = await service.start();
      assert.equal((await request(httpPort, 'GET', '/healthz')).status, 200);
      await Promise.all([service.stop(), service.stop()]);
      await service.stop();
      const refused = (port: number) => new Promise<string>((resolve) => {
        const sock = net.connect(port, HOST);
        sock.on('connect', () => { sock.destroy(); resolve('connected'); });
        sock.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      });
      assert.equal(await refused(httpPort), 'ECONNREFUSED', 'route API port closed');
      assert.equal(await refused(grpcPort), 'ECONNREFUSED', 'gRPC port closed');
    });
  });
});
