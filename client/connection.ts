/**
 * One authenticated connection to a gateway: framing, the Auth handshake, request/reply
 * correlation by request id, per-request timeouts and the heartbeat. It never reconnects; the
 * ImClient above it decides what happens after a close. Frames travel on a Link the platform
 * opens: TCP (length-prefixed, tcp-link.ts) or WebSocket (one binary message per frame,
 * ws-link.ts). No Node-only import.
 */
import { Code } from '../common/errors';
import { Auth, AuthOk, Disconnect, Frame, Message, Op, decode, decodeFrame, encode, frameBytes } from '../proto/wire';
import { ImClientError, connectionLost, requestTimeout } from './errors';
import type { Link, LinkEvents } from './link';

/** The 4-byte length prefix frameBytes() puts before every frame. */
const LENGTH_BYTES = 4;

type Timer = ReturnType<typeof setTimeout>;

/** Node's timers can be told not to keep the process alive; a browser's are plain numbers. */
function unref(t: Timer): Timer {
  (t as { unref?: () => void }).unref?.();
  return t;
}

/** Why a connection ended, as the ImClient reports it in 'disconnected'. */
export interface CloseInfo {
  /** A Disconnect code (3000+) when the server said why; Code.UNAVAILABLE for a lost socket,
   * Code.TIMEOUT for a missed heartbeat, 0 for a close the client asked for. */
  code: number;
  reason: string;
  /** What the server (or the failure) suggests: true = reconnecting may help. */
  reconnect: boolean;
  fromServer: boolean;
}

export interface ConnectionOptions {
  /** host:port or the WebSocket URL: what messages name. */
  addr: string;
  /** Opens what carries the frames (TCP, TLS or WebSocket to addr). */
  openLink: (events: LinkEvents) => Link;
  /** Over TLS: failures before AuthOk are reported as TLS failures. */
  tls?: boolean;
  auth: Auth;
  connectTimeoutMs: number;     // TCP connect + Auth round trip
  requestTimeoutMs: number;
  maxInFlightRequests: number;
  /** Receive-side frame limit (a sync page can be larger than what the server accepts from us). */
  maxIncomingFrameBytes: number;
  /** Used when AuthOk carries no interval. */
  defaultHeartbeatIntervalMs: number;
  onPush: (conn: Connection, msg: Message) => void;
  /** The server says pushes may have been missed (OP_SYNC_HINT): sync from lastSeq. */
  onSyncHint?: (conn: Connection) => void;
  /** An OP_ERROR not tied to a request. */
  onServerError: (conn: Connection, err: ImClientError) => void;
  /** Called once, only for connections that completed the handshake. */
  onClose: (conn: Connection, info: CloseInfo) => void;
}

interface Pending {
  op: number;
  resolve: (body: Uint8Array) => void;
  reject: (err: Error) => void;
  timer: Timer;
}

const AUTH_REQUEST_ID = 1;
/** How long a half-closed socket may linger before it is destroyed. */
const END_GRACE_MS = 1000;

export class Connection {
  private readonly link: Link;
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = AUTH_REQUEST_ID;
  private heartbeat?: ReturnType<typeof setInterval>;
  private lastReceivedAtMs = Date.now();
  private closeInfo?: CloseInfo;
  private finished = false;
  private auth?: AuthOk;
  private readonly closedSignal: Promise<void>;
  private markClosed!: () => void;
  private handshake?: { resolve: () => void; reject: (err: ImClientError) => void; timer: Timer };

  /** Connects and authenticates. Rejects with an ImClientError: retryable when another gateway
   * or a later attempt may succeed, not retryable when the credentials were refused. */
  static open(options: ConnectionOptions): Promise<Connection> {
    return new Connection(options).start();
  }

  private constructor(private readonly options: ConnectionOptions) {
    this.closedSignal = new Promise((resolve) => { this.markClosed = resolve; });
    const events: LinkEvents = {
      // Over TLS, Auth (and the token in it) is written only once the gateway's certificate checked out.
      open: () => this.link.send(frameBytes({ op: Op.AUTH, requestId: AUTH_REQUEST_ID, body: encode('Auth', options.auth) })),
      alive: () => { this.lastReceivedAtMs = Date.now(); },
      frame: (body) => this.onFrameBytes(body),
      tooLarge: (message) => {
        if (!this.finished) this.kill({ code: Code.FRAME_TOO_LARGE, reason: message, reconnect: true, fromServer: false });
      },
      error: (message) => {
        const what = this.options.tls && !this.auth ? 'TLS: ' : '';
        this.closeInfo ??= { code: Code.UNAVAILABLE, reason: `${this.options.addr}: ${what}${message}`, reconnect: true, fromServer: false };
      },
      close: () => this.finish(),
    };
    this.link = options.openLink(events);
  }

  get authOk(): AuthOk {
    if (!this.auth) throw new Error('connection is not authenticated');
    return this.auth;
  }

  get addr(): string {
    return this.options.addr;
  }

  get closed(): boolean {
    return this.finished || this.closeInfo !== undefined;
  }

  /** Resolves once the socket is fully closed (bounded: a lingering socket is destroyed). */
  whenClosed(): Promise<void> {
    return this.closedSignal;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private start(): Promise<Connection> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill({ code: Code.TIMEOUT, reason: `no AuthOk from ${this.options.addr} within ${this.options.connectTimeoutMs}ms`, reconnect: true, fromServer: false });
      }, this.options.connectTimeoutMs);
      this.handshake = { resolve, reject, timer };
    }).then(() => this);
  }

  /** Sends one request; resolves with the reply body, rejects with an ImClientError. */
  request(op: number, body: Uint8Array, timeoutMs: number = this.options.requestTimeoutMs): Promise<Uint8Array> {
    if (this.closed || !this.auth) return Promise.reject(connectionLost('not connected', op));
    if (this.pending.size >= this.options.maxInFlightRequests) {
      return Promise.reject(new ImClientError(Code.OVERLOADED,
        `${this.pending.size} requests already in flight (maxInFlightRequests)`, { retryable: true, op }));
    }
    const requestId = this.allocateRequestId();
    const bytes = frameBytes({ op, requestId, body });
    // The server would disconnect us for an oversized frame; refuse it here instead.
    const limit = this.auth.maxFrameBytes;
    if (limit > 0 && bytes.length - LENGTH_BYTES > limit) {
      return Promise.reject(new ImClientError(Code.FRAME_TOO_LARGE,
        `request of ${bytes.length - LENGTH_BYTES} bytes exceeds the server's frame limit of ${limit}`, { retryable: false, op }));
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(requestTimeout(timeoutMs, op));
      }, timeoutMs);
      this.pending.set(requestId, { op, resolve, reject, timer });
      this.link.send(bytes);
    });
  }

  /** Closes from our side. Pending requests reject as retryable (another connection may serve them). */
  close(reason = 'closed by client'): void {
    if (this.closed) return;
    this.closeInfo = { code: 0, reason, reconnect: false, fromServer: false };
    this.endLink();
  }

  private allocateRequestId(): number {
    do {
      this.nextRequestId = this.nextRequestId >= 0xffffffff ? 1 : this.nextRequestId + 1;
    } while (this.pending.has(this.nextRequestId) || this.nextRequestId === AUTH_REQUEST_ID);
    return this.nextRequestId;
  }

  private startHeartbeat(intervalMs: number): void {
    this.heartbeat = setInterval(() => {
      // Anything received counts as life; two silent intervals mean a dead path (NAT drop, frozen
      // gateway) that TCP itself may not notice for many minutes.
      if (Date.now() - this.lastReceivedAtMs > 2 * intervalMs) {
        this.kill({ code: Code.TIMEOUT, reason: `nothing received from ${this.options.addr} for ${2 * intervalMs}ms`, reconnect: true, fromServer: false });
        return;
      }
      // Pongs are not awaited: their only job is to make the server send something.
      this.link.send(frameBytes({ op: Op.PING, requestId: this.allocateRequestId(), body: encode('Ping', { clientTimeMs: Date.now() }) }));
    }, intervalMs);
    unref(this.heartbeat);
  }

  /** One whole frame, without a length prefix (cut from the TCP stream, or a WebSocket message). */
  private onFrameBytes(body: Uint8Array): void {
    if (this.finished) return;
    this.lastReceivedAtMs = Date.now();
    if (body.length > this.options.maxIncomingFrameBytes) {
      this.kill({ code: Code.FRAME_TOO_LARGE, reason: `frame of ${body.length} bytes from server`, reconnect: true, fromServer: false });
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(body);
    } catch (err) {
      this.kill({ code: Code.BAD_FRAME, reason: `undecodable frame from server: ${(err as Error).message}`, reconnect: true, fromServer: false });
      return;
    }
    this.onFrame(frame);
  }

  private onFrame(frame: Frame): void {
    if (frame.op === Op.DISCONNECT) {
      let d: Disconnect;
      try {
        d = decode('Disconnect', frame.body);
      } catch {
        d = { code: Code.BAD_FRAME, reason: 'undecodable Disconnect', reconnect: true };
      }
      this.onDisconnect(d);
      return;
    }
    if (this.handshake) {
      if (frame.op === Op.AUTH && frame.requestId === AUTH_REQUEST_ID) this.onAuthReply(frame);
      return; // nothing else is meaningful before AuthOk
    }
    if (frame.op === Op.PUSH) {
      let msg: Message;
      try {
        msg = decode('Message', frame.body);
      } catch (err) {
        this.kill({ code: Code.BAD_FRAME, reason: `undecodable push: ${(err as Error).message}`, reconnect: true, fromServer: false });
        return;
      }
      this.options.onPush(this, msg);
      return;
    }
    if (frame.op === Op.SYNC_HINT) {
      this.options.onSyncHint?.(this);
      return;
    }
    if (frame.op === Op.ERROR && frame.requestId === 0) {
      if (frame.error) this.options.onServerError(this, ImClientError.fromWire(frame.error));
      return;
    }
    const p = this.pending.get(frame.requestId);
    if (!p) return; // a pong, or a reply that arrived after its timeout
    this.pending.delete(frame.requestId);
    clearTimeout(p.timer);
    if (frame.error) p.reject(ImClientError.fromWire(frame.error, p.op));
    else p.resolve(frame.body);
  }

  private onAuthReply(frame: Frame): void {
    const hs = this.handshake!;
    if (frame.error) {
      hs.reject(ImClientError.fromWire(frame.error, Op.AUTH));
      this.handshake = undefined;
      clearTimeout(hs.timer);
      this.kill({ code: frame.error.code, reason: frame.error.message, reconnect: frame.error.retryable, fromServer: true });
      return;
    }
    let ok: AuthOk;
    try {
      ok = decode('AuthOk', frame.body);
    } catch (err) {
      this.kill({ code: Code.BAD_FRAME, reason: `undecodable AuthOk: ${(err as Error).message}`, reconnect: true, fromServer: false });
      return;
    }
    this.handshake = undefined;
    clearTimeout(hs.timer);
    this.auth = ok;
    this.startHeartbeat(ok.heartbeatIntervalMs || this.options.defaultHeartbeatIntervalMs);
    hs.resolve();
  }

  private onDisconnect(d: Disconnect): void {
    this.closeInfo ??= { code: d.code, reason: d.reason, reconnect: d.reconnect, fromServer: true };
    if (this.handshake) {
      const hs = this.handshake;
      this.handshake = undefined;
      clearTimeout(hs.timer);
      hs.reject(new ImClientError(d.code, d.reason || `disconnected (${d.code})`, { retryable: d.reconnect, op: Op.AUTH, disconnect: d }));
    }
    // The server closes right after a Disconnect; ending our side too frees the socket promptly.
    this.endLink();
  }

  private endLink(): void {
    this.link.end();
    unref(setTimeout(() => this.link.destroy(), END_GRACE_MS));
  }

  /** Abandons the connection now (dead peer, broken stream). */
  private kill(info: CloseInfo): void {
    this.closeInfo ??= info;
    this.link.destroy();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.markClosed();
    if (this.heartbeat) clearInterval(this.heartbeat);
    const info = this.closeInfo ?? { code: Code.UNAVAILABLE, reason: `connection to ${this.options.addr} closed`, reconnect: true, fromServer: false };
    this.closeInfo = info;
    if (this.handshake) {
      const hs = this.handshake;
      this.handshake = undefined;
      clearTimeout(hs.timer);
      hs.reject(new ImClientError(info.code === 0 ? Code.UNAVAILABLE : info.code, info.reason, { retryable: info.reconnect || info.code === 0 }));
    }
    if (!this.auth) return; // never opened: the rejected handshake is the whole story
    const lost = `connection lost: ${info.reason}`;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(connectionLost(lost, p.op));
    }
    this.options.onClose(this, info);
  }
}
