/**
 * Test fixtures for the gateway suites: a raw TCP client speaking the wire protocol, a minimal
 * real LogicGateway gRPC server (the far end of the gateway's logic stream), and an in-memory
 * RouterApi (the router is not under test here).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { WebSocket, type ClientOptions } from 'ws';
import { bindServer } from '../common/grpc';
import { loadLogicProto } from '../proto/load';
import { InProcessBus } from '../bus/bus';
import { signToken } from '../common/jwt';
import { Gateway, GatewayOptions } from './server';
import { LogicClient } from './logic-client';
import { Code } from '../common/errors';
import type { GatewayStatus, HeartbeatResult, RouterApi, SessionRef } from '../router/api';
import { FrameDecoder, LENGTH_BYTES } from '../proto/codec';
import { decode, decodeFrame, encode, Frame, frameBytes, Op, Disconnect, AuthOk } from '../proto/wire';
import type { CallBatch__Output } from '../proto/gen/im/internal/v1/CallBatch';
import type { ResultBatch } from '../proto/gen/im/internal/v1/ResultBatch';

/** Ops the test logic server treats specially; every other op is echoed. */
export const OP_FAIL = 150;   // answered with BAD_REQUEST
export const OP_HANG = 160;   // never answered
export const OP_HOLD = 170;   // echoed once the test calls release()

export interface Echo { op: number; uid: string; deviceId: string; connId: string; node: string; body: string }

/** A client speaking the wire protocol over TCP, or over WebSocket (connectWs: one binary message per frame). */
export class TestClient {
  readonly frames: Frame[] = [];
  closed = false;
  /** WebSocket only: the close code and reason the server sent. */
  closeCode: number | undefined;
  closeReason = '';
  private readonly decoder = new FrameDecoder(64 * 1024 * 1024);
  private wake: (() => void) | undefined;
  private nextRequestId = 1;

  private constructor(readonly socket: net.Socket, readonly ws?: WebSocket) {
    socket.setNoDelay(true);
    if (ws) {
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (isBinary) this.frames.push(decodeFrame(data));
        this.wake?.();
      });
      ws.on('close', (code: number, reason: Buffer) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
      });
      ws.on('error', () => {});
    } else {
      socket.on('data', (chunk: Buffer) => {
        const { frames, error } = this.decoder.push(chunk);
        for (const body of frames) this.frames.push(decodeFrame(body));
        if (error) socket.destroy(error);
        this.wake?.();
      });
    }
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  /** `url`: ws://host:port/ (or wss://, `options` then has its `ca`). `socket` is the TCP (TLS) socket under the WebSocket. */
  static connectWs(url: string, options: ClientOptions = {}): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
      ws.once('upgrade', (res) => {
        ws.off('error', reject);
        const c = new TestClient(res.socket as net.Socket, ws);
        ws.once('open', () => resolve(c));
      });
      ws.once('error', reject);
    });
  }

  static connect(port: number): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve(new TestClient(s));
      });
      s.once('error', reject);
    });
  }

  /** A client of the TLS listener on `port`, trusting `ca`. */
  static connectTls(port: number, ca: Buffer): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca }, () => {
        s.off('error', reject);
        resolve(new TestClient(s));
      });
      s.once('error', reject);
    });
  }

  send(frame: Partial<Frame>): number {
    const requestId = frame.requestId ?? this.nextRequestId++;
    const bytes = frameBytes({ ...frame, requestId });
    if (this.ws) this.ws.send(bytes.subarray(LENGTH_BYTES), { binary: true });
    else this.socket.write(bytes);
    return requestId;
  }

  /** Waits for (and removes) the first frame matching `pred`; frames before it stay queued. */
  async take(pred: (f: Frame) => boolean = () => true, what = 'frame', timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${timeoutMs}ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
    }
  }

  /** The reply to a request (request ids start at 1; pushes carry 0). */
  reply(requestId: number, timeoutMs?: number): Promise<Frame> {
    return this.take((f) => f.requestId === requestId, `reply to ${requestId}`, timeoutMs);
  }

  async request(op: number, body: Uint8Array = new Uint8Array(0), timeoutMs?: number): Promise<Frame> {
    return this.reply(this.send({ op, body }), timeoutMs);
  }

  async auth(token: string, deviceId = 'phone', lastSeq = 0): Promise<Frame> {
    return this.request(Op.AUTH, encode('Auth', { token, deviceId, lastSeq }));
  }

  async authOk(token: string, deviceId = 'phone'): Promise<AuthOk> {
    const f = await this.auth(token, deviceId);
    if (f.error) throw new Error(`auth failed: ${f.error.code} ${f.error.message}`);
    return decode('AuthOk', f.body);
  }

  async ping(): Promise<Frame> {
    return this.request(Op.PING, encode('Ping', { clientTimeMs: Date.now() }));
  }

  async disconnectFrame(timeoutMs?: number): Promise<Disconnect> {
    const f = await this.take((x) => x.op === Op.DISCONNECT, 'Disconnect', timeoutMs);
    return decode('Disconnect', f.body);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`connection still open after ${timeoutMs}ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface LogicTestServer {
  port: number;
  /** Size of every CallBatch received, in order. */
  batchSizes: number[];
  /** OP_HOLD calls received and not yet answered. */
  readonly held: number;
  /** Answers every OP_HOLD call held so far (echoed, in the order they came). */
  release(): void;
  stop(): void;
}

/**
 * A real LogicGateway server: echoes each call as JSON, fails OP_FAIL, never answers OP_HANG, and
 * answers OP_HOLD only when the test says so (release()): a slow logic call, as slow as the test needs.
 */
export async function startLogicServer(port = 0): Promise<LogicTestServer> {
  const proto = loadLogicProto();
  const server = new grpc.Server();
  const batchSizes: number[] = [];
  let held: Array<() => void> = [];
  server.addService(proto.im.internal.v1.LogicGateway.service, {
    Connect: (call: grpc.ServerDuplexStream<CallBatch__Output, ResultBatch>) => {
      call.on('error', () => {});
      call.on('end', () => call.end());
      call.on('data', (batch: CallBatch__Output) => {
        batchSizes.push(batch.calls.length);
        const results: ResultBatch['results'] = [];
        for (const c of batch.calls) {
          if (c.op === OP_HANG) continue;
          if (c.op === OP_HOLD) {
            held.push(() => call.write({ results: [{ callId: c.callId, body: echoBytes(c) }] }));
            continue;
          }
          if (c.op === OP_FAIL) {
            results.push({ callId: c.callId, code: Code.BAD_REQUEST, message: 'bad request', retryable: false });
            continue;
          }
          results.push({ callId: c.callId, body: echoBytes(c) });
        }
        if (results.length > 0) call.write({ results });
      });
    },
  });
  const bound = await bindServer(server, '127.0.0.1', port);
  return {
    port: bound, batchSizes, stop: () => server.forceShutdown(),
    get held() { return held.length; },
    release() {
      const answers = held;
      held = [];
      for (const answer of answers) answer();
    },
  };
}

function echoBytes(c: CallBatch__Output['calls'][number]): Buffer {
  const echo: Echo = { op: c.op, uid: c.uid, deviceId: c.deviceId, connId: c.connId, node: c.node, body: Buffer.from(c.body).toString('utf8') };
  return Buffer.from(JSON.stringify(echo));
}

export function parseEcho(f: Frame): Echo {
  if (f.error) throw new Error(`expected a body, got error ${f.error.code} ${f.error.message}`);
  return JSON.parse(Buffer.from(f.body).toString('utf8')) as Echo;
}

/** The router's side of the contract, in memory: records what the gateway told it. */
export class MemoryRouter implements RouterApi {
  readonly sessions = new Map<string, SessionRef>(); // node/connId -> session
  readonly heartbeats: GatewayStatus[] = [];
  snapshots = 0;
  known = true;

  /** Like the route table: a session of a uid and device id replaces another connection's. */
  async bind(sessions: SessionRef[]): Promise<SessionRef[]> {
    const displaced: SessionRef[] = [];
    for (const s of sessions) {
      for (const [k, o] of this.sessions) {
        if (o.uid === s.uid && o.deviceId === s.deviceId && (o.node !== s.node || o.connId !== s.connId)) {
          this.sessions.delete(k);
          displaced.push(o);
        }
      }
      this.sessions.set(`${s.node}/${s.connId}`, s);
    }
    return displaced;
  }
  async unbind(sessions: SessionRef[]): Promise<void> {
    for (const s of sessions) this.sessions.delete(`${s.node}/${s.connId}`);
  }
  async snapshot(node: string, sessions: SessionRef[]): Promise<void> {
    this.snapshots++;
    this.known = true;
    for (const [k, s] of this.sessions) if (s.node === node) this.sessions.delete(k);
    for (const s of sessions) this.sessions.set(`${s.node}/${s.connId}`, s);
  }
  async lookup(uids: string[]): Promise<SessionRef[]> {
    return [...this.sessions.values()].filter((s) => uids.includes(s.uid));
  }
  async heartbeat(status: GatewayStatus): Promise<HeartbeatResult> {
    this.heartbeats.push(status);
    return { heartbeatIntervalMs: 3000, known: this.known };
  }
  close(): void {}
}

/** The one polling helper (test/wait.ts), re-exported for the gateway suites. */
export { eventually } from '../test/wait';

/** A port nothing listens on (bound, then released). */
export function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const SECRET = 'test-secret';
export const token = (uid: string, ttlSeconds = 3600, nowMs = Date.now()) => signToken(SECRET, uid, ttlSeconds, nowMs);

export interface Harness {
  gateway: Gateway;
  port: number;
  /** With `tls` in the overrides: the TLS listener's port. */
  tlsPort: number | undefined;
  router: MemoryRouter;
  bus: InProcessBus;
  logic: LogicClient;
  /** The logic server the harness started (undefined when given a logicPort). */
  logicServer: LogicTestServer | undefined;
  node: string;
  clients: TestClient[];
  connect(): Promise<TestClient>;
  /** With `ws` in the overrides: the WebSocket listener's URL (wss:// with ws.tls), and a client connected to it. */
  wsUrl: string;
  connectWs(options?: ClientOptions): Promise<TestClient>;
  /** Connects and authenticates as uid. */
  login(uid: string, deviceId?: string): Promise<TestClient>;
  stop(): Promise<void>;
}

let nodeSeq = 0;

/** A real Gateway on an ephemeral port, wired to a real logic gRPC server (or `logicPort`). */
export async function startGateway(overrides: Partial<GatewayOptions> = {}, logicPort?: number): Promise<Harness> {
  const logicServer = logicPort === undefined ? await startLogicServer() : undefined;
  const logic = new LogicClient({
    addresses: [`127.0.0.1:${logicPort ?? logicServer!.port}`], callTimeoutMs: 1000, reconnectBaseMs: 20, reconnectMaxMs: 200,
  });
  logic.start();
  if (logicServer) await logic.whenUp(5000);
  const router = new MemoryRouter();
  const bus = new InProcessBus();
  const node = `gw-test-${++nodeSeq}`;
  const gateway = new Gateway({ node, host: '127.0.0.1', port: 0, auth: { secret: SECRET }, logic, router, bus, ...overrides });
  const { port, tlsPort, wsPort } = await gateway.start();
  const wsUrl = wsPort === undefined ? '' : `${overrides.ws?.tls ? 'wss' : 'ws'}://127.0.0.1:${wsPort}/`;
  const clients: TestClient[] = [];
  const track = async (p: Promise<TestClient>) => {
    const c = await p;
    clients.push(c);
    return c;
  };
  const connect = () => track(TestClient.connect(port));
  return {
    gateway, port, tlsPort, router, bus, logic, logicServer, node, clients, connect, wsUrl,
    connectWs: (options) => track(TestClient.connectWs(wsUrl, options)),
    async login(uid, deviceId = 'phone') {
      const c = await connect();
      await c.authOk(token(uid), deviceId);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      await gateway.stop();
      await logic.close();
      await bus.close();
      logicServer?.stop();
    },
  };
}
