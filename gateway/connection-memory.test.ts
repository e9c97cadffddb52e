/**
 * A Connection over an in-memory ClientSocket: no network, no listener. The client's bytes are
 * fed as 'data' events, what the connection writes is decoded frame by frame, and time is the
 * TimerWheel's injected clock. What it checks is the connection's own behaviour: the handshake,
 * a business op to logic and its reply, a push, backpressure, the idle timeout, the close, the
 * client's half-close.
 */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Code, DisconnectCode } from '../common/errors';
import { silentLogger } from '../common/log';
import { FrameDecoder } from '../proto/codec';
import { pushFrameHead } from '../proto/push';
import { decode, decodeFrame, encode, Frame, frameBytes, Op } from '../proto/wire';
import { type ClientSocket, Connection, type ConnectionContext } from './connection';
import type { LogicCall, LogicCallResult } from './logic-client';
import { resolveLimits } from './limits';
import { SECRET, token } from './gateway.test-support';
import { TimerWheel } from './timer-wheel';

const OP_ECHO = 120;
/** Logic never answers it. */
const OP_NEVER = 121;

/** The client end and the socket at once: frames written by the connection queue in `frames`. */
class MemorySocket extends EventEmitter implements ClientSocket {
  writableLength = 0;
  destroyed = false;
  writableEnded = false;
  readableEnded = false;
  readonly remoteAddress = 'memory';
  readonly remotePort = 1;
  readonly frames: Frame[] = [];
  private readonly decoder = new FrameDecoder(1 << 20);
  private closed = false;

  write(chunk: Uint8Array, done?: (err?: Error | null) => void): boolean {
    if (this.writableEnded || this.destroyed) throw new Error('write after end');
    const { frames, error } = this.decoder.push(Buffer.from(chunk));
    if (error) throw error;
    for (const f of frames) this.frames.push(decodeFrame(f));
    if (frames.length > 0) this.emit('frame');
    if (done) setImmediate(done);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  end(): void {
    this.writableEnded = true;
    setImmediate(() => this.close());
  }
  destroy(): void {
    this.destroyed = true;
    this.close();
  }
  pause(): void {}
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  /** The client half-closes (a FIN). */
  endInput(): void {
    this.readableEnded = true;
    this.emit('end');
  }

  /** The client sends a frame. */
  send(op: number, requestId: number, body: Uint8Array): void {
    this.emit('data', frameBytes({ op, requestId, body }));
  }

  /** The first frame written that `match` accepts, taken off the queue; waits for it to be written. */
  async take(match: (f: Frame) => boolean): Promise<Frame> {
    for (;;) {
      const i = this.frames.findIndex(match);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      await new Promise((resolve) => this.once('frame', resolve));
    }
  }
}

describe('Connection over an in-memory transport (no sockets, injected clock)', () => {
  const limits = resolveLimits({ authTimeoutMs: 5000, heartbeatIntervalMs: 30_000, idleTimeoutMs: 90_000, maxWriteQueueBytes: 1024 });
  let wheel: TimerWheel;
  let calls: LogicCall[];
  let events: string[];
  let context: ConnectionContext;

  beforeEach(() => {
    wheel = new TimerWheel({ granuleMs: 100, now: () => 0, autoAdvance: false });
    calls = [];
    events = [];
    context = {
      node: 'n1', auth: { secret: SECRET }, limits, logger: silentLogger, wheel,
      logic: {
        call: async (c: LogicCall): Promise<LogicCallResult> => {
          calls.push(c);
          if (c.op === OP_NEVER) await new Promise(() => undefined);
          return { code: Code.OK, body: Buffer.concat([Buffer.from(`${c.uid}/${c.deviceId}:`), c.body]), message: '', retryable: false };
        },
      },
      onAuthenticated: (c) => events.push(`authenticated ${c.uid}`),
      onClosing: () => events.push('closing'),
      onClose: () => events.push('closed'),
    };
  });
  afterEach(() => wheel.stop());

  async function open(uid: string): Promise<{ socket: MemorySocket; conn: Connection }> {
    const socket = new MemorySocket();
    const conn = new Connection(context, socket, 'c1');
    socket.send(Op.AUTH, 1, encode('Auth', { token: token(uid), deviceId: 'tab', lastSeq: 7 }));
    const ok = decode('AuthOk', (await socket.take((f) => f.requestId === 1)).body);
    assert.deepEqual([ok.uid, ok.deviceId, ok.connId, ok.node], [uid, 'tab', 'c1', 'n1']);
    return { socket, conn };
  }

  it('auth: AuthOk names the session, the connection is open and announced; a bad token is refused and closed', async () => {
    const { conn } = await open('ann');
    assert.deepEqual([conn.state, conn.uid, conn.deviceId, conn.lastSeq], ['open', 'ann', 'tab', 7]);
    assert.deepEqual(events, ['authenticated ann']);

    const bad = new MemorySocket();
    const refused = new Connection(context, bad, 'c2');
    bad.send(Op.AUTH, 1, encode('Auth', { token: 'not-a-token', deviceId: '', lastSeq: 0 }));
    assert.equal((await bad.take((f) => f.requestId === 1)).error?.code, Code.TOKEN_INVALID);
    assert.equal(decode('Disconnect', (await bad.take((f) => f.op === Op.DISCONNECT)).body).code, DisconnectCode.BAD_TOKEN);
    await new Promise((resolve) => bad.once('close', resolve));
    assert.equal(refused.state, 'closed');
  });

  it('a business op goes to logic with the authenticated uid and device, and its reply comes back under the request id', async () => {
    const { socket } = await open('bob');
    socket.send(OP_ECHO, 42, Buffer.from('hi'));
    const reply = await socket.take((f) => f.requestId === 42);
    assert.equal(reply.op, OP_ECHO);
    assert.equal(Buffer.from(reply.body).toString(), 'bob/tab:hi');
    assert.deepEqual(calls.map((c) => [c.op, c.uid, c.deviceId, c.connId, c.node]), [[OP_ECHO, 'bob', 'tab', 'c1', 'n1']]);
  });

  it('a push is written as OP_PUSH with its message; past the write bound the client is a slow consumer', async () => {
    const { socket, conn } = await open('cid');
    const message = encode('Message', { msgId: 'm9', seq: 9, convId: 'p:a:cid', from: 'a', to: 'cid' });
    assert.equal(conn.pushFrame(pushFrameHead(9, message.length), message), true);
    const push = await socket.take((f) => f.op === Op.PUSH);
    assert.equal(decode('Message', push.body).msgId, 'm9');

    socket.writableLength = limits.maxWriteQueueBytes; // the client stopped reading
    assert.equal(conn.pushFrame(pushFrameHead(10, message.length), message), false);
    assert.equal((await socket.take((f) => f.op === Op.ERROR)).error?.code, Code.SLOW_CONSUMER);
    assert.equal(decode('Disconnect', (await socket.take((f) => f.op === Op.DISCONNECT)).body).code, DisconnectCode.SLOW_CONSUMER);
    assert.equal(conn.state, 'closing');
  });

  it('idle timeout on the wheel: open until the deadline, then IDLE_TIMEOUT, Disconnect, the socket ends and the close is announced', async () => {
    const { socket, conn } = await open('dot');
    const lastFrameAt = Date.now();
    wheel.advance(lastFrameAt + limits.idleTimeoutMs - 1000);
    assert.equal(conn.state, 'open');
    assert.equal(socket.frames.length, 0, 'nothing written before the deadline');
    wheel.advance(Date.now() + limits.idleTimeoutMs + 1000);
    assert.equal((await socket.take((f) => f.op === Op.ERROR)).error?.code, Code.IDLE_TIMEOUT);
    assert.equal(decode('Disconnect', (await socket.take((f) => f.op === Op.DISCONNECT)).body).code, DisconnectCode.IDLE_TIMEOUT);
    assert.equal(socket.writableEnded, true);
    await new Promise((resolve) => socket.once('close', resolve));
    assert.equal(conn.state, 'closed');
    assert.deepEqual(events, ['authenticated dot', 'closing', 'closed']);
    assert.equal(wheel.size, 0, 'a closed connection leaves the wheel');
  });

  it('half-close: replies owed are still written after the FIN; a call logic never answers is bounded by the idle deadline', async () => {
    const { socket, conn } = await open('eve');
    socket.send(OP_ECHO, 5, Buffer.from('a'));
    socket.send(OP_NEVER, 6, Buffer.from('b'));
    socket.emit('data', Buffer.from([0, 0, 0, 9])); // a frame that never completes
    socket.endInput();
    assert.equal(Buffer.from((await socket.take((f) => f.requestId === 5)).body).toString(), 'eve/tab:a');
    assert.deepEqual([conn.state, socket.writableEnded, conn.pendingBytes], ['open', false, 0], 'one call still owed; the partial frame dropped');
    wheel.advance(Date.now() + limits.idleTimeoutMs + 1000);
    assert.equal((await socket.take((f) => f.op === Op.ERROR)).error?.code, Code.IDLE_TIMEOUT);
    assert.equal(decode('Disconnect', (await socket.take((f) => f.op === Op.DISCONNECT)).body).code, DisconnectCode.IDLE_TIMEOUT);
    await new Promise((resolve) => socket.once('close', resolve));
    assert.deepEqual(events, ['authenticated eve', 'closing', 'closed']);
  });

  it('half-close with nothing owed: the socket ends at once, without a Disconnect', async () => {
    const { socket, conn } = await open('fay');
    socket.send(OP_ECHO, 5, Buffer.from('a'));
    socket.endInput();
    assert.equal(Buffer.from((await socket.take((f) => f.requestId === 5)).body).toString(), 'fay/tab:a');
    await new Promise((resolve) => socket.once('close', resolve));
    assert.equal(conn.state, 'closed');
    assert.deepEqual(socket.frames, [], 'no Disconnect');
    assert.deepEqual(events, ['authenticated fay', 'closing', 'closed']);
  });
});
