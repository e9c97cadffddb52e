/**
 * Releases that never drop a connection, on the real service processes (router, two logic, two
 * gateways; NATS and Cassandra): logic, router and NATS restart under clients that keep talking,
 * and a gateway drains on SIGTERM. Throughout, four SDK devices (three users, one of them with two
 * devices, on both gateways) exchange 1:1 and group messages; each case ends with the check that
 * every acknowledged message reached every device of every recipient exactly once, in order.
 */
import * as assert from 'node:assert/strict';
import { ImClient } from '../client/sdk';
import { DisconnectCode } from '../common/errors';
import { signToken } from '../common/jwt';
import { needs } from './infra';
import { needsNatsServerBinary, ProcCluster } from './procs';
import { Device, Traffic } from './traffic';
import { eventually } from './wait';

/** IM_DRAIN_WINDOW of the gateway processes. */
const DRAIN_WINDOW_MS = 2000;
/** Extra idle connections on the gateway that drains. */
const IDLE_ON_DRAINED = 10;
/** Generous bound for the final delivery check (a loaded 2-core machine). */
const DELIVERY_TIMEOUT_MS = 20_000;

describe('releases that never drop a connection (service processes on NATS + Cassandra)', function () {
  this.timeout(60_000);
  let cluster: ProcCluster;
  let routeVia: string[] = [];
  let traffic: Traffic | undefined;
  let t0 = 0;
  const idleClients: ImClient[] = [];
  const report: string[] = [];

  before(async function () {
    this.timeout(120_000);
    await needs(this, 'cassandra');
    needsNatsServerBinary(this);
    cluster = await ProcCluster.start({ gatewayEnv: { IM_DRAIN_WINDOW: `${DRAIN_WINDOW_MS}ms` } });
    await eventually(async () => (await cluster.route()).length === 2, 'both gateways in the route list', 10_000);
    routeVia = [await cluster.routeUrlPreferring(0), await cluster.routeUrlPreferring(1)];
  });

  afterEach(async function () {
    await Promise.all(idleClients.splice(0).map((c) => c.close()));
    if (traffic) {
      const lines = traffic.summary(t0);
      if (this.currentTest?.state === 'failed') {
        process.stdout.write(`${lines.join('\n')}\n`);
        for (const p of [cluster.router, ...cluster.logics, ...cluster.gateways]) process.stdout.write(`--- ${p.name}\n${p.log.slice(-3000)}\n`);
      }
      report.push(`[${this.currentTest?.title}]`, ...lines.map((l) => `  ${l}`));
      await traffic.close();
      traffic = undefined;
    }
  });

  after(async () => {
    if (process.env.IM_RELEASE_REPORT) process.stdout.write(`${report.join('\n')}\n`);
    await cluster?.stop();
  });

  /** ann has a phone on gateway 0 and a laptop on gateway 1; bob is on 0, cat on 1. */
  async function startTraffic(): Promise<Traffic> {
    traffic = new Traffic({
      authSecret: cluster.authSecret,
      devices: [
        { user: 'ann', device: 'phone', routerUrl: routeVia[0] },
        { user: 'ann', device: 'laptop', routerUrl: routeVia[1] },
        { user: 'bob', device: 'phone', routerUrl: routeVia[0] },
        { user: 'cat', device: 'phone', routerUrl: routeVia[1] },
      ],
    });
    t0 = Date.now();
    await traffic.connect();
    assert.deepEqual(traffic.devices.map((d) => d.client.session?.node),
      [cluster.nodeOf(0), cluster.nodeOf(1), cluster.nodeOf(0), cluster.nodeOf(1)], 'devices on both gateways');
    traffic.start();
    await traffic.waitFlowing(t0, 'at the start');
    return traffic;
  }

  function assertSameSockets(t: Traffic): void {
    for (const d of t.devices) {
      assert.deepEqual(d.disconnects(), [], `${d.label} lost its connection`);
      assert.equal(d.connIds.length, 1, `${d.label} connected more than once`);
      assert.equal(d.client.session?.connId, d.connIds[0], `${d.label} is on another connection`);
    }
    for (const d of t.devices) assert.deepEqual(d.failedSends, [], `${d.label}: sends failed for good`);
  }

  /**
   * With traffic stopped and every inbox complete, one more message must arrive: a device with no
   * gap and no reconnect only hears of it through a push, so this fails if routing or the bus is
   * still broken.
   */
  async function assertPushed(from: Device, to: Device): Promise<number> {
    const sentAt = Date.now();
    const r = await from.client.send(to.uid, 'after the release');
    await to.waitUntil(() => to.got.some((m) => m.msgId === r.msgId), 10_000, 'the pushed message');
    return Date.now() - sentAt;
  }

  /** How long after `sinceMs` the first message sent after it reached any device. */
  function firstDeliveryAfter(t: Traffic, sinceMs: number): number | undefined {
    const fresh = new Set(t.acked.filter((a) => a.ackedAtMs >= sinceMs).map((a) => a.msgId));
    let first: number | undefined;
    for (const d of t.devices) {
      d.got.forEach((m, i) => {
        if (fresh.has(m.msgId) && (first === undefined || d.gotAtMs[i] < first)) first = d.gotAtMs[i];
      });
    }
    return first === undefined ? undefined : first - sinceMs;
  }

  it('logic: SIGTERM + restart one process, SIGKILL + restart the other; same sockets, every message once', async function () {
    // A send the SIGKILL catches mid-write completes when the store's claim lease (30 s) ends.
    this.timeout(90_000);
    const t = await startTraffic();
    const termExit = await cluster.restartLogic(0, 'SIGTERM');
    assert.equal(termExit.code, 0, 'logic stopped cleanly on SIGTERM');
    await t.waitFlowing(Date.now(), 'after logic 0 restarted');
    const killedAt = Date.now();
    const killExit = await cluster.restartLogic(1, 'SIGKILL');
    assert.equal(killExit.signal, 'SIGKILL');
    await t.waitFlowing(Date.now(), 'after logic 1 restarted');
    await t.stop();
    assert.ok(t.ackedSince(killedAt) > 0, 'sends went on after the kill');
    await t.verify(DELIVERY_TIMEOUT_MS);
    assertSameSockets(t);
    const pushMs = await assertPushed(t.devices[0], t.devices[3]);
    report.push(`logic: ${t.acked.length} acked; push after restarts ${pushMs}ms`);
  });

  it('logic: both processes restart together (no logic at all for a moment); same sockets, no send fails', async () => {
    const t = await startTraffic();
    const downAt = Date.now();
    const exits = await Promise.all([0, 1].map((i) => cluster.logics[i].stop('SIGTERM')));
    assert.deepEqual(exits.map((e) => e.code), [0, 0]);
    await Promise.all([0, 1].map(async (i) => { cluster.logics[i] = await cluster.spawnLogic(i); }));
    const upAt = Date.now();
    await t.waitFlowing(upAt, 'after both logic processes came back');
    await t.stop();
    await t.verify(DELIVERY_TIMEOUT_MS);
    assertSameSockets(t);
    const slow = t.acked.filter((a) => a.ackedAtMs >= upAt && a.ackedAtMs - a.startedAtMs > 500).length;
    report.push(`logic x2: ${t.acked.length} acked; no logic for ${upAt - downAt}ms; sends acked after it that took >500ms: ${slow}`);
  });

  it('router: SIGTERM + restart; same sockets, routes re-registered within seconds, pushes resume', async () => {
    const t = await startTraffic();
    const exit = await cluster.restartRouter('SIGTERM');
    assert.equal(exit.code, 0);
    const backAt = Date.now();
    await eventually(async () => (await cluster.route()).length === 2, 'both gateways listed again', 15_000);
    const listedMs = Date.now() - backAt;
    await t.waitFlowing(Date.now(), 'after the router came back');
    await t.stop();
    await t.verify(DELIVERY_TIMEOUT_MS);
    assertSameSockets(t);
    const pushMs = await assertPushed(t.devices[2], t.devices[3]);
    report.push(`router: ${t.acked.length} acked; gateways listed again after ${listedMs}ms; first delivery of a post-restart message after ${firstDeliveryAfter(t, backAt)}ms; push ${pushMs}ms`);
  });

  it('NATS: SIGKILL + restart once every process lost it; same sockets, pushes resume, sync fills the gap', async () => {
    const t = await startTraffic();
    await cluster.restartNats('SIGKILL');
    const backAt = Date.now();
    await t.waitFlowing(backAt, 'after NATS came back');
    await t.stop();
    await t.verify(DELIVERY_TIMEOUT_MS);
    assertSameSockets(t);
    const pushMs = await assertPushed(t.devices[3], t.devices[2]);
    report.push(`nats: ${t.acked.length} acked; first delivery of a post-restart message after ${firstDeliveryAfter(t, backAt)}ms; push ${pushMs}ms`);
  });

  it('gateway SIGTERM: leaves the route list at once, DRAINING over the window, clients move and sync, exit 0', async () => {
    const t = await startTraffic();
    // More connections on the gateway that drains, so the spreading of DRAINING is visible.
    const idle = await Promise.all(Array.from({ length: IDLE_ON_DRAINED }, async (_, i) => {
      const d = new Device({ user: `idle${i}`, device: 'phone', routerUrl: routeVia[0] }, t.uid(`idle${i}`), new ImClient({
        routerUrl: routeVia[0], token: signToken(cluster.authSecret, t.uid(`idle${i}`), 3600), deviceId: 'phone', backoffBaseMs: 100, backoffMaxMs: 1000,
      }));
      idleClients.push(d.client);
      await d.client.connect();
      assert.equal(d.client.session?.node, cluster.nodeOf(0));
      return d;
    }));
    const gw = cluster.gateways[0];
    const node = cluster.nodeOf(0);
    const termAt = Date.now();
    gw.signal('SIGTERM');
    await eventually(async () => !(await cluster.route()).some((g) => g.node === node), 'the draining gateway to leave /v1/route', 5000);
    const goneMs = Date.now() - termAt;
    const exit = await gw.exited;
    const exitMs = exit.atMs - termAt;
    assert.equal(exit.code, 0, `gateway exit ${exit.code ?? exit.signal}: ${gw.log.slice(-2000)}`);
    await t.waitFlowing(Date.now(), 'after the drained gateway exited');
    await t.stop();
    await t.verify(DELIVERY_TIMEOUT_MS);

    const moved = t.devices.filter((d) => d.spec.routerUrl === routeVia[0]);
    const stayed = t.devices.filter((d) => d.spec.routerUrl === routeVia[1]);
    for (const d of [...moved, ...idle]) {
      const drops = d.disconnects();
      assert.equal(drops.length, 1, `${d.label}: ${JSON.stringify(drops)}`);
      assert.equal(drops[0].code, DisconnectCode.DRAINING);
      assert.equal(drops[0].reconnect, true);
      assert.equal(d.client.session?.node, cluster.nodeOf(1), `${d.label} reconnected to the other gateway`);
      assert.equal(d.connIds.length, 2);
    }
    for (const d of stayed) assert.deepEqual(d.disconnects(), [], `${d.label} was not on the drained gateway`);
    for (const d of t.devices) assert.deepEqual(d.failedSends, [], `${d.label}: sends failed for good`);
    const pushMs = await assertPushed(moved[0], stayed[0]);
    const drained = [...moved, ...idle].map((d) => d.events.find((e) => e.event === 'disconnected')!.atMs - termAt).sort((a, b) => a - b);
    const back = [...moved, ...idle].map((d) => d.events.filter((e) => e.event === 'connected')[1].atMs - termAt).sort((a, b) => a - b);
    // Timers never fire early, so a spread drain cannot finish sooner than this on any machine.
    assert.ok(drained[drained.length - 1] - drained[0] >= DRAIN_WINDOW_MS / 4, `DRAINING not spread over the window: +${drained.join('/')}ms`);
    assert.ok(exitMs < DRAIN_WINDOW_MS + 15_000, `exit after ${exitMs}ms`);
    report.push(`gateway: ${t.acked.length} acked; out of /v1/route after ${goneMs}ms; DRAINING at +${drained.join('/')}ms; `
      + `reconnected at +${back.join('/')}ms; exit 0 after ${exitMs}ms (window ${DRAIN_WINDOW_MS}ms); push ${pushMs}ms`);
  });
});
