/** Embedded-mode settings: a pure function of env and flags. */
import * as path from 'node:path';
import { Env, parseFlags, Settings } from '../common/config';
import { Level } from '../common/log';
import { EmbeddedOptions } from './system';

export interface EmbeddedConfig extends EmbeddedOptions {
  logLevel: Level;
}

export function loadEmbeddedConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): EmbeddedConfig {
  const s = new Settings(env, parseFlags(argv));
  const gateway = s.addr('IM_GATEWAY_ADDR', '127.0.0.1:7100', 'gateway-addr');
  const routerHttp = s.addr('IM_ROUTER_HTTP_ADDR', '127.0.0.1:7180', 'router-http-addr');
  const logicPort = s.int('IM_LOGIC_PORT', 7190, { min: 0, max: 65535, flag: 'logic-port' });
  const logLevel = s.logLevel();
  const heartbeatIntervalMs = s.durationMs('IM_HEARTBEAT_INTERVAL', 30_000, { min: 1000 });
  return {
    dataDir: path.resolve(s.str('IM_DATA_DIR', './data', 'data-dir')),
    authSecret: s.raw('IM_AUTH_SECRET'),
    gatewayHost: gateway.host, gatewayPort: gateway.port,
    routerHttpHost: routerHttp.host, routerHttpPort: routerHttp.port,
    logicPort,
    node: s.str('IM_NODE_ID', 'gw-embedded', 'node'),
    gateway: {
      maxFrameBytes: s.int('IM_MAX_FRAME_BYTES', 64 * 1024, { min: 1024, max: 16 * 1024 * 1024 }),
      heartbeatIntervalMs,
      idleTimeoutMs: s.durationMs('IM_IDLE_TIMEOUT', 3 * heartbeatIntervalMs, { min: 1000 }),
      authTimeoutMs: s.durationMs('IM_AUTH_TIMEOUT', 5000, { min: 100 }),
      rateLimitPerSec: s.int('IM_RATE_LIMIT', 50, { min: 1 }),
      rateLimitBurst: s.int('IM_RATE_BURST', 100, { min: 1 }),
    },
    logic: {
      maxGroupMembers: s.int('IM_MAX_GROUP_MEMBERS', 100, { min: 2, max: 10_000 }),
      dedupWindowMs: s.durationMs('IM_DEDUP_WINDOW', 24 * 3_600_000, { min: 1000 }),
    },
    logLevel,
  };
}
