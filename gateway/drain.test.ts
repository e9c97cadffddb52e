/**
 * Gateway.stop() as a release drain: readiness off at once, out of the route list before anyone is
 * told to leave, DRAINING spread over the window while the rest are still served, heartbeats
 * (draining: true) until the end, and bounded. The process-level release (SIGTERM, clients moving
 * to another gateway) is in test/releases.test.ts.
 */
import * as assert from 'node:assert/strict';
import { gatewaySubject, InProcessBus } from '../bus/bus';
import { DisconnectCode } from '../common/errors';
import { encodeDeliveryBatch } from '../proto/delivery';
import { decode, encode, Op } from '../proto/wire';
import { Gateway } from './server';
import { Harness, MemoryRouter, SECRET, startGateway, TestClient } from './gateway.test-support';

describe('Gateway drain (stop)', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.stop();
    h = undefined;
  });

  it('spreads DRAINING over the window, serving and heartbeating (draining) until the last one left', async () => {
    const windowMs = 2000;
    h = await startGateway({ drainWindowMs: windowMs, routerHeartbeatMs: 50 });
    const n = 12;
    const clients: TestClient[] = [];
    for (let i = 0; i < n; i++) clients.push(await h.login(`drain-${i}`));
    assert.equal(h.gateway.ready, true);

    const heartbeatsBefore = h.router.heartbeats.length;
    const stopAt = Date.now();
    const stopped = h.gateway.stop();
    assert.equal(h.gateway.ready, false, 'readiness goes false at once');
    // Arrival times from a socket listener: TestClient allows one waiter per client at a time.
    const drainedAt: number[] = [];
    const seen = clients.map((c) => new Promise<void>((resolve) => {
      const check = () => {
        if (!c.frames.some((f) => f.op === Op.DISCONNECT)) return;
        c.socket.off('data', check);
        drainedAt.push(Date.now() - stopAt);
        resolve();
      };
      c.socket.on('data', check);
    }));
    // The router heard "draining" before the first client was told to leave.
    await Promise.race(seen);
    assert.ok(h.router.heartbeats.slice(heartbeatsBefore).some((s) => s.draining), 'draining heartbeat first');

    // Mid-drain, the connections not yet told still get pushes and answers.
    const waiting = clients.filter((c) => !c.frames.some((f) => f.op === Op.DISCONNECT) && !c.closed);
    assert.ok(waiting.length > 0, 'not everyone was disconnected at once');
    const last = waiting[waiting.length - 1];
    const uid = `drain-${clients.indexOf(last)}`;
    h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
      deliveries: [{ uid, seq: 1, message: encode('Message', { msgId: 'mid-drain', seq: 1, convId: 'p:a:b', from: 'a', to: uid }) }],
    }));
    assert.equal(decode('Message', (await last.take((f) => f.op === Op.PUSH)).body).msgId, 'mid-drain');
    assert.equal((await last.ping()).error, null);

    await Promise.all(seen);
    await stopped;
    for (const c of clients) {
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.DRAINING);
      assert.equal(d.reconnect, true);
    }
    drainedAt.sort((a, b) => a - b);
    // Timers never fire early: spread batches cannot all land within a quarter of the window.
    assert.ok(drainedAt[n - 1] - drainedAt[0] >= windowMs / 4, `DRAINING at +${drainedAt.join('/')}ms`);
    const during = h.router.heartbeats.slice(heartbeatsBefore);
    assert.ok(during.length >= 3, `heartbeats went on during the drain (${during.length})`);
    assert.ok(during.every((s) => s.draining), 'every heartbeat after stop() says draining');
    // Heartbeats are chained timeouts: with none scheduled once stop() resolved, none comes later.
    assert.equal(h.gateway.heartbeatScheduled, false, 'no heartbeat after the drain');
    for (const c of clients) await c.waitClosed();
  });

  it('a gateway with a few connections does not sit out a long window', async function () {
    this.timeout(10_000); // the window is 60 s: finishing at all shows it was not waited out
    h = await startGateway({ drainWindowMs: 60_000 });
    const a = await h.login('few-a');
    const b = await h.login('few-b');
    await h.gateway.stop();
    for (const c of [a, b]) assert.equal((await c.disconnectFrame()).code, DisconnectCode.DRAINING);
  });

  it('stop() before start() resolves, and the gateway never reports ready', async () => {
    const g = new Gateway({
      node: 'never-started', host: '127.0.0.1', port: 0, auth: { secret: SECRET }, logicAddresses: ['127.0.0.1:1'],
      router: new MemoryRouter(), bus: new InProcessBus(),
    });
    assert.equal(g.ready, false);
    await g.stop();
    await g.stop();
    assert.equal(g.ready, false);
  });
});
