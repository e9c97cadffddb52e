import { strict as assert } from 'node:assert';
import * as grpc from '@grpc/grpc-js';
import { Code } from '../common/errors';
import { loadLogicProto } from '../proto/load';
import { metrics } from '../common/metrics';
import type { LogicGatewayClient } from '../proto/gen/im/internal/v1/LogicGateway';
import type { CallBatch } from '../proto/gen/im/internal/v1/CallBatch';
import type { Result__Output } from '../proto/gen/im/internal/v1/Result';
import type { ResultBatch__Output } from '../proto/gen/im/internal/v1/ResultBatch';
import { decode, encode, Op } from '../proto/wire';
import { OpRegistry, registerClientOps } from './ops';
import { LogicServer } from './server';
import type { LogicServerOptions } from './server';
import type { LogicEnv } from './logic.test-support';
import { makeLogicEnv } from './logic.test-support';
import { eventually } from '../test/wait';

const CUSTOM_OP = 900;
const GATED_OP = 901;
const FAILING_OP = 902;
const BIG_OP = 903;

/** A gateway-side view of one Connect stream: every ResultBatch received, results by call id. */
class GatewayStream {
  readonly batches: ResultBatch__Output[] = [];
  readonly results = new Map<number, Result__Output>();
  readonly ended: Promise<grpc.StatusObject>;
  private waiters: Array<() => void> = [];
  readonly call: grpc.ClientDuplexStream<CallBatch, ResultBatch__Output>;

  constructor(client: LogicGatewayClient) {
    this.call = client.Connect();
    this.call.on('data', (b: ResultBatch__Output) => {
      this.batches.push(b);
      for (const r of b.results) this.results.set(r.callId, r);
      for (const w of this.waiters.splice(0)) w();
    });
    this.ended = new Promise((resolve) => {
      this.call.on('status', resolve);
      this.call.on('error', () => { /* status carries it */ });
    });
  }

  send(calls: CallBatch['calls']): void {
    this.call.write({ calls });
  }

  /** Waits until results for every id arrived (the suite timeout bounds a hang). */
  async waitFor(ids: number[]): Promise<Result__Output[]> {
    while (!ids.every((id) => this.results.has(id))) await new Promise<void>((r) => this.waiters.push(r));
    return ids.map((id) => this.results.get(id)!);
  }
}

const call = (callId: number, op: number, body: Uint8Array = new Uint8Array(), uid = 'alice') =>
  ({ callId, op, uid, deviceId: 'd1', connId: 'c1', node: 'gw1', body });

/** im_logic_stream_backpressure_total of this process. */
async function backpressureCount(): Promise<number> {
  return (await metrics().logicStreamBackpressure.get()).values[0]?.value ?? 0;
}

describe('LogicServer', () => {
  let env: LogicEnv;
  let server: LogicServer;
  let client: LogicGatewayClient;
  /** GATED_OP calls wait for open(); entered settles once one has started running. */
  let gate: { promise: Promise<void>; open: () => void; entered: Promise<void>; enter: () => void };

  const newGate = () => {
    let open!: () => void;
    let enter!: () => void;
    const promise = new Promise<void>((r) => { open = r; });
    const entered = new Promise<void>((r) => { enter = r; });
    return { promise, open, entered, enter };
  };

  async function startServer(opts: Partial<LogicServerOptions> = {}): Promise<void> {
    const registry = new OpRegistry();
    registerClientOps(registry, env.service);
    registry.register(CUSTOM_OP, async (ctx, body) => Buffer.from(`${ctx.uid}@${ctx.node}:${Buffer.from(body).toString()}`));
    registry.register(GATED_OP, async () => { gate.enter(); await gate.promise; return Buffer.from('opened'); });
    registry.register(BIG_OP, async () => Buffer.alloc(256 * 1024, 7));
    registry.register(FAILING_OP, async () => { throw new Error('SQLITE_CORRUPT at /secret/path'); });
    server = new LogicServer({ registry, host: '127.0.0.1', port: 0, ...opts });
    const port = await server.start();
    const proto = loadLogicProto();
    client = new proto.im.internal.v1.LogicGateway(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  }

  beforeEach(() => {
    env = makeLogicEnv();
    gate = newGate();
  });
  afterEach(async () => {
    gate.open();
    client?.close();
    await server?.stop();
    await env.close();
  });

  it('answers several calls of one CallBatch, business and custom ops alike', async () => {
    await startServer();
    const gw = new GatewayStream(client);
    gw.send([
      call(1, Op.SEND, encode('SendReq', { to: 'bob', clientMsgId: 'x1', content: Buffer.from('hi') })),
      call(2, Op.GROUP_CREATE, encode('GroupCreateReq', { name: 'team', members: ['bob'] })),
      call(3, CUSTOM_OP, Buffer.from('ping')),
      call(4, 777),
      call(5, Op.SYNC, Uint8Array.from([0xff, 0xff, 0xff])),
      call(6, FAILING_OP),
    ]);
    const [send, group, custom, unknown, garbage, failing] = await gw.waitFor([1, 2, 3, 4, 5, 6]);
    assert.equal(send.code, 0);
    assert.equal(decode('SendResp', send.body).seq, 1);
    assert.deepEqual(decode('GroupResp', group.body).group!.members, ['alice', 'bob']);
    assert.equal(custom.code, 0);
    assert.equal(Buffer.from(custom.body).toString(), 'alice@gw1:ping');
    assert.equal(unknown.code, Code.UNKNOWN_OP);
    assert.equal(unknown.retryable, false);
    assert.equal(garbage.code, Code.BAD_REQUEST);
    assert.equal(failing.code, Code.INTERNAL);
    assert.equal(failing.retryable, true);
    assert.equal(failing.message, 'internal error', 'internal details never reach the client');

    // The stream stays usable: bob syncs the message over it.
    gw.send([call(7, Op.SYNC, encode('SyncReq', { fromSeq: 0 }), 'bob')]);
    const [sync] = await gw.waitFor([7]);
    const msgs = decode('SyncResp', sync.body).messages;
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0].from, 'alice');
    gw.call.end();
    assert.equal((await gw.ended).code, grpc.status.OK);
  });

  it('answers calls that finish in the same turn in one ResultBatch', async () => {
    await startServer();
    const gw = new GatewayStream(client);
    const ids = Array.from({ length: 50 }, (_, i) => i + 1);
    gw.send(ids.map((id) => call(id, CUSTOM_OP, Buffer.from(String(id)))));
    const results = await gw.waitFor(ids);
    assert.deepEqual(results.map((r) => Buffer.from(r.body).toString()), ids.map((id) => `alice@gw1:${id}`));
    assert.equal(gw.batches.length, 1);
  });

  it('answers calls beyond the in-flight limit with OVERLOADED at once', async () => {
    await startServer({ maxInFlightPerStream: 2 });
    const gw = new GatewayStream(client);
    gw.send([call(1, GATED_OP), call(2, GATED_OP), call(3, GATED_OP), call(4, CUSTOM_OP)]);
    const over = await gw.waitFor([3, 4]);
    for (const r of over) {
      assert.equal(r.code, Code.OVERLOADED);
      assert.equal(r.retryable, true);
    }
    assert.equal(gw.results.has(1) || gw.results.has(2), false, 'gated calls are still running');
    gate.open();
    const done = await gw.waitFor([1, 2]);
    assert.deepEqual(done.map((r) => [r.code, Buffer.from(r.body).toString()]), [[0, 'opened'], [0, 'opened']]);
    // Capacity is back once results are written.
    gw.send([call(5, CUSTOM_OP)]);
    assert.equal((await gw.waitFor([5]))[0].code, 0);
  });

  it('holds results while the gateway is not reading and delivers each exactly once after', async () => {
    await startServer({ maxResultBatchBytes: 256 * 1024 });
    const gw = new GatewayStream(client);
    gw.call.pause();
    const ids = Array.from({ length: 40 }, (_, i) => i + 1);
    const pausedBefore = await backpressureCount();
    for (const id of ids) gw.send([call(id, BIG_OP)]);
    // 10 MB of results against a paused reader: the server's write() must report backpressure,
    // and the stream stops writing (and reading calls) until the transport drains.
    await eventually(async () => (await backpressureCount()) > pausedBefore, 'the server to see transport backpressure', 10_000);
    let answers = 0;
    gw.call.on('data', (b: ResultBatch__Output) => { answers += b.results.length; });
    gw.call.resume();
    const results = await gw.waitFor(ids);
    assert.ok(results.every((r) => r.code === 0 && r.body.length === 256 * 1024));
    gw.call.end();
    await gw.ended;
    assert.equal(answers, ids.length, 'no call answered twice');
  });

  it('survives a gateway cancelling its stream mid-call', async () => {
    await startServer();
    const gw = new GatewayStream(client);
    gw.send([call(1, GATED_OP)]);
    await gate.entered;
    gw.call.cancel();
    assert.equal((await gw.ended).code, grpc.status.CANCELLED);
    gate.open();
    const next = new GatewayStream(client);
    next.send([call(1, CUSTOM_OP, Buffer.from('after'))]);
    assert.equal(Buffer.from((await next.waitFor([1]))[0].body).toString(), 'alice@gw1:after');
  });

  it('stops gracefully: running calls finish, new ones get UNAVAILABLE, streams end; stop is idempotent', async () => {
    await startServer();
    const gw = new GatewayStream(client);
    gw.send([call(1, GATED_OP)]);
    await gate.entered;
    const stopping = server.stop();
    gw.send([call(2, CUSTOM_OP)]);
    const [late] = await gw.waitFor([2]);
    assert.equal(late.code, Code.UNAVAILABLE);
    gate.open();
    const [running] = await gw.waitFor([1]);
    assert.equal(running.code, 0);
    assert.equal((await gw.ended).code, grpc.status.OK);
    await stopping;
    await server.stop();
  });
});
