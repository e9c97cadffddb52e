/**
 * The gateway's WebSocket transport (IM_GATEWAY_WS_ADDR): for clients that cannot open a raw TCP
 * socket (browsers) or sit behind HTTP-only proxies. One binary WebSocket message carries one
 * Frame — the same bytes that follow the 4-byte length prefix on TCP — and everything above the
 * framing (handshake, auth, limits, rate limits, heartbeat, backpressure, drain) is the same
 * Connection as TCP (connection.ts). docs/protocol.md "WebSocket framing" has the close codes.
 *
 * Built on the `ws` library: it does the HTTP upgrade, masking, fragment reassembly (up to
 * maxPayload = the frame limit) and the close handshake. No compression: frames are small
 * protobuf, and permessage-deflate would cost memory per connection and queue writes outside the
 * socket's write queue, which is what backpressure counts.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type * as net from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { Code, DisconnectCode } from '../common/errors';
import type { Logger } from '../common/log';
import { LENGTH_BYTES } from '../proto/codec';
import { encode, frameBytes, Op } from '../proto/wire';
import type { Connection, Transport } from './connection';
import { TLS_MIN_VERSION, type ReloadableTlsContext } from './tls';

/** WebSocket close codes of this transport's own (RFC 6455 7.4.1); a Disconnect closes with its own code (3000-3008). */
export const WsCloseCode = {
  /** A text message: frames are binary messages only. */
  UNSUPPORTED_DATA: 1003,
  /** A message larger than the frame limit (sent by `ws` itself). */
  MESSAGE_TOO_BIG: 1009,
  /** Broken WebSocket framing: unmasked client frame, bad opcode, reserved bits, ... (sent by `ws` itself). */
  PROTOCOL_ERROR: 1002,
} as const;

const NORMAL_CLOSURE = 1000;
/** Close reasons are at most 123 bytes (a close frame's payload is 125, 2 of them the code). */
const MAX_CLOSE_REASON_BYTES = 123;

const CONN = Symbol('connection');
type ConnWebSocket = WebSocket & { [CONN]?: Connection };

export const wsTransport: Transport = {
  name: 'ws',
  attach(conn) {
    const ws = conn.link as ConnWebSocket;
    ws[CONN] = conn;
    ws.on('message', onMessage);
    ws.on('error', onError);
  },
  write(conn, frame, tail) {
    const ws = conn.link as WebSocket;
    const last = !tail || tail.length === 0;
    // A push's shared body goes out as a second fragment of the same message: no copy per recipient.
    ws.send(frame.subarray(LENGTH_BYTES), { binary: true, fin: last, compress: false });
    if (!last) ws.send(tail, { binary: true, fin: true, compress: false });
  },
  end(conn, code, reason) {
    (conn.link as WebSocket).close(closeCode(code), closeReason(reason));
  },
};

function onMessage(this: ConnWebSocket, data: RawData, isBinary: boolean): void {
  const conn = this[CONN];
  if (!conn) return;
  if (!isBinary) {
    conn.fail(Code.BAD_FRAME, DisconnectCode.PROTOCOL_ERROR, 'text message: frames travel as binary messages', WsCloseCode.UNSUPPORTED_DATA);
    return;
  }
  // binaryType is 'nodebuffer': a Buffer, fragments already joined.
  conn.receiveFrame(data as Buffer);
}

/** `ws` found the input broken and is closing with its own code (1009 too big, 1002 bad framing, ...). */
function onError(this: ConnWebSocket, err: Error & { code?: string }): void {
  const tooBig = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
  this[CONN]?.brokenInput(tooBig ? Code.FRAME_TOO_LARGE : Code.BAD_FRAME, err.message);
}

/**
 * A WebSocket close code for a Disconnect code: itself when it is one an application may send
 * (3000-4999, and this transport's own 1003), else 1000 (a kick with an odd code must not throw).
 */
function closeCode(code: number): number {
  return (code >= 3000 && code <= 4999) || code === WsCloseCode.UNSUPPORTED_DATA ? code : NORMAL_CLOSURE;
}

function closeReason(reason: string): string {
  let r = reason;
  while (Buffer.byteLength(r) > MAX_CLOSE_REASON_BYTES) r = r.slice(0, -1);
  return r;
}

export interface WsListenerOptions {
  /** Largest message a client may send: the frame limit. */
  maxPayload: number;
  /** Bound on the HTTP upgrade request (a slow one is closed, like a TCP client that never sends Auth). */
  handshakeTimeoutMs: number;
  /** A client completed the upgrade. */
  onConnection: (socket: net.Socket, ws: WebSocket) => void;
  logger: Logger;
  /**
   * wss:// only: TLS (1.2+) with this certificate, kept current by its reloads (attach()). The TLS
   * handshake too must finish within handshakeTimeoutMs. Upgraded sockets are then TLSSockets.
   */
  tls?: ReloadableTlsContext;
}

/**
 * The HTTP (or, with `tls`, HTTPS) server that upgrades to WebSocket: listening itself, or fed
 * sockets another process accepted (accept(), the supervisor's: raw TCP, so with `tls` this
 * process does the TLS handshake, as on the TCP TLS listener). Any path upgrades; a plain HTTP
 * request gets 426.
 */
export class WsListener {
  private readonly http: http.Server | https.Server;
  private readonly wss: WebSocketServer;
  private readonly detachTls: (() => void) | undefined;

  constructor(private readonly o: WsListenerOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: o.maxPayload, perMessageDeflate: false, clientTracking: false });
    const httpOptions: http.ServerOptions = {
      headersTimeout: o.handshakeTimeoutMs, requestTimeout: o.handshakeTimeoutMs,
      // How often those two are checked (30 s by default, far above the auth timeout).
      connectionsCheckingInterval: Math.min(o.handshakeTimeoutMs, 30_000),
    };
    const notWebSocket = (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket', Connection: 'close' });
      res.end('this port speaks WebSocket only (docs/protocol.md)\n');
    };
    if (o.tls) {
      const server = https.createServer({ ...httpOptions, handshakeTimeout: o.handshakeTimeoutMs, minVersion: TLS_MIN_VERSION }, notWebSocket);
      // A plaintext client, an untrusted-certificate abort, a handshake timeout: that socket only.
      server.on('tlsClientError', (err) => o.logger.debug('websocket tls handshake failed', { err: err.message }));
      this.detachTls = o.tls.attach(server);
      this.http = server;
    } else {
      this.http = http.createServer(httpOptions, notWebSocket);
    }
    this.http.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      socket.on('error', () => {}); // a reset during the upgrade is the client's problem, not a crash
      this.wss.handleUpgrade(req, socket, head, (ws) => o.onConnection(socket, ws));
    });
    this.http.on('clientError', (err, socket) => {
      o.logger.debug('websocket handshake error', { err });
      socket.destroy();
    });
    this.http.on('error', (err) => o.logger.error('websocket listener error', { err }));
  }

  get listening(): boolean {
    return this.http.listening;
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(port, host, () => {
        this.http.off('error', reject);
        resolve((this.http.address() as net.AddressInfo).port);
      });
    });
  }

  /** A socket accepted elsewhere (not yet upgraded): served as if this listener had accepted it. */
  accept(socket: net.Socket): void {
    this.http.emit('connection', socket);
  }

  /** Stops accepting; resolves once every socket it accepted (upgraded ones included) has closed. */
  close(): Promise<void> {
    this.detachTls?.();
    return new Promise<void>((resolve) => {
      if (!this.http.listening) return resolve();
      this.http.close(() => resolve());
    });
  }
}

/** Over capacity or draining: the same Disconnect DRAINING as on TCP, then close with its code. */
export function refuseWs(socket: net.Socket, ws: WebSocket, graceMs: number): void {
  ws.on('error', () => {});
  const body = encode('Disconnect', { code: DisconnectCode.DRAINING, reason: 'gateway full or draining', reconnect: true });
  ws.send(frameBytes({ op: Op.DISCONNECT, requestId: 0, body }).subarray(LENGTH_BYTES), { binary: true });
  ws.close(DisconnectCode.DRAINING, 'gateway full or draining');
  setTimeout(() => socket.destroy(), graceMs).unref();
}

/** The URL the route API lists for a gateway's WebSocket listener when none is configured. */
export function defaultWsUrl(host: string, port: number, secure = false): string {
  return `${secure ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}
