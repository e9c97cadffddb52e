/** Router settings: a pure function of env and flags. */
import { Env, parseFlags, Settings } from '../common/config';
import { createLogger, Level } from '../common/log';
import type { RouterServiceOptions } from './service';

export interface RouterConfig extends RouterServiceOptions {
  logLevel: Level;
}

/**
 * IM_ROUTER_GRPC_ADDR (--grpc-addr), IM_ROUTER_HTTP_ADDR (--http-addr), IM_GATEWAY_TTL (--gateway-ttl),
 * IM_LOG_LEVEL (--log-level). Throws ConfigError naming the setting on a bad value.
 */
export function loadRouterConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): RouterConfig {
  const s = new Settings(env, parseFlags(argv));
  const grpcAddr = s.addr('IM_ROUTER_GRPC_ADDR', '127.0.0.1:7181', 'grpc-addr');
  const httpAddr = s.addr('IM_ROUTER_HTTP_ADDR', '127.0.0.1:7180', 'http-addr');
  const gatewayTtlMs = s.durationMs('IM_GATEWAY_TTL', 10_000, { min: 1000, flag: 'gateway-ttl' });
  const logLevel = s.logLevel();
  return {
    grpcHost: grpcAddr.host, grpcPort: grpcAddr.port,
    httpHost: httpAddr.host, httpPort: httpAddr.port,
    gatewayTtlMs,
    logLevel,
    logger: createLogger(logLevel, { svc: 'router' }),
  };
}
