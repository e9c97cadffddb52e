/**
 * The gateway node on a real listener with an in-memory router and bus: pushes and kicks from the
 * bus, replaced logins, router bind/unbind/heartbeats, capacity, stop(), bad options.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { gatewaySubject, kickSubject } from '../bus/bus';
import { Code, DisconnectCode } from '../common/errors';
import { decodeDeliveryBatch, encodeDeliveryBatch } from '../proto/delivery';
import { decode, encode, Op } from '../proto/wire';
import { REPLACED_REASON } from './downlink';
import { Gateway } from './server';
import { closedPort, eventually, Harness, MemoryRouter, startGateway, TestClient, SECRET, token } from './gateway.test-support';
import { InProcessBus } from '../bus/bus';

const message = (msgId: string, seq: number) => encode('Message', { msgId, seq, convId: 'p:a:b', from: 'a', to: 'b' });
const withoutSeq = (msgId: string) => message(msgId, 0);

describe('Gateway', () => {
  describe('downlink and routing', () => {
    let h: Harness;
    before(async () => { h = await startGateway({ routerHeartbeatMs: 50 }); });
    after(async () => h.stop());

    it('pushes each message to every connection of its targets on this node, each with its seq, and to no one else', async () => {
      const phone = await h.login('erin', 'phone');
      const laptop = await h.login('erin', 'laptop');
      const other = await h.login('frank');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
        pushes: [
          { message: withoutSeq('m1'), targets: [{ uid: 'erin', seq: 1 }, { uid: 'nobody-here', seq: 1 }] },
          { message: withoutSeq('m2'), targets: [{ uid: 'erin', seq: 2 }] },
        ],
      }));
      for (const c of [phone, laptop]) {
        for (const [id, seq] of [['m1', 1], ['m2', 2]] as const) {
          const f = await c.take((x) => x.op === Op.PUSH);
          assert.equal(f.requestId, 0);
          const m = decode('Message', f.body);
          assert.equal(m.msgId, id);
          assert.equal(m.seq, seq);
          assert.equal(m.convId, 'p:a:b');
          assert.deepEqual(Buffer.from(f.body), Buffer.concat([Buffer.from([0x10, seq]), withoutSeq(id)]), 'seq first, then the shared bytes');
        }
      }
      // A push to frank would have been written before this reply on the same socket.
      assert.equal((await other.ping()).error, null);
      assert.equal(other.frames.length, 0);
      for (const c of [phone, laptop, other]) c.close();
    });

    it('skips the connection a target names (the sender\'s) and only it', async () => {
      const phone = await h.connect();
      const sending = await phone.authOk(token('olga'), 'phone');
      const laptop = await h.login('olga', 'laptop');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
        pushes: [{ message: withoutSeq('own'), targets: [{ uid: 'olga', seq: 4, exceptConnId: sending.connId }] }],
      }));
      assert.equal(decode('Message', (await laptop.take((x) => x.op === Op.PUSH)).body).seq, 4);
      // Written in the same loop as the laptop's copy: it would be ahead of this pong.
      assert.equal((await phone.ping()).error, null);
      assert.equal(phone.frames.filter((f) => f.op === Op.PUSH).length, 0);
      phone.close();
      laptop.close();
    });

    it('ignores an undecodable bus payload and keeps delivering; applies the deliveries of earlier logic releases', async () => {
      const c = await h.login('gina');
      h.bus.publish(gatewaySubject(h.node), Buffer.from([0xff, 0xff, 0xff]));
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'gina', seq: 7, message: message('ok', 7) }] }));
      const m = decode('Message', (await c.take((x) => x.op === Op.PUSH)).body);
      assert.deepEqual([m.msgId, m.seq], ['ok', 7]);
      c.close();
    });

    it('kicks one device or every device of a uid with the kick code', async () => {
      const phone = await h.login('hank', 'phone');
      const laptop = await h.login('hank', 'laptop');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
        kicks: [{ uid: 'hank', deviceId: 'phone', code: DisconnectCode.KICKED, reason: 'logged in elsewhere' }],
      }));
      const d = await phone.disconnectFrame();
      assert.equal(d.code, DisconnectCode.KICKED);
      assert.equal(d.reconnect, false);
      await phone.waitClosed();
      assert.equal((await laptop.ping()).error, null, 'the other device stays');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ kicks: [{ uid: 'hank', deviceId: '', code: 0, reason: '' }] }));
      assert.equal((await laptop.disconnectFrame()).code, DisconnectCode.KICKED);
      await laptop.waitClosed();
    });

    it('a second login of a device replaces the first: KICKED (no reconnect), no more pushes, the new one stays', async () => {
      const first = await h.login('ivy', 'phone');
      const second = await h.login('ivy', 'phone');
      const d = await first.disconnectFrame();
      assert.deepEqual([d.code, d.reconnect], [DisconnectCode.KICKED, false]);
      await first.waitClosed();
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'ivy', seq: 1, message: message('after', 1) }] }));
      assert.equal(decode('Message', (await second.take((x) => x.op === Op.PUSH)).body).msgId, 'after');
      assert.equal(first.frames.filter((f) => f.op === Op.PUSH).length, 0);
      // The first connection's unbind did not take the second one's binding with it.
      await eventually(() => [...h.router.sessions.values()].filter((s) => s.uid === 'ivy').length === 1, 'one binding left');
      second.close();
    });

    it('a login that replaces a session on another node kicks that connection on that node\'s kick subject', async () => {
      const other = 'gw-elsewhere';
      await h.router.bind([{ uid: 'jade', deviceId: 'phone', node: other, connId: 'x1' }]);
      const seen: Array<{ uid: string; deviceId: string; connId?: string; code: number }> = [];
      const unsubscribe = h.bus.subscribe(kickSubject(other), (data) => seen.push(...decodeDeliveryBatch(data).kicks));
      const c = await h.login('jade', 'phone');
      await eventually(() => seen.length > 0, 'kick on the other node');
      assert.deepEqual(seen, [{ uid: 'jade', deviceId: 'phone', connId: 'x1', code: DisconnectCode.KICKED, reason: REPLACED_REASON }]);
      unsubscribe();
      c.close();
    });

    it('takes kicks on its kick subject but never pushes (other gateways may publish there)', async () => {
      const c = await h.connect();
      const ok = await c.authOk(token('kim'), 'phone');
      h.bus.publish(kickSubject(h.node), encodeDeliveryBatch({ pushes: [{ message: withoutSeq('forged'), targets: [{ uid: 'kim', seq: 9 }] }] }));
      // A push would have been written before this pong on the same socket.
      assert.equal((await c.ping()).error, null);
      assert.equal(c.frames.filter((f) => f.op === Op.PUSH).length, 0, 'no push from the kick subject');
      h.bus.publish(kickSubject(h.node), encodeDeliveryBatch({ kicks: [{ uid: 'kim', deviceId: 'phone', connId: ok.connId, code: DisconnectCode.KICKED, reason: '' }] }));
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.KICKED);
    });

    it('a kick naming a connection hits only that connection', async () => {
      const c = await h.connect();
      const ok = await c.authOk(token('kai'), 'phone');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ kicks: [{ uid: 'kai', deviceId: 'phone', connId: 'another', code: DisconnectCode.KICKED, reason: '' }] }));
      assert.equal((await c.ping()).error, null, 'a kick for another connection of the device leaves this one');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ kicks: [{ uid: 'kai', deviceId: 'phone', connId: ok.connId, code: DisconnectCode.KICKED, reason: '' }] }));
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.KICKED);
    });

    it('binds on auth, unbinds on close, and heartbeats its load', async () => {
      const c = await h.connect();
      const ok = decode('AuthOk', (await c.auth(token('ivan'), 'd1')).body);
      await eventually(() => h.router.sessions.has(`${h.node}/${ok.connId}`), 'bind');
      await eventually(() => h.router.heartbeats.some((s) => s.connections >= 1), 'heartbeat with the connection counted');
      const last = h.router.heartbeats[h.router.heartbeats.length - 1];
      assert.equal(last.node, h.node);
      assert.equal(last.addr, `127.0.0.1:${h.port}`);
      assert.equal(last.draining, false);
      c.close();
      await eventually(() => !h.router.sessions.has(`${h.node}/${ok.connId}`), 'unbind');
    });

    it('re-registers every session when the router says it forgot this node', async () => {
      const c = await h.login('judy');
      await eventually(() => [...h.router.sessions.values()].some((s) => s.uid === 'judy'), 'bind');
      // The router restarts: it knows nothing.
      h.router.sessions.clear();
      h.router.known = false;
      const before = h.router.snapshots;
      await eventually(() => h.router.snapshots > before, 'snapshot');
      assert.ok([...h.router.sessions.values()].some((s) => s.uid === 'judy' && s.node === h.node));
      c.close();
    });
  });

  it('answers UNAVAILABLE (retryable) to a business op when logic is down, and keeps the connection', async () => {
    const h = await startGateway({}, await closedPort());
    try {
      const c = await h.login('kate');
      const f = await c.request(Op.SEND, Buffer.from('x'), 5000);
      assert.equal(f.error?.code, Code.UNAVAILABLE);
      assert.equal(f.error?.retryable, true);
      assert.equal((await c.ping()).error, null);
    } finally {
      await h.stop();
    }
  });

  it('turns away connections beyond maxConnections with Disconnect DRAINING', async () => {
    const h = await startGateway({ maxConnections: 1 });
    try {
      const first = await h.login('leo');
      const second = await h.connect();
      const d = await second.disconnectFrame();
      assert.equal(d.code, DisconnectCode.DRAINING);
      assert.equal(d.reconnect, true);
      await second.waitClosed();
      assert.equal((await first.ping()).error, null);
    } finally {
      await h.stop();
    }
  });

  it('stop(): reports draining, disconnects everyone with DRAINING, stops accepting; idempotent', async () => {
    const h = await startGateway();
    const a = await h.login('mia');
    const b = await h.connect();
    const stopped = h.gateway.stop();
    for (const c of [a, b]) {
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.DRAINING);
      assert.equal(d.reconnect, true);
      await c.waitClosed();
    }
    await stopped;
    await h.gateway.stop();
    assert.ok(h.router.heartbeats.some((s) => s.draining), 'router told the node is draining');
    assert.equal(h.gateway.connectionCount, 0);
    await assert.rejects(TestClient.connect(h.port), /ECONNREFUSED/);
    await h.stop();
  });

  it('stop() is bounded when a client ignores the Disconnect', async () => {
    const h = await startGateway({ drainTimeoutMs: 200, closeGraceMs: 60_000 });
    const c = await h.login('ned');
    c.socket.pause(); // never reads, never closes
    await h.gateway.stop(); // resolves: the socket is destroyed after drainTimeoutMs
    assert.equal(h.gateway.connectionCount, 0);
    c.socket.resume();
    await c.waitClosed();
    await h.stop();
  });

  it('rejects bad options naming the field', async () => {
    const base = { node: 'n', host: '127.0.0.1', port: 0, auth: { secret: SECRET }, logicAddresses: ['127.0.0.1:1'], router: new MemoryRouter(), bus: new InProcessBus() };
    assert.throws(() => new Gateway({ ...base, auth: {} }), /config auth:/);
    assert.throws(() => new Gateway({ ...base, logicAddresses: undefined }), /logic/);
    assert.throws(() => new Gateway({ ...base, maxFrameBytes: -1 }), /maxFrameBytes/);
    assert.throws(() => new Gateway({ ...base, heartbeatIntervalMs: 1000, idleTimeoutMs: 500 }), /idleTimeoutMs/);
    assert.throws(() => new Gateway({ ...base, publicAddr: 'nope' }), /publicAddr/);
  });

  it('survives abrupt client resets', async () => {
    const h = await startGateway();
    try {
      for (let i = 0; i < 5; i++) {
        const s = net.connect(h.port, '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        s.write(Buffer.from([0, 0, 0]));
        s.resetAndDestroy();
      }
      const c = await h.login('olga');
      assert.equal((await c.ping()).error, null);
      await eventually(() => h.gateway.connectionCount === 1, 'reset connections released');
    } finally {
      await h.stop();
    }
  });
});
