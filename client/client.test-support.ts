/**
 * Test helpers for the SDK's end-to-end tests: a route API the test controls, and a TCP proxy in
 * front of a real gateway that injects the network faults a phone sees (dropped frames, cut
 * connections, a path that goes silent). Neither stands in for a server: the gateway behind the
 * proxy is the real one.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { FrameDecoder } from '../proto/codec';
import { Frame, Message, decodeFrame } from '../proto/wire';
import type { ImClient } from './sdk';
import { parseHostPort } from '../common/config';

export function tempDir(prefix = 'im-client-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export type RouteReply = { status?: number; body: unknown };

/** A route API whose answer the test sets per call; counts calls. */
export class RouteServer {
  hits = 0;
  private constructor(private readonly server: http.Server, readonly url: string, private reply: (hit: number) => RouteReply | Promise<RouteReply>) {}

  static async start(reply: (hit: number) => RouteReply | Promise<RouteReply>): Promise<RouteServer> {
    let self: RouteServer | undefined;
    const server = http.createServer((req, res) => {
      if (req.url !== '/v1/route' || !self) { res.statusCode = 404; res.end(); return; }
      const hit = ++self.hits;
      Promise.resolve(self.reply(hit)).then((r) => {
        res.statusCode = r.status ?? 200;
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(r.body));
      }, () => { res.statusCode = 500; res.end(); });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    self = new RouteServer(server, `http://127.0.0.1:${port}`, reply);
    return self;
  }

  setReply(reply: (hit: number) => RouteReply | Promise<RouteReply>): void {
    this.reply = reply;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => { this.server.close(() => r()); this.server.closeAllConnections(); });
  }
}

export function gatewaysReply(...addrs: string[]): RouteReply {
  return {
    body: {
      gateways: addrs.map((addr, i) => ({ node: `gw-${i}`, addr, region: '', zone: '', load: 0 })),
      backoff: { baseMs: 20, maxMs: 200 },
    },
  };
}

/** The route a real router gives, fetched now (so tests can put proxies in front or behind it). */
export async function realRoute(routerUrl: string): Promise<RouteReply> {
  const res = await fetch(`${routerUrl}/v1/route`);
  return { status: res.status, body: await res.json() };
}

/** A port nothing listens on (bound, then closed): connecting to it is refused at once. */
export async function deadAddr(): Promise<string> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `127.0.0.1:${port}`;
}

/** Accepts TCP connections and never says a word: a hung gateway. */
export class SilentServer {
  private readonly sockets = new Set<net.Socket>();
  accepted = 0;
  private constructor(private readonly server: net.Server, readonly addr: string) {}
  static async start(): Promise<SilentServer> {
    let self: SilentServer | undefined;
    const server = net.createServer((s) => { self!.accepted++; self!.sockets.add(s); s.on('error', () => undefined); s.on('close', () => self!.sockets.delete(s)); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new SilentServer(server, `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    return self;
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** What the proxy does with a frame travelling server -> client. */
export type FrameVerdict = 'forward' | 'drop' | 'cut';

/** A TCP proxy in front of a gateway that can drop or cut on server frames, or go silent. */
export class FaultProxy {
  accepted = 0;
  /** Decides per server->client frame; default forwards everything. */
  onServerFrame: (f: Frame) => FrameVerdict = () => 'forward';
  private readonly pairs = new Set<[net.Socket, net.Socket]>();

  private constructor(private readonly server: net.Server, readonly addr: string, private readonly target: { host: string; port: number }) {}

  static async start(targetAddr: string): Promise<FaultProxy> {
    const target = parseHostPort(targetAddr);
    if (!target) throw new Error(`bad target ${targetAddr}`);
    let self: FaultProxy | undefined;
    const server = net.createServer((client) => self!.accept(client));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new FaultProxy(server, `127.0.0.1:${(server.address() as net.AddressInfo).port}`, target);
    return self;
  }

  /** Existing connections stop carrying bytes either way (a dead path TCP does not notice); new ones work. */
  freeze(): void {
    for (const [client, upstream] of this.pairs) {
      client.removeAllListeners('data');
      // The gateway will close its side for idleness; the client must not hear about it.
      for (const ev of ['data', 'close', 'error']) upstream.removeAllListeners(ev);
      upstream.on('error', () => undefined);
    }
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    const upstream = net.connect(this.target);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    const decoder = new FrameDecoder(64 * 1024 * 1024);
    const cut = () => { client.destroy(); upstream.destroy(); this.pairs.delete(pair); };
    client.on('data', (b) => upstream.write(b));
    upstream.on('data', (chunk) => {
      const { frames, error } = decoder.push(chunk);
      if (error) return cut();
      for (const body of frames) {
        const verdict = this.onServerFrame(decodeFrame(body));
        if (verdict === 'cut') return cut();
        if (verdict === 'drop') continue;
        const prefix = Buffer.alloc(4);
        prefix.writeUInt32BE(body.length, 0);
        client.write(Buffer.concat([prefix, body]));
      }
    });
    client.on('error', cut);
    upstream.on('error', cut);
    client.on('close', cut);
    upstream.on('close', cut);
  }

  async stop(): Promise<void> {
    for (const [c, u] of this.pairs) { c.destroy(); u.destroy(); }
    this.pairs.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** Resolves when `emitter` emits `event` (optionally one matching pred); rejects after timeoutMs. */
/** What waitEvent listens on: a Node EventEmitter or an ImClient (whose emitter also runs in browsers). */
export interface Listenable {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: string, listener: (...args: any[]) => void): unknown;
}

export function waitEvent<T = unknown>(emitter: Listenable, event: string, pred: (v: T) => boolean = () => true, timeoutMs = 8000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, on); reject(new Error(`no "${event}" event within ${timeoutMs}ms`)); }, timeoutMs);
    function on(v: T) {
      if (!pred(v)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(v);
    }
    emitter.on(event, on);
  });
}

/** A 1:1 message at inbox seq `seq`, for the ordering tests that need no server. */
export function inboxMessage(seq: number): Message {
  return {
    msgId: `m${seq}`, seq, convId: 'p:a:b', from: 'a', to: 'b', groupId: '', clientMsgId: `c${seq}`,
    sentAtMs: 0, contentType: 'text/plain', content: Buffer.from(String(seq)), convSeq: seq,
  };
}

/** Every message of the client's inbox, paging through sync from seq 0. */
export async function syncAll(c: ImClient): Promise<Message[]> {
  const all: Message[] = [];
  for (let from = 0; ;) {
    const page = await c.sync(from, 500);
    all.push(...page.messages);
    if (!page.hasMore || page.messages.length === 0) return all;
    from = page.messages[page.messages.length - 1].seq;
  }
}
