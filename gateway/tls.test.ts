/**
 * TLS on the gateway, as an operator runs it: real gateway processes (dist/gateway/main.js), a
 * real supervisor (dist/gateway/upgrade/supervisor-main.js) and `npm start` (dist/embedded/main.js), with
 * certificates from a CA made here with openssl. Router and logic (over SQLite) run in this
 * process; the bus between logic and the gateway processes is the shared nats-server.
 */
import * as assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { main as cliMain } from '../cli/main';
import { ImClient, type ImClientOptions } from '../client/sdk';
import { DisconnectCode } from '../common/errors';
import { signToken } from '../common/jwt';
import { frameBytes, encode, Op } from '../proto/wire';
import { openStore } from '../storage/open';
import { waitFor } from '../test/exactly-once';
import { collect, type Inbox, text } from '../test/harness';
import { freePort, NATS_URL, needs, reachable } from '../test/infra';
import { ServiceProc } from '../test/procs';
import { makeTestPki, signServerCert, type TestPki } from '../test/tls-certs';
import type { UpgradeResult } from './upgrade/supervisor';
import { startTestBackends } from './backends.test-support';

const HOST = '127.0.0.1';

interface Listed { node: string; addr: string; tls: boolean; tlsAddr: string }

/** The serial number of the certificate a TLS handshake with addr presents now. */
function presentedSerial(addr: string, ca: string): Promise<string> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, ca: fs.readFileSync(ca) }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial.toUpperCase());
    });
    s.once('error', reject);
  });
}

/** A client's app was handed a message with this text (its own sends reach it too, by sync). */
const received = (inbox: Inbox, t: string) => waitFor(`a message "${t}"`, 10_000, () => inbox.messages.some((m) => text(m) === t));

const serialOf = (certFile: string) => new X509Certificate(fs.readFileSync(certFile)).serialNumber.toUpperCase();

/** What the server sends back to a plaintext Auth frame, until it closes the connection. */
function plaintextAuthAnswer(addr: string, token: string): Promise<Buffer> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = net.connect({ host, port }, () => {
      s.write(frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token, deviceId: 'plain', lastSeq: 0 }) }));
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(chunks)));
    setTimeout(() => { s.destroy(); reject(new Error('the TLS listener kept a plaintext client open')); }, 10_000).unref();
  });
}

describe('gateway TLS (real gateway, supervisor and embedded processes)', function () {
  this.timeout(90_000);
  const stops: Array<() => unknown> = [];
  const ns = randomBytes(3).toString('hex');
  const uid = (n: string) => `${n}_${ns}`;
  const secret = `gateway-tls-secret-${ns}`;
  let tmp: string;
  let pki: TestPki;
  let routerHttp: string;
  let baseEnv: Record<string, string>;

  before(async function () {
    await needs(this, 'nats');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'im-gw-tls-'));
    stops.push(() => fs.rmSync(tmp, { recursive: true, force: true }));
    pki = makeTestPki(tmp);
    const store = await openStore({ kind: 'sqlite', dataDir: tmp });
    stops.push(() => store.close());
    const backends = await startTestBackends(store, NATS_URL, `gateway-tls-logic-${ns}`, stops);
    routerHttp = backends.routerHttp;
    const { routerAddr, logicAddr } = backends;
    baseEnv = {
      IM_AUTH_SECRET: secret, IM_NATS_URL: NATS_URL, IM_LOGIC_ADDRS: logicAddr, IM_ROUTER_GRPC_ADDR: routerAddr,
      IM_GATEWAY_TLS_ADDR: `${HOST}:0`, IM_GATEWAY_TLS_RELOAD_INTERVAL: '200ms',
    };
  });

  /** Each test's clients and gateways go at its end, so the next test's route list has only its own gateway. */
  const testStops: Array<() => unknown> = [];
  const tearDown = async (list: Array<() => unknown>) => {
    for (const stop of list.splice(0).reverse()) {
      try { await stop(); } catch { /* keep tearing down */ }
    }
  };
  afterEach(() => tearDown(testStops));
  after(() => tearDown(stops));

  /** Own copies of the certificate and key, so a test can replace them. */
  function certFiles(name: string): { IM_GATEWAY_TLS_CERT: string; IM_GATEWAY_TLS_KEY: string } {
    const cert = path.join(tmp, `${name}-cert.pem`);
    const key = path.join(tmp, `${name}-key.pem`);
    fs.copyFileSync(path.join(pki.dir, 'server.pem'), cert);
    fs.copyFileSync(path.join(pki.dir, 'server.key'), key);
    return { IM_GATEWAY_TLS_CERT: cert, IM_GATEWAY_TLS_KEY: key };
  }

  async function listed(node: string): Promise<Listed | undefined> {
    const r = await (await fetch(`${routerHttp}/v1/route`)).json() as { gateways: Listed[] };
    return r.gateways.find((g) => g.node === node);
  }

  async function spawnNode(kind: 'gateway' | 'gateway-supervisor', node: string, env: Record<string, string>): Promise<ServiceProc> {
    const p = await ServiceProc.spawn(node, kind, { ...baseEnv, IM_NODE_ID: node, ...env });
    // SIGTERM: the node leaves the route list at once (SIGKILL would leave it there for the router's TTL).
    testStops.push(() => p.stop('SIGTERM', 20_000));
    await waitFor(`${node} in the route list`, 20_000, async () => (await listed(node)) !== undefined);
    return p;
  }

  function client(who: string, extra: Partial<ImClientOptions> = {}): ImClient {
    const c = new ImClient({ routerUrl: routerHttp, token: signToken(secret, who, 3600), deviceId: 'd1', tls: { ca: fs.readFileSync(pki.caPem) }, ...extra });
    c.on('error', () => undefined);
    testStops.push(() => c.close());
    return c;
  }

  const localPort = (c: ImClient) => (c as unknown as { conn?: { link?: { socket?: net.Socket } } }).conn?.link?.socket?.localPort ?? -1;

  it('TLS only: the SDK verifies the certificate, authenticates, sends and receives; plaintext is refused', async () => {
    const plainPort = await freePort();
    const node = `gw-tls-only-${ns}`;
    const gw = await spawnNode('gateway', node, { ...certFiles('only'), IM_GATEWAY_ADDR: `${HOST}:${plainPort}`, IM_GATEWAY_PLAINTEXT: 'false' });
    const tlsAddr = String(gw.info.tlsAddr);
    assert.equal(gw.info.addr, '');
    assert.deepEqual(await listed(node), { node, addr: '', tls: true, tlsAddr, region: '', zone: '', load: 0 });

    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = client(alice);
    const b = client(bob);
    const inbox = collect(b);
    await a.connect();
    await b.connect();
    assert.ok(localPort(a) > 0);
    await a.send(bob, 'over TLS');
    await received(inbox, 'over TLS');

    // No plaintext listener at IM_GATEWAY_ADDR, and the TLS one does not speak plaintext.
    assert.equal(await reachable(HOST, plainPort), false);
    const answer = await plaintextAuthAnswer(tlsAddr, signToken(secret, alice, 3600));
    assert.ok(answer.length === 0 || answer[0] === 0x15, `expected nothing or a TLS alert, got ${answer.subarray(0, 8).toString('hex')}`);
    // A plaintext SDK finds no gateway it can use and says why.
    const plain = client(uid('carol'), { tls: false, maxReconnectAttempts: 0 });
    await assert.rejects(plain.connect(), /has a plaintext listener/);
    // A certificate from a CA the client does not trust is refused before Auth is sent.
    const wrongCa = client(uid('dave'), { tls: { ca: fs.readFileSync(pki.otherCaPem) }, maxReconnectAttempts: 0 });
    await assert.rejects(wrongCa.connect(), /TLS: .*(self.signed|unable to (verify|get))/i);
    // A name the certificate does not carry is refused too; the right one is accepted.
    const wrongName = client(uid('erin'), { tls: { ca: fs.readFileSync(pki.caPem), servername: 'gw.invalid' }, maxReconnectAttempts: 0 });
    await assert.rejects(wrongName.connect(), /TLS: .*gw\.invalid/);
    await client(uid('erin'), { tls: { ca: fs.readFileSync(pki.caPem), servername: 'localhost' } }).connect();
  });

  it('reloads a renewed certificate without touching established connections; a bad file keeps the one in use', async () => {
    const files = certFiles('reload');
    const node = `gw-tls-reload-${ns}`;
    const gw = await spawnNode('gateway', node, { ...files, IM_GATEWAY_ADDR: `${HOST}:0` });
    const tlsAddr = String(gw.info.tlsAddr);
    // Both listeners: the route API lists both addresses.
    assert.deepEqual(await listed(node), { node, addr: String(gw.info.addr), tls: true, tlsAddr, region: '', zone: '', load: 0 });
    const first = serialOf(files.IM_GATEWAY_TLS_CERT);
    assert.equal(await presentedSerial(tlsAddr, pki.caPem), first);

    const [alice, bob] = [uid('ann'), uid('ben')];
    const a = client(alice);
    const b = client(bob);
    const disconnects: unknown[] = [];
    for (const c of [a, b]) c.on('disconnected', (e) => disconnects.push(e));
    const inbox = collect(b);
    await a.connect();
    await b.connect();
    const ports = [localPort(a), localPort(b)];

    // A renewal: key first, then the certificate, as a tool that writes two files does.
    const renewed = signServerCert(pki, 'server-renewed');
    fs.copyFileSync(renewed.key, files.IM_GATEWAY_TLS_KEY);
    fs.copyFileSync(renewed.cert, files.IM_GATEWAY_TLS_CERT);
    const second = serialOf(renewed.cert);
    assert.notEqual(second, first);
    await waitFor('new handshakes to present the renewed certificate', 20_000, async () => (await presentedSerial(tlsAddr, pki.caPem)) === second);
    await a.send(bob, 'after the renewal');
    await received(inbox, 'after the renewal');
    assert.deepEqual([localPort(a), localPort(b)], ports, 'the same TCP connections');

    // A half-written certificate, then a key that is not the certificate's: logged, the renewed one stays.
    const failures = () => (gw.log.match(/tls certificate not reloaded/g) ?? []).length;
    fs.writeFileSync(files.IM_GATEWAY_TLS_CERT, '-----BEGIN CERTIFICATE-----\nMIIB\n');
    await waitFor('the bad certificate file to be refused', 20_000, () => failures() === 1);
    assert.equal(await presentedSerial(tlsAddr, pki.caPem), second);
    fs.copyFileSync(renewed.cert, files.IM_GATEWAY_TLS_CERT);
    fs.copyFileSync(pki.clientKey, files.IM_GATEWAY_TLS_KEY);
    await waitFor('the mismatched key to be refused', 20_000, () => failures() === 2);
    assert.match(gw.log, /is not the PEM private key of/);
    assert.equal(await presentedSerial(tlsAddr, pki.caPem), second);
    const c = client(uid('cid'));
    await c.connect();
    await c.send(bob, 'new connection, kept certificate');
    await received(inbox, 'new connection, kept certificate');
    await b.send(alice, 'still up');
    assert.deepEqual(disconnects, []);
    assert.equal(gw.running, true);
  });

  it('drain (SIGTERM): TLS clients get Disconnect DRAINING over TLS and the gateway exits 0', async () => {
    const gw = await spawnNode('gateway', `gw-tls-drain-${ns}`, { ...certFiles('drain'), IM_GATEWAY_ADDR: `${HOST}:0`, IM_DRAIN_WINDOW: '500ms' });
    const c = client(uid('dan'), { autoReconnect: false });
    const gone = new Promise<{ code: number }>((resolve) => c.once('disconnected', resolve));
    await c.connect();
    gw.signal('SIGTERM');
    assert.equal((await gone).code, DisconnectCode.DRAINING);
    assert.equal((await gw.exited).code, 0);
  });

  it('hot upgrade: plaintext connections move to the new worker, TLS ones are told DRAINING and reconnect to it', async () => {
    const sup = await spawnNode('gateway-supervisor', `gw-tls-hot-${ns}`, {
      ...certFiles('hot'), IM_GATEWAY_ADDR: `${HOST}:0`, IM_SUPERVISOR_ADDR: `${HOST}:0`,
    });
    const control = `http://${String(sup.info.control)}`;
    const [pat, tia] = [uid('pat'), uid('tia')];
    const plain = client(pat, { tls: false });
    const secure = client(tia);
    const events = { plain: [] as Array<{ code: number }>, secure: [] as Array<{ code: number }> };
    plain.on('disconnected', (e) => events.plain.push(e));
    secure.on('disconnected', (e) => events.secure.push(e));
    const plainInbox = collect(plain);
    const secureInbox = collect(secure);
    await plain.connect();
    await secure.connect();
    const [plainPort, securePort] = [localPort(plain), localPort(secure)];
    const reconnected = new Promise((resolve) => secure.once('connected', resolve));

    const res = await fetch(`${control}/upgrade`, { method: 'POST' });
    const r = await res.json() as UpgradeResult;
    assert.equal(res.status, 200, JSON.stringify(r));
    assert.deepEqual([r.handedOver, r.reconnected, r.dropped], [1, 1, 0]);

    await reconnected;
    assert.deepEqual(events.plain, [], 'the plaintext client never noticed');
    assert.equal(localPort(plain), plainPort);
    assert.deepEqual(events.secure.map((e) => e.code), [DisconnectCode.DRAINING]);
    assert.notEqual(localPort(secure), securePort);
    await plain.send(tia, 'to the reconnected TLS client');
    await secure.send(pat, 'to the moved plaintext client');
    await received(secureInbox, 'to the reconnected TLS client');
    await received(plainInbox, 'to the moved plaintext client');
    // Both are served by the new worker, which knows which one is TLS.
    const { workers } = await (await fetch(`${control}/connections`)).json() as { workers: Array<{ pid: number; list: Array<{ uid: string; tls: boolean }> }> };
    assert.equal(workers.length, 1);
    assert.equal(workers[0].pid, r.to.pid);
    assert.deepEqual(workers[0].list.map((c) => [c.uid, c.tls]).sort(), [[pat, false], [tia, true]]);
  });

  it('wss:// through a supervisor: the SDK connects with the CA (without it: refused); a hot upgrade closes it with DRAINING and it reconnects over wss://', async () => {
    const node = `gw-wss-${ns}`;
    const sup = await spawnNode('gateway-supervisor', node, {
      ...certFiles('wss'), IM_GATEWAY_ADDR: `${HOST}:0`, IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_WS_ADDR: `${HOST}:0`, IM_SUPERVISOR_ADDR: `${HOST}:0`,
    });
    const control = `http://${String(sup.info.control)}`;
    const route = await (await fetch(`${routerHttp}/v1/route`)).json() as { gateways: Array<Listed & { wsUrl?: string }> };
    // IM_GATEWAY_PLAINTEXT=false: the WebSocket listener is wss:// only, and listed so.
    assert.match(route.gateways.find((g) => g.node === node)?.wsUrl ?? '', /^wss:\/\/127\.0\.0\.1:\d+\/$/);

    const [wes, tom] = [uid('wes'), uid('tom')];
    const browser = client(wes, { transport: 'websocket' });
    const tcp = client(tom);
    const events: Array<{ code: number }> = [];
    browser.on('disconnected', (e) => events.push(e));
    const inbox = collect(browser);
    await browser.connect();
    await tcp.connect();
    await tcp.send(wes, 'to wss');
    await received(inbox, 'to wss');
    // Without the CA (Node's bundled CAs), the certificate is refused before Auth.
    const untrusting = client(uid('una'), { transport: 'websocket', tls: false, maxReconnectAttempts: 0 });
    await assert.rejects(untrusting.connect(), /self.signed|unable to (verify|get)/i);

    const reconnected = new Promise((resolve) => browser.once('connected', resolve));
    const res = await fetch(`${control}/upgrade`, { method: 'POST' });
    const r = await res.json() as UpgradeResult;
    assert.equal(res.status, 200, JSON.stringify(r));
    assert.deepEqual([r.handedOver, r.reconnected, r.dropped], [0, 2, 0]);
    await reconnected;
    assert.deepEqual(events.map((e) => e.code), [DisconnectCode.DRAINING]);
    await tcp.send(wes, 'after the upgrade');
    await received(inbox, 'after the upgrade');
    const { workers } = await (await fetch(`${control}/connections`)).json() as { workers: Array<{ pid: number; list: Array<{ uid: string; tls: boolean; transport: string }> }> };
    assert.equal(workers.length, 1);
    assert.equal(workers[0].pid, r.to.pid);
    assert.deepEqual(workers[0].list.map((c) => [c.uid, c.transport, c.tls]).sort(), [[tom, 'tcp', true], [wes, 'ws', true]]);
  });

  it('embedded mode (npm start) takes the same settings, and `im --tls-ca` talks to it', async () => {
    const dataDir = path.join(tmp, 'embedded');
    const routerPort = await freePort();
    const files = certFiles('embedded');
    const proc = await ServiceProc.spawn('embedded', 'embedded', {
      IM_DATA_DIR: dataDir, IM_AUTH_SECRET: secret, IM_GATEWAY_ADDR: `${HOST}:0`, IM_GATEWAY_PLAINTEXT: 'false', IM_ROUTER_HTTP_ADDR: `${HOST}:${routerPort}`,
      IM_LOGIC_PORT: '0', IM_GATEWAY_TLS_ADDR: `${HOST}:0`, IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off', ...files,
    });
    testStops.push(() => proc.stop('SIGTERM'));
    assert.match(String(proc.info.line), /^im embedded: gateway tls:\/\/127\.0\.0\.1:\d+ {2}route API/);
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env: { IM_AUTH_SECRET: secret } };
    const router = ['--router', `http://${HOST}:${routerPort}`];
    const [ivy, jon] = [uid('ivy'), uid('jon')];
    assert.equal(await cliMain(['send', ivy, jon, 'hello over TLS', ...router, '--tls-ca', pki.caPem], io), 0, err.join(''));
    assert.equal(await cliMain(['sync', jon, ...router, '--tls', '--tls-ca', pki.caPem, '--tls-servername', 'localhost'], io), 0, err.join(''));
    assert.match(out.join(''), /hello over TLS/);
    // Without --tls the CLI finds no plaintext listener and says so (exit 1).
    assert.equal(await cliMain(['send', ivy, jon, 'plain', ...router], io), 1);
    assert.match(err.join(''), /has a plaintext listener/);
    assert.equal(await cliMain(['send', ivy, jon, 'x', ...router, '--tls-ca', path.join(tmp, 'none.pem')], io), 2);
  });
});
