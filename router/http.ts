/**
 * The external route API (docs/route-api.md): clients ask which gateways to connect to (best
 * first for their region and the current load) and how to pace heartbeats and reconnects. Short
 * HTTP requests on node:http, or HTTPS (TLS 1.2+) on node:https when given a certificate; bad
 * input gets a JSON error, never a crash.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { Code, ImError } from '../common/errors';
import { Logger } from '../common/log';
import { TLS_MIN_VERSION, type ReloadableTlsContext } from '../common/tls-context';
import { CidrMap, CidrSet } from './cidr';
import { clientIp, MAX_FORWARDED_HOPS, ProxyRules, REGION_HEADER, RegionSource, resolveRegion } from './client-origin';
import { IpRateLimiter } from './ip-rate-limit';
import { loadRatio, rankGateways } from './rank';
import { RouteTable } from './table';

export interface RouteRateLimit {
  /** Route requests per second per client IP (IPv6: per /64). */
  ratePerSec: number;
  burst: number;
  /** Client IPs tracked at once; the least recently seen is forgotten first. */
  maxTrackedIps: number;
}

export interface RouteHttpOptions {
  table: RouteTable;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** How often clients should heartbeat on their gateway connection (the gateway's setting). */
  heartbeatIntervalMs: number;
  logger: Logger;
  /** Client IP -> region; empty: regions come only from the request. */
  regions?: CidrMap<string>;
  /** Peers whose X-Forwarded-For is believed. */
  trustedProxies?: CidrSet;
  /** Absent: no rate limit (e.g. a load balancer in front already limits). */
  rateLimit?: RouteRateLimit;
  /** See rank.ts. */
  loadExponent?: number;
  /** Ranking randomness, injectable so tests are deterministic. */
  random?: () => number;
  /** Clock for the rate limiter. */
  now?: () => number;
  /** Longest list returned; clients only fail over down the first few. */
  maxGatewaysPerRoute?: number;
  /** Request header limit (Node answers 431 beyond it). */
  maxHeaderBytes?: number;
  /** Whole-request and header deadlines, so slow clients cannot hold sockets open. */
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** Serve HTTPS with this certificate (kept current on reload); absent: plain HTTP. */
  tls?: ReloadableTlsContext;
}

/** The route API's listener: plain HTTP, or HTTPS when a certificate is configured. */
export type RouteServer = http.Server | https.Server;

export const ROUTE_HTTP_DEFAULTS = {
  maxGatewaysPerRoute: 16,
  maxHeaderBytes: 8 * 1024,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
} as const;

export interface RouteGateway {
  node: string;
  /** Plaintext host:port; '' when the gateway takes TLS clients only. */
  addr: string;
  /** Whether the gateway has a TLS listener, and its host:port ('' without one). */
  tls: boolean;
  tlsAddr: string;
  /** Present when the gateway has a WebSocket listener. */
  wsUrl?: string;
  region: string;
  zone: string;
  load: number;
}

export interface RouteReply {
  /** The region the list was ranked for; '' when unknown. */
  region: string;
  regionSource: RegionSource;
  gateways: RouteGateway[];
  heartbeatIntervalMs: number;
  backoff: { baseMs: number; maxMs: number };
}

export function createRouteHttpServer(options: RouteHttpOptions): RouteServer {
  const o = { ...ROUTE_HTTP_DEFAULTS, ...definedOnly(options) };
  const regions = o.regions ?? new CidrMap<string>();
  const proxies: ProxyRules = {
    trustedProxies: o.trustedProxies ?? new CidrSet(),
    maxForwardedHops: MAX_FORWARDED_HOPS,
  };
  const limiter = o.rateLimit && new IpRateLimiter({ ...o.rateLimit, now: o.now });

  function route(req: http.IncomingMessage, query: URLSearchParams, res: http.ServerResponse): void {
    const ip = clientIp(req.socket.remoteAddress, header(req, 'x-forwarded-for'), proxies);
    // Limited before anything else, so a client cannot dodge the limit with malformed requests.
    if (limiter) {
      const d = limiter.take(ip);
      if (!d.allowed) {
        res.setHeader('Retry-After', String(Math.max(1, Math.ceil(d.retryAfterMs / 1000))));
        return sendError(res, 429, Code.RATE_LIMITED, 'too many route requests from this address', { retryAfterMs: d.retryAfterMs });
      }
    }
    const origin = resolveRegion(ip, { regionParam: query.get('region'), regionHeader: header(req, REGION_HEADER) }, regions);
    const ranked = rankGateways(o.table.gateways(), { region: origin.region, random: o.random, loadExponent: o.loadExponent });
    const reply: RouteReply = {
      region: origin.region,
      regionSource: origin.regionSource,
      gateways: ranked.slice(0, o.maxGatewaysPerRoute).map((g) => ({
        node: g.node, addr: g.addr, tls: !!g.tlsAddr, tlsAddr: g.tlsAddr ?? '', ...(g.wsUrl ? { wsUrl: g.wsUrl } : {}), region: g.region, zone: g.zone, load: loadRatio(g),
      })),
      heartbeatIntervalMs: o.heartbeatIntervalMs,
      backoff: { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs },
    };
    sendJson(res, 200, reply);
  }

  const routes = new Map<string, (req: http.IncomingMessage, query: URLSearchParams, res: http.ServerResponse) => void>([
    // `?uid=` is accepted and ignored: ranking does not depend on who asks, only from where.
    ['/v1/route', route],
    // Not rate limited: probes from the orchestrator come from one address, often.
    ['/healthz', (_req, _q, res) => sendJson(res, 200, { ok: true })],
  ]);

  const serverOptions: http.ServerOptions = {
    maxHeaderSize: o.maxHeaderBytes,
    requestTimeout: o.requestTimeoutMs,
    headersTimeout: o.headersTimeoutMs,
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    try {
      handle(req, res);
    } catch (err) {
      if (err instanceof ImError && err.code === Code.BAD_REQUEST) return sendError(res, 400, err.code, err.message);
      o.logger.error('route api: unexpected error', { err, url: req.url?.slice(0, 200) });
      if (!res.headersSent) sendError(res, 500, Code.INTERNAL, 'internal error');
      else res.destroy();
    }
  };
  let server: RouteServer;
  if (o.tls) {
    // The certificate comes from attach(); a client that does not speak TLS (plain http:// to
    // this port) fails its handshake and is closed, as Node does for any TLS server.
    const secure = https.createServer({ ...serverOptions, minVersion: TLS_MIN_VERSION }, onRequest);
    o.tls.attach(secure);
    server = secure;
  } else {
    server = http.createServer(serverOptions, onRequest);
  }
  // Malformed requests (bad syntax, oversized headers) are answered by Node's default clientError
  // handling: 400 or 431, then the socket is closed. Nothing reaches our handler, nothing throws.

  function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // The route API takes no body; discard any so the connection stays usable.
    req.resume();
    const target = splitTarget(req.url);
    if (target === undefined) return sendError(res, 400, Code.BAD_REQUEST, 'malformed request target');
    const handler = routes.get(target.path);
    if (!handler) return sendError(res, 404, Code.BAD_REQUEST, `no such endpoint: ${target.path.slice(0, 100)}`);
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return sendError(res, 405, Code.BAD_REQUEST, `method ${req.method} not allowed on ${target.path}`);
    }
    handler(req, new URLSearchParams(target.query), res);
  }

  return server;
}

/** Path and query of a request target. */
function splitTarget(url: string | undefined): { path: string; query: string } | undefined {
  // Origin-form only ("/path?query"); absolute or asterisk forms are not for this API.
  if (!url || !url.startsWith('/')) return undefined;
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** A request header as one string (Node joins repeated X-Forwarded-For with ", "). */
function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    // Load changes by the second: a cached list steers clients to a gateway that filled up.
    'Cache-Control': 'no-store',
    // Public, credential-free answers: a web page on any origin may read them (browsers connect
    // over WebSocket after asking here), and the SDK backs off by Retry-After on a 429.
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Expose-Headers': 'Retry-After',
  });
  res.end(data);
}

function sendError(res: http.ServerResponse, status: number, code: number, message: string, extra: Record<string, unknown> = {}): void {
  sendJson(res, status, { error: { code, message, ...extra } });
}

function definedOnly<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as T;
}
