/**
 * The route API client (docs/route-api.md): one short HTTP(S) GET that returns the gateways to
 * try, best first for the client's region, the heartbeat interval, and the backoff window the
 * operator wants clients to use. Over https:// the router's certificate is always verified (TLS
 * 1.2+), against `ca` when given.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { Code } from '../common/errors';
import { parseHostPort } from '../common/config';
import { ImClientError } from './errors';

export interface RouteGateway {
  node: string;
  /** Plaintext host:port; '' when the gateway takes TLS clients only. */
  addr: string;
  /** TLS host:port; '' when the gateway has no TLS listener. */
  tlsAddr: string;
  /** The gateway's WebSocket URL; absent when it has no WebSocket listener. */
  wsUrl?: string;
  region: string;
  zone: string;
  load: number;
}

export interface RouteAnswer {
  gateways: RouteGateway[];
  backoff?: { baseMs: number; maxMs: number };
  heartbeatIntervalMs?: number;
  /** The region the server ranked for ('' = unknown). */
  region?: string;
}

/** The route API said 429: this client asks too often. Retryable, after retryAfterMs. */
export class RouteRateLimitedError extends ImClientError {
  constructor(message: string, readonly retryAfterMs: number) {
    super(Code.RATE_LIMITED, message, { retryable: true });
    this.name = 'RouteRateLimitedError';
  }
}

export interface RouteQuery {
  /** Sent as ?region=: the server ranks that region's gateways first. */
  region?: string;
}

/** For an https:// router URL. */
export interface RouteTlsOptions {
  /** PEM CA certificate(s) to trust instead of Node's bundled CAs (the SDK's `tls.ca`). */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** Bounds what a (possibly broken) route API can make a client hold or try. */
export const MAX_ROUTE_GATEWAYS = 32;
const MAX_ROUTE_BODY_BYTES = 256 * 1024;

export function routeUrl(routerUrl: string, query: RouteQuery = {}): string {
  const base = routerUrl.replace(/\/+$/, '') + '/v1/route';
  return query.region ? `${base}?region=${encodeURIComponent(query.region)}` : base;
}

/** Validates a route API reply; entries with no usable addr, tlsAddr or wsUrl are skipped, not fatal. */
export function parseRouteAnswer(json: unknown): RouteAnswer {
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { gateways?: unknown }).gateways)) {
    throw new ImClientError(Code.UNAVAILABLE, 'route API reply has no "gateways" list', { retryable: true });
  }
  const raw = json as { gateways: unknown[]; backoff?: unknown };
  const gateways: RouteGateway[] = [];
  for (const g of raw.gateways) {
    if (gateways.length >= MAX_ROUTE_GATEWAYS) break;
    if (typeof g !== 'object' || g === null) continue;
    const e = g as Record<string, unknown>;
    const usable = (v: unknown) => (typeof v === 'string' && parseHostPort(v) ? v : '');
    const addr = usable(e.addr);
    const tlsAddr = usable(e.tlsAddr);
    const wsUrl = typeof e.wsUrl === 'string' && /^wss?:\/\//.test(e.wsUrl) ? e.wsUrl : '';
    if (addr === '' && tlsAddr === '' && wsUrl === '') continue;
    gateways.push({
      node: typeof e.node === 'string' ? e.node : '',
      addr,
      tlsAddr,
      ...(wsUrl ? { wsUrl } : {}),
      region: typeof e.region === 'string' ? e.region : '',
      zone: typeof e.zone === 'string' ? e.zone : '',
      load: typeof e.load === 'number' ? e.load : 0,
    });
  }
  const answer: RouteAnswer = { gateways };
  const b = raw.backoff as Record<string, unknown> | undefined;
  if (b && typeof b.baseMs === 'number' && typeof b.maxMs === 'number' && b.baseMs >= 0 && b.maxMs >= b.baseMs) {
    answer.backoff = { baseMs: b.baseMs, maxMs: b.maxMs };
  }
  const hb = (json as { heartbeatIntervalMs?: unknown }).heartbeatIntervalMs;
  // Below a second would be a storm of pings; a broken value is ignored, not obeyed.
  if (typeof hb === 'number' && Number.isFinite(hb) && hb >= 1000) answer.heartbeatIntervalMs = hb;
  const region = (json as { region?: unknown }).region;
  if (typeof region === 'string') answer.region = region;
  return answer;
}

/**
 * Asks the route API. Failures are retryable UNAVAILABLE errors (the caller backs off and asks
 * again). node:http rather than fetch(): fetch refuses the "bad ports" of the browser world
 * (6000, 10080, ...), which an operator may well choose for an internal API.
 */
export function fetchRoute(
  routerUrl: string, timeoutMs: number, signal?: AbortSignal, query: RouteQuery = {}, tls: RouteTlsOptions = {},
): Promise<RouteAnswer> {
  const url = routeUrl(routerUrl, query);
  const fail = (why: string, cause?: unknown) =>
    new ImClientError(Code.UNAVAILABLE, `route API ${url} unreachable: ${why}`, { retryable: true, cause });
  return new Promise<RouteAnswer>((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch (cause) {
      reject(new ImClientError(Code.BAD_REQUEST, `route API URL "${routerUrl}" is invalid`, { retryable: false, cause }));
      return;
    }
    const secure = target.protocol === 'https:';
    let settled = false;
    const done = (err: Error | undefined, answer?: RouteAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      if (err) reject(err); else resolve(answer!);
    };
    const onAbort = () => done(fail('aborted'));
    const timer = setTimeout(() => done(fail(`no answer within ${timeoutMs}ms`)), timeoutMs);
    const onResponse = (res: http.IncomingMessage) => {
      if (res.statusCode === 429) {
        res.resume();
        done(new RouteRateLimitedError(`route API ${url} is rate limiting this client`, retryAfterMs(res.headers['retry-after'])));
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        done(new ImClientError(Code.UNAVAILABLE, `route API ${url} answered HTTP ${res.statusCode}`, { retryable: true }));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ROUTE_BODY_BYTES) {
          done(new ImClientError(Code.UNAVAILABLE, `route API reply is larger than ${MAX_ROUTE_BODY_BYTES} bytes`, { retryable: true }));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (cause) {
          done(new ImClientError(Code.UNAVAILABLE, `route API reply is not JSON`, { retryable: true, cause }));
          return;
        }
        try {
          done(undefined, parseRouteAnswer(json));
        } catch (err) {
          done(err as Error);
        }
      });
      res.on('error', (err) => done(fail(err.message, err)));
    };
    const headers = { accept: 'application/json' };
    const req = secure
      ? https.get(target, { headers, agent: false, minVersion: 'TLSv1.2', ca: tls.ca }, onResponse)
      : http.get(target, { headers, agent: false }, onResponse);
    req.on('error', (err: NodeJS.ErrnoException) => done(fail(describeError(err, secure), err)));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A hint for the usual TLS mistakes: an untrusted certificate, or https and http crossed. */
function describeError(err: NodeJS.ErrnoException, secure: boolean): string {
  const code = err.code ?? '';
  if (secure && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(code)) {
    return `TLS: ${err.message} (the router's certificate is not trusted: pass its CA as tls.ca, or im --tls-ca)`;
  }
  if (secure && code === 'ERR_SSL_WRONG_VERSION_NUMBER') return `TLS: ${err.message} (a plain HTTP listener? use an http:// URL)`;
  if (secure && code.startsWith('ERR_SSL')) return `TLS: ${err.message}`;
  if (!secure && code === 'ECONNRESET') return `${err.message} (an HTTPS listener? use an https:// URL)`;
  return err.message;
}

/** Retry-After in seconds (the HTTP-date form is not used by this API); 1 s when absent or odd. */
function retryAfterMs(header: string | undefined): number {
  const s = header !== undefined && /^\d{1,6}$/.test(header.trim()) ? Number(header.trim()) : 1;
  return Math.max(1, s) * 1000;
}
