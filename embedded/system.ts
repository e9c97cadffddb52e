/**
 * Embedded mode: router, logic and gateway in one process, with the SQLite store and the
 * in-process bus. The gateway calls logic's op registry and both call the route table directly
 * (embedded/in-process.ts); logic and the router still serve their gRPC and HTTP APIs (the
 * internal admin API, the route API) as in a deployment.
 */
import { type BusHeaders, InProcessBus } from '../bus/bus';
import type { AppliedBatch } from '../proto/delivery';
import { formatHostPort } from '../common/config';
import type { GrpcTlsConfig } from '../common/grpc-tls';
import { Logger, silentLogger } from '../common/log';
import type { TokenAuth } from '../common/jwt';
import { loadOrCreateSecret } from '../common/secret';
import { resolveLimits } from '../gateway/limits';
import { Gateway, GatewayOptions } from '../gateway/server';
import { defaultWsUrl } from '../gateway/ws';
import { addInternalApis } from '../logic/admin';
import type { AdminAuthSettings } from '../logic/admin-auth';
import type { HttpApiSettings } from '../logic/config';
import { HttpApi } from '../logic/http-api';
import { OpRegistry, registerClientOps } from '../logic/ops';
import { LogicServer } from '../logic/server';
import { LogicService, LogicServiceOptions } from '../logic/service';
import { RouterService, type RouteApiTlsSettings } from '../router/service';
import { openStore } from '../storage/open';
import { InProcessLogic, InProcessRouter } from './in-process';
import { WebServer } from './web';

/** Gateway settings an embedded system passes through (everything but wiring). */
export type GatewayTuning = Partial<Omit<GatewayOptions, 'node' | 'host' | 'port' | 'auth' | 'logic' | 'router' | 'bus' | 'logger'>>;

export interface EmbeddedOptions {
  dataDir: string;
  /** The key of tokens without kid: given, otherwise dataDir/auth.secret, created on first start. */
  authSecret?: string;
  /** Keys by kid (rotation) and the aud/iss checks. */
  auth?: Omit<TokenAuth, 'secret'>;
  gatewayHost?: string;
  gatewayPort?: number;     // 0 = ephemeral
  routerHttpHost?: string;
  routerHttpPort?: number;  // 0 = ephemeral
  /** HTTPS on the route API (IM_ROUTER_HTTP_TLS_*); absent: plain HTTP. */
  routerHttpTls?: RouteApiTlsSettings;
  /** Loopback port of logic's gRPC (gateway stream and the internal admin API); 0 = ephemeral. */
  logicPort?: number;
  node?: string;
  /** The client HTTP API (docs/http-api.md); undefined: not served. */
  http?: HttpApiSettings;
  /** The web chat page (IM_WEB_ADDR, embedded/web.ts); undefined: not served. */
  web?: { host: string; port: number; root?: string };
  /** Tokens the internal admin API accepts; none (the default): the admin API is not served. */
  admin?: AdminAuthSettings;
  /** Mutual TLS on logic's and the router's gRPC listeners (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls?: GrpcTlsConfig;
  gateway?: GatewayTuning;
  logic?: Partial<Pick<LogicServiceOptions, 'maxGroupMembers' | 'dedupWindowMs' | 'maxContentBytes' | 'groupCacheEntries' | 'groupSyncIntervalMs'>>;
  /** Extra business ops, registered next to the built-in ones (a new op is a logic change only). */
  registerOps?: (registry: OpRegistry) => void;
  logger?: Logger;
}

export interface EmbeddedSystem {
  /** The gateway's plaintext listener ('' when turned off) and its TLS listener ('' without one). */
  gatewayAddr: string;
  gatewayTlsAddr: string;
  /** Logic's gRPC address: the internal admin API (LogicAdmin, when admin tokens are set) for other backends. */
  logicAddr: string;
  /** Whether logicAddr serves LogicAdmin (an admin token is configured). */
  adminApi: boolean;
  /** The route API's base URL: https://host:port with IM_ROUTER_HTTP_TLS_*, else http://host:port. */
  routerUrl: string;
  /** The client HTTP API's base URL (http://host:port); undefined when it is off. */
  httpUrl?: string;
  /** The gateway's WebSocket URL (what the route API lists); undefined without a WebSocket listener. */
  gatewayWsUrl?: string;
  /** The web chat page (http://host:port/); undefined when it is off. */
  webUrl?: string;
  /** Whether the web listener serves development tokens (it is on loopback). */
  webDevTokens: boolean;
  authSecret: string;
  dataDir: string;
  /** For /readyz: the gateway's checks (logic stream up, not draining...). */
  readinessChecks(): Record<string, boolean>;
  stop(): Promise<void>;
}

const LOOPBACK = '127.0.0.1';
/** How often the gateway reports to the route table (as over gRPC in a deployment). */
const ROUTER_HEARTBEAT_MS = 3000;

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedSystem> {
  const logger = options.logger ?? silentLogger;
  const authSecret = options.authSecret ?? loadOrCreateSecret(options.dataDir);
  const stops: Array<() => Promise<void> | void> = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (err) {
        logger.warn('embedded: error while stopping', { err });
      }
    }
  };

  try {
    const store = await openStore({ kind: 'sqlite', dataDir: options.dataDir }, { logger: logger.child({ component: 'store' }) });
    stops.push(() => store.close());
    const bus = new InProcessBus();
    stops.push(() => bus.close());

    // One source for the client heartbeat: the route API announces what AuthOk will say.
    const { heartbeatIntervalMs } = resolveLimits(options.gateway ?? {});
    const router = new RouterService({
      grpcHost: LOOPBACK, grpcPort: 0, clientHeartbeatIntervalMs: heartbeatIntervalMs, grpcTls: options.grpcTls,
      httpHost: options.routerHttpHost ?? LOOPBACK, httpPort: options.routerHttpPort ?? 0, httpTls: options.routerHttpTls,
      logger: logger.child({ svc: 'router' }),
    });
    const routerPorts = await router.start();
    stops.push(() => router.stop());
    // In one process the route table is called directly (same rules as its gRPC adapter).
    const routes = new InProcessRouter(router.table, ROUTER_HEARTBEAT_MS);

    // Pushes for the gateway of this process go to it as built: no encode, bus copy and decode.
    const node = options.node ?? 'gw-embedded';
    let localGateway: Gateway | undefined;
    const localDelivery = {
      node,
      deliver: (batch: AppliedBatch, headers?: BusHeaders) => queueMicrotask(() => localGateway?.deliverLocal(batch, headers)),
    };
    const service = new LogicService({ ...options.logic, store, bus, localDelivery, router: routes, logger: logger.child({ svc: 'logic' }) });
    stops.push(() => service.close());
    const registry = new OpRegistry();
    registerClientOps(registry, service);
    options.registerOps?.(registry);
    const logic = new LogicServer({
      registry, host: LOOPBACK, port: options.logicPort ?? 0, grpcTls: options.grpcTls, logger: logger.child({ svc: 'logic' }),
    });
    // The internal API for other backends (grpcurl-friendly: reflection on), on the same port.
    const internal = addInternalApis(logic.server, { service, router: routes, logger, admin: options.admin ?? { tokens: [] } });
    stops.push(() => internal.close());
    const logicPort = await logic.start();
    stops.push(() => logic.stop());

    // The gateway calls logic's op registry directly: the same ops, errors and metrics as over the
    // gRPC stream that separate processes use, without encoding every call into HTTP/2 frames.
    const inProcessLogic = new InProcessLogic(registry, logger.child({ svc: 'logic' }));
    const gatewayHost = options.gatewayHost ?? LOOPBACK;
    const gateway = new Gateway({
      ...options.gateway,
      node,
      host: gatewayHost, port: options.gatewayPort ?? 0,
      auth: { ...options.auth, secret: authSecret }, logic: inProcessLogic, router: routes, bus, routerHeartbeatMs: ROUTER_HEARTBEAT_MS,
      logger: logger.child({ svc: 'gateway' }),
    });
    localGateway = gateway;
    const { port: gatewayPort, tlsPort, wsPort } = await gateway.start();
    const tls = options.gateway?.tls;
    stops.push(() => gateway.stop());

    // The client HTTP API, on the same LogicService: its sends push like the gateway's.
    let httpUrl: string | undefined;
    if (options.http) {
      const httpApi = new HttpApi({ ...options.http, service, auth: { ...options.auth, secret: authSecret }, logger: logger.child({ svc: 'http-api' }) });
      httpUrl = `http://${formatHostPort({ host: options.http.host, port: await httpApi.start() })}`;
      stops.push(() => httpApi.stop());
    }

    const routerUrl = `${options.routerHttpTls ? 'https' : 'http'}://${formatHostPort({ host: options.routerHttpHost ?? LOOPBACK, port: routerPorts.httpPort })}`;
    const ws = options.gateway?.ws;
    const gatewayWsUrl = ws && (ws.publicUrl ?? defaultWsUrl(ws.host, wsPort!));
    // The web chat page: a client of the route API and the WebSocket listener, like any browser app.
    let webUrl: string | undefined;
    let webDevTokens = false;
    if (options.web) {
      const web = new WebServer({
        ...options.web, routerUrl, secret: authSecret,
        sign: { audience: options.auth?.audience, issuer: options.auth?.issuer },
        logger: logger.child({ svc: 'web' }),
      });
      webUrl = `http://${formatHostPort({ host: options.web.host, port: await web.start() })}/`;
      webDevTokens = web.devTokens;
      stops.push(() => web.stop());
    }

    let stopping: Promise<void> | undefined;
    return {
      gatewayAddr: options.gateway?.plaintext === false ? '' : formatHostPort({ host: gatewayHost, port: gatewayPort }),
      gatewayTlsAddr: tls ? formatHostPort({ host: tls.host, port: tlsPort! }) : '',
      logicAddr: `${LOOPBACK}:${logicPort}`,
      adminApi: internal.admin,
      routerUrl,
      httpUrl, gatewayWsUrl, webUrl, webDevTokens,
      authSecret,
      dataDir: options.dataDir,
      readinessChecks: () => gateway.readinessChecks(),
      stop: () => (stopping ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
