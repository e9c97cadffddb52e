/**
 * A service's internal admin port (IM_ADMIN_ADDR), for the orchestrator and Prometheus only:
 *
 *   GET /healthz  200 while the process serves HTTP at all (liveness)
 *   GET /readyz   200 when every readiness check passes, else 503; the body names each check
 *   GET /metrics  Prometheus text
 *
 * Never expose it to clients. Requests are small and bounded in time; stop() is idempotent.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError, parseFlags, Settings, type Env, type HostPort } from './config';
import { silentLogger, type Logger } from './log';
import { metrics } from './metrics';

/** Named readiness conditions, e.g. { logicStream: true, bus: false }. Ready when all are true. */
export type ReadinessChecks = Record<string, boolean>;

export interface AdminServerOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Evaluated per /readyz request. Default: ready. */
  readiness?: () => ReadinessChecks;
  /** Default: this process's metrics() registry, with Node.js process metrics enabled. */
  registry?: Registry;
  /** Bound on one request (headers and body). Default 5000. */
  requestTimeoutMs?: number;
  logger?: Logger;
}

export class AdminServer {
  private readonly server: http.Server;
  private readonly host: string;
  private readonly port: number;
  private readonly readiness: () => ReadinessChecks;
  private readonly registry: Registry;
  private readonly logger: Logger;
  private started: Promise<number> | undefined;
  private stopped: Promise<void> | undefined;

  constructor(options: AdminServerOptions) {
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new ConfigError('port', `must be a port 0-65535, got ${options.port}`);
    }
    const timeoutMs = options.requestTimeoutMs ?? 5000;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new ConfigError('requestTimeoutMs', `must be a positive integer, got ${timeoutMs}`);
    this.host = options.host;
    this.port = options.port;
    this.readiness = options.readiness ?? (() => ({}));
    this.logger = options.logger ?? silentLogger;
    if (options.registry) {
      this.registry = options.registry;
    } else {
      metrics().enableProcessMetrics();
      this.registry = metrics().registry;
    }
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.requestTimeout = timeoutMs;
    this.server.headersTimeout = timeoutMs;
    this.server.keepAliveTimeout = timeoutMs;
    // A scraper or prober needs a handful; more are a misconfiguration, not load to serve.
    this.server.maxConnections = 64;
  }

  /** Binds; resolves with the bound port. */
  start(): Promise<number> {
    if (this.stopped) return Promise.reject(new Error('admin server was stopped'));
    this.started ??= new Promise<number>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, this.host, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.logger.error('admin server error', { err }));
        resolve((this.server.address() as AddressInfo).port);
      });
    });
    return this.started;
  }

  /** Closes the listener and every connection. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.started?.catch(() => undefined);
      if (!this.server.listening) return;
      await new Promise<void>((resolve) => {
        this.server.close(() => resolve());
        this.server.closeAllConnections();
      });
    })();
    return this.stopped;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/readyz':
        this.ready(res);
        return;
      case '/metrics':
        this.registry.metrics().then(
          (text) => send(res, 200, this.registry.contentType, text),
          (err: unknown) => {
            this.logger.error('metrics collection failed', { err });
            send(res, 500, 'text/plain', 'metrics collection failed\n');
          },
        );
        return;
      default:
        send(res, 404, 'text/plain', 'not found\n');
    }
  }

  private ready(res: http.ServerResponse): void {
    let checks: ReadinessChecks;
    try {
      checks = this.readiness();
    } catch (err) {
      this.logger.warn('readiness check threw', { err });
      checks = { check: false };
    }
    const ready = Object.values(checks).every(Boolean);
    send(res, ready ? 200 : 503, 'application/json', JSON.stringify({ ready, checks }) + '\n');
  }
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** IM_ADMIN_ADDR (--admin-addr): host:port of the admin port, or undefined (no admin port). */
export function loadAdminAddr(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): HostPort | undefined {
  const s = new Settings(env, parseFlags(argv));
  return s.raw('IM_ADMIN_ADDR', 'admin-addr') === undefined ? undefined : s.addr('IM_ADMIN_ADDR', '', 'admin-addr');
}
