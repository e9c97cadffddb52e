/**
 * The client HTTP API against a real running server: an embedded system (SQLite, real gateway,
 * real SDK clients on TCP) with the API on an ephemeral port. Every answer is checked against the
 * OpenAPI document (http.test-support.ts), and the last test requires every documented operation
 * to have answered 200 at least once.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { ConfigError, Settings } from '../common/config';
import { Code } from '../common/errors';
import { signToken } from '../common/jwt';
import { startEmbedded } from '../embedded/system';
import { embeddedMode, TestSystem, tempDir, text } from '../test/harness';
import { loadHttpApiSettings, loadLogicProcessConfig } from './config';
import { HttpApi } from './http-api';
import { OPENAPI_DOCUMENT } from './http-openapi';
import { documentedOperations, HttpApiClient } from './http.test-support';
import { makeLogicEnv } from './logic.test-support';
import { eventually } from '../gateway/gateway.test-support';

const MAX_BODY = 4096;
const MAX_CONTENT = 1024;

/** The OpenAPI validator is ESM only: loaded with a real dynamic import from this CommonJS build. */
const importEsm = new Function('m', 'return import(m)') as (m: string) => Promise<{
  Validator: new () => { validate(spec: unknown): Promise<{ valid: boolean; errors?: unknown }>; version: string };
}>;

/** A raw request (for what fetch will not send: a lying or absent Content-Length, a chunked flood). */
function rawRequest(url: string, o: { method: string; headers: Record<string, string>; chunks: Buffer[] }): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: o.method, headers: o.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, connection: res.headers.connection }));
    });
    // The server may answer and close before every chunk is written: that is the point.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    for (const c of o.chunks) req.write(c);
    req.end();
  });
}

describe('client HTTP API (embedded, real server)', function () {
  this.timeout(30_000);
  const dataDir = tempDir('im-http-');
  let t: TestSystem;
  let api: HttpApiClient;
  let baseUrl: string;
  const tok = (name: string) => t.token(name);

  before(async () => {
    const sys = await startEmbedded({
      dataDir, logic: { maxContentBytes: MAX_CONTENT },
      http: { host: '127.0.0.1', port: 0, maxBodyBytes: MAX_BODY },
    });
    t = new TestSystem({ ...sys, persist: dataDir, stop: () => sys.stop() }, embeddedMode);
    baseUrl = sys.httpUrl!;
    api = new HttpApiClient(baseUrl);
  });
  after(async () => {
    await t?.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves its OpenAPI 3.1 document, which an OpenAPI validator accepts', async () => {
    const served = await api.ok('GET', '/v1/openapi.json');
    assert.deepEqual(served, JSON.parse(JSON.stringify(OPENAPI_DOCUMENT)));
    const { Validator } = await importEsm('@seriousme/openapi-schema-validator');
    const v = new Validator();
    const res = await v.validate(served);
    assert.equal(res.valid, true, JSON.stringify(res.errors));
    assert.equal(v.version, '3.1');
    // And the validator is not a rubber stamp: a broken document is refused.
    const broken = JSON.parse(JSON.stringify(served)) as { paths: Record<string, unknown> };
    broken.paths['/v1/sync'] = { get: { responses: 'none' } };
    assert.equal((await new Validator().validate(broken)).valid, false);
  });

  it('a send over HTTP is pushed to the recipient\'s SDK connection and to every device of the sender', async () => {
    const [bob, aliceApp] = [await t.client('bob'), await t.client('alice', 'phone')];
    const sent = await api.ok('POST', '/v1/messages', {
      token: tok('alice'), body: { to: t.uid('bob'), clientMsgId: 'h-1', content: 'hi bob over http' },
    });
    const [got] = await t.inbox(bob).waitFor(1);
    assert.equal(text(got), 'hi bob over http');
    assert.deepEqual([got.from, got.msgId, got.convId, got.contentType], [t.uid('alice'), sent.msgId, sent.convId, 'text/plain']);
    // No connection sent it, so none is skipped: the sender's app hears of it at its own seq.
    const [own] = await t.inbox(aliceApp).waitFor(1);
    assert.deepEqual([own.msgId, own.seq], [sent.msgId, sent.seq]);
  });

  it('a retry with the same clientMsgId answers the first message; other content is 409 IDEMPOTENCY_CONFLICT', async () => {
    const body = { to: t.uid('bob'), clientMsgId: 'h-dup', content: 'once' };
    const first = await api.ok('POST', '/v1/messages', { token: tok('alice'), body });
    const again = await api.ok('POST', '/v1/messages', { token: tok('alice'), body });
    assert.equal(first.duplicate, false);
    assert.deepEqual(again, { ...first, duplicate: true });
    await api.fails('POST', '/v1/messages', 409, Code.IDEMPOTENCY_CONFLICT, { token: tok('alice'), body: { ...body, content: 'changed' } });
    // The same id over the long connection is the same message: one idempotency space per sender.
    const sdk = await t.client('alice', 'tablet');
    const viaTcp = await sdk.send(t.uid('bob'), 'once', { clientMsgId: 'h-dup' });
    assert.deepEqual([viaTcp.msgId, viaTcp.duplicate], [first.msgId, true]);
  });

  it('sync, history, read cursor and unread', async () => {
    const [a, b] = [tok('ann'), tok('ben')];
    const sent = [];
    for (const [i, body] of [{ content: 'one' }, { contentBase64: Buffer.from([0xff, 0x00, 0x01]).toString('base64'), contentType: 'application/octet-stream' }].entries()) {
      sent.push(await api.ok('POST', '/v1/messages', { token: a, body: { to: t.uid('ben'), clientMsgId: `s-${i}`, ...body } }));
    }
    const sync = await api.ok('GET', '/v1/sync?fromSeq=0&limit=10', { token: b }) as { messages: Array<Record<string, unknown>>; maxSeq: number; hasMore: boolean };
    assert.deepEqual(sync.messages.map((m) => m.msgId), sent.map((s) => s.msgId));
    assert.equal(sync.messages[0].content, 'one');
    assert.equal(sync.messages[1].content, undefined, 'bytes that are not UTF-8 have no text form');
    assert.equal(sync.messages[1].contentBase64, '/wAB');
    assert.equal(sync.maxSeq, sync.messages[1].seq);
    const page = await api.ok('GET', `/v1/sync?fromSeq=0&limit=1`, { token: b });
    assert.equal(page.hasMore, true);

    const hist = await api.ok('GET', `/v1/history?with=${t.uid('ann')}&limit=10`, { token: b }) as { messages: Array<{ msgId: string; seq: number }> };
    assert.deepEqual(hist.messages.map((m) => m.msgId), sent.map((s) => s.msgId).reverse(), 'newest first');
    assert.equal(hist.messages[0].seq, 0);

    const convId = String(sent[0].convId);
    const unread = await api.ok('GET', '/v1/unread', { token: b });
    assert.deepEqual(unread.convs, [{ convId, count: 2, readSeq: 0, lastSeq: sync.maxSeq }]);
    assert.equal(unread.total, 2);
    const read = await api.ok('POST', '/v1/read', { token: b, body: { convId, seq: sync.maxSeq } });
    assert.deepEqual(read.unread, { convId, count: 0, readSeq: sync.maxSeq, lastSeq: sync.maxSeq });
    const after = await api.ok('GET', `/v1/unread?convId=${encodeURIComponent(convId)}&convId=g%3Anone`, { token: b });
    assert.equal(after.total, 0);
    // Someone else's conversation is refused.
    await api.fails('POST', '/v1/read', 400, Code.BAD_REQUEST, { token: tok('eve'), body: { convId, seq: 1 } });
  });

  it('groups: create, get, add, send to, remove, leave, with the group rules and their codes', async () => {
    const carol = await t.client('carol');
    const created = await api.ok('POST', '/v1/groups', { token: tok('alice'), body: { name: 'team', members: [t.uid('bob')] } });
    const g = created.group as { groupId: string; owner: string; members: string[] };
    assert.deepEqual([g.owner, g.members], [t.uid('alice'), t.uids('alice', 'bob')]);
    const path = `/v1/groups/${encodeURIComponent(g.groupId)}`;
    assert.deepEqual((await api.ok('GET', path, { token: tok('bob') })).group, g);
    await api.fails('GET', path, 403, Code.NOT_GROUP_MEMBER, { token: tok('carol') });
    await api.fails('GET', '/v1/groups/no-such-group', 404, Code.GROUP_NOT_FOUND, { token: tok('carol') });

    const added = await api.ok('POST', `${path}/members`, { token: tok('bob'), body: { uids: [t.uid('carol')] } });
    assert.deepEqual((added.group as { members: string[] }).members, t.uids('alice', 'bob', 'carol'));
    const sent = await api.ok('POST', '/v1/messages', { token: tok('bob'), body: { groupId: g.groupId, clientMsgId: 'g-1', content: 'hello team' } });
    const [pushed] = await t.inbox(carol).waitFor(1);
    assert.deepEqual([pushed.msgId, pushed.groupId, text(pushed)], [sent.msgId, g.groupId, 'hello team']);
    const hist = await api.ok('GET', `/v1/history?groupId=${encodeURIComponent(g.groupId)}`, { token: tok('carol') });
    assert.deepEqual((hist.messages as Array<{ msgId: string }>).map((m) => m.msgId), [sent.msgId]);

    await api.fails('DELETE', `${path}/members?uid=${t.uid('carol')}`, 403, Code.NOT_GROUP_OWNER, { token: tok('bob') });
    const removed = await api.ok('DELETE', `${path}/members?uid=${t.uid('carol')}`, { token: tok('alice') });
    assert.deepEqual((removed.group as { members: string[] }).members, t.uids('alice', 'bob'));
    await api.fails('POST', '/v1/messages', 403, Code.NOT_GROUP_MEMBER, { token: tok('carol'), body: { groupId: g.groupId, clientMsgId: 'g-2', content: 'x' } });
    const left = await api.ok('POST', `${path}/leave`, { token: tok('bob') });
    assert.deepEqual((left.group as { members: string[] }).members, t.uids('alice'));
    await api.fails('POST', `${path}/leave`, 403, Code.NOT_GROUP_MEMBER, { token: tok('bob'), body: {} });
  });

  it('401 for a missing, malformed, wrongly signed or expired token', async () => {
    const missing = await api.fails('GET', '/v1/sync', 401, Code.NOT_AUTHENTICATED);
    assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer/);
    await api.fails('GET', '/v1/sync', 401, Code.TOKEN_INVALID, { token: 'not.a.jwt' });
    await api.fails('GET', '/v1/sync', 401, Code.TOKEN_INVALID, { token: signToken('some-other-secret-123456', t.uid('alice'), 60) });
    await api.fails('GET', '/v1/sync', 401, Code.TOKEN_EXPIRED, { token: signToken(t.sys.authSecret, t.uid('alice'), 60, Date.now() - 3_600_000) });
    const basic = await fetch(`${baseUrl}/v1/sync`, { headers: { authorization: 'Basic YWxpY2U6cHc=' } });
    assert.deepEqual([basic.status, (await basic.json() as { code: number }).code], [401, Code.NOT_AUTHENTICATED]);
  });

  it('400 BAD_REQUEST for malformed JSON, bodies and fields; 415 for a body that is not JSON', async () => {
    const token = tok('alice');
    const send = (o: { body?: unknown; rawBody?: string }) => api.fails('POST', '/v1/messages', 400, Code.BAD_REQUEST, { token, ...o });
    await send({ rawBody: '{"to": ' });
    await send({ rawBody: '[1,2]' });
    await send({ rawBody: '' });
    await send({ body: { to: t.uid('bob'), content: 'no id' } });
    await send({ body: { to: t.uid('bob'), clientMsgId: 'x', content: 'typo', client_msg_id: 'x' } });
    await send({ body: { to: 5, clientMsgId: 'x' } });
    await send({ body: { to: t.uid('bob'), groupId: 'g', clientMsgId: 'x' } });
    await send({ body: { to: t.uid('bob'), clientMsgId: '\ud800', content: 'lone surrogate' } });
    await send({ body: { to: t.uid('bob'), clientMsgId: 'x', content: 'a', contentBase64: 'YQ==' } });
    await send({ body: { to: t.uid('bob'), clientMsgId: 'x', contentBase64: 'not base64!' } });
    await send({ body: { to: 'bad uid!', clientMsgId: 'x' } });
    await api.fails('GET', '/v1/sync?fromSeq=-1', 400, Code.BAD_REQUEST, { token });
    await api.fails('GET', '/v1/sync?fromSeq=1.5', 400, Code.BAD_REQUEST, { token });
    await api.fails('GET', '/v1/sync?fromSeq=1&fromSeq=2', 400, Code.BAD_REQUEST, { token });
    await api.fails('GET', '/v1/sync?from_seq=1', 400, Code.BAD_REQUEST, { token });
    await api.fails('GET', '/v1/history', 400, Code.BAD_REQUEST, { token });
    await api.fails('POST', '/v1/read?seq=1', 400, Code.BAD_REQUEST, { token, body: { convId: 'p:a:b' } });
    await api.fails('DELETE', '/v1/groups/g/members', 400, Code.BAD_REQUEST, { token });
    await api.fails('GET', '/v1/groups/%E0%A4%A', 400, Code.BAD_REQUEST, { token });
    await api.fails('POST', '/v1/messages', 415, Code.BAD_REQUEST, { token, rawBody: 'to=bob', contentType: 'application/x-www-form-urlencoded' });
    const withBody = await rawRequest(`${baseUrl}/v1/sync`, {
      method: 'GET', headers: { authorization: `Bearer ${token}`, 'content-length': '2' }, chunks: [Buffer.from('{}')],
    });
    assert.deepEqual([withBody.status, JSON.parse(withBody.body).code], [400, Code.BAD_REQUEST]);
  });

  it('404 UNKNOWN_OP for an unknown route, 405 with Allow for a wrong method', async () => {
    await api.fails('GET', '/v1/nope', 404, Code.UNKNOWN_OP, { token: tok('alice') });
    await api.fails('GET', '/', 404, Code.UNKNOWN_OP);
    const wrong = await api.fails('PUT', '/v1/messages', 405, Code.UNKNOWN_OP, { token: tok('alice') });
    assert.equal(wrong.headers.get('allow'), 'POST');
    const members = await api.fails('GET', '/v1/groups/g1/members', 405, Code.UNKNOWN_OP, { token: tok('alice') });
    assert.equal(members.headers.get('allow'), 'POST, DELETE');
    assert.equal((await api.fails('POST', '/v1/openapi.json', 405, Code.UNKNOWN_OP)).headers.get('allow'), 'GET');
  });

  it('413 for a body above the limit (declared or streamed) and for content above the content limit', async () => {
    const token = tok('alice');
    const big = Buffer.alloc(MAX_BODY + 1, 'a');
    const declared = await rawRequest(`${baseUrl}/v1/messages`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': String(big.length) }, chunks: [big],
    });
    assert.deepEqual([declared.status, JSON.parse(declared.body).code, declared.connection], [413, Code.FRAME_TOO_LARGE, 'close']);
    const chunk = Buffer.alloc(1024, 'a');
    const streamed = await rawRequest(`${baseUrl}/v1/messages`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      chunks: Array.from({ length: 64 }, () => chunk),
    });
    assert.deepEqual([streamed.status, JSON.parse(streamed.body).code], [413, Code.FRAME_TOO_LARGE]);
    await api.fails('POST', '/v1/messages', 413, Code.CONTENT_TOO_LARGE, {
      token, body: { to: t.uid('bob'), clientMsgId: 'big', content: 'x'.repeat(MAX_CONTENT + 1) },
    });
    // Still serving.
    await api.ok('GET', '/v1/sync', { token });
  });

  it('answers every operation of its OpenAPI document (the tests above covered each)', function () {
    const missing = documentedOperations().filter((op) => !api.covered.has(op));
    assert.deepEqual(missing, []);
    assert.ok(api.covered.size >= 11);
  });
});

describe('client HTTP API rate limit', () => {
  it('429 RATE_LIMITED with Retry-After once a user used the burst; other users are not affected', async () => {
    const env = makeLogicEnv();
    const nowMs = Date.now();
    const secret = 'rate-limit-secret-0123456789';
    const server = new HttpApi({
      service: env.service, auth: { secret }, host: '127.0.0.1', port: 0,
      rateLimit: { ratePerSec: 1, burst: 2, maxTrackedUsers: 10 }, now: () => nowMs,
    });
    try {
      const api = new HttpApiClient(`http://127.0.0.1:${await server.start()}`);
      const [a, b] = [signToken(secret, 'ra', 60, nowMs), signToken(secret, 'rb', 60, nowMs)];
      await api.ok('GET', '/v1/sync', { token: a });
      await api.ok('GET', '/v1/unread', { token: a });
      const limited = await api.fails('GET', '/v1/sync', 429, Code.RATE_LIMITED, { token: a });
      assert.deepEqual([limited.headers.get('retry-after'), limited.json.retryAfterMs, limited.json.retryable], ['1', 1000, true]);
      await api.ok('GET', '/v1/sync', { token: b });
    } finally {
      await server.stop();
      await env.close();
    }
  });
});

describe('client HTTP API stop', () => {
  it('lets a request in flight finish, then refuses new connections', async () => {
    const env = makeLogicEnv();
    const secret = 'stop-test-secret-0123456789';
    const server = new HttpApi({ service: env.service, auth: { secret }, host: '127.0.0.1', port: 0 });
    try {
      const port = await server.start();
      const body = JSON.stringify({ to: 'sb', clientMsgId: 'in-flight', content: 'sent during stop' });
      // Headers and half the body now, the rest once stop() has begun.
      let answer = '';
      const req = http.request({
        host: '127.0.0.1', port, method: 'POST', path: '/v1/messages', agent: false,
        headers: { authorization: `Bearer ${signToken(secret, 'sa', 60)}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      });
      const done = new Promise<number>((resolve, reject) => {
        req.on('response', (res) => {
          res.setEncoding('utf8');
          res.on('data', (d: string) => { answer += d; });
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
      });
      req.write(body.slice(0, 10));
      await eventually(() => server.inFlight === 1, 'the request to be in flight');
      const stopped = server.stop();
      req.end(body.slice(10));
      assert.equal(await done, 200, answer);
      assert.equal(JSON.parse(answer).duplicate, false);
      await stopped;
      await assert.rejects(fetch(`http://127.0.0.1:${port}/v1/openapi.json`));
      assert.equal((await env.service.sync({ uid: 'sb', deviceId: 'd', connId: 'c', node: 'n' }, {})).messages.length, 1);
    } finally {
      await server.stop();
      await env.close();
    }
  });
});

describe('client HTTP API settings', () => {
  const settings = (env: Record<string, string>) => new Settings(env);

  it('is off in the logic process unless IM_HTTP_ADDR is set, on by default where a default is given, off with "off"', () => {
    assert.equal(loadHttpApiSettings(settings({})), undefined);
    assert.deepEqual(loadHttpApiSettings(settings({}), '127.0.0.1:7191'), {
      host: '127.0.0.1', port: 7191, maxBodyBytes: 262_144, rateLimit: { ratePerSec: 20, burst: 40, maxTrackedUsers: 100_000 },
    });
    assert.equal(loadHttpApiSettings(settings({ IM_HTTP_ADDR: 'off' }), '127.0.0.1:7191'), undefined);
    assert.deepEqual(loadHttpApiSettings(settings({
      IM_HTTP_ADDR: '0.0.0.0:8080', IM_HTTP_RATE: '0', IM_HTTP_MAX_BODY_BYTES: '2048',
    })), { host: '0.0.0.0', port: 8080, maxBodyBytes: 2048, rateLimit: undefined });
  });

  it('names the setting of a bad value', () => {
    for (const [name, value] of [['IM_HTTP_ADDR', 'nowhere'], ['IM_HTTP_RATE', '-1'], ['IM_HTTP_BURST', '0'], ['IM_HTTP_MAX_BODY_BYTES', '10']]) {
      assert.throws(() => loadHttpApiSettings(settings({ IM_HTTP_ADDR: '127.0.0.1:1', [name]: value })),
        (e: unknown) => e instanceof ConfigError && e.field === name, name);
    }
  });

  it('the logic process needs a token key to serve it', () => {
    assert.throws(() => loadLogicProcessConfig({ IM_HTTP_ADDR: '127.0.0.1:7191' }, []),
      (e: unknown) => e instanceof ConfigError && e.field === 'IM_AUTH_SECRET');
    const withKeys = loadLogicProcessConfig({ IM_HTTP_ADDR: '127.0.0.1:7191', IM_AUTH_KEYS: 'k1:0123456789abcdef0' }, []);
    assert.equal(withKeys.http?.port, 7191);
    assert.equal(withKeys.auth.keys?.get('k1'), '0123456789abcdef0');
    assert.equal(loadLogicProcessConfig({}, []).http, undefined);
  });
});
