/**
 * Settings of the gateway supervisor and of its workers: pure functions of (env, argv). The
 * supervisor also checks the gateway's own settings, so a bad one stops it at start (exit 2)
 * instead of failing every worker it forks.
 */
import * as path from 'node:path';
import { loadBusConfig } from '../../bus/config';
import { Env, HostPort, parseFlags, Settings } from '../../common/config';
import { gatewayShutdownTimeoutMs, loadGatewayConfig } from '../config';

export interface SupervisorConfig {
  node: string;
  /** The gateway's addresses (IM_GATEWAY_ADDR, IM_GATEWAY_TLS_ADDR): the supervisor owns these listeners. */
  listen: HostPort;
  plaintext: boolean;
  tlsListen: HostPort | undefined;
  /** The WebSocket listener (IM_GATEWAY_WS_ADDR), also the supervisor's; off when unset. */
  ws: HostPort | undefined;
  /** The control port (POST /upgrade, GET /status, GET /connections); off unless set. */
  controlAddr: HostPort | undefined;
  /** The worker entry point, forked anew (from disk) at every upgrade. */
  workerScript: string;
  readyTimeoutMs: number;
  handOffTimeoutMs: number;
  exitTimeoutMs: number;
  /** How long a stopping worker may drain: its own shutdown bound, plus a little. */
  stopTimeoutMs: number;
}

/**
 * `defaultWorkerScript` should sit next to the supervisor's script as invoked (argv[1], not its
 * resolved path), so that with dist/ behind a symlink an upgrade forks the release it points to now.
 */
export function loadSupervisorConfig(env: Env, argv: readonly string[], defaultWorkerScript: string): SupervisorConfig {
  const gateway = loadGatewayConfig(env, argv);
  loadBusConfig(env, argv, { allowInProcessBus: false });
  const s = new Settings(env, parseFlags(argv));
  const control = s.raw('IM_SUPERVISOR_ADDR', 'supervisor-addr');
  return {
    node: gateway.node,
    listen: gateway.listen,
    plaintext: gateway.plaintext,
    tlsListen: gateway.tls?.listen,
    ws: gateway.ws && { host: gateway.ws.host, port: gateway.ws.port },
    controlAddr: control === undefined ? undefined : s.addr('IM_SUPERVISOR_ADDR', control, 'supervisor-addr'),
    workerScript: path.resolve(s.str('IM_GATEWAY_WORKER_SCRIPT', defaultWorkerScript, 'worker-script')),
    readyTimeoutMs: s.durationMs('IM_WORKER_READY_TIMEOUT', 30_000, { min: 1000, flag: 'worker-ready-timeout' }),
    handOffTimeoutMs: s.durationMs('IM_HANDOFF_TIMEOUT', 15_000, { min: 100, flag: 'handoff-timeout' }),
    exitTimeoutMs: s.durationMs('IM_WORKER_EXIT_TIMEOUT', 25_000, { min: 1000, flag: 'worker-exit-timeout' }),
    stopTimeoutMs: supervisorShutdownTimeoutMs(env, argv) - STOP_MARGIN_MS,
  };
}

/** The supervisor's own bound on its shutdown, which waits for its worker's drain. Never throws. */
export function supervisorShutdownTimeoutMs(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): number {
  return gatewayShutdownTimeoutMs(env, argv) + 2 * STOP_MARGIN_MS;
}

const STOP_MARGIN_MS = 5000;

/** What the supervisor tells each worker it forks (set by the supervisor, not by operators). */
export interface WorkerSettings {
  /** Takes over a running worker's connections. */
  successor: boolean;
  /** 1 for the first worker, +1 per fork. */
  generation: number;
}

export function loadWorkerSettings(env: Env): WorkerSettings {
  const s = new Settings(env);
  return {
    successor: s.bool('IM_GATEWAY_SUCCESSOR', false),
    generation: s.int('IM_GATEWAY_GENERATION', 0, { min: 0 }),
  };
}

/**
 * The workers' environment: the supervisor's, less what only one process may use. IM_ADMIN_ADDR
 * is the supervisor's (workers would collide on its port).
 */
export function workerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  delete out.IM_ADMIN_ADDR;
  delete out.IM_SUPERVISOR_ADDR;
  return out;
}
