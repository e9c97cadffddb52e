/**
 * Every client-facing IM_* setting the docs list (docs/protocol.md Limits, route-api.md) changes
 * behaviour in both modes, set the way an operator sets it: through the environment of
 * `npm start` (loadEmbeddedConfig) and of the service processes (test/procs.ts). One table: each
 * row is a setting, a value unlike its default, and a probe a client would notice.
 */
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import { Code, DisconnectCode } from '../common/errors';
import { signToken } from '../common/jwt';
import { loadEmbeddedConfig } from '../embedded/config';
import { startEmbedded } from '../embedded/system';
import { decode, Op } from '../proto/wire';
import { Mode, RawClient, SystemHandle, TestSystem, tempDir } from './harness';
import { needs } from './infra';
import { needsNatsServerBinary, ProcCluster } from './procs';
import { eventually } from './wait';

interface Row {
  setting: string;
  env: Record<string, string>;
  /** Rows of one group share a system; a row whose load would disturb the others has its own. */
  group?: string;
  probe(t: TestSystem): Promise<void>;
}

const disconnectOf = (f: { body: Uint8Array }) => decode('Disconnect', f.body);

/** Sends a SendReq and returns its reply frame. */
function send(r: RawClient, to: string, clientMsgId: string, bytes: number) {
  return r.request(Op.SEND, 'SendReq', { to, clientMsgId, content: Buffer.alloc(bytes, 'x') }, 10_000);
}

const ROWS: Row[] = [
  {
    // First: it counts every socket, so it runs before other probes leave closing ones behind.
    setting: 'IM_MAX_CONNECTIONS', env: { IM_MAX_CONNECTIONS: '4' },
    async probe(t) {
      for (let i = 0; i < 4; i++) await t.rawAuthed(`conn${i}`);
      const over = await t.raw();
      const d = await over.waitFor((f) => f.op === Op.DISCONNECT);
      assert.equal(disconnectOf(d).code, DisconnectCode.DRAINING);
      await t.closeClients();
      // The next probes need a free slot: wait until the gateway has seen these sockets close.
      await eventually(async () => !!(await t.rawAuthed('conn-after')), 'a free connection slot', 10_000);
    },
  },
  {
    setting: 'IM_MAX_CONTENT_BYTES', env: { IM_MAX_CONTENT_BYTES: '1000' },
    async probe(t) {
      const r = await t.rawAuthed('content');
      assert.equal((await send(r, t.uid('content2'), 'fits', 1000)).error, null);
      assert.equal((await send(r, t.uid('content2'), 'over', 2000)).error?.code, Code.CONTENT_TOO_LARGE);
    },
  },
  {
    setting: 'IM_MAX_GROUP_MEMBERS', env: { IM_MAX_GROUP_MEMBERS: '3' },
    async probe(t) {
      const r = await t.rawAuthed('owner');
      const ok = await r.request(Op.GROUP_CREATE, 'GroupCreateReq', { name: 'g', members: t.uids('m1', 'm2') });
      assert.equal(ok.error, null);
      const full = await r.request(Op.GROUP_CREATE, 'GroupCreateReq', { name: 'g', members: t.uids('m1', 'm2', 'm3') });
      assert.equal(full.error?.code, Code.GROUP_FULL);
    },
  },
  {
    setting: 'IM_MAX_FRAME_BYTES', env: { IM_MAX_FRAME_BYTES: '2048' },
    async probe(t) {
      const r = await t.raw();
      const ok = await r.request(Op.AUTH, 'Auth', { token: t.token('framer'), deviceId: 'd' });
      assert.equal(decode('AuthOk', ok.body).maxFrameBytes, 2048);
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(2049, 0);
      r.write(prefix);
      assert.equal((await r.waitFor((f) => f.op === Op.ERROR)).error?.code, Code.FRAME_TOO_LARGE);
    },
  },
  {
    // The route API and AuthOk announce the same interval (issue 11 item 5).
    setting: 'IM_HEARTBEAT_INTERVAL', env: { IM_HEARTBEAT_INTERVAL: '4s' },
    async probe(t) {
      const route = JSON.parse(await httpGet(`${t.sys.routerUrl}/v1/route`)) as { heartbeatIntervalMs: number };
      assert.equal(route.heartbeatIntervalMs, 4000);
      const r = await t.raw();
      const ok = await r.request(Op.AUTH, 'Auth', { token: t.token('beat'), deviceId: 'd' });
      assert.equal(decode('AuthOk', ok.body).heartbeatIntervalMs, 4000);
    },
  },
  {
    // 5 s is above 4 s (the heartbeat above) and well under the default 3 x 4 s.
    setting: 'IM_IDLE_TIMEOUT', env: { IM_IDLE_TIMEOUT: '5s' },
    async probe(t) {
      const r = await t.rawAuthed('idler');
      const d = await r.waitFor((f) => f.op === Op.DISCONNECT, 10_000);
      assert.equal(disconnectOf(d).code, DisconnectCode.IDLE_TIMEOUT);
    },
  },
  {
    setting: 'IM_AUTH_TIMEOUT', env: { IM_AUTH_TIMEOUT: '300ms' },
    async probe(t) {
      const r = await t.raw();
      const d = await r.waitFor((f) => f.op === Op.DISCONNECT, 3000); // the default would wait 5 s
      assert.equal(disconnectOf(d).code, DisconnectCode.AUTH_TIMEOUT);
    },
  },
  {
    // 20/s stays above what the other probes of the group send; a burst of 5 is far below 100.
    setting: 'IM_RATE_BURST, IM_RATE_LIMIT', env: { IM_RATE_BURST: '5', IM_RATE_LIMIT: '20' },
    async probe(t) {
      const r = await t.rawAuthed('burst');
      for (let i = 0; i < 10; i++) r.send(Op.PING, 'Ping', {}); // the default burst takes 100
      const limited = await r.waitFor((f) => f.error?.code === Code.RATE_LIMITED);
      assert.equal(limited.error?.retryable, true);
    },
  },
  {
    // The WebSocket listener (docs/operations.md): listed by the route API with its bound port, and serving.
    setting: 'IM_GATEWAY_WS_ADDR', env: { IM_GATEWAY_WS_ADDR: '127.0.0.1:0' },
    async probe(t) {
      const route = JSON.parse(await httpGet(`${t.sys.routerUrl}/v1/route`)) as { gateways: Array<{ wsUrl?: string }> };
      const url = route.gateways[0]?.wsUrl ?? assert.fail('no wsUrl in the route API');
      assert.match(url, /^ws:\/\/127\.0\.0\.1:[1-9][0-9]*\/$/);
      const r = await RawClient.connectWs(url);
      try {
        assert.equal((await r.request(Op.AUTH, 'Auth', { token: t.token('wsclient'), deviceId: 'd' })).error, null);
        assert.equal((await r.request(Op.PING, 'Ping', {})).error, null);
      } finally {
        r.destroy();
      }
    },
  },
  {
    setting: 'IM_DEDUP_WINDOW', env: { IM_DEDUP_WINDOW: '1s' },
    async probe(t) {
      const r = await t.rawAuthed('deduper');
      const first = decode('SendResp', (await send(r, t.uid('dd'), 'same', 10)).body);
      // A retry is a duplicate until the window has passed, then it is a new message.
      const again = await eventually(async () => {
        const resp = decode('SendResp', (await send(r, t.uid('dd'), 'same', 10)).body);
        return !resp.duplicate && resp;
      }, 'a retry after the 1 s window to be a new message', 10_000, 100); // 100 ms: within the rate limit
      assert.notEqual(again.msgId, first.msgId);
    },
  },
  {
    // Tokens (docs/protocol.md Tokens): keys by kid beside the default key, aud and iss checked.
    setting: 'IM_AUTH_AUDIENCE, IM_AUTH_ISSUER, IM_AUTH_KEYS', group: 'tokens',
    env: { IM_AUTH_AUDIENCE: 'im', IM_AUTH_ISSUER: 'https://login.example.com', IM_AUTH_KEYS: 'k1:settings-key-0123456789' },
    async probe(t) {
      const claims = { audience: 'im', issuer: 'https://login.example.com' };
      const authCode = async (token: string) => (await (await t.raw()).request(Op.AUTH, 'Auth', { token, deviceId: 'd' })).error?.code ?? 0;
      assert.equal(await authCode(signToken(t.sys.authSecret, t.uid('aud'), 3600, undefined, claims)), 0);
      assert.equal(await authCode(signToken('settings-key-0123456789', t.uid('aud'), 3600, undefined, { ...claims, kid: 'k1' })), 0);
      assert.equal(await authCode(t.token('aud')), Code.TOKEN_INVALID, 'no aud and iss');
      assert.equal(await authCode(signToken(t.sys.authSecret, t.uid('aud'), 3600, undefined, { ...claims, issuer: 'x' })), Code.TOKEN_INVALID);
      assert.equal(await authCode(signToken('settings-key-0123456789', t.uid('aud'), 3600, undefined, { ...claims, kid: 'k2' })), Code.TOKEN_INVALID);
    },
  },
  {
    // What the route API lists instead of the default ws://host:port/ (a TLS-terminating proxy's URL).
    setting: 'IM_GATEWAY_WS_PUBLIC_URL', group: 'tokens',
    env: { IM_GATEWAY_WS_PUBLIC_URL: 'wss://im.example.com/ws', IM_GATEWAY_WS_ADDR: '127.0.0.1:0' },
    async probe(t) {
      const route = JSON.parse(await httpGet(`${t.sys.routerUrl}/v1/route`)) as { gateways: Array<{ wsUrl?: string }> };
      assert.equal(route.gateways[0]?.wsUrl, 'wss://im.example.com/ws');
    },
  },
  {
    // Larger than the default 1 MiB: a reader paused while 6 MiB arrives is kept (kernel buffers
    // hold far less than 5 MiB on loopback), and gets every push once it reads again.
    setting: 'IM_WRITE_QUEUE_BYTES', group: 'write-queue',
    env: { IM_WRITE_QUEUE_BYTES: String(16 * 1024 * 1024), IM_RATE_LIMIT: '2000', IM_RATE_BURST: '2000' },
    async probe(t) {
      const reader = await t.rawAuthed('paused');
      const sender = await t.rawAuthed('pusher');
      // The sender's other device: the sending connection is not pushed its own messages.
      const observer = await t.rawAuthed('pusher', 'observer');
      const isPush = (f: { op: number }) => f.op === Op.PUSH;
      // Both sessions are bound (distributed mode binds asynchronously) once a message reaches both.
      for (let i = 0; !reader.frames.some(isPush) || !observer.frames.some(isPush); i++) {
        if (i >= 100) throw new Error('no push reached the reader and the observer after 100 sends');
        sender.send(Op.SEND, 'SendReq', { to: t.uid('paused'), clientMsgId: `warm${i}`, content: Buffer.from('warm') });
        await Promise.all([reader.waitFor(isPush, 500), observer.waitFor(isPush, 500)]).catch(() => undefined);
      }
      const [readerBase, observerBase] = [reader.frames.filter(isPush).length, observer.frames.filter(isPush).length];
      reader.socket.pause();
      const total = 384; // x 16 KiB = 6 MiB
      const ids = new Set<number>();
      for (let i = 0; i < total; i++) {
        // At most 32 unanswered: the gateway allows 64 in flight per connection.
        if (i >= 32) await sender.waitForCount((f) => f.op === Op.SEND && ids.has(f.requestId), i - 31, 30_000);
        ids.add(sender.send(Op.SEND, 'SendReq', { to: t.uid('paused'), clientMsgId: `w${i}`, content: Buffer.alloc(16 * 1024, 'w') }));
      }
      // The sender's other device gets its copy of each message in the same batch as the reader's:
      // once it has all of them, the gateway has written (or queued) every push to the reader.
      await observer.waitForCount(isPush, observerBase + total, 60_000);
      reader.socket.resume();
      await reader.waitForCount(isPush, readerBase + total, 30_000);
      assert.equal(reader.frames.find((f) => f.op === Op.DISCONNECT), undefined);
    },
  },
];

/** The union of the env of every row in `group`. */
function groupEnv(group: string | undefined): Record<string, string> {
  return Object.assign({}, ...ROWS.filter((r) => r.group === group).map((r) => r.env));
}

interface SettingsMode {
  name: string;
  setUp(ctx: Mocha.Context): Promise<void>;
  start(env: Record<string, string>): Promise<SystemHandle>;
}

const MODES: SettingsMode[] = [
  {
    name: 'embedded (npm start)',
    async setUp() { /* nothing outside the process */ },
    async start(env) {
      const dataDir = tempDir();
      const config = loadEmbeddedConfig({
        IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off', ...env, IM_DATA_DIR: dataDir, IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0', IM_HTTP_ADDR: '127.0.0.1:0',
      }, []);
      const sys = await startEmbedded(config);
      return { ...sys, persist: dataDir, stop: () => sys.stop() };
    },
  },
  {
    name: 'distributed (service processes)',
    async setUp(ctx) {
      await needs(ctx, 'cassandra');
      needsNatsServerBinary(ctx);
    },
    async start(env) {
      // Every process gets every setting, as an operator's shared environment would.
      const c = await ProcCluster.start({ logics: 1, gateways: 1, gatewayEnv: env, logicEnv: env, routerEnv: env });
      return { gatewayAddr: c.gatewayAddr(0), routerUrl: c.routerUrl, authSecret: c.authSecret, persist: c.keyspace, stop: () => c.stop() };
    },
  },
];

for (const mode of MODES) {
  describe(`documented settings work (${mode.name})`, function () {
    this.timeout(120_000);
    for (const group of [...new Set(ROWS.map((r) => r.group))]) {
      describe(group ?? 'limits', () => {
        let t: TestSystem | undefined;
        before(async function () {
          await mode.setUp(this);
          const handle = await mode.start(groupEnv(group));
          t = new TestSystem(handle, { name: mode.name, needs: [], start: () => Promise.reject(new Error('not restartable')) });
        });
        after(async () => { await t?.stop(); });
        afterEach(async () => { await t?.closeClients(); });
        for (const row of ROWS.filter((r) => r.group === group)) {
          it(`${row.setting}=${Object.values(row.env)[0]}`, () => row.probe(t!));
        }
      });
    }
  });
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}
