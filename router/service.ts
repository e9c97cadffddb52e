/** The router process minus main(): gRPC for gateways and logic, HTTP(S) for clients, expiry sweep. */
import { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../common/config';
import { bindServer } from '../common/grpc';
import { grpcServerCredentials, type GrpcTlsConfig } from '../common/grpc-tls';
import { Logger, silentLogger } from '../common/log';
import { ReloadableTlsContext } from '../common/tls-context';
import { watchRouteTable } from '../telemetry/hooks';
import { CidrMap, CidrSet } from './cidr';
import { buildProxySet, buildRegionMap, RegionCidr } from './client-origin';
import { addRouterService } from './grpc-server';
import { createRouteHttpServer, ROUTE_HTTP_DEFAULTS, type RouteServer } from './http';
import { RANK_DEFAULTS } from './rank';
import { ROUTE_TABLE_DEFAULTS, RouteTable } from './table';
import { checkNumber } from '../common/options';

export interface RouterServiceOptions {
  grpcHost: string;
  grpcPort: number;         // 0 = ephemeral
  httpHost: string;
  httpPort: number;         // 0 = ephemeral
  gatewayTtlMs?: number;
  /** How often gateways should heartbeat; returned in every HeartbeatReply. */
  gatewayHeartbeatIntervalMs?: number;
  /** The route table's clock (ms); injectable for tests. Default Date.now. */
  now?: () => number;
  /** Reconnect backoff the route API tells clients to use. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Client heartbeat interval the route API announces (the gateways' setting, same default). */
  clientHeartbeatIntervalMs?: number;
  /** Client IP -> region, longest prefix wins; checked at construction (ConfigError "regionCidrs"). */
  regionCidrs?: readonly RegionCidr[];
  /** Proxies (CIDRs or addresses) whose X-Forwarded-For names the client; empty: never believed. */
  trustedProxies?: readonly string[];
  /** Route requests per second per client IP (IPv6: per /64); 0 turns the limit off. */
  routeRatePerSec?: number;
  routeRateBurst?: number;
  /** Client IPs the rate limiter remembers; the least recently seen is forgotten beyond it. */
  routeRateMaxIps?: number;
  /** Preference for idle gateways: weight = (1 - load)^routeLoadExponent (rank.ts). */
  routeLoadExponent?: number;
  /** Longest gateway list a route reply carries. */
  maxGatewaysPerRoute?: number;
  /** Ranking randomness; injectable so tests can be deterministic. */
  random?: () => number;
  /** How long stop() lets in-flight RPCs finish before cancelling them. */
  shutdownTimeoutMs?: number;
  /** Mutual TLS on the gRPC listener (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls?: GrpcTlsConfig;
  /** HTTPS on the route API (IM_ROUTER_HTTP_TLS_*); absent: plain HTTP. */
  httpTls?: RouteApiTlsSettings;
  logger?: Logger;
}

/** The route API's certificate and key (PEM files), re-read when they change. */
export interface RouteApiTlsSettings {
  certFile: string;
  keyFile: string;
  /** How often the two files are checked for a change. */
  reloadIntervalMs: number;
}

/** The settings that name the route API's certificate files, for error messages. */
export const ROUTE_API_TLS_SETTINGS = { certSetting: 'IM_ROUTER_HTTP_TLS_CERT', keySetting: 'IM_ROUTER_HTTP_TLS_KEY' } as const;

export const ROUTER_SERVICE_DEFAULTS = {
  gatewayTtlMs: ROUTE_TABLE_DEFAULTS.gatewayTtlMs,
  gatewayHeartbeatIntervalMs: 3000,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  clientHeartbeatIntervalMs: 30_000,
  regionCidrs: [] as readonly RegionCidr[],
  trustedProxies: [] as readonly string[],
  // A client backing off asks a few times a minute; 10/s with a burst of 50 leaves room for a NAT
  // of many clients reconnecting together after a gateway drain, and stops a tight retry loop.
  routeRatePerSec: 10,
  routeRateBurst: 50,
  routeRateMaxIps: 100_000,
  routeLoadExponent: RANK_DEFAULTS.loadExponent,
  maxGatewaysPerRoute: ROUTE_HTTP_DEFAULTS.maxGatewaysPerRoute,
  random: Math.random,
  shutdownTimeoutMs: 5000,
};

type ResolvedOptions = Required<RouterServiceOptions> & { regions: CidrMap<string>; proxies: CidrSet };

export class RouterService {
  readonly table: RouteTable;
  private readonly o: ResolvedOptions;
  private readonly log: Logger;
  private readonly grpcTls: GrpcTlsConfig | undefined;
  private grpcServer?: grpc.Server;
  private httpServer?: RouteServer;
  private readonly httpTls?: ReloadableTlsContext;
  private sweepTimer?: NodeJS.Timeout;
  private readonly unwatchMetrics: () => void;
  private starting?: Promise<{ grpcPort: number; httpPort: number }>;
  private stopping?: Promise<void>;
  private endLookupStreams = (): void => undefined;

  constructor(options: RouterServiceOptions) {
    this.o = resolveOptions(options);
    this.log = this.o.logger;
    this.grpcTls = options.grpcTls;
    // Read now: unusable files are a ConfigError naming the setting before anything listens.
    if (options.httpTls) {
      this.httpTls = new ReloadableTlsContext({ ...options.httpTls, ...ROUTE_API_TLS_SETTINGS },
        { reloadIntervalMs: options.httpTls.reloadIntervalMs, logger: this.log.child({ listener: 'route-api' }) });
    }
    this.table = new RouteTable({ gatewayTtlMs: this.o.gatewayTtlMs, now: options.now });
    this.unwatchMetrics = watchRouteTable(this.table);
  }

  /** Binds both listeners and starts the expiry sweep. Returns the bound ports. */
  start(): Promise<{ grpcPort: number; httpPort: number }> {
    if (this.stopping) return Promise.reject(new Error('router service is stopped'));
    return (this.starting ??= this.doStart());
  }

  private async doStart(): Promise<{ grpcPort: number; httpPort: number }> {
    const o = this.o;
    try {
      const grpcServer = new grpc.Server();
      this.grpcServer = grpcServer;
      this.endLookupStreams = addRouterService(grpcServer, { table: this.table, heartbeatIntervalMs: o.gatewayHeartbeatIntervalMs, logger: this.log });
      const grpcPort = await bindServer(grpcServer, o.grpcHost, o.grpcPort, grpcServerCredentials(this.grpcTls, this.log));

      await this.httpTls?.start();
      const httpServer = createRouteHttpServer({
        table: this.table, backoffBaseMs: o.backoffBaseMs, backoffMaxMs: o.backoffMaxMs,
        heartbeatIntervalMs: o.clientHeartbeatIntervalMs, logger: this.log,
        regions: o.regions, trustedProxies: o.proxies,
        rateLimit: o.routeRatePerSec > 0 ? { ratePerSec: o.routeRatePerSec, burst: o.routeRateBurst, maxTrackedIps: o.routeRateMaxIps } : undefined,
        loadExponent: o.routeLoadExponent, random: o.random, maxGatewaysPerRoute: o.maxGatewaysPerRoute,
        tls: this.httpTls,
      });
      this.httpServer = httpServer;
      await new Promise<void>((res, rej) => {
        httpServer.once('error', rej);
        httpServer.listen(o.httpPort, o.httpHost, () => {
          httpServer.off('error', rej);
          res();
        });
      });
      httpServer.on('error', (err) => this.log.error('route api: server error', { err }));
      const httpPort = (httpServer.address() as AddressInfo).port;

      // Sweep often enough that a dead gateway leaves the route list soon after its TTL.
      const sweepMs = Math.max(50, Math.min(1000, Math.floor(o.gatewayTtlMs / 4)));
      this.sweepTimer = setInterval(() => this.sweep(), sweepMs);
      this.sweepTimer.unref();
      this.log.info('router: started', { grpcPort, httpPort, httpTls: !!this.httpTls });
      return { grpcPort, httpPort };
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Idempotent and bounded: in-flight RPCs get shutdownTimeoutMs, then are cancelled. */
  stop(): Promise<void> {
    return (this.stopping ??= this.doStop());
  }

  private async doStop(): Promise<void> {
    // Let a start in progress finish so nothing it binds is left listening.
    await this.starting?.catch(() => undefined);
    await this.close();
    this.log.info('router: stopped');
  }

  /** Closes whatever is open; safe to call more than once. */
  private async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.unwatchMetrics();
    this.httpTls?.stop();
    const grpcServer = this.grpcServer;
    const httpServer = this.httpServer;
    this.grpcServer = undefined;
    this.httpServer = undefined;
    const closing = Promise.all([
      grpcServer && shutdownGrpc(grpcServer, this.o.shutdownTimeoutMs),
      httpServer && closeHttp(httpServer),
    ]);
    // Logic's lookup streams never end on their own: end them once no new one can start.
    this.endLookupStreams();
    await closing;
  }

  private sweep(): void {
    const dropped = this.table.expire();
    if (dropped.length > 0) this.log.warn('router: gateways expired', { nodes: dropped });
  }
}

function shutdownGrpc(server: grpc.Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

function closeHttp(server: RouteServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    // Route requests are short; idle keep-alive sockets must not hold shutdown open.
    server.closeIdleConnections();
    const force = setTimeout(() => server.closeAllConnections(), 1000);
    force.unref();
  });
}

function resolveOptions(options: RouterServiceOptions): ResolvedOptions {
  const o = { ...ROUTER_SERVICE_DEFAULTS, logger: silentLogger, ...stripUndefined(options) } as Required<RouterServiceOptions>;
  port('grpcPort', o.grpcPort);
  port('httpPort', o.httpPort);
  for (const f of ['gatewayTtlMs', 'gatewayHeartbeatIntervalMs', 'backoffBaseMs', 'backoffMaxMs', 'clientHeartbeatIntervalMs',
    'routeRateBurst', 'routeRateMaxIps', 'maxGatewaysPerRoute', 'shutdownTimeoutMs'] as const) {
    checkNumber('RouterService', f, o[f], { integer: true });
  }
  checkNumber('RouterService', 'routeRatePerSec', o.routeRatePerSec, { min: 0 }); // 0 = no limit
  checkNumber('RouterService', 'routeLoadExponent', o.routeLoadExponent, { min: 0 });
  if (o.gatewayTtlMs <= o.gatewayHeartbeatIntervalMs) {
    throw new ConfigError('gatewayTtlMs', `must exceed gatewayHeartbeatIntervalMs (${o.gatewayHeartbeatIntervalMs}ms), got ${o.gatewayTtlMs}ms`);
  }
  if (o.backoffMaxMs < o.backoffBaseMs) throw new ConfigError('backoffMaxMs', `must be >= backoffBaseMs (${o.backoffBaseMs})`);
  return { ...o, regions: built('regionCidrs', () => buildRegionMap(o.regionCidrs)), proxies: built('trustedProxies', () => buildProxySet(o.trustedProxies)) };
}

function built<T>(field: string, build: () => T): T {
  try {
    return build();
  } catch (err) {
    throw new ConfigError(field, (err as Error).message);
  }
}

function port(field: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw new ConfigError(field, `must be a port 0-65535, got ${v}`);
}

function stripUndefined<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
