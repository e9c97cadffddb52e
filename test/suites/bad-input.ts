/**
 * Bad input never takes the server down or disturbs anyone else: each case gets its error code
 * where the socket allows, is closed when needed, and a bystander keeps chatting throughout.
 */
import * as assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Code, DisconnectCode } from '../../common/errors';
import { ImClient } from '../../client/sdk';
import { decode, encode, frameBytes, Op } from '../../proto/wire';
import { Mode, RawClient, TestSystem, text } from '../harness';
import { needsAll } from './needs';

export function badInputSuite(mode: Mode): void {
describe(`e2e bad input (${mode.name})`, function () {
  let t: TestSystem;
  let alice: ImClient;
  let bob: ImClient;
  let n = 0;

  before(async function () {
    await needsAll(this, mode);
    t = await TestSystem.start(mode, {
      gateway: {
        authTimeoutMs: 500, heartbeatIntervalMs: 1000, idleTimeoutMs: 1500,
        rateLimitPerSec: 200, rateLimitBurst: 200, maxWriteQueueBytes: 1024 * 1024, maxFrameBytes: 64 * 1024,
      },
      logic: { maxContentBytes: 32 * 1024 },
    });
    alice = await t.client('alice');
    bob = await t.client('bob');
  });
  after(async () => { await t?.stop(); });

  /** The bystanders still exchange a message after each case. */
  afterEach(async () => {
    const msg = `still here ${++n}`;
    const before = t.inbox(bob).messages.length;
    await alice.send(t.uid('bob'), msg);
    const got = await t.inbox(bob).waitFor(before + 1);
    assert.equal(text(got[before]), msg);
  });

  const disconnectOf = (f: { body: Uint8Array }) => decode('Disconnect', f.body);

  /** The server ended the session itself: OP_ERROR (request id 0) with `code`, right before the Disconnect. */
  function assertErrorThenDisconnect(r: RawClient, code: number, disconnectCode: number): void {
    const at = r.frames.findIndex((f) => f.op === Op.DISCONNECT);
    assert.ok(at > 0, 'no Disconnect after an error');
    assert.equal(disconnectOf(r.frames[at]).code, disconnectCode);
    const err = r.frames[at - 1];
    assert.deepEqual([err.op, err.requestId, err.error?.code], [Op.ERROR, 0, code]);
  }

  it('oversized length: FRAME_TOO_LARGE, disconnect, closed', async () => {
    const r = await t.rawAuthed('x1');
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(64 * 1024 + 1, 0);
    r.write(prefix);
    const err = await r.waitFor((f) => f.op === Op.ERROR);
    assert.equal(err.error?.code, Code.FRAME_TOO_LARGE);
    const d = await r.waitFor((f) => f.op === Op.DISCONNECT);
    assert.equal(disconnectOf(d).code, DisconnectCode.PROTOCOL_ERROR);
    await r.waitClosed();
  });

  it('frames before an oversized length in the same read are served first: AuthOk, Pong, then FRAME_TOO_LARGE', async () => {
    const r = await t.raw();
    const auth = frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token: t.token('x1b'), deviceId: 'raw' }) });
    const ping = frameBytes({ op: Op.PING, requestId: 2, body: encode('Ping', {}) });
    r.write(Buffer.concat([auth, ping, Buffer.from([0x00, 0x01, 0x00, 0x01])])); // one write: 65,537 > 64 KiB
    await r.waitFor((f) => f.op === Op.DISCONNECT);
    await r.waitClosed();
    const got = r.frames.map((f) => (f.op === Op.DISCONNECT ? `disconnect ${disconnectOf(f).code}` : `${f.op}/${f.requestId} ${f.error?.code ?? 'ok'}`));
    assert.deepEqual(got, [
      `${Op.AUTH}/1 ok`, `${Op.PING}/2 ok`, `${Op.ERROR}/0 ${Code.FRAME_TOO_LARGE}`, `disconnect ${DisconnectCode.PROTOCOL_ERROR}`,
    ]);
  });

  it('garbage body: BAD_FRAME, disconnect, closed', async () => {
    const r = await t.rawAuthed('x2');
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34]);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(garbage.length, 0);
    r.write(Buffer.concat([head, garbage]));
    const err = await r.waitFor((f) => f.op === Op.ERROR);
    assert.equal(err.error?.code, Code.BAD_FRAME);
    await r.waitClosed();
  });

  it('unknown ops: UNKNOWN_OP for a gateway op and for a business op, connection kept', async () => {
    const r = await t.rawAuthed('x3');
    const low = await r.request(42, 'Ping', {});
    assert.equal(low.error?.code, Code.UNKNOWN_OP);
    const high = await r.request(4242, 'Ping', {});
    assert.equal(high.error?.code, Code.UNKNOWN_OP);
    const ping = await r.request(Op.PING, 'Ping', {});
    assert.equal(ping.error, null);
  });

  it('frames before auth: NOT_AUTHENTICATED; then no auth within the deadline: error AUTH_TIMEOUT, Disconnect AUTH_TIMEOUT', async () => {
    const r = await t.raw();
    const reply = await r.request(Op.SEND, 'SendReq', { to: t.uid('bob'), clientMsgId: 'x', content: Buffer.from('sneak') });
    assert.equal(reply.error?.code, Code.NOT_AUTHENTICATED);
    await r.waitFor((f) => f.op === Op.DISCONNECT, 3000);
    assertErrorThenDisconnect(r, Code.AUTH_TIMEOUT, DisconnectCode.AUTH_TIMEOUT);
    await r.waitClosed();
  });

  it('bad token: TOKEN_INVALID then a disconnect that says do not reconnect', async () => {
    const r = await t.raw();
    const reply = await r.request(Op.AUTH, 'Auth', { token: 'not-a-token', deviceId: 'd' });
    assert.equal(reply.error?.code, Code.TOKEN_INVALID);
    const d = disconnectOf(await r.waitFor((f) => f.op === Op.DISCONNECT));
    assert.equal(d.code, DisconnectCode.BAD_TOKEN);
    assert.equal(d.reconnect, false);
    await r.waitClosed();
  });

  it('a client that stops reading is disconnected (bounded write queue), and loses nothing stored', async function () {
    this.timeout(60_000);
    const slow = await t.rawAuthed('slowpoke');
    slow.socket.pause();
    // It still pings (it writes, it just never reads), so the idle timeout is not what ends it.
    const sender = await t.rawAuthed('firehose');
    // The sender pings too: while a loaded store holds its 32 sends, it writes nothing else, and the
    // suite's short idle timeout would cut it for idling, which is not what this test is about.
    const pinger = setInterval(() => {
      for (const c of [slow, sender]) if (!c.closed) c.send(Op.PING, 'Ping', {});
    }, 300);
    const content = Buffer.alloc(30 * 1024, 'x');
    const total = 600; // 18 MB: more than loopback kernel buffers plus the 1 MiB queue can hold
    const isSendReply = (f: { op: number }) => f.op === Op.SEND;
    for (let i = 0; i < total; i++) {
      // At most 32 unanswered (the gateway allows 64 per connection): a slow store slows the sender.
      if (i >= 32) await sender.waitForCount(isSendReply, i - 31, 30_000);
      sender.send(Op.SEND, 'SendReq', { to: t.uid('slowpoke'), clientMsgId: `s${i}`, content });
      // Small bursts, so a slow store is not flooded.
      if (i % 5 === 4) await delay(40); // pacing, not a wait for anything
    }
    // Replies come back in any order (two logic processes in distributed mode): wait for all.
    const replies = await sender.waitForCount(isSendReply, total, 30_000).catch((e) => {
      const d = sender.frames.find((f) => f.op === Op.DISCONNECT);
      throw new Error(`sender lost: ${e.message} ${d ? JSON.stringify(disconnectOf(d)) : ''}`);
    });
    // On a loaded machine a few sends may fail retryably (a busy store); what was acknowledged counts.
    const acked = replies.filter((f) => !f.error).map((f) => decode('SendResp', f.body).msgId);
    assert.ok(acked.length >= total * 0.9, `only ${acked.length} of ${total} sends acknowledged`);
    assert.ok(replies.every((f) => !f.error || f.error.retryable), 'a send failed for good');
    slow.socket.resume();
    await slow.waitClosed(20_000).finally(() => clearInterval(pinger));
    const pushes = slow.frames.filter((f) => f.op === Op.PUSH).length;
    assert.ok(pushes < total, `the server kept queueing: ${pushes} pushes reached a client that did not read`);
    const d = slow.frames.find((f) => f.op === Op.DISCONNECT);
    // The Disconnect queues behind the unread backlog; the socket is destroyed after a grace
    // period, so the frame may never arrive. If it does, it says why.
    if (d) assertErrorThenDisconnect(slow, Code.SLOW_CONSUMER, DisconnectCode.SLOW_CONSUMER);
    // Nothing acknowledged is lost: the user syncs every page of it later. It pings like a client
    // does: a page of 30 KB messages may take the store longer than the suite's 1.5 s idle timeout
    // (CI once closed it for idling, waiting for a page, on a loaded box).
    const later = await t.rawAuthed('slowpoke', 'other');
    const laterPinger = setInterval(() => { if (!later.closed) later.send(Op.PING, 'Ping', {}); }, 300);
    const synced = new Set<string>();
    try {
      for (let from = 0, more = true; more;) {
        const page = decode('SyncResp', (await later.request(Op.SYNC, 'SyncReq', { fromSeq: from, limit: 500 }, 10_000)).body);
        for (const m of page.messages) synced.add(m.msgId);
        from = page.messages.at(-1)?.seq ?? from;
        more = page.hasMore && page.messages.length > 0;
      }
    } finally {
      clearInterval(laterPinger);
    }
    assert.deepEqual(acked.filter((id) => !synced.has(id)), [], 'acknowledged messages missing from sync');
  });

  it('a silent half-open client is closed by the idle timeout: error IDLE_TIMEOUT, Disconnect IDLE_TIMEOUT', async () => {
    const r = await t.rawAuthed('silent');
    await r.waitFor((f) => f.op === Op.DISCONNECT, 5000);
    assertErrorThenDisconnect(r, Code.IDLE_TIMEOUT, DisconnectCode.IDLE_TIMEOUT);
    await r.waitClosed();
  });

  it('a flood gets RATE_LIMITED (retryable), then a RATE_LIMITED disconnect', async () => {
    const r = await t.rawAuthed('flooder');
    const ping = frameBytes({ op: Op.PING, requestId: 1, body: encode('Ping', {}) });
    r.write(Buffer.concat(Array.from({ length: 2000 }, () => ping)));
    const limited = await r.waitFor((f) => f.error?.code === Code.RATE_LIMITED);
    assert.equal(limited.error?.retryable, true);
    const d = await r.waitFor((f) => f.op === Op.DISCONNECT);
    assert.equal(disconnectOf(d).code, DisconnectCode.RATE_LIMITED);
    await r.waitClosed();
  });
});
}
