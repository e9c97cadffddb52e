/**
 * The route API's answer (docs/route-api.md): its shape, its validation, and the URL to ask. No
 * Node-only import: route.ts asks over node:http in Node, platform-browser.ts with fetch().
 */
import { Code } from '../common/errors';
import { parseHostPort } from '../common/host-port';
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
  ca?: string | Uint8Array | Array<string | Uint8Array>;
}

/** Bounds what a (possibly broken) route API can make a client hold or try. */
export const MAX_ROUTE_GATEWAYS = 32;
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

/** Bounds what a (possibly broken) route API can make a client read. */
export const MAX_ROUTE_BODY_BYTES = 256 * 1024;

/** Retry-After in seconds (the HTTP-date form is not used by this API); 1 s when absent or odd. */
export function retryAfterMs(header: string | null | undefined): number {
  const s = typeof header === 'string' && /^\d{1,6}$/.test(header.trim()) ? Number(header.trim()) : 1;
  return Math.max(1, s) * 1000;
}
