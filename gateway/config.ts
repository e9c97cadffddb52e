/**
 * Gateway configuration: a pure function of (env, argv). Flags (--name value) override env vars.
 * Durations accept 500ms / 5s / 10m or bare milliseconds.
 */
import * as os from 'node:os';
import { ConfigError, Env, formatHostPort, HostPort, parseFlags, parseHostPort, Settings } from '../common/config';
import { loadGrpcTls, type GrpcTlsConfig } from '../common/grpc-tls';
import type { TokenAuth } from '../common/jwt';
import { loadTokenAuth } from '../common/secret';
import { DEFAULT_MAX_FRAME_BYTES } from '../proto/codec';
import { DEFAULT_HEARTBEAT_INTERVAL_MS, type ConnectionLimits } from './limits';
import type { GatewayTlsOptions } from './server';
import { DEFAULT_TLS_RELOAD_MS, loadTlsFiles } from './tls';

/** The per-connection limits an operator sets (the rest of ConnectionLimits keeps its defaults). */
type ConfiguredLimits = Pick<ConnectionLimits, 'maxFrameBytes' | 'heartbeatIntervalMs' | 'idleTimeoutMs'
  | 'authTimeoutMs' | 'maxWriteQueueBytes' | 'rateLimitPerSec' | 'rateLimitBurst'>;

export interface GatewayConfig extends GatewayLimitSettings, GatewayListeners {
  node: string;
  /** Where to listen. */
  listen: HostPort;
  /** Advertised to clients via the router; undefined = the listen address with the bound port. */
  publicAddr: string | undefined;
  /** The WebSocket listener (IM_GATEWAY_WS_ADDR); undefined = off. */
  ws: WsSettings | undefined;
  /** The keys and aud/iss client tokens are checked with. */
  auth: TokenAuth;
  logicAddresses: string[];
  routerAddr: string;
  /** Mutual TLS to logic and the router (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls: GrpcTlsConfig | undefined;
  /** SIGTERM spreads the DRAINING disconnects over this window (IM_DRAIN_WINDOW). */
  drainWindowMs: number;
  region: string;
  zone: string;
}

export function loadGatewayConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): GatewayConfig {
  const s = new Settings(env, parseFlags(argv));
  const auth = loadTokenAuth(s);
  // No default secret: a gateway that accepts tokens signed with a well-known key is open to anyone.
  if (auth.secret === undefined && auth.keys?.size === 0) {
    throw new ConfigError('IM_AUTH_SECRET', 'required unless IM_AUTH_KEYS is set (the HS256 key tokens are signed with)');
  }
  const publicAddr = s.raw('IM_GATEWAY_PUBLIC_ADDR', 'public-addr');
  if (publicAddr !== undefined && !parseHostPort(publicAddr)) {
    throw new ConfigError('IM_GATEWAY_PUBLIC_ADDR', `expected host:port, got "${publicAddr}"`);
  }
  const logicAddresses = s.list('IM_LOGIC_ADDRS', ['127.0.0.1:7190'], 'logic-addrs');
  if (logicAddresses.length === 0) throw new ConfigError('IM_LOGIC_ADDRS', 'at least one host:port is required');
  for (const a of logicAddresses) {
    if (!parseHostPort(a)) throw new ConfigError('IM_LOGIC_ADDRS', `expected host:port, got "${a}"`);
  }
  const listen = s.addr('IM_GATEWAY_ADDR', '127.0.0.1:7100', 'addr');
  const listeners = loadGatewayListeners(s);
  checkDistinct(listen, listeners);
  return {
    node: s.str('IM_NODE_ID', `gw-${os.hostname()}`, 'node'),
    listen,
    publicAddr,
    ws: loadGatewayWs(s, listeners),
    auth,
    logicAddresses,
    routerAddr: formatHostPort(s.addr('IM_ROUTER_GRPC_ADDR', '127.0.0.1:7181', 'router-addr')),
    grpcTls: loadGrpcTls(s, 'gateway'),
    ...loadGatewayLimits(s),
    ...listeners,
    drainWindowMs: drainWindowMs(s),
    region: s.str('IM_REGION', '', 'region'),
    zone: s.str('IM_ZONE', '', 'zone'),
  };
}

/** The TLS listener (IM_GATEWAY_TLS_*): on when IM_GATEWAY_TLS_ADDR is set. */
export interface GatewayTlsSettings {
  listen: HostPort;
  /** Advertised to clients via the router; undefined = the TLS listen address with the bound port. */
  publicAddr: string | undefined;
  certFile: string;
  keyFile: string;
  /** How often the two files are checked for a change. */
  reloadIntervalMs: number;
}

export interface GatewayListeners {
  /** The plaintext listener on IM_GATEWAY_ADDR (IM_GATEWAY_PLAINTEXT, default true). */
  plaintext: boolean;
  tls: GatewayTlsSettings | undefined;
}

/**
 * Which client listeners a gateway runs, read the same way by the gateway, its supervisor and
 * embedded mode (whose flags carry `flagPrefix`, e.g. --gateway-tls-addr). The certificate and key
 * are read here once, so an unusable file stops the process at start naming the setting.
 */
export function loadGatewayListeners(s: Settings, flagPrefix = ''): GatewayListeners {
  const raw = (name: string, flag: string) => s.raw(name, flagPrefix + flag);
  const tlsAddr = raw('IM_GATEWAY_TLS_ADDR', 'tls-addr');
  const certFile = raw('IM_GATEWAY_TLS_CERT', 'tls-cert');
  const keyFile = raw('IM_GATEWAY_TLS_KEY', 'tls-key');
  const publicAddr = raw('IM_GATEWAY_TLS_PUBLIC_ADDR', 'tls-public-addr');
  const reloadIntervalMs = s.durationMs('IM_GATEWAY_TLS_RELOAD_INTERVAL', DEFAULT_TLS_RELOAD_MS, { min: 100, flag: flagPrefix + 'tls-reload-interval' });
  const plaintext = s.bool('IM_GATEWAY_PLAINTEXT', true, flagPrefix + 'plaintext');
  if (tlsAddr === undefined) {
    for (const [name, v] of [['IM_GATEWAY_TLS_CERT', certFile], ['IM_GATEWAY_TLS_KEY', keyFile], ['IM_GATEWAY_TLS_PUBLIC_ADDR', publicAddr]] as const) {
      if (v !== undefined) throw new ConfigError(name, 'set IM_GATEWAY_TLS_ADDR too (without it the gateway has no TLS listener)');
    }
    if (!plaintext) throw new ConfigError('IM_GATEWAY_PLAINTEXT', 'false needs IM_GATEWAY_TLS_ADDR: the gateway would have no listener');
    return { plaintext, tls: undefined };
  }
  const listen = s.addr('IM_GATEWAY_TLS_ADDR', tlsAddr, flagPrefix + 'tls-addr');
  if (certFile === undefined) throw new ConfigError('IM_GATEWAY_TLS_CERT', 'required with IM_GATEWAY_TLS_ADDR (PEM certificate file)');
  if (keyFile === undefined) throw new ConfigError('IM_GATEWAY_TLS_KEY', 'required with IM_GATEWAY_TLS_ADDR (PEM private key file)');
  if (publicAddr !== undefined && !parseHostPort(publicAddr)) {
    throw new ConfigError('IM_GATEWAY_TLS_PUBLIC_ADDR', `expected host:port, got "${publicAddr}"`);
  }
  loadTlsFiles({ certFile, keyFile });
  return { plaintext, tls: { listen, publicAddr, certFile, keyFile, reloadIntervalMs } };
}

/** The Gateway's `tls` option from the settings (host and port: the TLS listener's). */
export function gatewayTlsOptions(t: GatewayTlsSettings | undefined, publicAddr?: string): GatewayTlsOptions | undefined {
  if (!t) return undefined;
  return {
    host: t.listen.host, port: t.listen.port, publicAddr: publicAddr ?? t.publicAddr,
    certFile: t.certFile, keyFile: t.keyFile, reloadIntervalMs: t.reloadIntervalMs,
  };
}

/** Both listeners on one fixed address would fail at bind; say so at start instead. */
export function checkDistinct(plain: HostPort, l: GatewayListeners): void {
  if (l.plaintext && l.tls && l.tls.listen.port !== 0 && formatHostPort(l.tls.listen) === formatHostPort(plain)) {
    throw new ConfigError('IM_GATEWAY_TLS_ADDR', `must differ from IM_GATEWAY_ADDR (${formatHostPort(plain)}): each listener needs its own port`);
  }
}

/** What a gateway enforces per client and per node. */
export interface GatewayLimitSettings extends ConfiguredLimits {
  maxConnections: number;
}

/**
 * The gateway's client-facing limits, read the same way wherever a gateway runs: its own process
 * (loadGatewayConfig) and embedded mode (embedded/config.ts), so a documented setting means the
 * same thing in both.
 */
export function loadGatewayLimits(s: Settings): GatewayLimitSettings {
  const heartbeatIntervalMs = s.durationMs('IM_HEARTBEAT_INTERVAL', DEFAULT_HEARTBEAT_INTERVAL_MS, { min: 1000, flag: 'heartbeat-interval' });
  const idleTimeoutMs = s.durationMs('IM_IDLE_TIMEOUT', 3 * heartbeatIntervalMs, { min: 1000, flag: 'idle-timeout' });
  if (idleTimeoutMs <= heartbeatIntervalMs) throw new ConfigError('IM_IDLE_TIMEOUT', 'must be greater than IM_HEARTBEAT_INTERVAL');
  return {
    maxFrameBytes: s.int('IM_MAX_FRAME_BYTES', DEFAULT_MAX_FRAME_BYTES, { min: 1024, max: 16 * 1024 * 1024, flag: 'max-frame-bytes' }),
    heartbeatIntervalMs,
    idleTimeoutMs,
    authTimeoutMs: s.durationMs('IM_AUTH_TIMEOUT', 5000, { min: 100, flag: 'auth-timeout' }),
    maxWriteQueueBytes: s.int('IM_WRITE_QUEUE_BYTES', 1024 * 1024, { min: 64 * 1024, flag: 'write-queue-bytes' }),
    rateLimitPerSec: s.int('IM_RATE_LIMIT', 50, { min: 1, flag: 'rate-limit' }),
    rateLimitBurst: s.int('IM_RATE_BURST', 100, { min: 1, flag: 'rate-burst' }),
    maxConnections: s.int('IM_MAX_CONNECTIONS', 50_000, { min: 1, flag: 'max-connections' }),
  };
}

export interface WsSettings {
  host: string;
  port: number;
  /** wss:// only, with the TLS listener's certificate (IM_GATEWAY_WS_TLS). */
  tls: boolean;
  /** What the route API lists (IM_GATEWAY_WS_PUBLIC_URL); default ws:// (wss://) <public host>:<port>/. */
  publicUrl?: string;
}

/**
 * The WebSocket listener, read the same way by the gateway, its supervisor and embedded mode. Off
 * unless IM_GATEWAY_WS_ADDR is set, or `defaultAddr` is given (embedded mode); `off` turns it off.
 * IM_GATEWAY_WS_TLS: the listener speaks wss:// only, with the certificate of the TLS listener
 * (IM_GATEWAY_TLS_CERT / _KEY, reloaded the same way); its default follows IM_GATEWAY_PLAINTEXT:
 * with plaintext off no client listener is plaintext.
 */
export function loadGatewayWs(s: Settings, listeners: GatewayListeners, defaultAddr?: string): WsSettings | undefined {
  const publicUrl = s.raw('IM_GATEWAY_WS_PUBLIC_URL', 'ws-public-url');
  if (publicUrl !== undefined && !/^wss?:\/\/[^/\s]+/.test(publicUrl)) {
    throw new ConfigError('IM_GATEWAY_WS_PUBLIC_URL', `expected a ws:// or wss:// URL, got "${publicUrl}"`);
  }
  const addr = s.raw('IM_GATEWAY_WS_ADDR', 'ws-addr') ?? defaultAddr;
  const tlsRaw = s.raw('IM_GATEWAY_WS_TLS', 'ws-tls');
  if (addr === undefined || addr === '' || /^off$/i.test(addr)) {
    if (publicUrl !== undefined) throw new ConfigError('IM_GATEWAY_WS_PUBLIC_URL', 'set only with IM_GATEWAY_WS_ADDR');
    if (tlsRaw !== undefined) throw new ConfigError('IM_GATEWAY_WS_TLS', 'set only with IM_GATEWAY_WS_ADDR');
    return undefined;
  }
  const { host, port } = s.addr('IM_GATEWAY_WS_ADDR', addr, 'ws-addr');
  const tls = s.bool('IM_GATEWAY_WS_TLS', !listeners.plaintext, 'ws-tls');
  if (tls && !listeners.tls) {
    throw new ConfigError('IM_GATEWAY_WS_TLS', 'true needs IM_GATEWAY_TLS_ADDR, IM_GATEWAY_TLS_CERT and IM_GATEWAY_TLS_KEY (wss:// uses the TLS listener\'s certificate)');
  }
  if (!tls && !listeners.plaintext) {
    throw new ConfigError('IM_GATEWAY_WS_TLS', 'false with IM_GATEWAY_PLAINTEXT=false: plaintext is off, so the WebSocket listener serves wss:// only');
  }
  if (tls && publicUrl?.startsWith('ws://')) {
    throw new ConfigError('IM_GATEWAY_WS_PUBLIC_URL', `the WebSocket listener serves wss:// only (IM_GATEWAY_WS_TLS), got "${publicUrl}"`);
  }
  return publicUrl === undefined ? { host, port, tls } : { host, port, tls, publicUrl };
}

export const DEFAULT_DRAIN_WINDOW_MS = 30_000;

/**
 * What a shutdown needs beyond the drain window: the draining heartbeat to the router and the
 * wait for the last clients to close (Gateway drainTimeoutMs, 5 s each), then closing the logic
 * streams, the router client and the bus (its drain is bounded at 2 s).
 */
export const SHUTDOWN_MARGIN_MS = 15_000;

function drainWindowMs(s: Settings): number {
  return s.durationMs('IM_DRAIN_WINDOW', DEFAULT_DRAIN_WINDOW_MS, { min: 100, flag: 'drain-window' });
}

/**
 * The bound main.ts puts on the whole shutdown: the drain window plus SHUTDOWN_MARGIN_MS. Needed
 * before the config is loaded, so it never throws: a bad IM_DRAIN_WINDOW is reported (exit 2) by
 * loadGatewayConfig.
 */
export function gatewayShutdownTimeoutMs(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): number {
  try {
    return drainWindowMs(new Settings(env, parseFlags(argv))) + SHUTDOWN_MARGIN_MS;
  } catch {
    return DEFAULT_DRAIN_WINDOW_MS + SHUTDOWN_MARGIN_MS;
  }
}
