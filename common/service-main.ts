/**
 * The life of a service process, shared by every main.ts: config errors exit 2 naming the field;
 * signal handlers are installed before any backend opens (a SIGTERM while waiting for Cassandra
 * or NATS still stops the process); parts close in reverse order within a bound; one JSON
 * "listening" line on stdout tells scripts the process is ready (and which port 0 became).
 * Exit codes: 0 after a clean stop, 2 on a bad setting, 1 when starting failed or the stop overran.
 *
 * Every service also gets tracing (OTEL_*, telemetry.ts) and, when IM_ADMIN_ADDR is set, an admin
 * port with /healthz, /readyz and /metrics (admin-http.ts). Off unless set, because several
 * services on one machine would collide on any fixed default. /readyz is 503 until start()
 * finishes and from the moment a signal arrives, so traffic leaves before anything closes.
 */
import { AdminServer, loadAdminAddr, type ReadinessChecks } from './admin-http';
import { ConfigError, formatHostPort, type HostPort } from './config';
import { OptionError } from './options';
import { createLogger, type Level, type Logger } from './log';
import { installInstrumentations, loadTelemetryConfig, startTelemetry, type TelemetryConfig } from './telemetry';

// gRPC and cassandra-driver are patched for tracing when first required: every main.ts imports
// this module before anything that loads them.
installInstrumentations();

export interface ServiceProcess {
  readonly logger: Logger;
  /** True once a signal arrived: start() should return without opening more. */
  readonly stopping: boolean;
  /** Something to close at shutdown; closed in reverse order of registration. */
  onStop(name: string, close: () => unknown): void;
  /** The one line scripts wait for, printed whatever the log level. */
  listening(fields: Record<string, unknown>): void;
  /** What /readyz checks once start() has finished, e.g. () => ({ bus: bus.connected }). */
  readiness(checks: () => ReadinessChecks): void;
}

export interface ServiceMainOptions<C> {
  /** Short name: "logic", "gateway", "router". */
  svc: string;
  /** Bound on the whole shutdown, above the parts' own bounds. */
  shutdownTimeoutMs: number;
  /** Reads and validates settings (throws ConfigError, or OptionError from a component's options). */
  loadConfig: () => C;
  logLevel: (config: C) => Level;
  logFields?: (config: C) => Record<string, unknown>;
  start: (proc: ServiceProcess, config: C) => Promise<void>;
}

export function serviceMain<C>(options: ServiceMainOptions<C>): void {
  const fail = (err: unknown): never => {
    if (err instanceof ConfigError || err instanceof OptionError) {
      process.stderr.write(`im-${options.svc}: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`im-${options.svc}: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  };

  let config: C;
  let adminAddr: HostPort | undefined;
  let telemetryConfig: TelemetryConfig;
  try {
    config = options.loadConfig();
    adminAddr = loadAdminAddr();
    telemetryConfig = loadTelemetryConfig(options.svc);
  } catch (err) {
    fail(err);
  }
  const logger = createLogger(options.logLevel(config!), { svc: options.svc, ...options.logFields?.(config!) });
  const closers: Array<[string, () => unknown]> = [];
  let stopping = false;
  let started = false;
  let checks: (() => ReadinessChecks) | undefined;
  let adminListen: string | undefined;
  // Closed last, so the spans of the shutdown itself are exported.
  const telemetry = startTelemetry(telemetryConfig!, { logger });
  closers.push(['telemetry', () => telemetry.shutdown()]);

  const closeAll = async () => {
    for (const [name, close] of closers.splice(0).reverse()) {
      try {
        await close();
      } catch (err) {
        logger.warn('error while closing', { component: name, err });
      }
    }
  };
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    setTimeout(() => {
      logger.error('shutdown timed out; exiting', { timeoutMs: options.shutdownTimeoutMs });
      process.exit(1);
    }, options.shutdownTimeoutMs).unref();
    void closeAll().then(() => {
      logger.info('stopped');
      process.exit(0);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));

  const proc: ServiceProcess = {
    logger,
    get stopping() { return stopping; },
    onStop: (name, close) => { closers.push([name, close]); },
    listening: (fields) => {
      process.stdout.write(JSON.stringify({
        t: new Date().toISOString(), level: 'info', msg: `${options.svc} listening`, svc: options.svc, pid: process.pid,
        ...(adminListen ? { admin: adminListen } : {}), ...fields,
      }) + '\n');
    },
    readiness: (c) => { checks = c; },
  };
  const readiness = (): ReadinessChecks => ({ started, running: !stopping, ...(started && !stopping && checks ? checks() : {}) });
  const run = async () => {
    if (adminAddr) {
      const admin = new AdminServer({ host: adminAddr.host, port: adminAddr.port, readiness, logger });
      closers.push(['admin', () => admin.stop()]);
      adminListen = formatHostPort({ host: adminAddr.host, port: await admin.start() });
    }
    await options.start(proc, config!);
    started = true;
  };
  run().catch(async (err) => {
    if (stopping) return; // a signal's shutdown is already closing everything and will exit
    stopping = true;
    setTimeout(() => fail(err), options.shutdownTimeoutMs).unref();
    await closeAll();
    fail(err);
  });
}
