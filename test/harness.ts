/** Shared set-up for end-to-end tests: a real embedded system in a temp dir, real TCP clients. */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { WebSocket } from 'ws';
import { signToken } from '../common/jwt';
import { FrameDecoder, LENGTH_BYTES } from '../proto/codec';
import { decodeFrame, encode, Frame, frameBytes, Op, WireTypeName, WireTypes } from '../proto/wire';
import { ImClient, ImClientOptions } from '../client/sdk';
import { EmbeddedOptions, EmbeddedSystem, startEmbedded } from '../embedded/system';

export function tempDir(prefix = 'im-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** What a test needs of a running system, whichever mode started it. */
export interface SystemHandle {
  gatewayAddr: string;
  routerUrl: string;
  authSecret: string;
  /** Where its data lives (data dir or keyspace): pass back as `persist` to restart over it. */
  persist: string;
  stop(): Promise<void>;
}

/** Options every mode understands. */
export type SystemOptions = Pick<EmbeddedOptions, 'gateway' | 'logic' | 'registerOps'> & { persist?: string };

/** A way to run the whole system: embedded (one process) or distributed (NATS + Cassandra). */
export interface Mode {
  name: string;
  needs: Array<'nats' | 'cassandra'>;
  /** 'websocket': SDK and raw clients connect over the gateways' WebSocket listeners (withWebSocket). */
  transport?: 'websocket';
  start(options: SystemOptions): Promise<SystemHandle>;
}

/**
 * The same mode with every gateway also listening for WebSocket clients, and every test client
 * using it: the SDK with transport 'websocket', raw clients sending one message per frame.
 */
export function withWebSocket(mode: Mode): Mode {
  return {
    ...mode,
    name: `${mode.name}, over WebSocket`,
    transport: 'websocket',
    start: (options) => mode.start({ ...options, gateway: { ...options.gateway, ws: { host: '127.0.0.1', port: 0 } } }),
  };
}

/** The WebSocket URL the route API lists for the gateway at `gatewayAddr`. */
async function wsUrlOf(routerUrl: string, gatewayAddr: string): Promise<string> {
  const reply = await (await fetch(`${routerUrl}/v1/route`)).json() as { gateways: Array<{ addr: string; wsUrl?: string }> };
  const url = reply.gateways.find((g) => g.addr === gatewayAddr)?.wsUrl;
  if (!url) throw new Error(`the route API lists no WebSocket URL for ${gatewayAddr}`);
  return url;
}

export const embeddedMode: Mode = {
  name: 'embedded',
  needs: [],
  async start(options) {
    const dataDir = options.persist ?? tempDir();
    const sys: EmbeddedSystem = await startEmbedded({ ...options, dataDir });
    return { ...sys, persist: dataDir, stop: () => sys.stop() };
  },
};

export class TestSystem {
  private readonly clients: ImClient[] = [];
  private readonly raws: RawClient[] = [];
  private readonly inboxes = new Map<ImClient, Inbox>();
  /** Appended to every user name, so tests sharing one database never meet each other's users. */
  readonly ns: string;

  constructor(readonly sys: SystemHandle, readonly mode: Mode, ns?: string) {
    this.ns = ns ?? randomBytes(3).toString('hex');
  }

  /** `ns`: reuse the user namespace of an earlier system (a restart over the same data). */
  static async start(mode: Mode, options: SystemOptions = {}, ns?: string): Promise<TestSystem> {
    return new TestSystem(await mode.start(options), mode, ns);
  }

  /** The uid of a test user name in this system's namespace. */
  uid(name: string): string {
    return `${name}_${this.ns}`;
  }

  uids(...names: string[]): string[] {
    return names.map((n) => this.uid(n));
  }

  /** A token for the user called `name` (namespaced). */
  token(name: string, ttlSeconds = 3600): string {
    return signToken(this.sys.authSecret, this.uid(name), ttlSeconds);
  }

  /** A connected SDK client for the user called `name` (device defaults to "d1"). */
  async client(name: string, deviceId = 'd1', options: Partial<ImClientOptions> = {}): Promise<ImClient> {
    const transport = this.mode.transport === 'websocket' ? { transport: 'websocket' as const } : {};
    const c = new ImClient({ routerUrl: this.sys.routerUrl, token: this.token(name), deviceId, ...transport, ...options });
    this.clients.push(c);
    this.inboxes.set(c, collect(c)); // before connect: nothing synced on connect is missed
    await c.connect();
    return c;
  }

  /** Every message the client delivered since it was created, in delivery order. */
  inbox(c: ImClient): Inbox {
    const inbox = this.inboxes.get(c);
    if (!inbox) throw new Error('not a client of this test system');
    return inbox;
  }

  async raw(): Promise<RawClient> {
    const [host, port] = splitAddr(this.sys.gatewayAddr);
    const r = this.mode.transport === 'websocket'
      ? await RawClient.connectWs(await wsUrlOf(this.sys.routerUrl, this.sys.gatewayAddr))
      : await RawClient.connect(host, port);
    this.raws.push(r);
    return r;
  }

  /** A raw client that has authenticated as the user called `name`. */
  async rawAuthed(name: string, deviceId = 'raw'): Promise<RawClient> {
    const r = await this.raw();
    const reply = await r.request(Op.AUTH, 'Auth', { token: this.token(name), deviceId, lastSeq: 0 });
    if (reply.error) throw new Error(`auth failed: ${reply.error.message}`);
    return r;
  }

  async closeClients(): Promise<void> {
    for (const c of this.clients.splice(0)) c.close();
    for (const r of this.raws.splice(0)) r.destroy();
  }

  async stop(): Promise<void> {
    await this.closeClients();
    await this.sys.stop();
  }
}

export function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/**
 * A protocol-level client for tests that need to send what the SDK never would. Over TCP, or
 * over WebSocket (connectWs): there write() cuts its length-prefixed bytes into frames and sends
 * each as one binary message, so the same test bytes mean the same frames on both.
 */
export class RawClient {
  readonly frames: Frame[] = [];
  closed = false;
  /** WebSocket only: the close code the server sent. */
  closeCode: number | undefined;
  private readonly decoder = new FrameDecoder(16 * 1024 * 1024);
  private readonly outgoing = new FrameDecoder(16 * 1024 * 1024);
  private waiters: Array<() => void> = [];
  private nextId = 1;

  private constructor(private readonly link: net.Socket | WebSocket) {
    if (link instanceof WebSocket) {
      link.on('message', (data: Buffer) => {
        this.frames.push(decodeFrame(data));
        this.wake();
      });
      link.on('close', (code: number) => {
        this.closeCode = code;
        this.ended();
      });
    } else {
      link.on('data', (chunk) => {
        const { frames, error } = this.decoder.push(chunk);
        for (const body of frames) this.frames.push(decodeFrame(body));
        if (error) link.destroy(error);
        this.wake();
      });
      link.on('close', () => this.ended());
    }
    link.on('error', () => undefined);
  }

  static connect(host: string, port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host, port }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  static connectWs(url: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.once('open', () => {
        ws.off('error', reject);
        resolve(new RawClient(ws));
      });
      ws.once('error', reject);
    });
  }

  /** The TCP socket (TCP clients only). */
  get socket(): net.Socket {
    if (this.link instanceof WebSocket) throw new Error('a WebSocket test client has no raw TCP socket');
    return this.link;
  }

  write(bytes: Buffer): void {
    if (!(this.link instanceof WebSocket)) {
      this.link.write(bytes);
      return;
    }
    for (const f of this.outgoing.push(bytes).frames) this.link.send(f, { binary: true });
  }

  send<N extends WireTypeName>(op: number, type: N, value: Partial<WireTypes[N]>, requestId = this.nextId++): number {
    this.write(frameBytes({ op, requestId, body: encode(type, value) }));
    return requestId;
  }

  async request<N extends WireTypeName>(op: number, type: N, value: Partial<WireTypes[N]>, timeoutMs = 5000): Promise<Frame> {
    const id = this.send(op, type, value);
    return this.waitFor((f) => f.requestId === id && f.op === op, timeoutMs);
  }

  /** Resolves with the first received frame matching pred (already received ones included). */
  async waitFor(pred: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(pred);
      if (f) return f;
      if (this.closed) throw new Error('connection closed while waiting for a frame');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a frame');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Resolves once n received frames match pred. */
  async waitForCount(pred: (f: Frame) => boolean, n: number, timeoutMs = 5000): Promise<Frame[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.frames.filter(pred);
      if (got.length >= n) return got;
      if (this.closed) throw new Error(`connection closed with ${got.length} of ${n} frames`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out with ${got.length} of ${n} frames`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  destroy(): void {
    if (this.link instanceof WebSocket) this.link.terminate();
    else this.link.destroy();
  }

  private ended(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Collects 'message' events of an SDK client; wait until n arrived. */
export interface Inbox {
  messages: WireTypes['Message'][];
  /** Until at least n messages arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<WireTypes['Message'][]>;
  /**
   * Until a message with this msgId arrived. Pushes to one inbox come in seq order, so after a
   * marker sent last has arrived, a duplicate of anything sent before it would have too.
   */
  waitForMsgId(msgId: string, timeoutMs?: number): Promise<WireTypes['Message'][]>;
}

export function collect(client: ImClient): Inbox {
  const messages: WireTypes['Message'][] = [];
  let waiters: Array<() => void> = [];
  client.on('message', (m: WireTypes['Message']) => {
    messages.push(m);
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  const until = async (done: () => boolean, what: string, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${what}, got ${messages.length} messages`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return messages;
  };
  return {
    messages,
    waitFor: (n: number, timeoutMs = 5000) => until(() => messages.length >= n, `${n} messages`, timeoutMs),
    waitForMsgId: (msgId: string, timeoutMs = 5000) => until(() => messages.some((m) => m.msgId === msgId), `message ${msgId}`, timeoutMs),
  };
}

export const text = (m: { content: Uint8Array }) => Buffer.from(m.content).toString('utf8');
