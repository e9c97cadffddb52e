/** Router settings: a pure function of env and flags (and of the one file IM_REGION_CIDRS_FILE names). */
import * as fs from 'node:fs';
import { ConfigError, Env, parseFlags, Settings } from '../common/config';
import { loadGrpcTls } from '../common/grpc-tls';
import { createLogger, Level } from '../common/log';
import { DEFAULT_TLS_RELOAD_MS, loadTlsFiles } from '../common/tls-context';
import { buildProxySet, buildRegionMap, RegionCidr } from './client-origin';
import { ROUTE_API_TLS_SETTINGS, type RouteApiTlsSettings, type RouterServiceOptions } from './service';

export interface RouterConfig extends RouterServiceOptions {
  logLevel: Level;
}

/** Largest region table accepted; far beyond any hand-written one, and it keeps start-up bounded. */
const MAX_REGION_CIDRS = 100_000;
const MAX_REGION_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Env (flag):
 * - IM_ROUTER_GRPC_ADDR (--grpc-addr), IM_ROUTER_HTTP_ADDR (--http-addr): listen addresses.
 * - IM_GATEWAY_TTL (--gateway-ttl): a gateway silent this long leaves the route list. 10s.
 * - IM_HEARTBEAT_INTERVAL (--heartbeat-interval): client heartbeat interval the route API
 *   announces; the same variable sets it on the gateways. 30s.
 * - IM_BACKOFF_BASE (--backoff-base), IM_BACKOFF_MAX (--backoff-max): reconnect backoff the route
 *   API tells clients to use (full jitter). 500ms, 30s.
 * - IM_REGION_CIDRS (--region-cidrs): client IP -> region, "10.0.0.0/8=eu-west,2001:db8::/32=us-east".
 * - IM_REGION_CIDRS_FILE (--region-cidrs-file): the same as a JSON object {"10.0.0.0/8": "eu-west"};
 *   rows from both are combined (a block listed in both must name the same region).
 * - IM_TRUSTED_PROXIES (--trusted-proxies): CIDRs or addresses whose X-Forwarded-For is believed.
 * - IM_ROUTE_RATE (--route-rate): route requests per second per client IP; 0 = no limit. 10.
 * - IM_ROUTE_BURST (--route-burst): bucket size per client IP. 50.
 * - IM_ROUTE_RATE_MAX_IPS (--route-rate-max-ips): client IPs remembered by the limiter. 100000.
 * - IM_ROUTER_HTTP_TLS_CERT (--http-tls-cert), IM_ROUTER_HTTP_TLS_KEY (--http-tls-key): PEM
 *   certificate and key; both set: the route API is HTTPS only (TLS 1.2+).
 * - IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL (--http-tls-reload-interval): how often they are checked
 *   for a change (a renewal is served without a restart). 10s.
 * - IM_GRPC_TLS_* (common/grpc-tls.ts): mutual TLS on the gRPC listener.
 * - IM_LOG_LEVEL (--log-level).
 * Throws ConfigError naming the setting on a bad value.
 */
export function loadRouterConfig(
  env: Env = process.env,
  argv: readonly string[] = process.argv.slice(2),
  readFile: (path: string) => string = (p) => readBoundedFile(p, MAX_REGION_FILE_BYTES),
): RouterConfig {
  const s = new Settings(env, parseFlags(argv));
  const grpcAddr = s.addr('IM_ROUTER_GRPC_ADDR', '127.0.0.1:7181', 'grpc-addr');
  const httpAddr = s.addr('IM_ROUTER_HTTP_ADDR', '127.0.0.1:7180', 'http-addr');
  const gatewayTtlMs = s.durationMs('IM_GATEWAY_TTL', 10_000, { min: 1000, flag: 'gateway-ttl' });
  const clientHeartbeatIntervalMs = s.durationMs('IM_HEARTBEAT_INTERVAL', 30_000, { min: 1000, flag: 'heartbeat-interval' });
  const backoffBaseMs = s.durationMs('IM_BACKOFF_BASE', 500, { min: 1, flag: 'backoff-base' });
  const backoffMaxMs = s.durationMs('IM_BACKOFF_MAX', Math.max(30_000, backoffBaseMs), { min: 1, flag: 'backoff-max' });
  if (backoffMaxMs < backoffBaseMs) throw new ConfigError('IM_BACKOFF_MAX', `must be >= IM_BACKOFF_BASE (${backoffBaseMs}ms), got ${backoffMaxMs}ms`);

  const fileRows = regionFileRows(s.raw('IM_REGION_CIDRS_FILE', 'region-cidrs-file'), readFile);
  const inlineRows = regionInlineRows(s.raw('IM_REGION_CIDRS', 'region-cidrs'));
  const regionCidrs = [...fileRows, ...inlineRows];
  if (regionCidrs.length > MAX_REGION_CIDRS) throw new ConfigError('IM_REGION_CIDRS', `more than ${MAX_REGION_CIDRS} rows`);
  // Validated here, not only in the service, so the error names the variable the operator set.
  check('IM_REGION_CIDRS_FILE', () => buildRegionMap(fileRows));
  check('IM_REGION_CIDRS', () => buildRegionMap(inlineRows));
  check('IM_REGION_CIDRS', () => buildRegionMap(regionCidrs)); // a block both name differently
  const trustedProxies = s.list('IM_TRUSTED_PROXIES', [], 'trusted-proxies');
  check('IM_TRUSTED_PROXIES', () => buildProxySet(trustedProxies));

  const logLevel = s.logLevel();
  return {
    grpcHost: grpcAddr.host, grpcPort: grpcAddr.port,
    httpHost: httpAddr.host, httpPort: httpAddr.port,
    gatewayTtlMs,
    clientHeartbeatIntervalMs,
    backoffBaseMs, backoffMaxMs,
    regionCidrs, trustedProxies,
    routeRatePerSec: s.int('IM_ROUTE_RATE', 10, { min: 0, flag: 'route-rate' }),
    routeRateBurst: s.int('IM_ROUTE_BURST', 50, { min: 1, flag: 'route-burst' }),
    routeRateMaxIps: s.int('IM_ROUTE_RATE_MAX_IPS', 100_000, { min: 1, flag: 'route-rate-max-ips' }),
    grpcTls: loadGrpcTls(s, 'router'),
    httpTls: loadRouteApiTls(s),
    logLevel,
    logger: createLogger(logLevel, { svc: 'router' }),
  };
}

/**
 * HTTPS on the route API (IM_ROUTER_HTTP_TLS_*), read the same way by the router and embedded
 * mode (whose flags carry `flagPrefix`, e.g. --router-http-tls-cert). The files are read here
 * once, so an unusable one stops the process at start naming the setting.
 */
export function loadRouteApiTls(s: Settings, flagPrefix = ''): RouteApiTlsSettings | undefined {
  const { certSetting, keySetting } = ROUTE_API_TLS_SETTINGS;
  const certFile = s.raw(certSetting, flagPrefix + 'http-tls-cert');
  const keyFile = s.raw(keySetting, flagPrefix + 'http-tls-key');
  const reloadIntervalMs = s.durationMs('IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL', DEFAULT_TLS_RELOAD_MS, { min: 100, flag: flagPrefix + 'http-tls-reload-interval' });
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined) throw new ConfigError(certSetting, `required with ${keySetting} (PEM certificate file)`);
  if (keyFile === undefined) throw new ConfigError(keySetting, `required with ${certSetting} (PEM private key file)`);
  loadTlsFiles({ certFile, keyFile, certSetting, keySetting });
  return { certFile, keyFile, reloadIntervalMs };
}

/** "cidr=region,cidr=region" */
function regionInlineRows(text: string | undefined): RegionCidr[] {
  if (text === undefined) return [];
  return text.split(',').map((p) => p.trim()).filter(Boolean).map((pair, i) => {
    const eq = pair.lastIndexOf('=');
    if (eq <= 0) throw new ConfigError('IM_REGION_CIDRS', `entry ${i + 1} "${pair.slice(0, 80)}" must be CIDR=region`);
    return { cidr: pair.slice(0, eq).trim(), region: pair.slice(eq + 1).trim() };
  });
}

/** {"10.0.0.0/8": "eu-west", ...} */
function regionFileRows(path: string | undefined, readFile: (path: string) => string): RegionCidr[] {
  if (path === undefined) return [];
  let json: unknown;
  try {
    json = JSON.parse(readFile(path));
  } catch (err) {
    throw new ConfigError('IM_REGION_CIDRS_FILE', `cannot read ${path} as JSON: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ConfigError('IM_REGION_CIDRS_FILE', `${path} must hold a JSON object mapping CIDR to region`);
  }
  return Object.entries(json).map(([cidr, region]) => ({ cidr, region: region as string }));
}

function check(field: string, build: () => unknown): void {
  try {
    build();
  } catch (err) {
    throw new ConfigError(field, (err as Error).message);
  }
}

function readBoundedFile(path: string, maxBytes: number): string {
  const size = fs.statSync(path).size;
  if (size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
  return fs.readFileSync(path, 'utf8');
}
