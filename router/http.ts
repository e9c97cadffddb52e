/**
 * The external route API: clients ask which gateways to connect to (best first) and how to back
 * off between attempts. Short HTTP requests on node:http; bad input gets a JSON error, never a crash.
 */
import * as http from 'node:http';
import { Code } from '../common/errors';
import { Logger } from '../common/log';
import { loadRatio, RouteTable } from './table';

export interface RouteHttpOptions {
  table: RouteTable;
  backoffBaseMs: number;
  backoffMaxMs: number;
  logger: Logger;
  /** Longest list returned; clients only fail over down the first few. */
  maxGatewaysPerRoute?: number;
  /** Request header limit (Node answers 431 beyond it). */
  maxHeaderBytes?: number;
  /** Whole-request and header deadlines, so slow clients cannot hold sockets open. */
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
}

export const ROUTE_HTTP_DEFAULTS = {
  maxGatewaysPerRoute: 16,
  maxHeaderBytes: 8 * 1024,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
} as const;

export interface RouteGateway {
  node: string;
  addr: string;
  region: string;
  zone: string;
  load: number;
}

export interface RouteReply {
  gateways: RouteGateway[];
  backoff: { baseMs: number; maxMs: number };
}

export function createRouteHttpServer(options: RouteHttpOptions): http.Server {
  const o = { ...ROUTE_HTTP_DEFAULTS, ...options };
  const routes = new Map<string, () => unknown>([
    // `?uid=` is accepted and ignored until ranking by user region exists.
    ['/v1/route', (): RouteReply => ({
      gateways: o.table.gateways().slice(0, o.maxGatewaysPerRoute).map((g) => ({
        node: g.node, addr: g.addr, region: g.region, zone: g.zone, load: loadRatio(g),
      })),
      backoff: { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs },
    })],
    ['/healthz', () => ({ ok: true })],
  ]);

  const server = http.createServer({
    maxHeaderSize: o.maxHeaderBytes,
    requestTimeout: o.requestTimeoutMs,
    headersTimeout: o.headersTimeoutMs,
  }, (req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      o.logger.error('route api: unexpected error', { err, url: req.url?.slice(0, 200) });
      if (!res.headersSent) sendError(res, 500, Code.INTERNAL, 'internal error');
      else res.destroy();
    }
  });
  // Malformed requests (bad syntax, oversized headers) are answered by Node's default clientError
  // handling: 400 or 431, then the socket is closed. Nothing reaches our handler, nothing throws.

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // The route API takes no body; discard any so the connection stays usable.
    req.resume();
    const path = pathOf(req.url);
    if (path === undefined) return sendError(res, 400, Code.BAD_REQUEST, 'malformed request target');
    const route = routes.get(path);
    if (!route) return sendError(res, 404, Code.BAD_REQUEST, `no such endpoint: ${path.slice(0, 100)}`);
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return sendError(res, 405, Code.BAD_REQUEST, `method ${req.method} not allowed on ${path}`);
    }
    sendJson(res, 200, route());
  }

  return server;
}

/** The path of a request target, without the query. */
function pathOf(url: string | undefined): string | undefined {
  // Origin-form only ("/path?query"); absolute or asterisk forms are not for this API.
  if (!url || !url.startsWith('/')) return undefined;
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    // Load changes by the second: a cached list steers clients to a gateway that filled up.
    'Cache-Control': 'no-store',
  });
  res.end(data);
}

function sendError(res: http.ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { error: { code, message } });
}
