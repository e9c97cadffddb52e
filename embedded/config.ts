/** Embedded-mode settings: a pure function of env and flags. */
import * as path from 'node:path';
import { Env, parseFlags, Settings } from '../common/config';
import { loadGrpcTls } from '../common/grpc-tls';
import { Level } from '../common/log';
import { loadTokenAuth } from '../common/secret';
import { checkDistinct, gatewayTlsOptions, loadGatewayLimits, loadGatewayListeners, loadGatewayWs } from '../gateway/config';
import { loadAdminAuth, loadHttpApiSettings, loadLogicLimits } from '../logic/config';
import { loadRouteApiTls } from '../router/config';
import { EmbeddedOptions } from './system';

export interface EmbeddedConfig extends EmbeddedOptions {
  logLevel: Level;
}

/** IM_WEB_ADDR: the web chat page (embedded/web.ts); `off` turns it off. */
function loadWebAddr(s: Settings): { host: string; port: number } | undefined {
  const raw = s.raw('IM_WEB_ADDR', 'web-addr') ?? '127.0.0.1:7170';
  return /^off$/i.test(raw) ? undefined : s.addr('IM_WEB_ADDR', raw, 'web-addr');
}

export function loadEmbeddedConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): EmbeddedConfig {
  const s = new Settings(env, parseFlags(argv));
  const gateway = s.addr('IM_GATEWAY_ADDR', '127.0.0.1:7100', 'gateway-addr');
  // The gateway's TLS listener settings, as on a gateway process (flags --gateway-tls-addr, ...).
  const listeners = loadGatewayListeners(s, 'gateway-');
  checkDistinct(gateway, listeners);
  const routerHttp = s.addr('IM_ROUTER_HTTP_ADDR', '127.0.0.1:7180', 'router-http-addr');
  const logicPort = s.int('IM_LOGIC_PORT', 7190, { min: 0, max: 65535, flag: 'logic-port' });
  const logLevel = s.logLevel();
  const { secret: authSecret, ...auth } = loadTokenAuth(s);
  return {
    dataDir: path.resolve(s.str('IM_DATA_DIR', './data', 'data-dir')),
    authSecret, auth,
    gatewayHost: gateway.host, gatewayPort: gateway.port,
    routerHttpHost: routerHttp.host, routerHttpPort: routerHttp.port,
    // HTTPS on the route API, as on a router process (flags --router-http-tls-cert, ...).
    routerHttpTls: loadRouteApiTls(s, 'router-'),
    logicPort,
    node: s.str('IM_NODE_ID', 'gw-embedded', 'node'),
    // The same readers as the gateway and logic processes: every documented limit works here too.
    gateway: { ...loadGatewayLimits(s), plaintext: listeners.plaintext, tls: gatewayTlsOptions(listeners.tls),
      // On by default here, on loopback: the web chat page (IM_WEB_ADDR) connects through it.
      ws: loadGatewayWs(s, listeners, '127.0.0.1:7102') },
    logic: loadLogicLimits(s),
    admin: loadAdminAuth(s),
    // Logic's listener (LogicAdmin) and the router's take IM_GRPC_TLS_* as in a deployment.
    grpcTls: loadGrpcTls(s, 'logic'),
    // On by default here (`npm start` is the whole system on one machine); IM_HTTP_ADDR=off turns it off.
    http: loadHttpApiSettings(s, '127.0.0.1:7191'),
    web: loadWebAddr(s),
    logLevel,
  };
}
