/**
 * Hot upgrade of a gateway, as an operator runs it: a real supervisor process
 * (dist/gateway/upgrade/supervisor-main.js) replaces its worker process twice — once through the control
 * port, once through SIGHUP — while SDK clients and a raw client exchange messages without pause.
 * Router and logic (over SQLite) run in this process; the bus is a private nats-server, since the
 * workers are separate processes.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { signToken } from '../../common/jwt';
import { ImClient } from '../../client/sdk';
import { LENGTH_BYTES } from '../../proto/codec';
import { decode, encode, Frame, frameBytes, Op, textContent } from '../../proto/wire';
import { CassandraStore } from '../../storage/cassandra/store';
import { RawClient } from '../../test/harness';
import { alive, CASSANDRA_CONTACT, dropKeyspace, freePort, needs, startNatsServer, stopNatsServer } from '../../test/infra';
import type { StatusReplyMsg } from './handoff-protocol';
import type { SupervisorStatus, UpgradeResult } from './supervisor';
import { startTestBackends } from '../backends.test-support';
import { eventually } from '../gateway.test-support';

const HOST = '127.0.0.1';
const SUPERVISOR = path.join(__dirname, 'supervisor-main.js');
const IDLE_CONNECTIONS = 200;

interface Supervisor {
  child: ChildProcess;
  info: Record<string, unknown>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
}

async function startSupervisor(env: Record<string, string>): Promise<Supervisor> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IM_')));
  const child = spawn(process.execPath, [SUPERVISOR], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let buf = '';
  const keep = (d: Buffer) => { out = (out + d.toString()).slice(-20_000); };
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const info = await new Promise<Record<string, unknown>>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      keep(d);
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          if (rec.msg === 'gateway-supervisor listening') resolve(rec);
        } catch { /* not a JSON line */ }
      }
    });
    void exited.then((e) => reject(new Error(`supervisor exited early (${e.code ?? e.signal}): ${out}`)));
    setTimeout(() => reject(new Error(`supervisor not listening within 30 s: ${out}`)), 30_000);
  });
  return { child, info, exited, output: () => out };
}

async function getJson<T>(url: string, method = 'GET'): Promise<T> {
  const res = await fetch(url, { method });
  const body = await res.json() as T;
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** The SDK's socket (private fields): the test checks the TCP connection itself never changed. */
function localPort(c: ImClient): number {
  const conn = (c as unknown as { conn?: { link?: { socket?: net.Socket } } }).conn;
  return conn?.link?.socket?.localPort ?? -1;
}

describe('gateway hot upgrade (supervisor process, two successive workers)', function () {
  this.timeout(120_000);
  const stops: Array<() => unknown> = [];
  let nats: ChildProcess | undefined;
  let routerHttp: string;
  let sup: Supervisor;
  let control: string;
  let baseEnv: Record<string, string>;
  let tmp: string;
  const ns = randomBytes(3).toString('hex');
  const uid = (n: string) => `${n}_${ns}`;
  const secret = `hotswap-secret-${ns}`;

  before(async function () {
    await needs(this, 'nats');
    await needs(this, 'cassandra');
    const natsPort = await freePort();
    nats = await startNatsServer(natsPort);
    stops.push(() => nats && stopNatsServer(nats));
    const natsUrl = `nats://${HOST}:${natsPort}`;

    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'im-hotswap-'));
    stops.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
    // Distributed mode as deployed: Cassandra behind logic, NATS between logic and the workers.
    const keyspace = `im_hotswap_${ns}`;
    const store = await CassandraStore.open({ contactPoints: CASSANDRA_CONTACT.split(','), keyspace, consistency: 'ONE' });
    stops.push(() => dropKeyspace(keyspace));
    stops.push(() => store.close());
    const backends = await startTestBackends(store, natsUrl, 'hotswap-logic', stops);
    routerHttp = backends.routerHttp;
    const { routerAddr, logicAddr } = backends;

    baseEnv = {
      IM_AUTH_SECRET: secret, IM_GATEWAY_ADDR: `${HOST}:0`, IM_SUPERVISOR_ADDR: `${HOST}:0`,
      IM_NATS_URL: natsUrl, IM_LOGIC_ADDRS: logicAddr, IM_ROUTER_GRPC_ADDR: routerAddr, IM_LOG_LEVEL: 'warn',
      // The senders below go as fast as replies come back.
      IM_RATE_LIMIT: '2000', IM_RATE_BURST: '4000',
    };
  });

  /** A supervisor for node `node`, listed by the route API before this resolves. */
  async function startNode(node: string, env: Record<string, string> = {}): Promise<Supervisor> {
    const s = await startSupervisor({ ...baseEnv, IM_NODE_ID: node, ...env });
    stops.push(async () => {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    });
    await eventually(async () => {
      const r = await getJson<{ gateways: Array<{ addr: string }> }>(`${routerHttp}/v1/route`);
      return r.gateways.some((g) => g.addr === s.info.addr);
    }, 'the node in the route list', 20_000);
    return s;
  }

  after(async () => {
    for (const stop of stops.splice(0).reverse()) {
      try { await stop(); } catch { /* keep tearing down */ }
    }
  });

  it('moves live connections, a half-sent frame and in-flight requests to the new worker: no disconnect, nothing lost or duplicated', async () => {
    sup = await startNode(`gw-hot-${ns}`);
    control = `http://${String(sup.info.control)}`;
    const [alice, bob, dave] = [uid('alice'), uid('bob'), uid('dave')];
    const disconnects: string[] = [];
    const received = new Map<string, Map<string, number>>(); // uid -> msgId -> times delivered to the app
    const sdk = (who: string) => {
      // One attempt per send: a request lost in the move fails the test instead of being retried.
      const c = new ImClient({ routerUrl: routerHttp, token: signToken(secret, who, 3600), deviceId: 'd1', sendMaxAttempts: 1 });
      received.set(who, new Map());
      c.on('message', (m) => { const seen = received.get(who)!; seen.set(m.msgId, (seen.get(m.msgId) ?? 0) + 1); });
      c.on('disconnected', (e) => disconnects.push(`${who}: ${e.code} ${e.reason}`));
      c.on('error', () => undefined);
      stops.push(() => c.close());
      return c;
    };
    const a = sdk(alice);
    const b = sdk(bob);
    const okA = await a.connect();
    const okB = await b.connect();
    const ports = { a: localPort(a), b: localPort(b) };
    assert.ok(ports.a > 0 && ports.b > 0);

    const [gwHost, gwPort] = String(sup.info.addr).split(':');
    // Idle connections ahead of the raw client: it is detached early and adopted only after them,
    // so pushes published meanwhile reach the new worker before the connection does.
    const idle: RawClient[] = [];
    for (let i = 0; i < IDLE_CONNECTIONS; i++) {
      const c = await RawClient.connect(gwHost, Number(gwPort));
      stops.push(() => c.destroy());
      const r = await c.request(Op.AUTH, 'Auth', { token: signToken(secret, uid('idle'), 3600), deviceId: `idle-${i}`, lastSeq: 0 });
      assert.equal(r.error, null);
      idle.push(c);
    }
    const raw = await RawClient.connect(gwHost, Number(gwPort));
    stops.push(() => raw.destroy());
    const authReply = await raw.request(Op.AUTH, 'Auth', { token: signToken(secret, dave, 3600), deviceId: 'raw', lastSeq: 0 });
    const okD = decode('AuthOk', authReply.body);
    const rawPort = raw.socket.localPort!;
    const pingRaw = await RawClient.connect(gwHost, Number(gwPort));
    stops.push(() => pingRaw.destroy());
    assert.equal((await pingRaw.request(Op.AUTH, 'Auth', { token: signToken(secret, uid('erin'), 3600), deviceId: 'raw', lastSeq: 0 })).error, null);

    // Continuous traffic: every acknowledged message is remembered with its recipients.
    const acked: Array<{ msgId: string; from: string; to: string }> = [];
    let running = true;
    const sender = (c: ImClient, from: string, to: string) => (async () => {
      for (let i = 0; running; i++) {
        const r = await c.send(to, `${from}->${to} #${i}`);
        acked.push({ msgId: r.msgId, from, to });
      }
    })();
    // Another raw client pings without pause: each ping must be answered, whichever worker reads it.
    let pings = 0;
    const pinger = (async () => {
      while (running) {
        const r = await pingRaw.request(Op.PING, 'Ping', { clientTimeMs: Date.now() }, 15_000);
        assert.equal(r.error, null);
        pings++;
        await delay(2); // pacing: well under the connection's rate limit, however fast replies come back
      }
    })();
    const loops = [sender(a, alice, bob), sender(b, bob, alice), sender(a, alice, dave), pinger];
    const ackedCount = () => acked.length;
    await eventually(() => ackedCount() >= 30, 'traffic before the upgrade', 20_000);

    // A frame cut in the middle: its first bytes reach worker 1, the rest will reach worker 2.
    const half = frameBytes({
      op: Op.SEND, requestId: 9001, body: encode('SendReq', { to: alice, clientMsgId: `half-${ns}`, ...textContent('sent across the upgrade') }),
    });
    const cut = 9;
    const held = cut - LENGTH_BYTES; // the decoder has read the length prefix
    raw.write(half.subarray(0, cut));
    const conns = async () => (await getJson<{ workers: StatusReplyMsg[] }>(`${control}/connections`)).workers;
    const where = async (connId: string) => {
      for (const w of await conns()) {
        const c = w.list.find((x) => x.connId === connId);
        if (c) return { pid: w.pid, ...c };
      }
      return undefined;
    };
    await eventually(async () => (await where(okD.connId))?.pendingBytes === held, 'the half frame held by worker 1', 20_000);
    const w1 = Number(sup.info.workerPid);
    assert.equal((await where(okD.connId))?.pid, w1);

    // Upgrade 1, through the control port, while all of the above is in flight.
    const before1 = ackedCount();
    const up1 = await getJson<UpgradeResult>(`${control}/upgrade`, 'POST');
    assert.equal(up1.from.pid, w1);
    const w2 = up1.to.pid;
    assert.notEqual(w2, w1);
    assert.equal(up1.dropped, 0, 'no connection closed by the hand-off');
    assert.ok(up1.handedOver >= 4 + IDLE_CONNECTIONS, `handed over ${up1.handedOver}`);
    assert.equal(up1.adopted, up1.handedOver);
    await eventually(() => !alive(w1), 'worker 1 gone', 20_000);

    for (const [connId, port] of [[okA.connId, ports.a], [okB.connId, ports.b], [okD.connId, rawPort]] as const) {
      const c = await where(connId);
      assert.equal(c?.pid, w2, `${connId} served by the new worker`);
      assert.equal(c?.remotePort, port, 'the same TCP connection');
    }
    assert.equal((await where(okD.connId))?.pendingBytes, held, 'the half frame moved with its connection');
    await eventually(() => ackedCount() >= before1 + 30, 'traffic after upgrade 1', 20_000);

    // The rest of the half frame goes to worker 2, which completes it and answers.
    raw.write(half.subarray(cut));
    const halfReply = await raw.waitFor((f) => f.requestId === 9001, 10_000);
    assert.equal(halfReply.error, null);
    const halfSent = decode('SendResp', halfReply.body);
    acked.push({ msgId: halfSent.msgId, from: dave, to: alice });

    // Upgrade 2, through SIGHUP.
    const before2 = ackedCount();
    sup.child.kill('SIGHUP');
    let w3 = 0;
    await eventually(async () => {
      const s = await getJson<SupervisorStatus>(`${control}/status`);
      w3 = s.current?.pid ?? 0;
      return s.upgrades === 2 && !s.upgrading;
    }, 'upgrade 2 done', 60_000);
    assert.ok(w3 !== w2 && w3 !== w1);
    await eventually(() => !alive(w2), 'worker 2 gone', 20_000);
    for (const connId of [okA.connId, okB.connId, okD.connId]) assert.equal((await where(connId))?.pid, w3);
    await eventually(() => ackedCount() >= before2 + 30, 'traffic after upgrade 2', 20_000);

    running = false;
    await Promise.all(loops);

    // Every acknowledged message reaches the app of each of its recipients (sender included: the
    // SDK delivers its own sends from their acks) once. The raw client is pushed only what it did
    // not send itself.
    const rawPushes = () => raw.frames.filter((f: Frame) => f.op === Op.PUSH).map((f) => decode('Message', f.body));
    const expected = (who: string) => acked.filter((m) => m.from === who || m.to === who);
    const rawExpected = () => acked.filter((m) => m.to === dave);
    await eventually(() =>
      [alice, bob].every((u) => expected(u).every((m) => received.get(u)!.has(m.msgId)))
      && rawExpected().every((m) => rawPushes().some((p) => p.msgId === m.msgId)), 'every message delivered', 20_000);
    for (const u of [alice, bob]) {
      const twice = [...received.get(u)!].filter(([, n]) => n !== 1);
      assert.deepEqual(twice, [], `${u} got a message more than once`);
    }
    const counts = new Map<string, number>();
    for (const p of rawPushes()) counts.set(p.msgId, (counts.get(p.msgId) ?? 0) + 1);
    assert.deepEqual([...counts].filter(([, n]) => n !== 1), [], 'a push frame written twice on the wire');
    assert.equal(counts.size, rawExpected().length, 'no push the raw client was not owed');

    // The same connections throughout.
    assert.deepEqual(disconnects, []);
    assert.equal(localPort(a), ports.a);
    assert.equal(localPort(b), ports.b);
    assert.equal(a.session?.connId, okA.connId);
    assert.equal(b.session?.connId, okB.connId);
    assert.equal(raw.closed, false);
    assert.equal(idle.filter((c) => c.closed).length, 0, 'idle connections closed');
    assert.ok(acked.length > 90, `${acked.length} messages acknowledged`);
    assert.ok(pings > 0);
    assert.equal(pingRaw.closed, false);

    await a.close();
    await b.close();
    raw.destroy();
    pingRaw.destroy();
    for (const c of idle) c.destroy();
  });

  it('stops on SIGTERM: the worker drains and the supervisor exits 0', async () => {
    const pid = (await getJson<SupervisorStatus>(`${control}/status`)).current!.pid;
    sup.child.kill('SIGTERM');
    const e = await sup.exited;
    assert.equal(e.code, 0, sup.output());
    await eventually(() => !alive(pid), 'the worker gone', 20_000);
  });

  it('forks the code on disk at each upgrade; a worker that cannot start or dies never takes the node down', async () => {
    // The worker script is a file the test rewrites between upgrades, as a deploy replaces dist/.
    const script = path.join(tmp, 'worker.js');
    const release = (body: string) => fs.writeFileSync(script, body);
    const real = JSON.stringify(path.join(__dirname, 'worker-main.js'));
    release(`require(${real});\n`);
    const s = await startNode(`gw-hot2-${ns}`, { IM_GATEWAY_WORKER_SCRIPT: script, IM_WORKER_READY_TIMEOUT: '10s' });
    const ctl = `http://${String(s.info.control)}`;
    const status = () => getJson<SupervisorStatus>(`${ctl}/status`);
    const w1 = (await status()).current!.pid;
    const carol = uid('carol');
    const disconnects: number[] = [];
    const c = new ImClient({ routerUrl: routerHttp, token: signToken(secret, carol, 3600), deviceId: 'd1', sendMaxAttempts: 1 });
    stops.push(() => c.close());
    c.on('disconnected', (e) => disconnects.push(e.code));
    c.on('error', () => undefined);
    await c.connect();

    // A release that cannot start: the upgrade fails, the old worker keeps every client.
    release('process.exit(3);\n');
    const failed = await fetch(`${ctl}/upgrade`, { method: 'POST' });
    assert.equal(failed.status, 500);
    assert.match(((await failed.json()) as { error: string }).error, /not ready/);
    assert.equal((await status()).current?.pid, w1);
    await c.send(carol, 'still here');
    assert.deepEqual(disconnects, []);

    // The next release starts; a second upgrade asked for meanwhile is refused, not queued.
    const marker = path.join(tmp, 'ran-v2-');
    release(`require('fs').writeFileSync(${JSON.stringify(marker)} + process.pid, '');\nrequire(${real});\n`);
    const [r1, r2] = await Promise.all([fetch(`${ctl}/upgrade`, { method: 'POST' }), fetch(`${ctl}/upgrade`, { method: 'POST' })]);
    assert.deepEqual([r1.status, r2.status].sort(), [200, 409]);
    const up = (await (r1.status === 200 ? r1 : r2).json()) as UpgradeResult;
    assert.equal(up.from.pid, w1);
    assert.ok(fs.existsSync(marker + up.to.pid), 'the new worker runs the new release');
    await c.send(carol, 'on the new release');
    assert.deepEqual(disconnects, []);

    // A worker that dies takes its clients' connections with it, not the node: another is
    // started, and the clients reconnect to it.
    process.kill(up.to.pid, 'SIGKILL');
    await eventually(async () => {
      const st = await status();
      return st.restarts === 1 && st.current !== null && st.current.pid !== up.to.pid;
    }, 'a replacement worker', 20_000);
    await eventually(() => c.state === 'connected' && disconnects.length === 1, 'the client back', 20_000);
    await c.send(carol, 'after the crash');
    await c.close();

    s.child.kill('SIGTERM');
    assert.equal((await s.exited).code, 0, s.output());
  });

  it('WebSocket clients: served through the supervisor; an upgrade closes them (Disconnect DRAINING, close 3000) and they reconnect to the new worker while TCP ones move', async () => {
    const s = await startNode(`gw-hot-ws-${ns}`, { IM_GATEWAY_WS_ADDR: `${HOST}:0` });
    const ctl = `http://${String(s.info.control)}`;
    const wsUrl = `ws://${String(s.info.wsAddr)}/`;
    await eventually(async () => {
      const r = await getJson<{ gateways: Array<{ addr: string; wsUrl?: string }> }>(`${routerHttp}/v1/route`);
      return r.gateways.some((g) => g.addr === s.info.addr && g.wsUrl === wsUrl);
    }, 'the WebSocket URL in the route list', 20_000);
    const wes = uid('wes');
    const disconnects: Array<{ code: number; reason: string }> = [];
    const c = new ImClient({ routerUrl: routerHttp, token: signToken(secret, wes, 3600), deviceId: 'browser', transport: 'websocket' });
    stops.push(() => c.close());
    c.on('disconnected', (e) => disconnects.push({ code: e.code, reason: e.reason }));
    c.on('error', () => undefined);
    const first = await c.connect();
    const raw = await RawClient.connectWs(wsUrl);
    stops.push(() => raw.destroy());
    assert.equal((await raw.request(Op.AUTH, 'Auth', { token: signToken(secret, uid('wren'), 3600), deviceId: 'raw', lastSeq: 0 })).error, null);
    const [gwHost, gwPort] = String(s.info.addr).split(':');
    const tcp = await RawClient.connect(gwHost, Number(gwPort));
    stops.push(() => tcp.destroy());
    assert.equal((await tcp.request(Op.AUTH, 'Auth', { token: signToken(secret, uid('tess'), 3600), deviceId: 'raw', lastSeq: 0 })).error, null);
    await c.send(wes, 'before the upgrade');

    const up = await getJson<UpgradeResult>(`${ctl}/upgrade`, 'POST');
    assert.equal(up.handedOver, 1, 'only the TCP connection moves');
    const d = decode('Disconnect', (await raw.waitFor((f) => f.op === Op.DISCONNECT)).body);
    assert.deepEqual([d.code, d.reason, d.reconnect], [3000, 'gateway upgrading: reconnect', true]);
    await raw.waitClosed();
    assert.equal(raw.closeCode, 3000);

    await eventually(() => c.state === 'connected' && c.session?.connId !== first.connId, 'the SDK back on the new worker', 20_000);
    assert.deepEqual(disconnects.map((e) => e.code), [3000]);
    const workers = (await getJson<{ workers: StatusReplyMsg[] }>(`${ctl}/connections`)).workers;
    assert.equal(workers.find((w) => w.list.some((x) => x.connId === c.session?.connId))?.pid, up.to.pid);
    await c.send(wes, 'after the upgrade');
    assert.equal((await tcp.request(Op.PING, 'Ping', { clientTimeMs: Date.now() })).error, null, 'the TCP client moved, still served');
    assert.equal(tcp.closed, false);
    await c.close();
    s.child.kill('SIGTERM');
    assert.equal((await s.exited).code, 0, s.output());
  });
});
