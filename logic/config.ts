/** Logic service configuration: a pure function of env and flags. */
import { loadBusConfig, type BusConfig } from '../bus/config';
import { loadStoreConfig, type StoreConfig } from '../storage/config';
import type { Env } from '../common/config';
import { ConfigError, formatHostPort, loadLogLevel, parseFlags, Settings } from '../common/config';
import { loadGrpcTls, type GrpcTlsConfig } from '../common/grpc-tls';
import type { TokenAuth } from '../common/jwt';
import type { Level } from '../common/log';
import { loadTokenAuth } from '../common/secret';
import { parseAdminTokens, readAdminTokenFile, type AdminAuthSettings } from './admin-auth';
import type { HttpApiRateLimit } from './http-api';

/** The business limits logic enforces, wherever it runs. */
export interface LogicLimitSettings {
  maxGroupMembers: number;
  dedupWindowMs: number;
  maxContentBytes: number;
}

export interface LogicConfig extends LogicLimitSettings {
  host: string;
  port: number;
}

/**
 * Logic's limits, read the same way in its own process (loadLogicConfig) and in embedded mode
 * (embedded/config.ts), so a documented setting means the same thing in both.
 */
export function loadLogicLimits(s: Settings): LogicLimitSettings {
  return {
    maxGroupMembers: s.int('IM_MAX_GROUP_MEMBERS', 100, { min: 2, max: 100_000, flag: 'max-group-members' }),
    dedupWindowMs: s.durationMs('IM_DEDUP_WINDOW', 24 * 3_600_000, { min: 1000, flag: 'dedup-window' }),
    maxContentBytes: s.int('IM_MAX_CONTENT_BYTES', 16_384, { min: 1, max: 1_048_576, flag: 'max-content-bytes' }),
  };
}

/**
 * The admin API's tokens, read the same way by logic's process and embedded mode:
 * IM_LOGIC_ADMIN_TOKENS (comma-separated) and IM_LOGIC_ADMIN_TOKEN_FILE (one per line). Neither set: the
 * admin API is off. `readFile` is for tests.
 */
export function loadAdminAuth(s: Settings, readFile?: (path: string) => string): AdminAuthSettings {
  const tokens = parseAdminTokens('IM_LOGIC_ADMIN_TOKENS', s.raw('IM_LOGIC_ADMIN_TOKENS') ?? '', ',');
  const file = s.raw('IM_LOGIC_ADMIN_TOKEN_FILE');
  return { tokens, tokenFile: file === undefined ? undefined : { path: file, tokens: readAdminTokenFile(file, readFile) } };
}

/** The client HTTP API (docs/http-api.md): where it listens and its limits. */
export interface HttpApiSettings {
  host: string;
  port: number;
  maxBodyBytes: number;
  /** Undefined: no rate limit (IM_HTTP_RATE=0). */
  rateLimit?: HttpApiRateLimit;
}

/**
 * IM_HTTP_ADDR (host:port, or "off"), IM_HTTP_MAX_BODY_BYTES, IM_HTTP_RATE, IM_HTTP_BURST, read the
 * same way by logic's process (no default address: off unless set) and embedded mode (on at
 * `defaultAddr`). Undefined: the HTTP API is not served.
 */
export function loadHttpApiSettings(s: Settings, defaultAddr?: string): HttpApiSettings | undefined {
  const raw = s.raw('IM_HTTP_ADDR', 'http-addr') ?? defaultAddr;
  if (raw === undefined || /^off$/i.test(raw)) return undefined;
  const { host, port } = s.addr('IM_HTTP_ADDR', raw, 'http-addr');
  const ratePerSec = s.int('IM_HTTP_RATE', 20, { min: 0, max: 1_000_000, flag: 'http-rate' });
  const burst = s.int('IM_HTTP_BURST', 40, { min: 1, max: 1_000_000, flag: 'http-burst' });
  return {
    host, port,
    maxBodyBytes: s.int('IM_HTTP_MAX_BODY_BYTES', 256 * 1024, { min: 1024, max: 16 * 1024 * 1024, flag: 'http-max-body-bytes' }),
    rateLimit: ratePerSec === 0 ? undefined : { ratePerSec, burst, maxTrackedUsers: 100_000 },
  };
}

export function loadLogicConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): LogicConfig {
  const s = new Settings(env, parseFlags(argv));
  const { host, port } = s.addr('IM_LOGIC_ADDR', '127.0.0.1:7190', 'addr');
  return {
    host,
    port,
    ...loadLogicLimits(s),
  };
}

/** Everything `node dist/logic/main.js` needs: the service settings plus backends and wiring. */
export interface LogicProcessConfig {
  logic: LogicConfig;
  store: StoreConfig;
  /** Never inprocess: pushes must reach gateways in other processes. */
  bus: BusConfig;
  /** Router gRPC host:port (IM_ROUTER_GRPC_ADDR, --router-addr). */
  routerAddr: string;
  /** LogicAdmin's credentials (IM_LOGIC_ADMIN_TOKENS, IM_LOGIC_ADMIN_TOKEN_FILE); none: the admin API is off. */
  admin: AdminAuthSettings;
  /** Mutual TLS on logic's listener and to the router (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls: GrpcTlsConfig | undefined;
  /** The client HTTP API (IM_HTTP_ADDR); undefined: off. */
  http?: HttpApiSettings;
  /** The gateway's token keys (IM_AUTH_SECRET, IM_AUTH_KEYS, ...): the HTTP API's bearer tokens. */
  auth: TokenAuth;
  logLevel: Level;
}

/**
 * loadLogicConfig plus IM_STORE / IM_BUS and their settings (storage/config.ts, bus/config.ts),
 * IM_ROUTER_GRPC_ADDR, the HTTP API and its token keys, the admin tokens (`readFile` reads IM_LOGIC_ADMIN_TOKEN_FILE; for tests) and
 * IM_LOG_LEVEL. Throws ConfigError naming the setting on a bad value.
 */
export function loadLogicProcessConfig(
  env: Env = process.env, argv: readonly string[] = process.argv.slice(2), readFile?: (path: string) => string,
): LogicProcessConfig {
  const s = new Settings(env, parseFlags(argv));
  const http = loadHttpApiSettings(s);
  const auth = loadTokenAuth(s);
  if (http && auth.secret === undefined && auth.keys?.size === 0) {
    throw new ConfigError('IM_AUTH_SECRET', 'required with IM_HTTP_ADDR unless IM_AUTH_KEYS is set (the key client tokens are signed with)');
  }
  return {
    logic: loadLogicConfig(env, argv),
    store: loadStoreConfig(env, argv),
    bus: loadBusConfig(env, argv, { allowInProcessBus: false }),
    routerAddr: formatHostPort(s.addr('IM_ROUTER_GRPC_ADDR', '127.0.0.1:7181', 'router-addr')),
    admin: loadAdminAuth(s, readFile),
    grpcTls: loadGrpcTls(s, 'logic'),
    http, auth,
    logLevel: loadLogLevel(env, argv),
  };
}
