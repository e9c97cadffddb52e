/**
 * One load-generator connection over the real wire protocol: TCP connect (and a TLS handshake
 * when the gateway is a TLS listener), Auth, then requests
 * matched to replies by request_id and pushes handed to a callback. Leaner than the SDK on
 * purpose (no reconnect, no inbox ordering): the generator must spend as little CPU per frame as
 * it can, and a dropped connection is a result to report, not something to heal.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Code } from '../common/errors';
import { FrameDecoder } from '../proto/codec';
import { decode, decodeFrame, encode, Frame, frameBytes, Op } from '../proto/wire';

/** Sync pages can be large; the generator trusts the server it measures. */
const CLIENT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** A decoded reply Frame with its error code: 0 = ok, -1 = an error that carries no code. */
export interface BenchReply extends Frame { errorCode: number }
export type ReplyHandler = (frame: BenchReply) => void;

export interface BenchConnOptions {
  /** Run-wide user number (0..N-1). */
  user: number;
  uid: string;
  host: string;
  port: number;
  token: string;
  deviceId: string;
  /** A PUSH body (an encoded Message). */
  onPush: (conn: BenchConn, body: Uint8Array) => void;
  /** The socket closed; `code` is the Disconnect code the server gave (0 if none). */
  onClose: (conn: BenchConn, code: number) => void;
  /**
   * Over TLS (1.2 or later): trust `ca` (PEM; default the system's roots) and check the
   * certificate names `host`; offer `session` (from a previous connection's tlsSession) to resume.
   */
  tls?: { ca?: string; session?: Buffer };
}

export class BenchConnError extends Error {
  constructor(message: string, readonly code: number) {
    super(message);
    this.name = 'BenchConnError';
  }
}

export class BenchConn {
  readonly user: number;
  readonly uid: string;
  heartbeatIntervalMs = 30_000;
  /** Last time a ping went out (ms), for the worker's heartbeat sweep. */
  lastPingMs = 0;
  /** Highest inbox seq seen in a push. */
  lastSeq = 0;
  closed = false;
  /** TLS: the newest session ticket the server sent, for the next connection to resume with. */
  tlsSession: Buffer | undefined;
  private readonly opts: BenchConnOptions;
  private socket: net.Socket | undefined;
  private readonly decoder = new FrameDecoder(CLIENT_MAX_FRAME_BYTES);
  private readonly waiting = new Map<number, ReplyHandler>();
  private nextRequestId = 1;
  private disconnectCode = 0;

  constructor(options: BenchConnOptions) {
    this.opts = options;
    this.user = options.user;
    this.uid = options.uid;
  }

  get pendingRequests(): number {
    return this.waiting.size;
  }

  /** TLS: whether the handshake resumed a session instead of a full one. */
  get tlsResumed(): boolean {
    return this.socket instanceof tls.TLSSocket && this.socket.isSessionReused();
  }

  /** TLS: the protocol and cipher negotiated; undefined over plain TCP. */
  get tlsSeen(): { protocol: string; cipher: string } | undefined {
    if (!(this.socket instanceof tls.TLSSocket)) return undefined;
    return { protocol: this.socket.getProtocol() ?? '?', cipher: this.socket.getCipher()?.name ?? '?' };
  }

  /** TCP connect (+ TLS handshake) and Auth; resolves on AuthOk, rejects on an error reply, a close or timeoutMs. */
  open(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          this.socket?.destroy();
          reject(err);
        } else resolve();
      };
      const timer = setTimeout(() => finish(new BenchConnError(`connect+auth timed out after ${timeoutMs}ms`, -2)), timeoutMs);
      const t = this.opts.tls;
      const s = t
        ? tls.connect({ host: this.opts.host, port: this.opts.port, ca: t.ca, session: t.session, minVersion: 'TLSv1.2' })
        : net.connect({ host: this.opts.host, port: this.opts.port });
      this.socket = s;
      if (t) s.on('session', (session: Buffer) => { this.tlsSession = session; });
      s.setNoDelay(true);
      s.on('error', (err) => finish(new BenchConnError(err.message, -1)));
      s.on('data', (chunk: Buffer) => this.onData(chunk));
      s.on('close', () => {
        this.closed = true;
        for (const h of this.waiting.values()) h({ op: 0, requestId: 0, body: new Uint8Array(0), error: null, errorCode: Code.UNAVAILABLE });
        this.waiting.clear();
        finish(new BenchConnError(`closed during auth (disconnect ${this.disconnectCode})`, this.disconnectCode || -1));
        this.opts.onClose(this, this.disconnectCode);
      });
      s.once(t ? 'secureConnect' : 'connect', () => {
        const body = encode('Auth', { token: this.opts.token, deviceId: this.opts.deviceId, lastSeq: 0 });
        this.request(Op.AUTH, body, (f) => {
          if (f.errorCode) return finish(new BenchConnError(`auth refused (code ${f.errorCode})`, f.errorCode));
          try {
            const ok = decode('AuthOk', f.body);
            this.heartbeatIntervalMs = ok.heartbeatIntervalMs || this.heartbeatIntervalMs;
          } catch (err) {
            return finish(err as Error);
          }
          this.lastPingMs = Date.now();
          finish();
        });
      });
    });
  }

  /** Sends a request whose frame the caller built with `requestId`; `onReply` gets the reply. */
  sendBuilt(build: (requestId: number) => Buffer, onReply: ReplyHandler): boolean {
    if (this.closed || !this.socket) return false;
    const id = this.nextRequestId++;
    if (this.nextRequestId > 0x7fffffff) this.nextRequestId = 1;
    this.waiting.set(id, onReply);
    this.socket.write(build(id));
    return true;
  }

  request(op: number, body: Uint8Array, onReply: ReplyHandler): boolean {
    return this.sendBuilt((id) => frameBytes({ op, requestId: id, body }), onReply);
  }

  requestAsync(op: number, body: Uint8Array, timeoutMs: number): Promise<BenchReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new BenchConnError(`op ${op} timed out after ${timeoutMs}ms`, Code.TIMEOUT)), timeoutMs);
      const sent = this.request(op, body, (f) => {
        clearTimeout(timer);
        if (f.errorCode) reject(new BenchConnError(`op ${op} failed with code ${f.errorCode}`, f.errorCode));
        else resolve(f);
      });
      if (!sent) {
        clearTimeout(timer);
        reject(new BenchConnError('connection closed', Code.UNAVAILABLE));
      }
    });
  }

  ping(nowMs: number): void {
    this.lastPingMs = nowMs;
    this.request(Op.PING, encode('Ping', { clientTimeMs: nowMs }), () => {});
  }

  close(): void {
    this.socket?.destroy();
  }

  private onData(chunk: Buffer): void {
    const { frames, error } = this.decoder.push(chunk);
    if (error) {
      this.socket?.destroy();
      return;
    }
    for (const b of frames) {
      const f = decodeFrame(b) as BenchReply;
      f.errorCode = f.error ? f.error.code || -1 : 0;
      if (f.op === Op.PUSH) {
        if (f.body.length > 0) this.opts.onPush(this, f.body);
      } else if (f.op === Op.DISCONNECT) {
        try {
          this.disconnectCode = decode('Disconnect', f.body).code;
        } catch {
          this.disconnectCode = -1;
        }
      } else if (f.requestId !== 0) {
        const h = this.waiting.get(f.requestId);
        if (h) {
          this.waiting.delete(f.requestId);
          h(f);
        }
      }
    }
  }
}
