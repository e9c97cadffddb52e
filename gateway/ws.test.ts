/**
 * The gateway's WebSocket listener against real WebSocket clients (`ws`) and raw TCP bytes: the
 * same connection behaviour as TCP (handshake, limits, deadlines, drain, hand-off), and the
 * documented close codes for what only WebSocket can get wrong (docs/protocol.md).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import type { ClientOptions } from 'ws';
import { gatewaySubject } from '../bus/bus';
import { Code, codeName, DisconnectCode } from '../common/errors';
import { metrics } from '../common/metrics';
import { encodeDeliveryBatch } from '../proto/delivery';
import { LENGTH_BYTES } from '../proto/codec';
import { decode, encode, frameBytes, Op } from '../proto/wire';
import { makeTestPki, signServerCert, type TestPki } from '../test/tls-certs';
import { HandOver, UPGRADE_REASON } from './upgrade/handover';
import { eventually, Harness, OP_HANG, parseEcho, startGateway, TestClient, token } from './gateway.test-support';
import { WsCloseCode } from './ws';

const OP_ECHO = 120;
const WS = { host: '127.0.0.1', port: 0 };

async function errorCount(code: number): Promise<number> {
  const m = await metrics().gatewayErrors.get();
  return m.values.find((v) => v.labels.code === codeName(code))?.value ?? 0;
}

/** Frame bytes as one WebSocket message carries them (no length prefix). */
const wire = (...args: Parameters<typeof frameBytes>) => frameBytes(...args).subarray(LENGTH_BYTES);

/** A raw TCP socket that has done the HTTP upgrade by hand, so a test can send any bytes after it. */
async function rawUpgraded(url: string): Promise<{ socket: net.Socket; received: () => Buffer; closed: Promise<void> }> {
  const u = new URL(url);
  const socket = net.connect(Number(u.port), u.hostname);
  let buf = Buffer.alloc(0);
  socket.on('data', (c: Buffer) => { buf = Buffer.concat([buf, c]); });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  await eventually(() => buf.includes('\r\n\r\n'), 'the 101 reply');
  assert.match(buf.toString('latin1'), /^HTTP\/1.1 101 /);
  const start = buf.indexOf('\r\n\r\n') + 4;
  return { socket, received: () => buf.subarray(start), closed };
}

/** The status code of the first close frame (opcode 8) in what the server sent, if any. */
function closeCodeIn(bytes: Buffer): number | undefined {
  let i = 0;
  while (i + 2 <= bytes.length) {
    const opcode = bytes[i] & 0x0f;
    let len = bytes[i + 1] & 0x7f;
    let at = i + 2;
    if (len === 126) { len = bytes.readUInt16BE(at); at += 2; } else if (len === 127) { len = Number(bytes.readBigUInt64BE(at)); at += 8; }
    if (opcode === 8) return len >= 2 ? bytes.readUInt16BE(at) : 1005;
    i = at + len;
  }
  return undefined;
}

describe('gateway WebSocket transport', () => {
  let h: Harness;
  afterEach(async () => { await h?.stop(); });

  describe('serving', () => {
    it('authenticates, answers Ping and relays business ops, one binary message per frame; the router lists its URL', async () => {
      h = await startGateway({ ws: WS, routerHeartbeatMs: 50 });
      const c = await h.connectWs();
      const ok = await c.authOk(token('wanda'), 'browser');
      assert.equal(ok.uid, 'wanda');
      assert.equal(ok.deviceId, 'browser');
      assert.equal((await c.ping()).error, null);
      const echo = parseEcho(await c.request(OP_ECHO, Buffer.from('over ws')));
      assert.deepEqual([echo.uid, echo.deviceId, echo.body, echo.connId], ['wanda', 'browser', 'over ws', ok.connId]);
      await eventually(() => [...h.router.sessions.values()].some((s) => s.uid === 'wanda'), 'bind');
      await eventually(() => h.router.heartbeats.some((b) => b.wsUrl === h.wsUrl), 'a heartbeat naming the WebSocket URL');
      // TCP still works next to it, on its own port.
      const tcp = await h.login('wanda', 'phone');
      assert.equal((await tcp.ping()).error, null);
    });

    it('pushes reach WebSocket and TCP connections of a uid alike (a shared body travels as a second fragment)', async () => {
      h = await startGateway({ ws: WS });
      const ws = await h.connectWs();
      await ws.authOk(token('xena'), 'browser');
      const tcp = await h.login('xena', 'phone');
      const body = encode('Message', { msgId: 'm1', convId: 'p:a:b', from: 'a', to: 'xena' });
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
        pushes: [{ message: body, targets: [{ uid: 'xena', seq: 7 }] }],
        deliveries: [{ uid: 'xena', seq: 8, message: encode('Message', { msgId: 'm2', seq: 8 }) }],
      }));
      for (const c of [ws, tcp]) {
        const got = [await c.take((f) => f.op === Op.PUSH), await c.take((f) => f.op === Op.PUSH)].map((f) => decode('Message', f.body));
        assert.deepEqual(got.map((m) => [m.msgId, m.seq]), [['m1', 7], ['m2', 8]]);
      }
    });

    it('reassembles a frame sent as several fragments', async () => {
      h = await startGateway({ ws: WS });
      const c = await h.connectWs();
      const auth = wire({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token: token('yuri'), deviceId: 'd' }) });
      c.ws!.send(auth.subarray(0, 5), { binary: true, fin: false });
      c.ws!.send(auth.subarray(5, 9), { binary: true, fin: false });
      c.ws!.send(auth.subarray(9), { binary: true, fin: true });
      const reply = await c.reply(1);
      assert.equal(reply.error, null);
      assert.equal(decode('AuthOk', reply.body).uid, 'yuri');
    });

    it('answers NOT_AUTHENTICATED to frames before Auth and stays open for a later Auth', async () => {
      h = await startGateway({ ws: WS });
      const c = await h.connectWs();
      assert.equal((await c.request(OP_ECHO, Buffer.from('too early'))).error?.code, Code.NOT_AUTHENTICATED);
      assert.equal((await c.ping()).error?.code, Code.NOT_AUTHENTICATED);
      await c.authOk(token('zoe'));
      assert.equal(parseEcho(await c.request(OP_ECHO, Buffer.from('now'))).uid, 'zoe');
    });

    it('a kick closes with its Disconnect code, or 1000 when that code is not one a WebSocket close may carry', async () => {
      h = await startGateway({ ws: WS });
      const kicked = await h.connectWs();
      await kicked.authOk(token('kim'), 'a');
      const odd = await h.connectWs();
      await odd.authOk(token('kim'), 'b');
      assert.deepEqual(h.gateway.describeConnections(10).map((c) => c.transport), ['ws', 'ws']);
      await eventually(() => h.router.sessions.size === 2, 'both bound');
      h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({
        kicks: [{ uid: 'kim', deviceId: 'a', code: DisconnectCode.KICKED, reason: 'bye' }, { uid: 'kim', deviceId: 'b', code: 1234, reason: 'odd' }],
      }));
      assert.equal((await kicked.disconnectFrame()).code, DisconnectCode.KICKED);
      assert.equal((await odd.disconnectFrame()).code, 1234);
      await kicked.waitClosed();
      await odd.waitClosed();
      assert.deepEqual([kicked.closeCode, kicked.closeReason, odd.closeCode], [DisconnectCode.KICKED, 'bye', 1000]);
    });

    it('a plain HTTP request to the WebSocket port gets 426', async () => {
      h = await startGateway({ ws: WS });
      const res = await fetch(h.wsUrl.replace('ws:', 'http:'));
      assert.equal(res.status, 426);
    });
  });

  describe('bad input: the documented close code, counted, and the gateway serves on', () => {
    const servesOn = async () => {
      const c = await h.connectWs();
      await c.authOk(token('after'));
      assert.equal((await c.ping()).error, null);
    };

    it('text message: OP_ERROR BAD_FRAME, Disconnect PROTOCOL_ERROR, close 1003', async () => {
      h = await startGateway({ ws: WS });
      const before = await errorCount(Code.BAD_FRAME);
      const c = await h.connectWs();
      await c.authOk(token('tex'));
      c.ws!.send('{"op":1}');
      assert.equal((await c.take((f) => f.op === Op.ERROR)).error?.code, Code.BAD_FRAME);
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.PROTOCOL_ERROR);
      await c.waitClosed();
      assert.equal(c.closeCode, WsCloseCode.UNSUPPORTED_DATA);
      assert.equal(await errorCount(Code.BAD_FRAME), before + 1);
      await eventually(() => h.gateway.connectionCount === 0, 'the connection gone');
      await servesOn();
    });

    it('a message over the frame limit, whole or in fragments: close 1009, counted FRAME_TOO_LARGE', async () => {
      h = await startGateway({ ws: WS, maxFrameBytes: 4096 });
      const before = await errorCount(Code.FRAME_TOO_LARGE);
      const whole = await h.connectWs();
      await whole.authOk(token('big'));
      whole.ws!.send(Buffer.alloc(4097), { binary: true });
      await whole.waitClosed();
      assert.equal(whole.closeCode, WsCloseCode.MESSAGE_TOO_BIG);

      const pieces = await h.connectWs();
      for (let i = 0; i < 5; i++) pieces.ws!.send(Buffer.alloc(1000), { binary: true, fin: i === 4 });
      await pieces.waitClosed();
      assert.equal(pieces.closeCode, WsCloseCode.MESSAGE_TOO_BIG);
      assert.equal(await errorCount(Code.FRAME_TOO_LARGE), before + 2);
      await eventually(() => h.gateway.connectionCount === 0, 'both connections gone');
      await servesOn();
    });

    it('a binary message that is not a Frame: OP_ERROR BAD_FRAME, Disconnect PROTOCOL_ERROR, close 3005', async () => {
      h = await startGateway({ ws: WS });
      const c = await h.connectWs();
      c.ws!.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), { binary: true });
      assert.equal((await c.take((f) => f.op === Op.ERROR)).error?.code, Code.BAD_FRAME);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.PROTOCOL_ERROR);
      await servesOn();
    });

    it('broken WebSocket framing (an unmasked client frame) after the upgrade: close 1002, counted BAD_FRAME', async () => {
      h = await startGateway({ ws: WS });
      const before = await errorCount(Code.BAD_FRAME);
      const raw = await rawUpgraded(h.wsUrl);
      raw.socket.write(Buffer.from([0x82, 0x03, 1, 2, 3])); // binary, FIN, not masked
      await raw.closed;
      assert.equal(closeCodeIn(raw.received()), WsCloseCode.PROTOCOL_ERROR);
      assert.equal(await errorCount(Code.BAD_FRAME), before + 1);
      await servesOn();
    });

    it('garbage instead of an HTTP upgrade: the socket is closed, no connection is made', async () => {
      h = await startGateway({ ws: WS });
      const u = new URL(h.wsUrl);
      const s = net.connect(Number(u.port), u.hostname);
      s.on('error', () => {});
      const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
      s.write(Buffer.from([0x00, 0x00, 0x10, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x0d, 0x0a, 0x0d, 0x0a]));
      await closed;
      assert.equal(h.gateway.connectionCount, 0);
      await servesOn();
    });
  });

  describe('limits and deadlines, as on TCP', () => {
    it('no Auth in time: Disconnect AUTH_TIMEOUT, close 3004', async () => {
      h = await startGateway({ ws: WS, authTimeoutMs: 200 });
      const c = await h.connectWs();
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.AUTH_TIMEOUT);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.AUTH_TIMEOUT);
    });

    it('heartbeat: a silent client is closed after the idle timeout (close 3007) while a pinging one stays', async () => {
      h = await startGateway({ ws: WS, heartbeatIntervalMs: 200, idleTimeoutMs: 600 });
      const silent = await h.connectWs();
      await silent.authOk(token('quiet'));
      const pinging = await h.connectWs();
      await pinging.authOk(token('chatty'));
      let pings = 0;
      const timer = setInterval(() => { pinging.send({ op: Op.PING, body: encode('Ping', {}) }); pings++; }, 100);
      try {
        assert.equal((await silent.disconnectFrame(5000)).code, DisconnectCode.IDLE_TIMEOUT);
        await silent.waitClosed();
        assert.equal(silent.closeCode, DisconnectCode.IDLE_TIMEOUT);
        await eventually(() => pings >= 10, 'pings past the idle timeout');
        assert.equal(pinging.closed, false);
      } finally {
        clearInterval(timer);
      }
    });

    it('flood: RATE_LIMITED replies, then Disconnect RATE_LIMITED and close 3008', async () => {
      h = await startGateway({ ws: WS, rateLimitPerSec: 1, rateLimitBurst: 5 });
      const c = await h.connectWs();
      await c.authOk(token('flood'));
      for (let i = 0; i < 20; i++) c.send({ op: Op.PING, body: encode('Ping', {}) });
      await c.take((f) => f.error?.code === Code.RATE_LIMITED, 'a RATE_LIMITED reply');
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.RATE_LIMITED);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.RATE_LIMITED);
    });

    it('slow consumer: a WebSocket client that stops reading is disconnected (the TCP write queue bounds it)', async () => {
      h = await startGateway({ ws: WS, maxWriteQueueBytes: 64 * 1024 });
      const before = await errorCount(Code.SLOW_CONSUMER);
      const deaf = await h.connectWs();
      await deaf.authOk(token('deaf'));
      deaf.ws!.pause();
      deaf.socket.pause();
      const big = encode('Message', { msgId: 'big', content: Buffer.alloc(30_000, 1) });
      await eventually(() => {
        h.bus.publish(gatewaySubject(h.node), encodeDeliveryBatch({ deliveries: [{ uid: 'deaf', seq: 1, message: big }] }));
        return h.gateway.connectionCount === 0;
      }, 'the slow consumer dropped', 10_000);
      assert.equal(await errorCount(Code.SLOW_CONSUMER), before + 1);
      deaf.ws!.resume();
      deaf.socket.resume();
      await deaf.waitClosed();
    });
  });

  describe('drain and hot upgrade', () => {
    it('over capacity: a new WebSocket client gets Disconnect DRAINING and close 3000, as a TCP one does', async () => {
      h = await startGateway({ ws: WS, maxConnections: 1 });
      await h.login('first');
      const c = await h.connectWs();
      const d = await c.disconnectFrame();
      assert.deepEqual([d.code, d.reason, d.reconnect], [DisconnectCode.DRAINING, 'gateway full or draining', true]);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.DRAINING);
      assert.equal(h.gateway.connectionCount, 1);
    });

    it('stop(): Disconnect DRAINING with the shutdown reason, close 3000, to authenticated and unauthenticated clients', async () => {
      h = await startGateway({ ws: WS, drainWindowMs: 200 });
      const c = await h.connectWs();
      await c.authOk(token('drained'));
      const slow = await h.connectWs(); // not yet authenticated: drained too
      const stopping = h.gateway.stop();
      for (const x of [c, slow]) {
        const d = await x.disconnectFrame();
        assert.equal(d.code, DisconnectCode.DRAINING);
        assert.equal(d.reason, 'gateway is shutting down');
        assert.equal(d.reconnect, true);
        await x.waitClosed();
        assert.equal(x.closeCode, DisconnectCode.DRAINING);
      }
      await stopping;
    });

    it('hand-off: TCP connections move, WebSocket ones get Disconnect DRAINING (upgrade reason), close 3000', async () => {
      h = await startGateway({ ws: WS });
      const tcp = await h.login('tom');
      const ws = await h.connectWs();
      await ws.authOk(token('wes'));
      const hang = ws.send({ op: OP_HANG, body: Buffer.from('x') });
      const moved: string[] = [];
      const r = await new HandOver(h.gateway.upgradeHost).handOff(async (msg, socket) => { moved.push(msg.conn.uid); socket.destroy(); }, 2000);
      assert.deepEqual([r.handedOver, moved], [1, ['tom']]);
      const d = await ws.disconnectFrame();
      assert.deepEqual([d.code, d.reason, d.reconnect], [DisconnectCode.DRAINING, UPGRADE_REASON, true]);
      await ws.waitClosed();
      assert.equal(ws.closeCode, DisconnectCode.DRAINING);
      assert.equal(ws.frames.some((f) => f.requestId === hang), false, 'no reply after the Disconnect');
      tcp.close();
      await h.gateway.closeAfterHandOff();
    });
  });

  describe('wss:// (TLS on the WebSocket listener, the TLS listener\'s certificate)', () => {
    let tmp: string;
    let pki: TestPki;
    let ca: Buffer;
    before(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'im-wss-'));
      pki = makeTestPki(tmp);
      ca = fs.readFileSync(pki.caPem);
    });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    /** The files of the last startWss(), which a test may replace. */
    let certFile: string;
    let keyFile: string;
    /** A gateway with TLS only (plaintext off), its WebSocket listener wss://, on its own copy of the certificate. */
    function startWss(extra: Parameters<typeof startGateway>[0] = {}) {
      const name = `wss-${Math.random().toString(36).slice(2)}`;
      [certFile, keyFile] = [path.join(tmp, `${name}.pem`), path.join(tmp, `${name}.key`)];
      fs.copyFileSync(path.join(pki.dir, 'server.pem'), certFile);
      fs.copyFileSync(path.join(pki.dir, 'server.key'), keyFile);
      return startGateway({
        plaintext: false, tls: { host: '127.0.0.1', port: 0, certFile, keyFile, reloadIntervalMs: 100 }, ws: { ...WS, tls: true }, ...extra,
      });
    }
    const serialOf = (c: { socket: net.Socket }) => (c.socket as tls.TLSSocket).getPeerCertificate().serialNumber.toUpperCase();

    it('handshake with the CA: authenticates and relays; the router lists wss://; an untrusted CA and a ws:// client are refused', async () => {
      h = await startWss({ routerHeartbeatMs: 50 });
      assert.match(h.wsUrl, /^wss:\/\/127\.0\.0\.1:\d+\/$/);
      const c = await h.connectWs({ ca });
      assert.equal((c.socket as tls.TLSSocket).encrypted, true);
      assert.match((c.socket as tls.TLSSocket).getProtocol() ?? '', /^TLSv1\.[23]$/);
      const ok = await c.authOk(token('wendy'), 'browser');
      assert.equal(parseEcho(await c.request(OP_ECHO, Buffer.from('over wss'))).connId, ok.connId);
      await eventually(() => h.router.heartbeats.some((b) => b.wsUrl === h.wsUrl), 'a heartbeat naming the wss:// URL');
      assert.deepEqual(h.gateway.describeConnections(10).map((d) => [d.transport, d.tls]), [['ws', true]]);

      await assert.rejects(h.connectWs({ ca: fs.readFileSync(pki.otherCaPem) }), /self.signed|unable to (verify|get)/i);
      await assert.rejects(h.connectWs({ ca, servername: 'gw.invalid' } as ClientOptions), /gw\.invalid/);
      // Plaintext is off: the port speaks TLS only, so a ws:// upgrade never gets its 101.
      await assert.rejects(TestClient.connectWs(h.wsUrl.replace('wss:', 'ws:')), /socket hang up|ECONNRESET|Unexpected server response/);
      await assert.rejects(fetch(h.wsUrl.replace('wss:', 'http:')));
      assert.equal(h.gateway.connectionCount, 1);
      assert.equal((await c.ping()).error, null);
    });

    it('certificate rotation: an established wss connection stays, new handshakes (wss and TLS) present the renewed certificate', async () => {
      h = await startWss();
      const files = h.gateway.tls!;
      const first = files.current.serialNumber.toUpperCase();
      const before = await h.connectWs({ ca });
      await before.authOk(token('rita'));
      assert.equal(serialOf(before), first);

      const renewed = signServerCert(pki, `renewed-${Math.random().toString(36).slice(2)}`);
      fs.copyFileSync(renewed.key, keyFile);
      fs.copyFileSync(renewed.cert, certFile);
      await eventually(() => files.current.serialNumber.toUpperCase() !== first, 'the renewed certificate loaded', 10_000);
      const second = files.current.serialNumber.toUpperCase();
      const after = await h.connectWs({ ca });
      assert.equal(serialOf(after), second);
      // One certificate for both: the TCP TLS listener presents the renewed one too.
      const tlsAddr = h.router.heartbeats.at(-1)!.tlsAddr!;
      const tcp = tls.connect({ host: '127.0.0.1', port: Number(tlsAddr.split(':')[1]), ca });
      await new Promise((resolve, reject) => tcp.once('secureConnect', resolve).once('error', reject));
      assert.equal(tcp.getPeerCertificate().serialNumber.toUpperCase(), second);
      tcp.destroy();
      await after.authOk(token('rita'), 'tablet');

      // The connection made before the renewal: same socket, still serving, still on the old certificate.
      assert.equal(before.closed, false);
      assert.equal((await before.ping()).error, null);
      assert.equal(serialOf(before), first);
      assert.equal(h.gateway.connectionCount, 2);
    });

    it('bad input over wss: a text message closes 1003, an oversized one 1009, as over ws', async () => {
      h = await startWss({ maxFrameBytes: 4096 });
      const [badFrames, tooLarge] = [await errorCount(Code.BAD_FRAME), await errorCount(Code.FRAME_TOO_LARGE)];
      const text = await h.connectWs({ ca });
      await text.authOk(token('tex'));
      text.ws!.send('{"op":1}');
      assert.equal((await text.disconnectFrame()).code, DisconnectCode.PROTOCOL_ERROR);
      await text.waitClosed();
      assert.equal(text.closeCode, WsCloseCode.UNSUPPORTED_DATA);
      const big = await h.connectWs({ ca });
      await big.authOk(token('big'));
      big.ws!.send(Buffer.alloc(4097), { binary: true });
      await big.waitClosed();
      assert.equal(big.closeCode, WsCloseCode.MESSAGE_TOO_BIG);
      assert.deepEqual([await errorCount(Code.BAD_FRAME), await errorCount(Code.FRAME_TOO_LARGE)], [badFrames + 1, tooLarge + 1]);
      await eventually(() => h.gateway.connectionCount === 0, 'both connections gone');
      const next = await h.connectWs({ ca });
      await next.authOk(token('after'));
    });

    it('stop(): wss clients get Disconnect DRAINING and close 3000', async () => {
      h = await startWss({ drainWindowMs: 200 });
      const c = await h.connectWs({ ca });
      await c.authOk(token('drained'));
      const stopping = h.gateway.stop();
      const d = await c.disconnectFrame();
      assert.deepEqual([d.code, d.reason, d.reconnect], [DisconnectCode.DRAINING, 'gateway is shutting down', true]);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.DRAINING);
      await stopping;
    });

    it('hand-off (hot upgrade): wss clients get Disconnect DRAINING with the upgrade reason, close 3000, and are not handed over', async () => {
      h = await startWss();
      const c = await h.connectWs({ ca });
      await c.authOk(token('wes'));
      const moved: string[] = [];
      const r = await new HandOver(h.gateway.upgradeHost).handOff(async (msg, socket) => { moved.push(msg.conn.uid); socket.destroy(); }, 2000);
      assert.deepEqual([r.handedOver, r.reconnected, moved], [0, 1, []]);
      const d = await c.disconnectFrame();
      assert.deepEqual([d.code, d.reason, d.reconnect], [DisconnectCode.DRAINING, UPGRADE_REASON, true]);
      await c.waitClosed();
      assert.equal(c.closeCode, DisconnectCode.DRAINING);
      await h.gateway.closeAfterHandOff();
    });
  });
});
