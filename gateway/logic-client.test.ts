import * as assert from 'node:assert/strict';
import { Code } from '../common/errors';
import { LogicCall, LogicClient } from './logic-client';
import { closedPort, Echo, LogicTestServer, OP_FAIL, OP_HANG, startLogicServer } from './test-support';

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
    for (let i = 0; i < 100 && c.streamsUp < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(c.streamsUp, 2);
    await Promise.all(Array.from({ length: 6 }, () => c.call(call(100))));
    assert.deepEqual([a.batchSizes, b.batchSizes], [[3], [3]]);
  });

  it('answers UNAVAILABLE at once when no logic server is reachable', async () => {
    const port = await closedPort();
    const c = client([`127.0.0.1:${port}`], { callTimeoutMs: 60_000 });
    const r = await c.call(call(100));
    assert.equal(r.code, Code.UNAVAILABLE);
    assert.equal(r.retryable, true);
  });

  it('fails pending calls with UNAVAILABLE when the stream breaks, then reconnects', async () => {
    const s = await server();
    const c = client([`127.0.0.1:${s.port}`], { callTimeoutMs: 60_000 });
    await c.whenUp(5000);
    const hanging = c.call(call(OP_HANG));
    await new Promise((r) => setTimeout(r, 50)); // let the batch reach the server
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
    assert.equal((await c.call(call(100))).code, Code.OK, 'the stream still works');
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
  });
});
