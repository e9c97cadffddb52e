/**
 * The gateway's client of logic against real gRPC servers: batched calls on one stream per logic
 * address, backpressure, round-robin, a logic restart, broken streams, timeouts, OVERLOADED.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Code } from '../common/errors';
import { bindServer } from '../common/grpc';
import { loadLogicProto } from '../proto/load';
import { LogicCall, LogicClient } from './logic-client';
import { closedPort, Echo, eventually, LogicTestServer, OP_FAIL, OP_HANG, startLogicServer } from './gateway.test-support';

const call = (op: number, text = 'hi'): LogicCall => ({
  op, uid: 'alice', deviceId: 'phone', connId: 'c1', node: 'gw-1', body: Buffer.from(text),
});
const echoOf = (body: Uint8Array): Echo => JSON.parse(Buffer.from(body).toString('utf8'));

describe('LogicClient', () => {
  const clients: LogicClient[] = [];
  const servers: LogicTestServer[] = [];
  const client = (addresses: string[], extra: Partial<ConstructorParameters<typeof LogicClient>[0]> = {}) => {
    const c = new LogicClient({ addresses, reconnectBaseMs: 20, reconnectMaxMs: 200, ...extra });
    clients.push(c);
    c.start();
    return c;
  };
  const server = async (port = 0) => {
    const s = await startLogicServer(port);
    servers.push(s);
    return s;
  };

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    for (const s of servers.splice(0)) s.stop();
  });

  it('sends the calls of one tick as one CallBatch and matches results by call id', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`]);
    assert.equal(await c.whenUp(5000), true);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => c.call(call(100 + i, `m${i}`))));
    results.forEach((r, i) => {
      assert.equal(r.code, Code.OK);
      const echo = echoOf(r.body);
      assert.equal(echo.op, 100 + i);
      assert.equal(echo.body, `m${i}`);
      assert.equal(echo.uid, 'alice');
    });
    assert.deepEqual(s.batchSizes, [10]);
  });

  it('queues behind stream backpressure and still delivers every call', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`], { callTimeoutMs: 60_000 });
    await c.whenUp(5000);
    const big = 'x'.repeat(100 * 1024);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => c.call(call(100, `${i}:${big}`))));
    results.forEach((r, i) => {
      assert.equal(r.code, Code.OK);
      assert.ok(echoOf(r.body).body.startsWith(`${i}:`));
    });
    assert.equal(s.batchSizes.reduce((a, b) => a + b, 0), 300);
    assert.ok(s.batchSizes.length > 1, 'large calls are split over several batches');
  });

  it('passes logic error codes through', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`]);
    await c.whenUp(5000);
    const r = await c.call(call(OP_FAIL));
    assert.equal(r.code, Code.BAD_REQUEST);
    assert.equal(r.retryable, false);
  });

  it('spreads calls round-robin over the streams that are up', async () => {
    const a = await server();
    const b = await server();
    const c = client([`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]);
    await eventually(() => c.streamsUp === 2, 'both streams up');
    await Promise.all(Array.from({ length: 6 }, () => c.call(call(100))));
    assert.deepEqual([a.batchSizes, b.batchSizes], [[3], [3]]);
  });

  it('answers UNAVAILABLE when no logic server comes up within streamWaitMs', async () => {
    const port = await closedPort();
    const c = client([`127.0.0.1:${port}`], { callTimeoutMs: 60_000, streamWaitMs: 100 });
    const r = await c.call(call(100));
    assert.equal(r.code, Code.UNAVAILABLE);
    assert.equal(r.retryable, true);
  });

  it('holds calls made while no stream is up, and sends them once logic is back (a logic restart)', async () => {
    // Until logic is back, its port takes each connect attempt and hangs up at once.
    let attempts = 0;
    const refusing = net.createServer((socket) => { attempts++; socket.destroy(); });
    const port = await new Promise<number>((resolve) => refusing.listen(0, '127.0.0.1', () => resolve((refusing.address() as net.AddressInfo).port)));
    const c = client([`127.0.0.1:${port}`], { callTimeoutMs: 60_000, streamWaitMs: 30_000 });
    const held = [c.call(call(100, 'first')), c.call(call(101, 'second'))];
    await eventually(() => attempts >= 3, 'a few failed connect attempts');
    await new Promise((resolve) => refusing.close(resolve));
    assert.equal(c.streamsUp, 0);
    await server(port);
    const results = await Promise.all(held);
    assert.deepEqual(results.map((r) => [r.code, echoOf(r.body).body]), [[Code.OK, 'first'], [Code.OK, 'second']]);
  });

  it('sends calls a broken stream never wrote to another stream; written ones get UNAVAILABLE', async () => {
    // A logic server that accepts the stream and never reads it: calls pile up in the gateway's
    // outbox behind flow control, exactly as behind a logic process that froze and then died.
    const proto = loadLogicProto();
    const stuck = new grpc.Server();
    stuck.addService(proto.im.internal.v1.LogicGateway.service, {
      Connect: (s: grpc.ServerDuplexStream<unknown, unknown>) => { s.on('error', () => undefined); s.pause(); },
    });
    const stuckPort = await bindServer(stuck, '127.0.0.1', 0);
    const good = await server();
    try {
      const c = client([`127.0.0.1:${stuckPort}`, `127.0.0.1:${good.port}`], { callTimeoutMs: 60_000 });
      await eventually(() => c.streamsUp === 2, 'both streams up');
      // One call per CallBatch (two exceed its 1 MiB cut), more batches than the stream buffers.
      const big = 'x'.repeat(600 * 1024);
      const n = 60; // round-robin: half of them to the stuck server
      let answered = 0;
      const pending = Array.from({ length: n }, (_, i) => c.call(call(100, `${i}:${big}`)).then((r) => { answered++; return r; }));
      // The good server's half answered: the other half sits in the stuck stream and its outbox.
      await eventually(() => answered >= n / 2, 'the good server to answer its half', 15_000);
      stuck.forceShutdown();
      const results = await Promise.all(pending);
      const ok = results.filter((r) => r.code === Code.OK);
      assert.ok(results.every((r) => r.code === Code.OK || r.code === Code.UNAVAILABLE), 'every call settled OK or UNAVAILABLE');
      assert.ok(ok.length > n / 2, `calls routed to the stuck server were re-sent elsewhere (${ok.length} of ${n} OK)`);
      for (const r of ok) assert.ok(echoOf(r.body).body.includes(':'));
    } finally {
      stuck.forceShutdown();
    }
  });

  it('fails pending calls with UNAVAILABLE when the stream breaks, then reconnects', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`], { callTimeoutMs: 60_000 });
    await c.whenUp(5000);
    const hanging = c.call(call(OP_HANG));
    await eventually(() => s.batchSizes.length === 1, 'the call to reach the server');
    s.stop();
    const r = await hanging;
    assert.equal(r.code, Code.UNAVAILABLE);
    assert.equal(r.retryable, true);

    await server(s.port);
    assert.equal(await c.whenUp(10_000), true, 'stream came back');
    const ok = await c.call(call(100, 'again'));
    assert.equal(ok.code, Code.OK);
    assert.equal(echoOf(ok.body).body, 'again');
  });

  it('times out a call logic never answers', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`], { callTimeoutMs: 100 });
    await c.whenUp(5000);
    const r = await c.call(call(OP_HANG));
    assert.equal(r.code, Code.TIMEOUT);
    assert.equal(r.retryable, true);
    // The stream still works. With a 100 ms call timeout a loaded box can time out a good call
    // too, so this waits for one that comes back rather than expecting the very next one to.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) ok = (await c.call(call(100))).code === Code.OK;
    assert.ok(ok, 'the stream still works');
  });

  it('answers OVERLOADED beyond maxInFlight', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`], { maxInFlight: 3, callTimeoutMs: 60_000 });
    await c.whenUp(5000);
    const pending = [c.call(call(OP_HANG)), c.call(call(OP_HANG)), c.call(call(OP_HANG))];
    const r = await c.call(call(100));
    assert.equal(r.code, Code.OVERLOADED);
    assert.equal(r.retryable, true);
    await c.close();
    for (const p of await Promise.all(pending)) assert.equal(p.code, Code.UNAVAILABLE, 'close settles pending calls');
  });

  it('rejects bad options naming the field', () => {
    assert.throws(() => new LogicClient({ addresses: [] }), /addresses/);
    assert.throws(() => new LogicClient({ addresses: ['nope'] }), /addresses/);
    assert.throws(() => new LogicClient({ addresses: ['127.0.0.1:1'], callTimeoutMs: 0 }), /callTimeoutMs/);
    assert.throws(() => new LogicClient({ addresses: ['127.0.0.1:1'], streamWaitMs: -1 }), /streamWaitMs/);
  });
});
