/**
 * One client connection on a real gateway over TCP: the handshake, requests to logic, bad input
 * and the timeouts, each with the documented error or Disconnect code.
 */
import * as assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Code, DisconnectCode } from '../common/errors';
import { decode, encode, frameBytes, Op } from '../proto/wire';
import {
  eventually as waitFor, Harness, OP_FAIL, OP_HANG, parseEcho, SECRET, startGateway, TestClient, token,
} from './gateway.test-support';
import { signToken } from '../common/jwt';
import { encodeDeliveryBatch } from '../proto/delivery';

const MAX_FRAME_BYTES = 4096;
const RATE_BURST = 40;

describe('gateway connection', () => {
  let h: Harness;
  let bystander: TestClient;

  before(async () => {
    h = await startGateway({
      maxFrameBytes: MAX_FRAME_BYTES, rateLimitPerSec: 20, rateLimitBurst: RATE_BURST, maxPendingPerConn: 4,
      authTimeoutMs: 3000, closeGraceMs: 5000,
    });
    bystander = await h.login('bystander');
  });
  after(async () => h.stop());

  /** After any misbehaving client: the bystander noticed nothing and a new client works end to end. */
  async function othersUnaffected(): Promise<void> {
    assert.equal(bystander.closed, false, 'bystander still connected');
    const pong = await bystander.ping();
    assert.equal(pong.error, null);
    assert.equal(bystander.frames.length, 0, 'bystander got no stray frames');
    const fresh = await h.login('fresh');
    const echo = parseEcho(await fresh.request(Op.SEND, Buffer.from('ok')));
    assert.equal(echo.uid, 'fresh');
    fresh.close();
  }

  describe('handshake', () => {
    it('authenticates: AuthOk carries the token uid, device, node and a conn id; the session is bound', async () => {
      const c = await h.connect();
      const f = await c.auth(token('alice'), 'laptop', 42);
      assert.equal(f.op, Op.AUTH);
      assert.equal(f.error, null);
      const ok = decode('AuthOk', f.body);
      assert.equal(ok.uid, 'alice');
      assert.equal(ok.deviceId, 'laptop');
      assert.equal(ok.node, h.node);
      assert.equal(ok.maxFrameBytes, MAX_FRAME_BYTES);
      assert.ok(ok.heartbeatIntervalMs > 0);
      assert.ok(ok.serverTimeMs > 0);
      assert.ok(ok.connId);
      const bound = h.router.sessions.get(`${h.node}/${ok.connId}`);
      assert.deepEqual(bound, { uid: 'alice', deviceId: 'laptop', node: h.node, connId: ok.connId });
      c.close();
      await waitFor(() => !h.router.sessions.has(`${h.node}/${ok.connId}`), 'unbind on close');
    });

    it('uses device "default" when none is given, and conn ids are unique', async () => {
      const a = await h.connect();
      const b = await h.connect();
      const okA = decode('AuthOk', (await a.auth(token('bob'), '')).body);
      const okB = decode('AuthOk', (await b.auth(token('bob'), '')).body);
      assert.equal(okA.deviceId, 'default');
      assert.notEqual(okA.connId, okB.connId);
      a.close();
      b.close();
    });

    it('rejects a token signed with another secret: TOKEN_INVALID, Disconnect BAD_TOKEN (no reconnect)', async () => {
      const c = await h.connect();
      const f = await c.auth(signToken('other-secret', 'alice', 3600));
      assert.equal(f.error?.code, Code.TOKEN_INVALID);
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.BAD_TOKEN);
      assert.equal(d.reconnect, false);
      await c.waitClosed();
      await othersUnaffected();
    });

    it('rejects an expired token: TOKEN_EXPIRED, Disconnect TOKEN_EXPIRED', async () => {
      const c = await h.connect();
      const f = await c.auth(signToken(SECRET, 'alice', 60, Date.now() - 3600_000));
      assert.equal(f.error?.code, Code.TOKEN_EXPIRED);
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.TOKEN_EXPIRED);
      await c.waitClosed();
      await othersUnaffected();
    });

    it('rejects a device id longer than 64 characters and closes', async () => {
      const c = await h.connect();
      const f = await c.auth(token('alice'), 'd'.repeat(65));
      assert.equal(f.error?.code, Code.BAD_FRAME);
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.PROTOCOL_ERROR);
      await c.waitClosed();
      await othersUnaffected();
    });

    it('answers NOT_AUTHENTICATED to frames before Auth and keeps the connection for a later Auth', async () => {
      const c = await h.connect();
      assert.equal((await c.ping()).error?.code, Code.NOT_AUTHENTICATED);
      const biz = await c.request(Op.SEND, Buffer.from('x'));
      assert.equal(biz.error?.code, Code.NOT_AUTHENTICATED);
      assert.equal(biz.error?.retryable, false);
      await c.authOk(token('alice'));
      assert.equal((await c.ping()).error, null);
      c.close();
    });

    it('answers ALREADY_AUTHENTICATED to a second Auth; the uid stays the first token\'s', async () => {
      const c = await h.login('alice');
      const f = await c.auth(token('mallory'));
      assert.equal(f.error?.code, Code.ALREADY_AUTHENTICATED);
      assert.equal(parseEcho(await c.request(Op.SEND, Buffer.from('{"from":"mallory"}'))).uid, 'alice');
      c.close();
    });
  });

  describe('requests', () => {
    it('answers Ping with Pong on the same op and request id', async () => {
      const c = await h.login('alice');
      const id = c.send({ op: Op.PING, requestId: 777, body: encode('Ping', { clientTimeMs: 1 }) });
      const f = await c.reply(id);
      assert.equal(f.op, Op.PING);
      assert.equal(f.requestId, 777);
      assert.ok(decode('Pong', f.body).serverTimeMs > 0);
      c.close();
    });

    it('forwards business ops to logic with the connection identity and relays the result', async () => {
      const c = await h.connect();
      const ok = await c.authOk(token('alice'), 'tablet');
      const f = await c.request(Op.SYNC, Buffer.from('opaque bytes'));
      assert.equal(f.op, Op.SYNC);
      const echo = parseEcho(f);
      assert.deepEqual(echo, { op: Op.SYNC, uid: 'alice', deviceId: 'tablet', connId: ok.connId, node: h.node, body: 'opaque bytes' });
      c.close();
    });

    it('relays a logic error with its code and retryable flag', async () => {
      const c = await h.login('alice');
      const f = await c.request(OP_FAIL);
      assert.deepEqual(f.error, { code: Code.BAD_REQUEST, message: 'bad request', retryable: false });
      c.close();
    });

    it('bounds pending logic calls per connection (OVERLOADED) and times out unanswered ones', async () => {
      const c = await h.login('alice');
      const ids = Array.from({ length: 5 }, () => c.send({ op: OP_HANG }));
      const over = await c.reply(ids[4]);
      assert.equal(over.error?.code, Code.OVERLOADED);
      assert.equal(over.error?.retryable, true);
      for (const id of ids.slice(0, 4)) {
        const f = await c.reply(id);
        assert.equal(f.error?.code, Code.TIMEOUT);
        assert.equal(f.error?.retryable, true);
      }
      assert.equal(parseEcho(await c.request(Op.SEND)).uid, 'alice', 'slots freed after the timeouts');
      c.close();
    });

    it('answers UNKNOWN_OP to gateway ops a client must not send, and stays open', async () => {
      const c = await h.login('alice');
      for (const op of [Op.PUSH, Op.DISCONNECT, Op.ERROR, 0, 42, 99]) {
        assert.equal((await c.request(op)).error?.code, Code.UNKNOWN_OP, `op ${op}`);
      }
      assert.equal((await c.ping()).error, null);
      c.close();
      await othersUnaffected();
    });

    it('decodes a frame split over 1-byte writes, and many frames in one write', async () => {
      const c = await h.connect();
      const bytes = Buffer.concat([
        frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token: token('alice'), deviceId: 'x' }) }),
        frameBytes({ op: Op.PING, requestId: 2, body: encode('Ping', { clientTimeMs: 5 }) }),
      ]);
      for (const byte of bytes) {
        c.socket.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(decode('AuthOk', (await c.reply(1)).body).uid, 'alice');
      assert.equal((await c.reply(2)).op, Op.PING);

      // 16 frames, 4 of them business calls (the per-connection pending bound in this suite).
      const isSend = (i: number) => i % 4 === 0;
      const many = Buffer.concat(Array.from({ length: 16 }, (_, i) =>
        frameBytes({ op: isSend(i) ? Op.SEND : Op.PING, requestId: 100 + i, body: isSend(i) ? Buffer.from(`m${i}`) : encode('Ping', {}) })));
      c.socket.write(many);
      for (let i = 0; i < 16; i++) {
        const f = await c.reply(100 + i);
        if (isSend(i)) assert.equal(parseEcho(f).body, `m${i}`);
        else assert.equal(f.op, Op.PING);
      }
      c.close();
    });
  });

  describe('bad input', () => {
    afterEach(othersUnaffected);

    it('garbage frame: OP_ERROR BAD_FRAME, Disconnect PROTOCOL_ERROR, closed', async () => {
      const c = await h.connect();
      const garbage = Buffer.from([0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]);
      c.socket.write(garbage);
      const err = await c.take((f) => f.op === Op.ERROR);
      assert.equal(err.requestId, 0);
      assert.equal(err.error?.code, Code.BAD_FRAME);
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.PROTOCOL_ERROR);
      assert.equal(d.reconnect, false);
      await c.waitClosed();
    });

    it('undecodable Auth or Ping body after a valid envelope: BAD_FRAME and closed', async () => {
      const a = await h.connect();
      a.send({ op: Op.AUTH, body: Buffer.from([0xff, 0xff, 0xff]) });
      assert.equal((await a.take((f) => f.op === Op.ERROR)).error?.code, Code.BAD_FRAME);
      await a.waitClosed();
      const p = await h.login('alice');
      p.send({ op: Op.PING, body: Buffer.from([0xff, 0xff]) });
      assert.equal((await p.take((f) => f.op === Op.ERROR)).error?.code, Code.BAD_FRAME);
      assert.equal((await p.disconnectFrame()).code, DisconnectCode.PROTOCOL_ERROR);
      await p.waitClosed();
    });

    it('oversized length: FRAME_TOO_LARGE from the prefix alone, Disconnect PROTOCOL_ERROR, closed', async () => {
      const c = await h.login('alice');
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(MAX_FRAME_BYTES + 1);
      c.socket.write(prefix); // the body is never sent: the server must not wait for it
      const err = await c.take((f) => f.op === Op.ERROR);
      assert.equal(err.error?.code, Code.FRAME_TOO_LARGE);
      assert.equal((await c.disconnectFrame()).code, DisconnectCode.PROTOCOL_ERROR);
      await c.waitClosed();
    });

    it('flood: RATE_LIMITED replies, then Disconnect RATE_LIMITED and closed', async () => {
      const c = await h.login('flooder');
      const n = RATE_BURST * 5;
      c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) =>
        frameBytes({ op: Op.PING, requestId: 1000 + i, body: encode('Ping', {}) }))));
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.RATE_LIMITED);
      assert.equal(d.reconnect, true);
      await c.waitClosed();
      const pongs = c.frames.filter((f) => f.op === Op.PING && !f.error).length;
      const limited = c.frames.filter((f) => f.error?.code === Code.RATE_LIMITED);
      assert.ok(pongs >= RATE_BURST - 1 && pongs < n, `${pongs} pongs`);
      assert.ok(limited.length > 0, 'some frames answered RATE_LIMITED before the disconnect');
      assert.ok(limited.every((f) => f.error?.retryable === true));
      assert.ok(pongs + limited.length < n, 'frames after the disconnect were not processed');
    });

    it('slow consumer: a client that stops reading is disconnected; another client of the same uid keeps up', async () => {
      const reader = await h.login('carol', 'reader');
      const sleeper = await h.login('carol', 'sleeper');
      sleeper.socket.pause();
      const before = h.gateway.connectionCount;
      const message = encode('Message', { msgId: 'm', content: Buffer.alloc(4096, 1) });
      const perBatch = 8;
      let batches = 0;
      for (; batches < 2000 && h.gateway.connectionCount === before; batches++) {
        h.bus.publish(`im.gw.${h.node}`, encodeDeliveryBatch({
          deliveries: Array.from({ length: perBatch }, (_, i) => ({ uid: 'carol', seq: batches * perBatch + i + 1, message })),
        }));
        await new Promise((r) => setImmediate(r));
      }
      assert.equal(h.gateway.connectionCount, before - 1, 'the sleeper was dropped');
      const published = batches * perBatch;
      await waitFor(() => reader.frames.filter((f) => f.op === Op.PUSH).length === published, 'reader got every push');
      reader.frames.length = 0;
      assert.equal((await reader.ping()).error, null);

      sleeper.socket.resume();
      const d = await sleeper.disconnectFrame(10_000);
      assert.equal(d.code, DisconnectCode.SLOW_CONSUMER);
      assert.equal(d.reconnect, true);
      await sleeper.waitClosed();
      reader.close();
    });
  });

  describe('timeouts', () => {
    let t: Harness;
    before(async () => {
      t = await startGateway({ authTimeoutMs: 150, heartbeatIntervalMs: 100, idleTimeoutMs: 300 });
    });
    after(async () => t.stop());

    it('closes a connection that does not authenticate in time: Disconnect AUTH_TIMEOUT', async () => {
      const c = await t.connect();
      const d = await c.disconnectFrame();
      assert.equal(d.code, DisconnectCode.AUTH_TIMEOUT);
      assert.equal(d.reconnect, true);
      await c.waitClosed();
    });

    it('closes a silent authenticated client after the idle timeout, while a pinging one stays', async () => {
      const silent = await t.login('silent');
      const active = await t.login('active');
      const activeSince = Date.now();
      // Keep the active client pinging until the silent one is gone and a full idle window has passed.
      while (!silent.closed || Date.now() - activeSince < 2 * 300) {
        assert.equal((await active.ping()).error, null);
        await delay(50); // pacing: a client pinging every 50 ms
      }
      const d = await silent.disconnectFrame();
      assert.equal(d.code, DisconnectCode.IDLE_TIMEOUT);
      assert.equal(d.reconnect, true);
      assert.equal(active.closed, false, 'the pinging client is still connected');
    });
  });
});
