/**
 * NATS with credentials (docs/security.md, NATS): a real nats-server started by
 * scripts/nats-start.sh on its own port and directory, with the config and credentials
 * scripts/nats-config.js writes — the same ones `make up` and CI run. Checks what nats-server
 * enforces for each role, and a real logic + gateway pair delivering a message with theirs.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gatewaySubject, kickSubject } from '../bus/bus';
import { NatsBus } from '../bus/nats';
import { ConfigError } from '../common/config';
import { signToken } from '../common/jwt';
import { loadNatsAuth } from '../bus/nats-auth';
import { Settings } from '../common/config';
import { eventually, TestClient } from '../gateway/gateway.test-support';
import { GROUP_SUBJECT } from '../logic/group-sync';
import { decode, encode, Op, textContent } from '../proto/wire';
import { freePort } from './infra';
import { expectConfigExit, killAll, launchMain, launchRouterAndLogic, type Launched } from './launch';
import { needsNatsServerBinary } from './procs';
import { makeTestPki, type TestPki } from './tls-certs';

const ROOT = path.resolve(__dirname, '..', '..');
const SECRET = 'nats-auth-test-secret-0123456789';

interface OwnNats { dir: string; port: number; url: string; devUrl: string; seed: (name: string) => string }

/** scripts/nats-start.sh on a free port into a fresh directory; gateways gw-a and gw-b. */
async function startOwnNats(env: Record<string, string> = {}): Promise<OwnNats> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-nats-auth-'));
  const port = await freePort();
  execFileSync(path.join(ROOT, 'scripts', 'nats-start.sh'), ['--port', String(port), '--dir', dir], {
    env: { ...process.env, NATS_GATEWAYS: 'gw-a,gw-b', ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  return {
    dir, port, url: `nats://127.0.0.1:${port}`,
    devUrl: fs.readFileSync(path.join(dir, 'dev.url'), 'utf8').trim(),
    seed: (name) => path.join(dir, `${name}.nk`),
  };
}

function stopOwnNats(n: OwnNats | undefined): void {
  if (!n) return;
  execFileSync(path.join(ROOT, 'scripts', 'nats-stop.sh'), ['--dir', n.dir], { stdio: 'ignore' });
  fs.rmSync(n.dir, { recursive: true, force: true });
}

/** A bus with the role's credential, as the role's process reads it (IM_NATS_NKEY_SEED_FILE). */
function roleBus(n: OwnNats, role: string, extraEnv: Record<string, string> = {}): Promise<NatsBus> {
  const auth = loadNatsAuth(new Settings({ IM_NATS_NKEY_SEED_FILE: n.seed(role), ...extraEnv }));
  return NatsBus.connect({ servers: n.url, name: `test-${role}`, auth, drainTimeoutMs: 500 });
}

/** A reload (SIGHUP) is asynchronous: retries a connect its credential refuses until it is accepted. */
async function connectWhenAccepted(connect: () => Promise<NatsBus>, timeoutMs = 10_000): Promise<NatsBus> {
  return eventually(connect, 'the reloaded credentials to be accepted', timeoutMs);
}

describe('NATS credentials and permissions (own nats-server from scripts/nats-start.sh)', function () {
  this.timeout(60_000);
  let nats: OwnNats | undefined;
  const buses: NatsBus[] = [];
  const track = async (b: Promise<NatsBus>) => { const bus = await b; buses.push(bus); return bus; };

  before(async function () {
    needsNatsServerBinary(this);
    nats = await startOwnNats();
  });
  afterEach(async () => { await Promise.all(buses.splice(0).map((b) => b.close())); });
  after(() => stopOwnNats(nats));

  it('the config lists public keys only; the seeds and dev.url are readable by their owner alone', () => {
    const conf = fs.readFileSync(path.join(nats!.dir, 'nats.conf'), 'utf8');
    for (const role of ['logic', 'gateway-gw-a', 'gateway-gw-b']) {
      const seed = fs.readFileSync(nats!.seed(role), 'utf8').trim();
      assert.match(seed, /^SU[A-Z2-7]{56}$/);
      assert.ok(!conf.includes(seed), `${role}'s seed is not in the server config`);
      assert.equal(fs.statSync(nats!.seed(role)).mode & 0o077, 0, `${role}.nk is private`);
    }
    assert.equal(fs.statSync(path.join(nats!.dir, 'dev.url')).mode & 0o077, 0);
    assert.equal(fs.statSync(nats!.dir).mode & 0o077, 0);
  });

  it('refuses a connection without credentials or with a wrong password, naming the setting', async () => {
    await assert.rejects(NatsBus.connect({ servers: nats!.url }), (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_USER');
    const wrong = nats!.devUrl.replace(/dev:[0-9a-f]+@/, 'dev:not-the-password@');
    await assert.rejects(NatsBus.connect({ servers: wrong }), (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_USER');
    // The same user and password as settings rather than in the URL.
    const password = /dev:([0-9a-f]+)@/.exec(nats!.devUrl)![1];
    const ok = await track(NatsBus.connect({ servers: nats!.url, auth: loadNatsAuth(new Settings({ IM_NATS_USER: 'dev', IM_NATS_PASSWORD: password })) }));
    assert.equal(ok.connected, true);
  });

  it('a gateway credential cannot publish on another gateway\'s subject, nor on the store\'s; it may send kicks', async () => {
    const observer = await track(NatsBus.connect({ servers: nats!.devUrl, name: 'observer' }));
    const seen: string[] = [];
    observer.subscribe('im.>', (data) => seen.push(Buffer.from(data).toString()));
    await observer.flush();
    const gwA = await track(roleBus(nats!, 'gateway-gw-a'));
    gwA.publish(gatewaySubject('gw-b'), Buffer.from('forged push'));
    gwA.publish(gatewaySubject('gw-a'), Buffer.from('push to itself'));
    gwA.publish('im.store.im.p1', Buffer.from('forged peer call'));
    gwA.publish(kickSubject('gw-b'), Buffer.from('kick'));
    // One publisher's messages reach a subscriber in order: once the kick is here, the rest would be.
    await eventually(() => seen.includes('kick'), 'the kick');
    assert.deepEqual(seen, ['kick']);
    await eventually(() => gwA.stats().publishErrors === 3, 'three publishes denied');
  });

  it('a gateway credential cannot subscribe to another gateway\'s subject: flush names the setting', async () => {
    const logic = await track(roleBus(nats!, 'logic'));
    const gwA = await track(roleBus(nats!, 'gateway-gw-a'));
    const got: string[] = [];
    gwA.subscribe(gatewaySubject('gw-a'), (data) => got.push(`own ${Buffer.from(data).toString()}`));
    gwA.subscribe(kickSubject('gw-a'), (data) => got.push(`kick ${Buffer.from(data).toString()}`));
    await gwA.flush();
    gwA.subscribe(gatewaySubject('gw-b'), (data) => got.push(`other ${Buffer.from(data).toString()}`));
    await assert.rejects(gwA.flush(), (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_NKEY_SEED_FILE'
      && e.message.includes(gatewaySubject('gw-b')));
    logic.publish(gatewaySubject('gw-b'), Buffer.from('for b'));
    logic.publish(gatewaySubject('gw-a'), Buffer.from('for a'));
    await eventually(() => got.length > 0, 'gw-a\'s own push');
    assert.deepEqual(got, ['own for a'], 'nothing from gw-b\'s subject');
    const gwB = await track(roleBus(nats!, 'gateway-gw-b'));
    gwB.subscribe(kickSubject('gw-b'), () => undefined);
    await gwB.flush();
    gwB.publish(kickSubject('gw-a'), Buffer.from('from b'));
    await eventually(() => got.includes('kick from b'), 'a kick from another gateway');
  });

  it('logic publishes on gateway subjects and talks to its store peers and group-sync peers; it cannot subscribe to a gateway subject', async () => {
    const logic1 = await track(roleBus(nats!, 'logic'));
    const logic2 = await track(roleBus(nats!, 'logic'));
    const gwB = await track(roleBus(nats!, 'gateway-gw-b'));
    const got: string[] = [];
    gwB.subscribe(gatewaySubject('gw-b'), (data) => got.push(Buffer.from(data).toString()));
    logic2.subscribe('im.store.ks.p2', (data) => got.push(Buffer.from(data).toString()));
    logic1.subscribe('im.store.ks.p1.r', (data) => got.push(Buffer.from(data).toString()));
    logic2.subscribe(GROUP_SUBJECT, (data) => got.push(Buffer.from(data).toString()));
    logic1.subscribe(`${GROUP_SUBJECT}.ack.p1`, (data) => got.push(Buffer.from(data).toString()));
    await Promise.all([gwB.flush(), logic1.flush(), logic2.flush()]);
    logic1.publish(gatewaySubject('gw-b'), Buffer.from('push'));
    logic1.publish('im.store.ks.p2', Buffer.from('call'));
    logic2.publish('im.store.ks.p1.r', Buffer.from('reply'));
    logic1.publish(GROUP_SUBJECT, Buffer.from('group change'));
    logic2.publish(`${GROUP_SUBJECT}.ack.p1`, Buffer.from('group ack'));
    await eventually(() => got.length === 5, 'push, call, reply, group change and ack');
    assert.deepEqual([...got].sort(), ['call', 'group ack', 'group change', 'push', 'reply']);
    logic1.subscribe(gatewaySubject('gw-b'), () => undefined);
    await assert.rejects(logic1.flush(), (e: unknown) => e instanceof ConfigError);
  });

  it('rotates a role\'s key without a restart: both keys during the roll, then the old one refused', async () => {
    const script = path.join(ROOT, 'scripts', 'nats-config.js');
    const newSeed = path.join(nats!.dir, 'logic-next.nk');
    const pub = (file: string) => execFileSync(process.execPath, [script, 'nkey', file]).toString().trim();
    const next = pub(newSeed);
    const conf = path.join(nats!.dir, 'nats.conf');
    const original = fs.readFileSync(conf, 'utf8');
    const oldKey = /# logic[^\n]*\n\s*\{ nkey: "(U[A-Z2-7]{55})"/.exec(original)![1];
    const gwAKey = /# gateway gw-a[^\n]*\n\s*\{ nkey: "(U[A-Z2-7]{55})"/.exec(original)![1];
    const pid = Number(fs.readFileSync(path.join(nats!.dir, 'nats.pid'), 'utf8'));
    const devUser = /\{ user: "dev"[^\n]*\}/.exec(original)![0];
    /** The operator's step: the authorization block for these logic keys, and a reload (SIGHUP). */
    const reload = (logicKeys: string[]) => {
      const block = execFileSync(process.execPath, [script, 'authorization', '--logic', logicKeys.join(','), '--gateway', `gw-a=${gwAKey}`]).toString();
      fs.writeFileSync(conf, original.replace(/authorization \{[\s\S]*$/, block.replace('users = [', `users = [\n    ${devUser}`)));
      process.kill(pid, 'SIGHUP');
    };
    try {
      const old = await track(roleBus(nats!, 'logic'));
      const gwA = await track(roleBus(nats!, 'gateway-gw-a'));
      const got: string[] = [];
      gwA.subscribe(gatewaySubject('gw-a'), (d) => got.push(Buffer.from(d).toString()));
      await gwA.flush();
      reload([oldKey, next]);
      // The reload is asynchronous: the new key works once the server has read the new config.
      const fresh = await track(connectWhenAccepted(() =>
        NatsBus.connect({ servers: nats!.url, auth: loadNatsAuth(new Settings({ IM_NATS_NKEY_SEED_FILE: newSeed })) })));
      old.publish(gatewaySubject('gw-a'), Buffer.from('old key'));
      fresh.publish(gatewaySubject('gw-a'), Buffer.from('new key'));
      await eventually(() => got.length === 2, 'both keys deliver during the roll');
      reload([next]);
      await eventually(() => !old.connected, 'the old key\'s connection closed by the reload', 10_000);
      await assert.rejects(roleBus(nats!, 'logic'), (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_NKEY_SEED_FILE');
      fresh.publish(gatewaySubject('gw-a'), Buffer.from('after'));
      await eventually(() => got.includes('after'), 'the new key still delivers');
    } finally {
      fs.writeFileSync(conf, original);
      process.kill(pid, 'SIGHUP');
      // The next tests use the original key: wait until the server takes it again.
      await (await connectWhenAccepted(() => roleBus(nats!, 'logic'))).close();
    }
  });

  describe('a real logic and gateway process with their credentials', () => {
    let dataDir: string;
    const procs: Launched[] = [];
    beforeEach(() => { dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-nats-auth-data-')); });
    afterEach(async () => {
      await killAll(procs);
      fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('deliver a message end to end over the authenticated server', async () => {
      const { r, l } = await launchRouterAndLogic(procs, dataDir,
        { IM_NATS_URL: nats!.url, IM_NATS_NKEY_SEED_FILE: nats!.seed('logic') });
      const gw = launchMain('gateway', {
        IM_AUTH_SECRET: SECRET, IM_NODE_ID: 'gw-a', IM_GATEWAY_ADDR: '127.0.0.1:0', IM_NATS_URL: nats!.url,
        IM_NATS_NKEY_SEED_FILE: nats!.seed('gateway-gw-a'), IM_LOGIC_ADDRS: String(l.addr), IM_ROUTER_GRPC_ADDR: String(r.grpc),
        IM_LOG_LEVEL: 'warn',
      });
      procs.push(gw);
      const g = await gw.firstLine;
      const port = Number(String(g.addr).split(':')[1]);
      const bob = await TestClient.connect(port);
      await bob.authOk(signToken(SECRET, 'bob', 3600), 'phone');
      const alice = await TestClient.connect(port);
      await alice.authOk(signToken(SECRET, 'alice', 3600), 'phone');
      // Logic learns where bob is from the router, which the gateway tells on its heartbeat.
      let reply = await alice.request(Op.SEND, encode('SendReq', { to: 'bob', clientMsgId: 'm1', ...textContent('over authenticated NATS') }));
      assert.equal(reply.error, null, JSON.stringify(reply.error));
      const push = await bob.take((f) => f.op === Op.PUSH, 'the push to bob', 15_000);
      assert.equal(Buffer.from(decode('Message', push.body).content).toString(), 'over authenticated NATS');
      reply = await alice.request(Op.PING, encode('Ping', { clientTimeMs: Date.now() }));
      assert.equal(reply.error, null);
      for (const c of [alice, bob]) c.close();
    });

    it('a gateway given another node\'s credential exits 2 naming IM_NATS_NKEY_SEED_FILE', async () => {
      await expectConfigExit('gateway', {
        IM_AUTH_SECRET: SECRET, IM_NODE_ID: 'gw-b', IM_GATEWAY_ADDR: '127.0.0.1:0', IM_NATS_URL: nats!.url,
        IM_NATS_NKEY_SEED_FILE: nats!.seed('gateway-gw-a'), IM_LOGIC_ADDRS: '127.0.0.1:1', IM_ROUTER_GRPC_ADDR: '127.0.0.1:1',
      }, 'IM_NATS_NKEY_SEED_FILE');
    });

    it('a logic process without credentials exits 2 naming IM_NATS_USER', async () => {
      await expectConfigExit('logic', {
        IM_STORE: 'sqlite', IM_DATA_DIR: dataDir, IM_NATS_URL: nats!.url, IM_LOGIC_ADDR: '127.0.0.1:0',
      }, 'IM_NATS_USER');
    });
  });
});

describe('NATS gateway class credential (--gateway-class: gateways whose node ids are not known in advance)', function () {
  this.timeout(60_000);
  let nats: OwnNats | undefined;
  before(async function () {
    needsNatsServerBinary(this);
    nats = await startOwnNats();
    // The same directory again, with the class credential added (nats-start.sh wrote the others).
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'nats-config.js'), '--dir', nats.dir, '--port', String(nats.port),
      '--gateways', 'gw-a,gw-b', '--gateway-class']);
    process.kill(Number(fs.readFileSync(path.join(nats.dir, 'nats.pid'), 'utf8')), 'SIGHUP');
  });
  after(() => stopOwnNats(nats));

  it('receives on any node\'s subject, but cannot publish pushes or store calls', async () => {
    const gw = await connectWhenAccepted(() => roleBus(nats!, 'gateway'));
    const logic = await roleBus(nats!, 'logic');
    const observer = await NatsBus.connect({ servers: nats!.devUrl });
    try {
      const got: string[] = [];
      gw.subscribe(gatewaySubject('im-gateway-7'), (d) => got.push(Buffer.from(d).toString()));
      gw.subscribe(kickSubject('im-gateway-7'), (d) => got.push(Buffer.from(d).toString()));
      await gw.flush();
      const seen: string[] = [];
      observer.subscribe('im.>', (d) => seen.push(Buffer.from(d).toString()));
      await observer.flush();
      logic.publish(gatewaySubject('im-gateway-7'), Buffer.from('push'));
      await eventually(() => got.includes('push'), 'the push');
      gw.publish(gatewaySubject('im-gateway-8'), Buffer.from('forged'));
      gw.publish('im.store.im.p1', Buffer.from('forged call'));
      gw.publish(kickSubject('im-gateway-7'), Buffer.from('kick'));
      await eventually(() => seen.includes('kick'), 'the kick');
      assert.deepEqual(seen, ['push', 'kick']);
    } finally {
      await Promise.all([gw.close(), logic.close(), observer.close()]);
    }
  });
});

describe('NATS per-pod gateway credentials (the Helm chart\'s nats.credentials.gateway.perPodSecret)', function () {
  this.timeout(60_000);
  let nats: OwnNats | undefined;
  let seeds: string;
  const script = (...args: string[]) => execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'nats-config.js'), ...args], { encoding: 'utf8' });
  before(async function () {
    needsNatsServerBinary(this);
    nats = await startOwnNats();
    // What an operator runs for a release "prod" with two gateway pods: the Secret's files, then the
    // external server's authorization block from public keys only, as k8s/README.md says.
    seeds = path.join(nats.dir, 'per-pod');
    const gatewayArgs = script('gateway-seeds', seeds, 'prod-im-gateway', '2').trim().split(/\s+/);
    const logicKey = script('nkey', path.join(seeds, '..', 'per-pod-logic.nk')).trim();
    fs.writeFileSync(path.join(nats.dir, 'nats.conf'), `listen: "127.0.0.1:${nats.port}"\n${script('authorization', '--logic', logicKey, ...gatewayArgs)}`);
    process.kill(Number(fs.readFileSync(path.join(nats.dir, 'nats.pid'), 'utf8')), 'SIGHUP');
  });
  after(() => stopOwnNats(nats));

  it('gateway-seeds writes gateway-<pod>.nk per pod; each pod\'s seed subscribes to its own subjects only', async () => {
    assert.deepEqual(fs.readdirSync(seeds).sort(), ['gateway-prod-im-gateway-0.nk', 'gateway-prod-im-gateway-1.nk']);
    const pod = (i: number) => connectWhenAccepted(() => NatsBus.connect({
      servers: nats!.url, drainTimeoutMs: 500,
      auth: loadNatsAuth(new Settings({ IM_NATS_NKEY_SEED_FILE: path.join(seeds, `gateway-prod-im-gateway-${i}.nk`) })),
    }));
    const [p0, p1] = [await pod(0), await pod(1)];
    try {
      const got: string[] = [];
      p0.subscribe(gatewaySubject('prod-im-gateway-0'), (d) => got.push(Buffer.from(d).toString()));
      p0.subscribe(kickSubject('prod-im-gateway-0'), (d) => got.push(Buffer.from(d).toString()));
      await p0.flush();
      p0.subscribe(gatewaySubject('prod-im-gateway-1'), () => got.push('stolen'));
      await assert.rejects(p0.flush(), (e: unknown) => e instanceof ConfigError && e.message.includes(gatewaySubject('prod-im-gateway-1')));
      p1.publish(kickSubject('prod-im-gateway-0'), Buffer.from('kick from pod 1'));
      await eventually(() => got.includes('kick from pod 1'), 'pod 1\'s kick');
      // Kept, not made anew: a second run prints the same keys (the Secret and the server stay in step).
      assert.equal(script('gateway-seeds', seeds, 'prod-im-gateway', '1').trim(), script('gateway-seeds', seeds, 'prod-im-gateway', '2').trim().split('\n')[0]);
    } finally {
      await Promise.all([p0.close(), p1.close()]);
    }
  });
});

describe('NATS over TLS (IM_NATS_TLS_CA; own nats-server from scripts/nats-start.sh)', function () {
  this.timeout(60_000);
  let nats: OwnNats | undefined;
  let pki: TestPki;
  let pkiDir: string;

  before(async function () {
    needsNatsServerBinary(this);
    pkiDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-nats-pki-'));
    pki = makeTestPki(pkiDir);
    nats = await startOwnNats({ NATS_TLS_CERT: path.join(pkiDir, 'server.pem'), NATS_TLS_KEY: path.join(pkiDir, 'server.key') });
  });
  after(() => {
    stopOwnNats(nats);
    fs.rmSync(pkiDir, { recursive: true, force: true });
  });

  it('connects when the server\'s certificate chains to IM_NATS_TLS_CA, and delivers', async () => {
    const logic = await roleBus(nats!, 'logic', { IM_NATS_TLS_CA: pki.caPem });
    const gw = await roleBus(nats!, 'gateway-gw-a', { IM_NATS_TLS_CA: pki.caPem });
    try {
      const got: string[] = [];
      gw.subscribe(gatewaySubject('gw-a'), (d) => got.push(Buffer.from(d).toString()));
      await gw.flush();
      logic.publish(gatewaySubject('gw-a'), Buffer.from('over tls'));
      await eventually(() => got.length === 1, 'the push');
      assert.deepEqual(got, ['over tls']);
    } finally {
      await Promise.all([logic.close(), gw.close()]);
    }
  });

  it('refuses a server certificate from another CA, or with no CA set, naming IM_NATS_TLS_CA', async () => {
    await assert.rejects(roleBus(nats!, 'logic', { IM_NATS_TLS_CA: pki.otherCaPem }),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_TLS_CA');
    await assert.rejects(roleBus(nats!, 'logic'), (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_TLS_CA');
  });

  it('a CA setting that is no PEM certificate stops the process at start, naming IM_NATS_TLS_CA', async () => {
    await expectConfigExit('logic', {
      IM_STORE: 'sqlite', IM_DATA_DIR: pkiDir, IM_NATS_URL: nats!.url, IM_NATS_NKEY_SEED_FILE: nats!.seed('logic'),
      IM_NATS_TLS_CA: nats!.seed('logic'), IM_LOGIC_ADDR: '127.0.0.1:0',
    }, 'IM_NATS_TLS_CA');
  });
});
