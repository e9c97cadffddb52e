/** ImClient options: the public shape, the defaults, and the one place they are applied and checked. */
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, validateBackoff } from '../common/backoff';
import { checkNonEmpty, numberOption, OptionError, type NumberRule } from '../common/options';
import { DEFAULT_MAX_BUFFERED_MESSAGES } from './inbox';

export type TokenProvider = () => Promise<string> | string;

/** TLS to the gateways (their `tlsAddr` in the route API). The server's certificate is always verified. */
export interface ClientTlsOptions {
  /**
   * PEM CA certificate(s) to trust instead of Node's bundled CAs (a private CA), for the gateways
   * and for an https:// routerUrl.
   */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /**
   * The name the certificate must carry (and the SNI sent). Default: the host of the gateway's
   * address — so a gateway advertised by IP needs that IP in its certificate, or this.
   */
  servername?: string;
}

export interface ImClientOptions {
  /**
   * Route API base URL, e.g. http://127.0.0.1:7180, or https://... (the router's certificate is
   * verified, against tls.ca when given, else Node's bundled CAs).
   */
  routerUrl: string;
  /** A JWT, or a function returning one; a function is called again when the server says the token expired. */
  token: string | TokenProvider;
  deviceId?: string;                 // default: a random "sdk-<uuid>"
  /**
   * 'tcp' (the default in Node): the gateways' TCP addresses. 'websocket' (the default, and the
   * only transport, in a browser): their WebSocket URLs (route API `wsUrl`; gateways without one
   * are skipped). Node uses the `ws` package, a browser its WebSocket.
   */
  transport?: Transport;
  /** Region to be routed to (sent as ?region=); default: the server derives it from the client's IP. */
  region?: string;
  /**
   * true or options: connect to the gateways' TLS listeners only (gateways without one are
   * skipped); absent/false: plaintext only (gateways that turned plaintext off are skipped).
   * With transport 'websocket': true or options takes wss:// URLs only (checked against `ca` in
   * Node); absent, ws:// and wss:// alike (wss:// against Node's bundled CAs).
   */
  tls?: boolean | ClientTlsOptions;
  /** The highest inbox seq the application has already processed (persist lastSeq across runs). */
  lastSeq?: number;                  // 0
  requestTimeoutMs?: number;         // 10000
  connectTimeoutMs?: number;         // 5000: per gateway (TCP connect + Auth), and per route API call
  backoffBaseMs?: number;            // route API's value when present, else 500
  backoffMaxMs?: number;             // route API's value when present, else 30000
  /** Backoff rounds (each round: ask the route API, try every gateway) after a first failed round. */
  maxReconnectAttempts?: number;     // Infinity
  autoReconnect?: boolean;           // true
  /** false: requests only (a bot that only sends, a CLI command): no catch-up sync, pushes ignored. */
  receiveMessages?: boolean;         // true
  /**
   * send()/sendGroup() retry bounds (same clientMsgId every time, so no duplicate is created):
   * sendMaxAttempts counts replies that refused the send (overloaded, rate limited, internal);
   * failures without a verdict (unavailable, timeout, connection lost) retry until the window ends.
   */
  sendMaxAttempts?: number;          // 5
  sendRetryWindowMs?: number;        // 60000
  syncPageLimit?: number;            // 200 (server caps at 500)
  maxBufferedMessages?: number;      // 10000 pushes held while a gap is being filled
  maxInFlightRequests?: number;      // 1000 per connection; beyond it requests fail with OVERLOADED
  maxIncomingFrameBytes?: number;    // 16 MiB
}

export type Transport = 'tcp' | 'websocket';

export interface ResolvedOptions {
  routerUrl: string;
  transport: Transport;
  token: string | TokenProvider;
  deviceId: string;
  region?: string;
  tls?: ClientTlsOptions;
  lastSeq: number;
  requestTimeoutMs: number;
  connectTimeoutMs: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  maxReconnectAttempts: number;
  autoReconnect: boolean;
  receiveMessages: boolean;
  sendMaxAttempts: number;
  sendRetryWindowMs: number;
  syncPageLimit: number;
  maxBufferedMessages: number;
  maxInFlightRequests: number;
  maxIncomingFrameBytes: number;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 30_000;

const OWNER = 'ImClientOptions';
const positive = (name: string, v: number | undefined, def: number, rule: NumberRule = {}) => numberOption(OWNER, name, v, def, rule);

function resolveTls(t: ImClientOptions['tls']): ClientTlsOptions | undefined {
  if (t === undefined || t === false) return undefined;
  if (t === true) return {};
  if (typeof t !== 'object' || t === null) throw new OptionError(OWNER, 'tls', `must be a boolean or an object, got ${JSON.stringify(t)}`);
  if (t.servername !== undefined) checkNonEmpty(OWNER, 'tls.servername', t.servername);
  return { ...(t.ca !== undefined ? { ca: t.ca } : {}), ...(t.servername !== undefined ? { servername: t.servername } : {}) };
}

/**
 * A random UUID (v4): crypto.randomUUID where there is one (Node, browsers in a secure context),
 * else built from crypto.getRandomValues (a browser page served over plain http).
 */
export function randomId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues<T extends Uint8Array>(a: T): T } }).crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  if (!c) throw new Error('no crypto.getRandomValues in this environment');
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface ResolveEnv {
  randomId: () => string;
  /** 'tcp' in Node, 'websocket' in a browser. */
  defaultTransport: Transport;
}

export function resolveOptions(o: ImClientOptions, env: ResolveEnv): ResolvedOptions {
  if (!o || typeof o.routerUrl !== 'string' || !/^https?:\/\/./.test(o.routerUrl)) {
    throw new OptionError(OWNER, 'routerUrl', `must be an http(s) URL, got ${JSON.stringify(o?.routerUrl)}`);
  }
  if (typeof o.token !== 'function' && (typeof o.token !== 'string' || o.token === '')) {
    throw new OptionError(OWNER, 'token', 'must be a non-empty string or a function');
  }
  const lastSeq = positive('lastSeq', o.lastSeq, 0, { integer: true, min: 0 });
  const r: ResolvedOptions = {
    routerUrl: o.routerUrl,
    transport: o.transport ?? env.defaultTransport,
    token: o.token,
    deviceId: o.deviceId ?? `sdk-${env.randomId()}`,
    region: o.region,
    tls: resolveTls(o.tls),
    lastSeq,
    requestTimeoutMs: positive('requestTimeoutMs', o.requestTimeoutMs, 10_000),
    connectTimeoutMs: positive('connectTimeoutMs', o.connectTimeoutMs, 5000),
    backoffBaseMs: o.backoffBaseMs === undefined ? undefined : positive('backoffBaseMs', o.backoffBaseMs, 0, { min: 0 }),
    backoffMaxMs: o.backoffMaxMs === undefined ? undefined : positive('backoffMaxMs', o.backoffMaxMs, 0, { min: 0 }),
    maxReconnectAttempts: positive('maxReconnectAttempts', o.maxReconnectAttempts, Infinity, { min: 0, infinite: true }),
    autoReconnect: o.autoReconnect ?? true,
    receiveMessages: o.receiveMessages ?? true,
    sendMaxAttempts: Math.floor(positive('sendMaxAttempts', o.sendMaxAttempts, 5)),
    sendRetryWindowMs: positive('sendRetryWindowMs', o.sendRetryWindowMs, 60_000),
    syncPageLimit: Math.floor(positive('syncPageLimit', o.syncPageLimit, 200)),
    maxBufferedMessages: Math.floor(positive('maxBufferedMessages', o.maxBufferedMessages, DEFAULT_MAX_BUFFERED_MESSAGES)),
    maxInFlightRequests: Math.floor(positive('maxInFlightRequests', o.maxInFlightRequests, 1000)),
    maxIncomingFrameBytes: Math.floor(positive('maxIncomingFrameBytes', o.maxIncomingFrameBytes, 16 * 1024 * 1024)),
  };
  if (r.transport !== 'tcp' && r.transport !== 'websocket') {
    throw new OptionError(OWNER, 'transport', `must be "tcp" or "websocket", got ${JSON.stringify(r.transport)}`);
  }
  if (r.deviceId === '') throw new OptionError(OWNER, 'deviceId', 'must not be empty');
  // The server's rule (docs/route-api.md), checked here so a typo fails at construction, not per connect.
  if (r.region !== undefined && (typeof r.region !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(r.region))) {
    throw new OptionError(OWNER, 'region', `must be 1-64 letters, digits, ".", "_" or "-", got ${JSON.stringify(r.region)}`);
  }
  validateBackoff(r.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS, r.backoffMaxMs ?? Math.max(DEFAULT_BACKOFF_MAX_MS, r.backoffBaseMs ?? 0), OWNER);
  return r;
}
