/**
 * The supervisor's control port (IM_SUPERVISOR_ADDR), for operators and deploy scripts only —
 * bind it to loopback:
 *
 *   POST /upgrade           replace the worker without closing a client connection; 200 with the
 *                           UpgradeResult when done, 409 while another upgrade runs, 500 if it failed
 *   GET  /status            supervisor pid, listen address, workers (pid, generation), counters
 *   GET  /connections?limit=N   each worker's connections (connId, uid, device, remote port)
 *
 * Same as `kill -HUP <supervisor pid>` for the upgrade, with an answer.
 */
import * as http from 'node:http';
import { silentLogger, type Logger } from '../../common/log';
import { GatewaySupervisor, UpgradeInProgressError } from './supervisor';
import { listen } from '../../common/net';

export interface SupervisorAdminOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  supervisor: GatewaySupervisor;
  logger?: Logger;
}

/** Connections one /connections answer lists per worker by default, and at most. */
const DEFAULT_LIST = 1000;
const MAX_LIST = 100_000;

export class SupervisorAdmin {
  private readonly server: http.Server;
  private readonly logger: Logger;
  private stopped: Promise<void> | undefined;

  constructor(private readonly o: SupervisorAdminOptions) {
    this.logger = o.logger ?? silentLogger;
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        this.logger.error('supervisor admin request failed', { err, url: req.url });
        reply(res, 500, { error: 'internal error' });
      });
    });
    // Bounded requests; an upgrade answer can take as long as the hand-off, so no response timeout.
    this.server.headersTimeout = 5000;
    this.server.requestTimeout = 0;
  }

  async start(): Promise<number> {
    return listen(this.server, this.o.host, this.o.port);
  }

  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.stopped;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    req.resume(); // no endpoint takes a body
    if (url.pathname === '/upgrade') {
      if (req.method !== 'POST') return reply(res, 405, { error: 'use POST' });
      try {
        return reply(res, 200, await this.o.supervisor.upgrade());
      } catch (err) {
        if (err instanceof UpgradeInProgressError) return reply(res, 409, { error: err.message });
        return reply(res, 500, { error: (err as Error).message });
      }
    }
    if (req.method !== 'GET') return reply(res, 405, { error: 'use GET' });
    if (url.pathname === '/status') return reply(res, 200, this.o.supervisor.status());
    if (url.pathname === '/connections') {
      const asked = Number(url.searchParams.get('limit') ?? DEFAULT_LIST);
      const limit = Number.isFinite(asked) ? Math.min(Math.max(0, Math.floor(asked)), MAX_LIST) : DEFAULT_LIST;
      return reply(res, 200, { workers: await this.o.supervisor.connections(limit) });
    }
    return reply(res, 404, { error: 'not found' });
  }
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(body));
}
