/**
 * The client HTTP API as an operator runs it: served by the logic process (IM_HTTP_ADDR) in a
 * deployment of real processes (router, logic, gateway, a private nats-server, Cassandra), and by
 * `npm start`, which prints its URL. A send over HTTP must reach the recipient's SDK long
 * connection through the same path as any send: logic's fan-out, NATS, the recipient's gateway.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { ImClient } from '../client/sdk';
import { Code } from '../common/errors';
import { signToken } from '../common/jwt';
import { HttpApiClient } from '../logic/http.test-support';
import { collect, tempDir, text } from './harness';
import { freePort, needs } from './infra';
import { needsNatsServerBinary, ProcCluster, ServiceProc } from './procs';

const LOOPBACK = '127.0.0.1';

/** IM_HTTP_MAX_BODY_BYTES, IM_HTTP_RATE and IM_HTTP_BURST as each mode below sets them. */
const LIMIT_ENV = { IM_HTTP_MAX_BODY_BYTES: '2048', IM_HTTP_RATE: '1', IM_HTTP_BURST: '10' };

/** A client notices LIMIT_ENV: a 2049-byte body is 413, and a user gets its burst of 10, then 429. */
async function probeLimits(api: HttpApiClient, token: string): Promise<void> {
  const body = `{"content":"${'x'.repeat(2049 - 14)}"}`;
  assert.equal(body.length, 2049);
  await api.fails('POST', '/v1/messages', 413, Code.FRAME_TOO_LARGE, { token, rawBody: body });
  await api.fails('POST', '/v1/messages', 400, Code.BAD_REQUEST, { token, rawBody: body.slice(1) });
  // Those requests spent two tokens of the burst; the other eight are there, then the bucket runs dry.
  for (let i = 0; i < 8; i++) await api.ok('GET', '/v1/unread', { token });
  let answered = 0;
  for (; answered < 200; answered++) {
    const a = await api.call('GET', '/v1/unread', { token });
    if (a.status === 429) break;
  }
  assert.ok(answered < 200, 'IM_HTTP_RATE=1 never limited 200 requests');
}

describe('client HTTP API on the logic process (distributed, real processes)', function () {
  this.timeout(90_000);
  let cluster: ProcCluster | undefined;
  let sdk: ImClient | undefined;
  const secret = `http-secret-${randomBytes(8).toString('hex')}`;
  const ns = randomBytes(3).toString('hex');
  const uid = (name: string) => `${name}_${ns}`;

  before(async function () {
    await needs(this, 'cassandra');
    needsNatsServerBinary(this);
  });
  after(async () => {
    await sdk?.close();
    await cluster?.stop();
  });

  it('a send over HTTP reaches the recipient\'s SDK long connection through NATS and its gateway; the limit settings hold', async () => {
    const httpPort = await freePort();
    cluster = await ProcCluster.start({
      logics: 1, gateways: 1,
      logicEnv: { IM_HTTP_ADDR: `${LOOPBACK}:${httpPort}`, IM_AUTH_SECRET: secret, ...LIMIT_ENV },
      gatewayEnv: { IM_AUTH_SECRET: secret },
    });
    const base = `http://${LOOPBACK}:${httpPort}`;
    assert.equal(cluster.logics[0].info.httpApi, base, 'the logic process names the HTTP API in its listening line');

    sdk = new ImClient({ routerUrl: cluster.routerUrl, token: signToken(secret, uid('bob'), 3600), deviceId: 'phone' });
    const inbox = collect(sdk);
    await sdk.connect();

    const api = new HttpApiClient(base);
    const alice = signToken(secret, uid('alice'), 3600);
    await api.fails('POST', '/v1/messages', 401, Code.TOKEN_INVALID, {
      token: signToken('not-the-operator-secret', uid('alice'), 3600), body: { to: uid('bob'), clientMsgId: 'x', content: 'x' },
    });
    const sent = await api.ok('POST', '/v1/messages', { token: alice, body: { to: uid('bob'), clientMsgId: 'd-1', content: 'hello over http' } });
    const [got] = await inbox.waitFor(1, 20_000);
    assert.deepEqual([got.msgId, got.from, text(got)], [sent.msgId, uid('alice'), 'hello over http']);

    // What the long connection stores, the HTTP API reads back (one store, one set of rules).
    const reply = await sdk.send(uid('alice'), 'hi back', { clientMsgId: 'd-2' });
    const hist = await api.ok('GET', `/v1/history?with=${uid('bob')}`, { token: alice });
    assert.deepEqual((hist.messages as Array<{ msgId: string }>).map((m) => m.msgId), [reply.msgId, String(sent.msgId)]);
    await probeLimits(api, signToken(secret, uid('flood'), 3600));
  });
});

describe('client HTTP API in `npm start`', function () {
  this.timeout(30_000);
  const dataDir = tempDir('im-http-embedded-');
  let proc: ServiceProc | undefined;
  after(async () => {
    await proc?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves it at IM_HTTP_ADDR, prints its URL at startup, and holds IM_HTTP_MAX_BODY_BYTES, IM_HTTP_RATE, IM_HTTP_BURST', async () => {
    const [httpPort, gatewayPort, routerPort] = await Promise.all([freePort(), freePort(), freePort()]);
    const secret = `embedded-http-${randomBytes(8).toString('hex')}`;
    proc = await ServiceProc.spawn('embedded', 'embedded', {
      IM_DATA_DIR: dataDir, IM_AUTH_SECRET: secret, IM_LOGIC_PORT: '0',
      IM_GATEWAY_ADDR: `${LOOPBACK}:${gatewayPort}`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:${routerPort}`, IM_HTTP_ADDR: `${LOOPBACK}:${httpPort}`,
      IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off', ...LIMIT_ENV,
    });
    assert.match(String(proc.info.line), new RegExp(`HTTP API http://${LOOPBACK}:${httpPort} `));
    const api = new HttpApiClient(`http://${LOOPBACK}:${httpPort}`);
    await api.ok('GET', '/v1/openapi.json');
    await api.fails('GET', '/v1/sync', 401, Code.NOT_AUTHENTICATED);
    await probeLimits(api, signToken(secret, 'flood', 3600));
  });

  it('is off with IM_HTTP_ADDR=off, and says so', async () => {
    const [gatewayPort, routerPort] = await Promise.all([freePort(), freePort()]);
    const offDir = tempDir('im-http-off-');
    const off = await ServiceProc.spawn('embedded-off', 'embedded', {
      IM_DATA_DIR: offDir, IM_AUTH_SECRET: `embedded-http-${randomBytes(8).toString('hex')}`, IM_LOGIC_PORT: '0',
      IM_GATEWAY_ADDR: `${LOOPBACK}:${gatewayPort}`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:${routerPort}`, IM_HTTP_ADDR: 'off',
      IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off',
    });
    try {
      assert.match(String(off.info.line), /HTTP API off /);
    } finally {
      await off.stop();
      fs.rmSync(offDir, { recursive: true, force: true });
    }
  });
});
