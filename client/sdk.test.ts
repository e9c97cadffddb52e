/**
 * The SDK end to end: a real embedded system (router, logic, gateway, SQLite) in a temp dir, real
 * TCP. Faults come from a TCP proxy in front of the real gateway and a route API the test controls.
 */
import * as assert from 'node:assert/strict';
import { Code, DisconnectCode } from '../common/errors';
import { signToken } from '../common/jwt';
import { EmbeddedSystem, startEmbedded } from '../embedded/system';
import { Message, Op, decode } from '../proto/wire';
import { eventually } from '../test/wait';
import { DisconnectedEvent, ImClient, ImClientError, ImClientOptions } from './sdk';
import {
  FaultProxy, RouteServer, SilentServer, deadAddr, gatewaysReply, realRoute, tempDir, waitEvent,
} from './client.test-support';

const HEARTBEAT_MS = 250;
const text = (m: Message) => Buffer.from(m.content).toString('utf8');

interface Collected { messages: Message[]; waitFor(n: number, timeoutMs?: number): Promise<Message[]> }

function collect(c: ImClient): Collected {
  const messages: Message[] = [];
  c.on('message', (m) => { messages.push(m); c.emit('collected'); });
  return {
    messages,
    async waitFor(n, timeoutMs = 8000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} messages, got ${messages.length}: ${messages.map(text)}`);
        await waitEvent(c, 'collected', () => true, Math.max(1, deadline - Date.now())).catch(() => undefined);
      }
      return messages;
    },
  };
}

describe('client/sdk against the embedded system', function () {
  let sys: EmbeddedSystem;
  const clients: ImClient[] = [];
  const closers: Array<{ stop(): Promise<void> }> = [];

  before(async () => {
    sys = await startEmbedded({ dataDir: tempDir(), gateway: { heartbeatIntervalMs: HEARTBEAT_MS } });
  });
  after(async () => { await sys.stop(); });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(closers.splice(0).map((c) => c.stop()));
  });

  const token = (uid: string, ttlSeconds = 3600) => signToken(sys.authSecret, uid, ttlSeconds);
  function client(uid: string, options: Partial<ImClientOptions> = {}): ImClient {
    const c = new ImClient({ routerUrl: sys.routerUrl, token: token(uid), deviceId: `${uid}-dev`, backoffBaseMs: 20, backoffMaxMs: 200, ...options });
    clients.push(c);
    return c;
  }
  async function track<T extends { stop(): Promise<void> }>(p: Promise<T>): Promise<T> {
    const v = await p;
    closers.push(v);
    return v;
  }
  /** A route API that lists only a proxy in front of the real gateway. */
  async function proxied(): Promise<{ proxy: FaultProxy; routerUrl: string }> {
    const proxy = await track(FaultProxy.start(sys.gatewayAddr));
    const route = await track(RouteServer.start(() => gatewaysReply(proxy.addr)));
    return { proxy, routerUrl: route.url };
  }

  it('connects through the route API and authenticates', async () => {
    const c = client('alice');
    const connected = waitEvent(c, 'connected');
    const ok = await c.connect();
    assert.equal(ok.uid, 'alice');
    assert.equal(ok.deviceId, 'alice-dev');
    assert.equal(ok.heartbeatIntervalMs, HEARTBEAT_MS);
    assert.ok(ok.node && ok.connId);
    assert.equal(await connected, ok);
    assert.equal(c.state, 'connected');
    assert.equal(await c.connect(), ok, 'connect() on a connected client is a no-op');
  });

  it('1:1 exchange: each side gets its inbox in seq order, its own sends included', async () => {
    const ann = client('ann');
    const ben = client('ben');
    const atAnn = collect(ann);
    const atBen = collect(ben);
    await ann.connect();
    await ben.connect();
    const r1 = await ann.send('ben', 'hi ben');
    const r2 = await ben.send('ann', { contentType: 'text/plain', content: 'hi ann' });
    const got = await atBen.waitFor(2);
    assert.deepEqual(got.map(text), ['hi ben', 'hi ann']);
    assert.deepEqual(got.map((m) => m.from), ['ann', 'ben']);
    assert.deepEqual(got.map((m) => m.seq), [1, 2]);
    const mine = await atAnn.waitFor(2);
    assert.equal(mine[0].msgId, r1.msgId);
    assert.equal(mine[1].msgId, r2.msgId);
    assert.equal(ann.lastSeq, 2);
    // A marker after them: ben's inbox arrives in seq order, so a duplicate would come before it.
    await ann.send('ben', 'marker');
    assert.deepEqual((await atBen.waitFor(3)).map(text), ['hi ben', 'hi ann', 'marker'], 'each seq delivered once (push and catch-up sync overlap)');
  });

  it('send retries with the same clientMsgId when the reply is lost: one message, original msgId/seq', async () => {
    const { proxy, routerUrl } = await proxied();
    let cut = false;
    proxy.onServerFrame = (f) => (f.op === Op.SEND && !cut ? ((cut = true), 'cut') : 'forward');
    const cara = client('cara', { routerUrl });
    const dan = client('dan');
    const atDan = collect(dan);
    await dan.connect();
    await cara.connect();
    const dropped = waitEvent<DisconnectedEvent>(cara, 'disconnected');
    const r = await cara.send('dan', 'exactly once');
    assert.ok(cut, 'the first reply was cut');
    const d = await dropped;
    assert.equal(d.code, Code.UNAVAILABLE);
    assert.equal(d.reconnect, true);
    assert.equal(r.duplicate, true, 'the retry was answered as a duplicate of the stored first attempt');
    const [m] = await atDan.waitFor(1);
    assert.equal(m.msgId, r.msgId);
    const hist = await dan.history({ with: 'cara' });
    assert.equal(hist.messages.length, 1, 'the retry created no second message');
    assert.equal(proxy.accepted, 2, 'the retry went over a new connection');
  });

  it('a send with no verdict (replies lost) keeps retrying past sendMaxAttempts, within the window', async () => {
    const { proxy, routerUrl } = await proxied();
    let cuts = 0;
    proxy.onServerFrame = (f) => (f.op === Op.SEND && cuts < 3 ? (cuts++, 'cut') : 'forward');
    const gil = client('gil', { routerUrl, sendMaxAttempts: 2, backoffBaseMs: 10, backoffMaxMs: 50 });
    await gil.connect();
    const r = await gil.send('hal', 'through three lost replies');
    assert.equal(cuts, 3);
    assert.equal(r.duplicate, true, 'answered by the first stored attempt');
    const hist = await gil.history({ with: 'hal' });
    assert.equal(hist.messages.length, 1, 'one message');
  });

  it('a send whose retry window runs out says so, with the failure before the last, cut-short attempt', async () => {
    const { proxy, routerUrl } = await proxied();
    proxy.onServerFrame = (f) => (f.op === Op.SEND ? 'drop' : 'forward');
    const una = client('una', { routerUrl, requestTimeoutMs: 200, sendRetryWindowMs: 700, backoffBaseMs: 10, backoffMaxMs: 20 });
    await una.connect();
    await assert.rejects(una.send('xen', 'never answered'), (err: unknown) => {
      assert.ok(err instanceof ImClientError);
      assert.match(err.message, /^send not acknowledged within its 700 ms retry window \(\d+ attempts\); last failure: no reply within 200ms$/);
      assert.equal(err.code, Code.TIMEOUT);
      assert.equal(err.retryable, true);
      return true;
    });
  });

  it('own sends come from their acks: no PUSH back to the sending connection, no sync for them; a second device is pushed', async () => {
    const { proxy, routerUrl } = await proxied();
    const seen: number[] = []; // ops of the server frames the sending connection gets
    proxy.onServerFrame = (f) => { seen.push(f.op); return 'forward'; };
    const ola = client('ola', { routerUrl });
    const olaTablet = client('ola', { deviceId: 'ola-tablet' });
    const pia = client('pia');
    const atOla = collect(ola);
    const atTablet = collect(olaTablet);
    await ola.connect();
    await waitEvent(ola, 'synced');
    await olaTablet.connect();
    await pia.connect();
    const syncsBefore = seen.filter((op) => op === Op.SYNC).length;

    const sent = [await ola.send('pia', 'one'), await ola.send('pia', 'two')];
    assert.deepEqual(atOla.messages.map((m) => [m.seq, m.msgId, m.from, m.to, text(m)]),
      sent.map((r, i) => [r.seq, r.msgId, 'ola', 'pia', ['one', 'two'][i]]), 'delivered from the ack, before send() resolved');
    await pia.send('ola', 'three'); // pushed to ola at seq 3: only a missing 1 or 2 would make it sync
    const got = await atOla.waitFor(3);
    assert.deepEqual(got.map((m) => m.seq), [1, 2, 3]);
    assert.deepEqual((await atTablet.waitFor(3)).map(text), ['one', 'two', 'three'], 'the other device is pushed the own sends');
    assert.equal(seen.filter((op) => op === Op.PUSH).length, 1, 'the sending connection is pushed only what others sent');
    assert.equal(seen.filter((op) => op === Op.SYNC).length, syncsBefore, 'no sync for the own seqs');
    assert.equal(ola.lastSeq, 3);
  });

  it('an explicit clientMsgId makes repeated sends idempotent', async () => {
    const c = client('eli');
    await c.connect();
    const a = await c.send('fay', 'hello', { clientMsgId: 'eli-1' });
    const b = await c.send('fay', 'hello', { clientMsgId: 'eli-1' });
    assert.deepEqual([b.msgId, b.seq, b.duplicate], [a.msgId, a.seq, true]);
  });

  it('in-flight requests on a dropped connection reject with retryable UNAVAILABLE; the client reconnects', async () => {
    const { proxy, routerUrl } = await proxied();
    let cut = false;
    proxy.onServerFrame = (f) => (f.op === Op.UNREAD && !cut ? ((cut = true), 'cut') : 'forward');
    const c = client('gus', { routerUrl });
    await c.connect();
    await assert.rejects(c.unread(), (e: ImClientError) => e instanceof ImClientError && e.code === Code.UNAVAILABLE && e.retryable);
    const again = await c.unread(); // waits for the reconnect
    assert.equal(again.total, 0);
    assert.equal(proxy.accepted, 2);
  });

  it('a request without a reply times out with retryable TIMEOUT', async () => {
    const { proxy, routerUrl } = await proxied();
    proxy.onServerFrame = (f) => (f.op === Op.UNREAD ? 'drop' : 'forward');
    const c = client('hal', { routerUrl, requestTimeoutMs: 300 });
    await c.connect();
    await assert.rejects(c.unread(), (e: ImClientError) => e.code === Code.TIMEOUT && e.retryable === true);
    assert.equal(c.state, 'connected', 'a slow reply is not a dead connection');
  });

  it('an offline user catches up on connect via sync: in order, paged, resumable from lastSeq', async () => {
    const sender = client('ivy');
    await sender.connect();
    for (let i = 1; i <= 25; i++) await sender.send('jon', `m${i}`);
    const jon = client('jon', { syncPageLimit: 7 });
    const atJon = collect(jon);
    const synced = waitEvent<{ lastSeq: number }>(jon, 'synced', (s) => s.lastSeq === 25);
    await jon.connect();
    const got = await atJon.waitFor(25);
    await synced;
    assert.deepEqual(got.map(text), Array.from({ length: 25 }, (_, i) => `m${i + 1}`));
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 25 }, (_, i) => i + 1));
    const resumed = client('jon', { deviceId: 'jon-tablet', lastSeq: 20 });
    const atResumed = collect(resumed);
    await resumed.connect();
    const rest = await atResumed.waitFor(5);
    assert.deepEqual(rest.map((m) => m.seq), [21, 22, 23, 24, 25]);
  });

  it('a lost push opens a gap that a sync fills: delivery stays in order, each seq once', async () => {
    const { proxy, routerUrl } = await proxied();
    proxy.onServerFrame = (f) => (f.op === Op.PUSH && decode('Message', f.body).seq === 2 ? 'drop' : 'forward');
    const kim = client('kim', { routerUrl });
    const atKim = collect(kim);
    await kim.connect();
    await waitEvent(kim, 'synced');
    const lee = client('lee');
    await lee.connect();
    for (const t of ['one', 'two', 'three']) await lee.send('kim', t);
    const got = await atKim.waitFor(3);
    assert.deepEqual(got.map(text), ['one', 'two', 'three']);
    assert.deepEqual(got.map((m) => m.seq), [1, 2, 3]);
    await lee.send('kim', 'four');
    await atKim.waitFor(4);
    assert.deepEqual(atKim.messages.map((m) => m.seq), [1, 2, 3, 4]);
  });

  it('a silent path (no frame for two heartbeat intervals) is treated as dead and replaced', async () => {
    const { proxy, routerUrl } = await proxied();
    const c = client('max', { routerUrl });
    const atMax = collect(c);
    await c.connect();
    const dropped = waitEvent<DisconnectedEvent>(c, 'disconnected');
    const back = waitEvent(c, 'connected');
    proxy.freeze();
    const d = await dropped;
    assert.equal(d.code, Code.TIMEOUT);
    assert.equal(d.reconnect, true);
    await back;
    assert.equal(proxy.accepted, 2);
    const other = client('ned');
    await other.connect();
    await other.send('max', 'still there?');
    const [m] = await atMax.waitFor(1);
    assert.equal(text(m), 'still there?');
  });

  it('a bad token is terminal: no retry, no second gateway', async () => {
    const proxy = await track(FaultProxy.start(sys.gatewayAddr));
    const route = await track(RouteServer.start(() => gatewaysReply(proxy.addr, proxy.addr)));
    const c = client('oli', { routerUrl: route.url, token: signToken('not-the-operator-secret', 'oli', 3600) });
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    await assert.rejects(c.connect(), (e: ImClientError) => e.code === Code.TOKEN_INVALID && e.retryable === false);
    assert.equal(proxy.accepted, 1);
    assert.equal(route.hits, 1);
    assert.equal(reconnecting, 0);
    assert.equal(c.state, 'idle');
    await assert.rejects(c.send('pat', 'x'), (e: ImClientError) => e.retryable === false, 'requests fail fast, not wait');
  });

  it('an expired token: a token provider is asked again; a fixed token is terminal', async () => {
    const expired = signToken(sys.authSecret, 'quinn', 60, Date.now() - 3_600_000);
    let calls = 0;
    const c = client('quinn', { token: () => (++calls === 1 ? expired : token('quinn')) });
    const ok = await c.connect();
    assert.equal(ok.uid, 'quinn');
    assert.equal(calls, 2);
    const fixed = client('quinn', { token: expired, deviceId: 'q2' });
    await assert.rejects(fixed.connect(), (e: ImClientError) => e.code === Code.TOKEN_EXPIRED && !e.retryable);
  });

  it('fails over down the gateway list: a refused and a hung gateway are skipped', async () => {
    const silent = await track(SilentServer.start());
    const route = await track(RouteServer.start(async () => gatewaysReply(dead, silent.addr, sys.gatewayAddr)));
    const dead = await deadAddr();
    const c = client('ray', { routerUrl: route.url, connectTimeoutMs: 300 });
    const ok = await c.connect();
    assert.equal(ok.uid, 'ray');
    assert.equal(silent.accepted, 1, 'the hung gateway was tried (and given up on)');
    assert.equal(route.hits, 1, 'no new round was needed');
  });

  it('when every gateway fails it backs off and asks the route API again; it gives up at the bound', async () => {
    const dead = await deadAddr();
    const route = await track(RouteServer.start((hit) => (hit < 3 ? gatewaysReply(dead) : gatewaysReply(sys.gatewayAddr))));
    const c = client('sam', { routerUrl: route.url });
    const rounds: number[] = [];
    c.on('reconnecting', (r) => rounds.push(r.attempt));
    await c.connect();
    assert.equal(route.hits, 3);
    assert.deepEqual(rounds, [1, 2]);

    const down = await track(RouteServer.start(() => ({ status: 503, body: {} })));
    const bounded = client('sam', { routerUrl: down.url, deviceId: 'sam-2', maxReconnectAttempts: 2 });
    await assert.rejects(bounded.connect(), (e: ImClientError) => e.code === Code.UNAVAILABLE && !e.retryable && /3 round/.test(e.message));
    assert.equal(down.hits, 3);
  });

  it('transport websocket: uses only gateways with a wsUrl, fails when none has one, and refuses an unknown transport', async () => {
    assert.throws(() => client('uma', { transport: 'udp' as never }), /transport must be "tcp" or "websocket"/);
    const tcpOnly = await track(RouteServer.start(() => gatewaysReply(sys.gatewayAddr)));
    const none = client('uma', { routerUrl: tcpOnly.url, transport: 'websocket', maxReconnectAttempts: 0 });
    await assert.rejects(none.connect(), (e: ImClientError) => e.code === Code.UNAVAILABLE && /WebSocket URL/.test(e.message));

    // The embedded gateway of this suite has no WebSocket listener; one with it serves the same SDK.
    const wsSys = await startEmbedded({ dataDir: tempDir(), gateway: { ws: { host: '127.0.0.1', port: 0 } } });
    closers.push(wsSys);
    const url = (await (await fetch(`${wsSys.routerUrl}/v1/route`)).json() as { gateways: Array<{ wsUrl?: string }> }).gateways[0].wsUrl;
    assert.match(url ?? '', /^ws:\/\/127\.0\.0\.1:\d+\/$/);
    const mixed = await track(RouteServer.start(() => ({
      body: { gateways: [{ node: 'tcp-only', addr: sys.gatewayAddr }, { node: 'ws', addr: '127.0.0.1:1', wsUrl: url }] },
    })));
    const c = new ImClient({ routerUrl: mixed.url, token: signToken(wsSys.authSecret, 'uma', 3600), deviceId: 'uma-ws', transport: 'websocket' });
    clients.push(c);
    const ok = await c.connect();
    assert.equal(ok.uid, 'uma');
    const sent = await c.send('uma', 'to myself over ws');
    assert.equal(sent.duplicate, false);
  });

  it('many sends retrying at once leave no listener or timer behind (no MaxListenersExceededWarning)', async () => {
    const { proxy, routerUrl } = await proxied();
    const SENDS = 30;
    let dropped = 0;
    // Every send's first reply is lost: all of them time out together and pause before retrying.
    proxy.onServerFrame = (f) => (f.op === Op.SEND && dropped < SENDS ? (dropped++, 'drop') : 'forward');
    const c = client('lex', { routerUrl, requestTimeoutMs: 300, backoffBaseMs: 400, backoffMaxMs: 400, receiveMessages: false });
    const waits = (c as unknown as { waits: { size: number } }).waits;
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      await c.connect();
      let most = 0;
      const sends = Array.from({ length: SENDS }, (_, i) => c.send('mia', `retried ${i}`));
      const watching = setInterval(() => { most = Math.max(most, waits.size); }, 5);
      const replies = await Promise.all(sends).finally(() => clearInterval(watching));
      assert.equal(replies.length, SENDS);
      assert.equal(dropped, SENDS, 'every send was retried');
      assert.ok(most > 10, `the retries paused together (${most} at once): the case that used to warn`);
      assert.equal(waits.size, 0, 'every pause unregistered itself');
      // process.emitWarning delivers on the next tick.
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(warnings.filter((w) => /MaxListeners/.test(w)), []);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('close() is idempotent and ends requests without retry', async () => {
    const c = client('tom');
    await c.connect();
    const disconnected = waitEvent<DisconnectedEvent>(c, 'disconnected');
    await Promise.all([c.close(), c.close()]);
    assert.deepEqual(await disconnected, { code: 0, reason: 'closed by client', reconnect: false });
    assert.equal(c.state, 'closed');
    await assert.rejects(c.send('uma', 'late'), (e: ImClientError) => !e.retryable);
    await assert.rejects(c.connect(), /closed/);
  });
});

describe('client/sdk across a gateway drain', function () {
  it('reconnects after Disconnect DRAINING, resends in-flight sends, and catches up', async () => {
    const dataDir = tempDir();
    let sys = await startEmbedded({ dataDir });
    let current: EmbeddedSystem | undefined = sys;
    // The route API answers 503 while no system is up or while the test wants vic kept away.
    const route = await RouteServer.start(() => (current ? realRoute(current.routerUrl) : { status: 503, body: {} }));
    const c = new ImClient({ routerUrl: route.url, token: signToken(sys.authSecret, 'vic', 3600), deviceId: 'vic-dev', backoffBaseMs: 20, backoffMaxMs: 100 });
    const other = () => new ImClient({ routerUrl: sys.routerUrl, token: signToken(sys.authSecret, 'wes', 3600), deviceId: 'wes-dev', receiveMessages: false });
    const atVic = collect(c);
    try {
      await c.connect();
      const wes1 = other();
      await wes1.connect();
      await wes1.send('vic', 'before');
      await wes1.close();
      await atVic.waitFor(1);

      const dropped = waitEvent<DisconnectedEvent>(c, 'disconnected');
      current = undefined;
      const stopped = sys.stop();
      const d = await dropped;
      assert.equal(d.code, DisconnectCode.DRAINING);
      assert.equal(d.reconnect, true);
      const pendingSend = c.send('wes', 'sent while reconnecting');
      await stopped;

      sys = await startEmbedded({ dataDir }); // same data, new ports: only the route API knows
      const wes2 = other();
      await wes2.connect();
      await wes2.send('vic', 'while away');
      await wes2.close();
      current = sys;

      const r = await pendingSend;
      assert.equal(r.duplicate, false);
      const got = await atVic.waitFor(3);
      assert.deepEqual(got.map(text), ['before', 'while away', 'sent while reconnecting']);
      assert.deepEqual(got.map((m) => m.seq), [1, 2, 3]);
    } finally {
      await c.close();
      await route.stop();
      await sys.stop();
    }
  });

  it('sends made while the DRAINING close is under way wait for the reconnect; none fails for good', async () => {
    const dataDir = tempDir();
    // No rate or pending limit in the way: the sends below come about once a millisecond.
    const tuning = { gateway: { rateLimitPerSec: 100_000, rateLimitBurst: 100_000, maxPendingPerConn: 100_000 } };
    let sys = await startEmbedded({ dataDir, ...tuning });
    let current: EmbeddedSystem | undefined = sys;
    const route = await RouteServer.start(() => (current ? realRoute(current.routerUrl) : { status: 503, body: {} }));
    const c = new ImClient({
      routerUrl: route.url, token: signToken(sys.authSecret, 'yul', 3600), deviceId: 'yul-dev', receiveMessages: false,
      backoffBaseMs: 20, backoffMaxMs: 100,
    });
    try {
      await c.connect();
      const sends: Array<Promise<unknown>> = [];
      let firing = true;
      const fire = () => {
        if (!firing) return;
        sends.push(c.send('zed', `m${sends.length}`).catch((err: unknown) => err));
        setTimeout(fire, 1);
      };
      fire();
      await eventually(() => sends.length >= 20, 'sends under way');
      const dropped = waitEvent<DisconnectedEvent>(c, 'disconnected');
      current = undefined;
      const stopped = sys.stop();
      assert.equal((await dropped).code, DisconnectCode.DRAINING);
      const atDrop = sends.length;
      await eventually(() => sends.length >= atDrop + 10, 'sends made after the DRAINING');
      firing = false;
      await stopped;
      sys = await startEmbedded({ dataDir, ...tuning });
      current = sys;
      const failed = (await Promise.all(sends)).filter((r): r is Error => r instanceof Error);
      assert.deepEqual(failed.map((e) => e.message), [], `${failed.length} of ${sends.length} sends failed`);
    } finally {
      await c.close();
      await route.stop();
      await sys.stop();
    }
  });
});
