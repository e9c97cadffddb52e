/**
 * Both ends of a hand-off inside one process: HandOver.handOff() on a real gateway (the socket
 * lands in a sink instead of an IPC channel), and HandOver.adopt() on a second, listener-less
 * gateway of the same node serving a real socket with the snapshot. Across real processes:
 * hotswap.test.ts.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { gatewaySubject } from '../../bus/bus';
import { Code } from '../../common/errors';
import { encodeDeliveryBatch } from '../../proto/delivery';
import { decode, encode, Frame, frameBytes, Op } from '../../proto/wire';
import type { AdoptMsg } from './handoff-protocol';
import { Gateway } from '../server';
import { HandOver } from './handover';
import { eventually, Harness, OP_HANG, parseEcho, SECRET, startGateway, TestClient } from '../gateway.test-support';

const message = (msgId: string, seq: number) => encode('Message', { msgId, seq, convId: 'p:a:b', from: 'a', to: 'b' });
const OP_ECHO = 120;

const movedSockets: net.Socket[] = [];

/** Collects what handOff() passes on; the sockets are closed after each test. */
function sink(): { moved: Array<{ msg: AdoptMsg; socket: net.Socket }>; send: (msg: AdoptMsg, socket: net.Socket) => Promise<void> } {
  const moved: Array<{ msg: AdoptMsg; socket: net.Socket }> = [];
  return { moved, send: async (msg, socket) => { moved.push({ msg, socket }); movedSockets.push(socket); } };
}

describe('hand-off inside one process', () => {
  let h: Harness;
  afterEach(async () => {
    for (const s of movedSockets.splice(0)) s.destroy();
    await h?.stop();
  });

  it('old side: replies in flight go out first, the half-received frame and the applied pushes travel with the state, the router binding stays', async () => {
    h = await startGateway();
    const c = await h.login('ann');
    const old = new HandOver(h.gateway.upgradeHost);
    old.prepare();
    h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'ann', seq: 5, message: message('m5', 5) }] }));
    await c.take((f) => f.op === Op.PUSH);
    const echoId = c.send({ op: OP_ECHO, body: Buffer.from('answered before the move') });
    // Logic never answers this one: the gateway's own call timeout (1 s here) does, still before the move.
    const hangId = c.send({ op: OP_HANG, body: Buffer.from('slow') });
    const half = frameBytes({ op: OP_ECHO, requestId: 77, body: Buffer.from('finished elsewhere') }).subarray(0, 7);
    c.socket.write(half);
    await eventually(() => h.gateway.describeConnections(1)[0]?.pendingBytes === 3, 'the half frame read');
    await eventually(() => [...h.router.sessions.values()].some((s) => s.uid === 'ann'), 'bind');

    const out = sink();
    const r = await old.handOff(out.send, 5000);
    assert.deepEqual([r.handedOver, r.dropped], [1, 0]);
    const { msg, socket } = out.moved[0];
    assert.equal(parseEcho(await c.reply(echoId)).body, 'answered before the move');
    assert.equal((await c.reply(hangId)).error?.code, Code.TIMEOUT);
    assert.equal(msg.conn.uid, 'ann');
    assert.equal(msg.conn.state, 'open');
    assert.deepEqual(Buffer.from(msg.conn.pendingBytes, 'base64'), Buffer.from(half));
    assert.deepEqual(msg.seen, ['d5']);
    assert.equal(h.gateway.connectionCount, 0);
    assert.ok([...h.router.sessions.values()].some((s) => s.uid === 'ann' && s.connId === msg.conn.connId), 'not unbound: it lives on');
    socket.destroy();
  });

  it('old side: a call that never answers does not hold the move past the bound; a client that does not read is closed, not moved', async () => {
    h = await startGateway({ maxWriteQueueBytes: 64 * 1024 * 1024 });
    const waiting = await h.login('bea');
    waiting.send({ op: OP_HANG, body: Buffer.from('no answer') });
    const deaf = await h.login('cid');
    deaf.socket.pause(); // stops reading: what the gateway writes piles up
    const big = Buffer.alloc(60_000, 1);
    for (let i = 1; i <= 200; i++) {
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'cid', seq: i, message: encode('Message', { msgId: `b${i}`, seq: i, content: big }) }] }));
    }
    await new Promise((r) => setImmediate(r));
    const out = sink();
    const r = await new HandOver(h.gateway.upgradeHost).handOff(out.send, 300);
    assert.deepEqual([r.handedOver, r.dropped], [1, 1]);
    assert.equal(out.moved[0].msg.conn.uid, 'bea');
    for (const { socket } of out.moved) socket.destroy();
    deaf.socket.resume();
    await deaf.waitClosed();
  });

  it('new side: serves a handed-over connection as the same session, completes its frame, replays only what the old side had not applied', async () => {
    h = await startGateway();
    const c = await h.login('dot');
    const old = new HandOver(h.gateway.upgradeHost);
    old.prepare();
    // The successor: same node, same bus, no listener of its own.
    const next = new Gateway({
      node: h.node, host: '127.0.0.1', port: 0, listen: false, publicAddr: '127.0.0.1:1', successor: true,
      auth: { secret: SECRET }, logic: h.logic, router: h.router, bus: h.bus,
    });
    const adopting = new HandOver(next.upgradeHost);
    await next.start();
    try {
      const push = (seq: number) => h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'dot', seq, message: message(`m${seq}`, seq) }] }));
      push(1); // both gateways get it; the old one writes it
      await c.take((f) => f.op === Op.PUSH);
      const whole = frameBytes({ op: OP_ECHO, requestId: 9, body: Buffer.from('split across processes') });
      c.socket.write(whole.subarray(0, 10));
      await eventually(() => h.gateway.describeConnections(1)[0]?.pendingBytes === 6, 'half frame read');
      const out = sink();
      await old.handOff(out.send, 5000);
      push(2); // after the move: only the successor applies it
      await new Promise((r) => setImmediate(r));

      // A real socket stands in for the moved one (a socket cannot change process here).
      const server = net.createServer();
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
      const client = await TestClient.connect((server.address() as net.AddressInfo).port);
      adopting.adopt(await accepted, out.moved[0].msg);
      out.moved[0].socket.destroy();
      server.close();
      const replayed = await client.take((f: Frame) => f.op === Op.PUSH);
      assert.equal(decode('Message', replayed.body).seq, 2);
      client.socket.write(whole.subarray(10));
      const echo = parseEcho(await client.reply(9));
      assert.deepEqual([echo.uid, echo.connId, echo.body], ['dot', out.moved[0].msg.conn.connId, 'split across processes']);
      push(1); // a late copy of what the old side applied is skipped
      push(3);
      assert.equal(decode('Message', (await client.take((f: Frame) => f.op === Op.PUSH)).body).seq, 3);
      assert.equal(client.frames.length, 0);
      client.close();
    } finally {
      await next.stop();
    }
  });
});
