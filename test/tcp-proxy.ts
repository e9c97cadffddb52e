/**
 * A TCP proxy a test puts between a client and a real server to fail the connection at a chosen
 * moment: hold the server's replies, wait until the client has sent a request, then cut every
 * connection. New connections are accepted afterwards, so the client can reconnect.
 */
import * as net from 'node:net';

export interface ProxyTarget { host: string; port: number }

export class TcpProxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private holding = false;
  private requestSeen: (() => void) | undefined;

  private constructor(private readonly server: net.Server, private readonly target: ProxyTarget) {
    server.on('connection', (client) => this.pipe(client));
  }

  /** Listens on an ephemeral port of 127.0.0.1. */
  static async start(target: ProxyTarget): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return new TcpProxy(server, target);
  }

  get addr(): string {
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /**
   * Stops passing the server's replies on, and resolves once the client sends anything after
   * that: a request is then in flight and unanswered.
   */
  holdRepliesUntilRequest(): Promise<void> {
    this.holding = true;
    for (const [, upstream] of this.pairs) upstream.pause();
    return new Promise((resolve) => { this.requestSeen = resolve; });
  }

  /** Destroys every connection (as a crashed node or a broken network would) and stops holding. */
  cutAll(): void {
    this.holding = false;
    this.requestSeen = undefined;
    for (const [client, upstream] of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pipe(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    this.pairs.add(pair);
    if (this.holding) upstream.pause();
    client.on('data', (chunk) => {
      upstream.write(chunk);
      if (this.holding && this.requestSeen) {
        const seen = this.requestSeen;
        this.requestSeen = undefined;
        seen();
      }
    });
    upstream.on('data', (chunk) => client.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.pairs.delete(pair);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  }
}
