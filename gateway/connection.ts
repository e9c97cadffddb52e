/**
 * One client connection: the handshake, heartbeat and idle timeout, flood and slow-consumer
 * limits, and forwarding of business ops (>= 100) to logic as opaque bytes. Nothing here knows
 * what a business op means.
 *
 * States: awaiting-auth -> open -> closing (Disconnect written, end() called) -> closed (socket
 * closed). A TCP client's half-close (FIN) is no close: its socket is half-open, every request
 * that came before the FIN is still answered, and then the connection goes to closing without a
 * Disconnect (endOfInput).
 *
 * Everything a connection is (uid, device, connId, lastSeq, undecoded bytes) stays readable so
 * that a later release can hand a live socket to a new process: detach() ends this object's part
 * (state handed-off) and returns a ConnectionSnapshot, from which the next process builds the same
 * connection around the same socket (`adopt`).
 *
 * Under it, two seams: the byte pipe is a ClientSocket (a TCP or TLS socket as it is, or an
 * in-memory one in a test: connection-memory.test.ts; client-socket.ts), and the framing on it is a Transport: TCP
 * (a stream of length-prefixed frames, below) or WebSocket (one binary message per frame, ws.ts).
 * Everything else — handshake, limits, rate limits, deadlines, backpressure, drain — is this one
 * class for every kind.
 */
import { Code, DisconnectCode, InvalidUtf8Error, isRetryableCode, shouldReconnect, TokenExpiredError } from '../common/errors';
import { type TokenAuth, verifyToken } from '../common/jwt';
import type { Logger } from '../common/log';
import { metrics } from '../common/metrics';
import { countDisconnect, countGatewayError, gatewayRequest } from '../telemetry/hooks';
import type { SessionRef } from '../router/api';
import { FrameDecoder } from '../proto/codec';
import { decode, decodeFrame, encode, FIRST_BUSINESS_OP, Frame, frameBytes, Op } from '../proto/wire';
import type { ConnectionLimits } from './limits';
import type { LogicCaller } from './logic-client';
import { type ClientSocket, stopReading } from './client-socket';
import { TokenBucket, WindowCounter } from './rate-limit';
import type { TimerWheel, WheelItem } from './timer-wheel';

export const MAX_DEVICE_ID_CHARS = 64;
export const DEFAULT_DEVICE_ID = 'default';

export type ConnectionState = 'awaiting-auth' | 'open' | 'closing' | 'closed' | 'handed-off';

/** Version of ConnectionSnapshot; a process closes a snapshot of a version it does not know. */
export const SNAPSHOT_VERSION = 1;

/** A live connection's state as it crosses to another process during a hot upgrade (JSON). */
export interface ConnectionSnapshot {
  v: number;
  connId: string;
  state: 'awaiting-auth' | 'open';
  uid: string;
  deviceId: string;
  lastSeq: number;
  /** Received bytes of a frame not yet complete, base64. */
  pendingBytes: string;
  rateTokens: number;
  rateRefilledAtMs: number;
  lastFrameAtMs: number;
  /** When an awaiting-auth connection runs out of time for its Auth. */
  authDeadlineMs: number;
}

/**
 * What every connection of a gateway shares, built once: a connection holds a reference to it
 * rather than its own copy, closures or timers (heap per idle connection is a goal; BENCHMARKS.md).
 */
export interface ConnectionContext {
  node: string;
  auth: TokenAuth;
  logic: LogicCaller;
  limits: ConnectionLimits;
  logger: Logger;
  /** Auth deadline, idle timeout and rate state release of every connection. */
  wheel: TimerWheel;
  /** Called once, right after AuthOk is written. */
  onAuthenticated?: (conn: Connection) => void;
  /** Called once when the connection starts closing (it stops counting as live). */
  onClosing?: (conn: Connection) => void;
  /** Called once when the socket has closed. */
  onClose?: (conn: Connection) => void;
}

/**
 * How a connection's frames travel. Stateless and shared by every connection of its kind: what a
 * connection needs of its own is its socket and `link` (undefined for TCP; the WebSocket for ws.ts),
 * so an idle TCP connection costs no more than before. Either way the byte pipe under it is
 * `socket`: its write queue is the one backpressure counts, and its 'close' ends the connection.
 */
export interface Transport {
  readonly name: 'tcp' | 'ws';
  /** Starts feeding input: conn.receive(chunk) for a byte stream, conn.receiveFrame(bytes) per whole frame. */
  attach(conn: Connection): void;
  /** Writes one frame as frameBytes() makes it (length prefix first), continued by `tail` when given. */
  write(conn: Connection, frame: Buffer, tail: Uint8Array | undefined): void;
  /** Ends the stream after the Disconnect frame (or the last reply); `code` is the Disconnect code or a transport's own. */
  end(conn: Connection, code: number, reason: string): void;
}

/** What transport.end() is given when the client ended the session (a WebSocket's normal closure). */
const CLIENT_CLOSED = 1000;

/** The socket's back reference: listeners are shared functions, called with the socket as this. */
const CONN = Symbol('connection');

/**
 * Hot upgrade: the wake-up of a paused connection waiting in whenSettled() for its logic calls to
 * answer. Here rather than a field: only connections being handed over ever have one.
 */
const settleWaiters = new Map<Connection, () => void>();
const NO_BYTES = Buffer.alloc(0);
/** Connections corked in this turn of the event loop, uncorked together in its check phase. */
let corkedThisTurn: Connection[] = [];
type ConnSocket = ClientSocket & { [CONN]?: Connection };

/** Length-prefixed frames on the TCP stream itself (docs/protocol.md). */
export const tcpTransport: Transport = {
  name: 'tcp',
  attach(conn) {
    const s = conn.socket as ConnSocket;
    // The client's FIN ends its input only: replies still owed are written after it (endOfInput).
    s.allowHalfOpen = true;
    s.on('data', onSocketData);
    s.on('end', onSocketEnd);
  },
  write(conn, frame, tail) {
    conn.socket.write(frame);
    if (tail && tail.length > 0) conn.socket.write(tail);
  },
  end(conn) {
    conn.socket.end();
  },
};

function onSocketData(this: ConnSocket, chunk: Buffer): void {
  this[CONN]?.receive(chunk);
}

function onSocketEnd(this: ConnSocket): void {
  this[CONN]?.endOfInput();
}

export type { ClientSocket };

export class Connection implements WheelItem {
  readonly socket: ClientSocket;
  readonly connId: string;
  readonly transport: Transport;
  /** The transport's per-connection state (the WebSocket); undefined for TCP. */
  readonly link: unknown;
  /** TimerWheel bookkeeping. */
  wheelTick = -1;
  private readonly opts: ConnectionContext;
  /** Only while a frame is partly received (or the stream broke): between frames there is nothing to hold. */
  private decoder: FrameDecoder | undefined;
  /**
   * Rate state exists only while it differs from a fresh one: created by the first frame, dropped
   * by the wheel once the bucket is full again and no rejection counts in the current window.
   */
  private bucket: TokenBucket | undefined;
  private rejected: WindowCounter | undefined;
  private _state: ConnectionState = 'awaiting-auth';
  private _uid = '';
  private _deviceId = '';
  private _lastSeq = 0;
  private pendingCalls = 0;
  private lastFrameAtMs: number;
  private corked = false;
  private paused = false;
  private readonly authDeadlineMs: number;
  private graceTimer: NodeJS.Timeout | undefined;

  /** `adopt`: serve a connection another process handed over (same connId, no new handshake). */
  constructor(
    context: ConnectionContext, socket: ClientSocket, connId: string, adopt?: ConnectionSnapshot,
    transport: Transport = tcpTransport, link?: unknown,
  ) {
    this.opts = context;
    this.socket = socket;
    this.connId = connId;
    this.transport = transport;
    this.link = link;
    const now = Date.now();
    this.lastFrameAtMs = now;
    this.authDeadlineMs = now + this.limits.authTimeoutMs;
    const snap = adopt;
    if (snap) {
      if (snap.rateTokens < this.limits.rateLimitBurst) this.rateBucket(now).restore(snap.rateTokens, snap.rateRefilledAtMs);
      this.lastFrameAtMs = snap.lastFrameAtMs;
      this.authDeadlineMs = snap.authDeadlineMs;
      if (snap.state === 'open') {
        this._uid = snap.uid;
        this._deviceId = snap.deviceId;
        this._lastSeq = snap.lastSeq;
        this._state = 'open';
      }
    }

    const s = this.socket as ConnSocket;
    s.setNoDelay?.(true);
    s.setKeepAlive?.(true, 60_000);
    s[CONN] = this;
    transport.attach(this);
    s.on('error', Connection.onSocketError);
    s.on('close', Connection.onSocketClose);
    context.wheel.schedule(this, this.nextDeadline());
    const held = snap ? Buffer.from(snap.pendingBytes, 'base64') : undefined;
    // Next tick: after the gateway has registered this connection, and still before any newer
    // byte from the socket (I/O callbacks only run once the tick queue is empty).
    if (held && held.length > 0) process.nextTick(() => this.receive(held));
  }

  get state(): ConnectionState { return this._state; }
  private get limits(): ConnectionLimits { return this.opts.limits; }
  get authenticated(): boolean { return this._uid !== ''; }
  /** The token's sub: the uid of everything on this connection. Empty before auth. */
  get uid(): string { return this._uid; }
  get deviceId(): string { return this._deviceId; }
  /** The highest inbox seq the device reported in Auth. */
  get lastSeq(): number { return this._lastSeq; }
  /** Received bytes of a frame not yet complete. */
  get pendingBytes(): number { return this.decoder?.pendingBytes ?? 0; }

  /** Nothing owed to the socket: no logic call awaiting its reply, no byte waiting to be written. */
  get settled(): boolean { return this.pendingCalls === 0 && this.writesDrained; }
  /** Every byte written so far has reached the kernel. */
  get writesDrained(): boolean { return !this.corked && this.socket.writableLength === 0; }

  /**
   * Hot upgrade: stops reading for good (what the client sends next waits in the kernel for the
   * next owner). Replies to calls in flight and pushes are still written.
   */
  pauseForHandOff(): void {
    if (this.paused) return;
    this.paused = true;
    stopReading(this.socket);
  }

  /**
   * Hot upgrade, once paused: resolves when the connection is settled (no logic call awaiting its
   * reply, every byte written has reached the kernel) or no longer served (closed meanwhile).
   * Unbounded: the caller bounds it (a client that does not read never drains).
   */
  async whenSettled(): Promise<void> {
    while ((this._state === 'awaiting-auth' || this._state === 'open') && !this.settled) {
      await new Promise<void>((resolve) => {
        if (this.pendingCalls > 0) settleWaiters.set(this, resolve);
        // Its callback runs once every byte queued before it is written (or the socket is gone).
        else this.socket.write(NO_BYTES, () => resolve());
      });
    }
  }

  /** A call answered or the connection stopped being served: whenSettled() looks again. */
  private wakeSettled(): void {
    if (!this.paused) return;
    const wake = settleWaiters.get(this);
    if (!wake) return;
    settleWaiters.delete(this);
    wake();
  }

  /**
   * Hot upgrade: stops serving the socket and returns the state to rebuild this connection from.
   * Call when paused and (ideally) settled; the caller passes the socket on. Late replies are dropped.
   */
  detach(): ConnectionSnapshot {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') throw new Error(`cannot detach a ${this._state} connection`);
    const state = this._state;
    this._state = 'handed-off';
    this.clearTimers();
    const bucket = this.bucket?.snapshot() ?? { tokens: this.limits.rateLimitBurst, lastMs: Date.now() };
    return {
      v: SNAPSHOT_VERSION, connId: this.connId, state, uid: this._uid, deviceId: this._deviceId, lastSeq: this._lastSeq,
      pendingBytes: this.decoder?.takeState().toString('base64') ?? '', rateTokens: bucket.tokens, rateRefilledAtMs: bucket.lastMs,
      lastFrameAtMs: this.lastFrameAtMs, authDeadlineMs: this.authDeadlineMs,
    };
  }

  session(): SessionRef {
    return { uid: this._uid, deviceId: this._deviceId, node: this.opts.node, connId: this.connId };
  }

  /**
   * Writes an OP_PUSH frame given as its start (proto/push.ts pushFrameHead, or a whole frame) and
   * the Message bytes it shares with every other recipient, which are queued as they are: the
   * tick's cork hands both, with the tick's other frames, to one writev. False if the connection
   * could not take it.
   */
  pushFrame(head: Buffer, shared?: Uint8Array): boolean {
    if (this._state !== 'open') return false;
    return this.write(head, false, shared);
  }

  /**
   * Writes an OP_SYNC_HINT frame: the push path was broken for a while (bus or router outage),
   * so pushes may have been missed; the client syncs from its last seq. False if it could not.
   */
  syncHint(): boolean {
    if (this._state !== 'open') return false;
    return this.write(frameBytes({ op: Op.SYNC_HINT, requestId: 0 }));
  }

  /**
   * Writes Disconnect{code, reason}, ends the socket, destroys it after closeGraceMs. Idempotent.
   * `closeCode`: what the transport's own close says (a WebSocket close code); by default the Disconnect code.
   */
  disconnect(code: number, reason: string, closeCode = code): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return;
    const body = encode('Disconnect', { code, reason, reconnect: shouldReconnect(code) });
    this.opts.logger.debug('disconnect', { connId: this.connId, uid: this._uid, code, reason });
    countDisconnect(code);
    this.close(frameBytes({ op: Op.DISCONNECT, requestId: 0, body }), closeCode, reason);
  }

  /**
   * Goes to closing: writes `last` (the Disconnect) if given, ends the stream, destroys the socket
   * after closeGraceMs (a client that does not read what is queued, or never closes its side).
   */
  private close(last: Buffer | undefined, closeCode: number, reason: string): void {
    this._state = 'closing';
    this.clearTimers();
    this.wakeSettled();
    // Forced past the write bound: one small frame, and the socket takes nothing after it.
    if (last) this.write(last, true);
    this.transport.end(this, closeCode, reason);
    this.graceTimer = setTimeout(destroySocket, this.limits.closeGraceMs, this.socket);
    this.graceTimer.unref();
    this.opts.onClosing?.(this);
  }

  /**
   * Transport input: the client sent its last byte (a TCP FIN, on TLS after its close_notify). The
   * socket is half-open: every request that arrived before is still answered, and once no logic
   * call is pending the connection ends its side too (no Disconnect: the client is the one
   * leaving). A partial frame can never complete and is dropped. The wait is bounded by what bounds
   * any connection: the logic call timeout, and the idle and auth deadlines, which keep running.
   */
  endOfInput(): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return;
    this.decoder = undefined;
    this.opts.logger.debug('client half-closed', { connId: this.connId, uid: this._uid, pendingCalls: this.pendingCalls });
    this.closeIfDone();
  }

  /**
   * The client will send nothing more (its FIN was read): the socket's own flag, so that an idle
   * connection carries no field for it. TCP only: a WebSocket's close is the `ws` library's.
   */
  private get inputEnded(): boolean {
    return this.transport === tcpTransport && this.socket.readableEnded === true;
  }

  /** After the client's FIN: closes once the last reply is written (queued: end() sends it before the FIN). */
  private closeIfDone(): void {
    if (this.pendingCalls === 0 && this.inputEnded && (this._state === 'awaiting-auth' || this._state === 'open')) {
      this.close(undefined, CLIENT_CLOSED, 'client closed');
    }
  }

  /** Closes the socket at once, without a Disconnect frame. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Transport input: bytes of the length-prefixed stream (TCP). */
  receive(chunk: Buffer): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return; // discard, never buffer
    // Frames that arrived whole before a bad length prefix are served first, as if read separately.
    const decoder = this.decoder ?? new FrameDecoder(this.limits.maxFrameBytes);
    const { frames, error } = decoder.push(chunk);
    this.decoder = decoder.idle ? undefined : decoder;
    for (const body of frames) this.receiveFrame(body);
    if (error && (this._state === 'awaiting-auth' || this._state === 'open')) this.protocolError(Code.FRAME_TOO_LARGE, error.message);
  }

  /** Transport input: one whole Frame, without a length prefix (a WebSocket message, or one cut from the TCP stream). */
  receiveFrame(bytes: Buffer): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return;
    metrics().gatewayFramesIn.inc();
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      this.protocolError(Code.BAD_FRAME, 'frame does not decode');
      return;
    }
    const now = Date.now();
    this.lastFrameAtMs = now;
    const fresh = this.bucket === undefined;
    const admitted = this.rateBucket(now).take(now);
    // The wheel comes back when the bucket is full again, to drop it.
    if (fresh) this.opts.wheel.scheduleEarlier(this, this.bucket!.fullAtMs());
    if (!admitted) {
      this.rejected ??= new WindowCounter(this.limits.rateLimitBurst);
      if (this.rejected.add(now)) {
        this.disconnect(DisconnectCode.RATE_LIMITED, 'too many frames');
      } else {
        this.replyError(frame, Code.RATE_LIMITED, 'rate limit exceeded');
      }
      return;
    }
    if (frame.op === Op.AUTH) {
      this.onAuth(frame);
    } else if (this._state !== 'open') {
      this.replyError(frame, Code.NOT_AUTHENTICATED, 'send Auth first');
    } else if (frame.op === Op.PING) {
      this.onPing(frame);
    } else if (frame.op >= FIRST_BUSINESS_OP) {
      this.forward(frame);
    } else {
      this.replyError(frame, Code.UNKNOWN_OP, `op ${frame.op} is not a client request`);
    }
  }

  private onAuth(frame: Frame): void {
    if (this._state === 'open') {
      this.replyError(frame, Code.ALREADY_AUTHENTICATED, 'already authenticated');
      return;
    }
    let auth;
    try {
      auth = decode('Auth', frame.body);
    } catch (err) {
      // Well-formed but with a string that is not UTF-8: a bad request the client can fix, and
      // the connection stays unauthenticated (the auth deadline still runs).
      if (err instanceof InvalidUtf8Error) this.replyError(frame, Code.BAD_REQUEST, `Auth: ${err.message}`);
      else this.protocolError(Code.BAD_FRAME, 'Auth body does not decode');
      return;
    }
    let uid: string;
    try {
      uid = verifyToken(this.opts.auth, auth.token).sub;
    } catch (err) {
      if (err instanceof TokenExpiredError) {
        this.replyError(frame, Code.TOKEN_EXPIRED, 'token expired');
        this.disconnect(DisconnectCode.TOKEN_EXPIRED, 'token expired');
      } else {
        this.replyError(frame, Code.TOKEN_INVALID, err instanceof Error ? err.message : 'token invalid');
        this.disconnect(DisconnectCode.BAD_TOKEN, 'token invalid');
      }
      return;
    }
    const deviceId = auth.deviceId || DEFAULT_DEVICE_ID;
    if (deviceId.length > MAX_DEVICE_ID_CHARS) {
      this.replyError(frame, Code.BAD_FRAME, `device id longer than ${MAX_DEVICE_ID_CHARS} characters`);
      this.disconnect(DisconnectCode.PROTOCOL_ERROR, 'bad device id');
      return;
    }
    this._uid = uid;
    this._deviceId = deviceId;
    this._lastSeq = auth.lastSeq;
    this._state = 'open';
    const ok = encode('AuthOk', {
      uid, deviceId, heartbeatIntervalMs: this.limits.heartbeatIntervalMs, maxFrameBytes: this.limits.maxFrameBytes,
      serverTimeMs: Date.now(), node: this.opts.node, connId: this.connId,
    });
    this.write(frameBytes({ op: Op.AUTH, requestId: frame.requestId, body: ok }));
    this.opts.onAuthenticated?.(this);
  }

  private onPing(frame: Frame): void {
    try {
      decode('Ping', frame.body);
    } catch {
      this.protocolError(Code.BAD_FRAME, 'Ping body does not decode');
      return;
    }
    this.write(frameBytes({ op: Op.PING, requestId: frame.requestId, body: encode('Pong', { serverTimeMs: Date.now() }) }));
  }

  private forward(frame: Frame): void {
    if (this.pendingCalls >= this.limits.maxPendingPerConn) {
      this.replyError(frame, Code.OVERLOADED, 'too many requests in flight on this connection');
      return;
    }
    this.pendingCalls++;
    const { op, requestId } = frame;
    const req = gatewayRequest(op, this.opts.node);
    this.opts.logic
      .call({
        op, uid: this._uid, deviceId: this._deviceId, connId: this.connId, node: this.opts.node, body: frame.body,
        traceParent: req.traceParent,
      })
      .then(
        (r) => {
          req.end(r.code);
          this.pendingCalls--;
          this.wakeSettled();
          if (this._state !== 'open') return;
          if (r.code === Code.OK) this.write(frameBytes({ op, requestId, body: r.body }));
          else this.write(frameBytes({ op, requestId, error: { code: r.code, message: r.message, retryable: r.retryable } }));
          this.closeIfDone();
        },
        (err: unknown) => {
          // LogicClient never rejects; a LogicCaller that does gets INTERNAL, not a crash.
          req.end(Code.INTERNAL);
          this.pendingCalls--;
          this.wakeSettled();
          this.opts.logger.error('logic call rejected', { err });
          if (this._state === 'open') this.replyError({ op, requestId }, Code.INTERNAL, 'internal error');
          this.closeIfDone();
        },
      );
  }

  private replyError(frame: Pick<Frame, 'op' | 'requestId'>, code: number, message: string): void {
    countGatewayError(code);
    this.write(frameBytes({ op: frame.op, requestId: frame.requestId, error: { code, message, retryable: isRetryableCode(code) } }));
  }

  /** Framing is broken: say why (OP_ERROR, request id 0), then disconnect. */
  private protocolError(code: number, message: string): void {
    this.fail(code, DisconnectCode.PROTOCOL_ERROR, message);
  }

  /**
   * The server ends the session for a reason of its own: an OP_ERROR (request id 0) with the error
   * code, then the Disconnect. Both are forced past the write bound (two small frames), so a slow
   * consumer that reads again learns why.
   */
  fail(code: number, disconnectCode: number, message: string, closeCode = disconnectCode): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return;
    countGatewayError(code);
    this.write(frameBytes({ op: Op.ERROR, requestId: 0, error: { code, message, retryable: isRetryableCode(code) } }), true);
    this.disconnect(disconnectCode, message, closeCode);
  }

  /**
   * The transport itself found the input broken and is already closing the stream with a code of
   * its own (a WebSocket frame over the limit, bad WebSocket framing): nothing more can be
   * written, so this only counts the error and lets the socket close (destroyed after closeGraceMs).
   */
  brokenInput(code: number, message: string): void {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return;
    countGatewayError(code);
    this._state = 'closing';
    this.clearTimers();
    this.wakeSettled();
    this.graceTimer = setTimeout(destroySocket, this.limits.closeGraceMs, this.socket);
    this.graceTimer.unref();
    this.opts.logger.debug('broken input', { connId: this.connId, uid: this._uid, transport: this.transport.name, code, message });
    this.opts.onClosing?.(this);
  }

  /**
   * Every write goes through here: bounded by maxWriteQueueBytes, and corked until the check
   * phase of this turn of the event loop (setImmediate), so that all frames of the turn leave in
   * one syscall: a reply and the pushes made by other callbacks of the same turn (a writer's
   * answer, a bus batch) share a writev. Uncorking at the end of the tick instead (nextTick)
   * wrote each callback's frames apart: 1:1 embedded spent 99-101 µs of CPU per send against
   * 92.5 with this, at 12.7-13.0k against 14.2k sends/s (2026-12-06; the loopback TCP of each
   * extra syscall is charged to the writer). A write past the bound marks a
   * slow consumer: its Disconnect queues behind the (bounded) backlog, nothing else is accepted,
   * and the socket is destroyed after closeGraceMs unless the client drains and closes first.
   */
  private write(buf: Buffer, force = false, tail?: Uint8Array): boolean {
    if (this._state === 'closed' || this._state === 'handed-off' || this.socket.destroyed || this.socket.writableEnded) return false;
    if (!force) {
      if (this._state === 'closing') return false;
      // An empty queue always takes one frame, so a reply larger than the bound (a big sync
      // page) still reaches a client that reads.
      const queued = this.socket.writableLength;
      if (queued > 0 && queued + buf.length + (tail?.length ?? 0) > this.limits.maxWriteQueueBytes) {
        this.fail(Code.SLOW_CONSUMER, DisconnectCode.SLOW_CONSUMER, 'client is not reading');
        return false;
      }
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      // One immediate per turn for every connection corked in it (a group message corks ~100).
      if (corkedThisTurn.push(this) === 1) setImmediate(Connection.uncorkAll);
    }
    this.transport.write(this, buf, tail);
    metrics().gatewayFramesOut.inc();
    return true;
  }

  /** Uncorks, in the check phase of the turn, every connection write() corked in it. */
  private static uncorkAll(): void {
    const list = corkedThisTurn;
    corkedThisTurn = [];
    for (const conn of list) {
      conn.corked = false;
      conn.socket.uncork();
    }
  }

  /** The rate bucket, created full on first use. */
  private rateBucket(nowMs: number): TokenBucket {
    return (this.bucket ??= new TokenBucket(this.limits.rateLimitPerSec, this.limits.rateLimitBurst, nowMs));
  }

  /** The earliest moment the wheel has something to check: auth deadline, idle timeout, rate state release. */
  private nextDeadline(): number {
    let at = this.lastFrameAtMs + this.limits.idleTimeoutMs;
    if (this._state === 'awaiting-auth') at = Math.min(at, this.authDeadlineMs);
    if (this.bucket) at = Math.min(at, this.bucket.fullAtMs());
    return at;
  }

  /** TimerWheel: the auth and idle timeouts. Frames only record their arrival time; this checks it. */
  onDeadline(nowMs: number): number | undefined {
    if (this._state !== 'awaiting-auth' && this._state !== 'open') return undefined;
    if (this._state === 'awaiting-auth' && nowMs >= this.authDeadlineMs) {
      this.fail(Code.AUTH_TIMEOUT, DisconnectCode.AUTH_TIMEOUT, 'no Auth in time');
      return undefined;
    }
    const idleMs = nowMs - this.lastFrameAtMs;
    if (idleMs >= this.limits.idleTimeoutMs) {
      this.fail(Code.IDLE_TIMEOUT, DisconnectCode.IDLE_TIMEOUT, `no frame for ${idleMs}ms`);
      return undefined;
    }
    // A full bucket and an empty window are what a fresh connection has: forget them.
    if (this.bucket && this.bucket.fullAtMs() <= nowMs && (!this.rejected || this.rejected.idle(nowMs))) {
      this.bucket = undefined;
      this.rejected = undefined;
    }
    return this.nextDeadline();
  }

  private clearTimers(): void {
    this.opts.wheel.cancel(this);
  }

  private static onSocketError(this: ConnSocket, err: Error): void {
    const conn = this[CONN];
    conn?.opts.logger.debug('socket error', { connId: conn.connId, err });
  }

  private static onSocketClose(this: ConnSocket): void {
    this[CONN]?.onSocketClosed();
  }

  private onSocketClosed(): void {
    if (this._state === 'closed' || this._state === 'handed-off') return;
    const wasLive = this._state !== 'closing';
    this._state = 'closed';
    this.clearTimers();
    this.wakeSettled();
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (wasLive) this.opts.onClosing?.(this);
    this.opts.onClose?.(this);
  }
}

function destroySocket(socket: ClientSocket): void {
  socket.destroy();
}
