/**
 * `npm start`: the whole system in one process (router, logic, gateway, SQLite, in-process bus).
 * IM_ADMIN_ADDR adds /healthz, /readyz and /metrics; OTEL_TRACES_EXPORTER turns tracing on.
 */
import './tracing'; // first: patches gRPC for tracing before anything loads it
import { AdminServer, loadAdminAddr } from '../common/admin-http';
import { formatHostPort, type HostPort } from '../common/config';
import { createLogger } from '../common/log';
import { loadTelemetryConfig, startTelemetry, type TelemetryConfig } from '../common/telemetry';
import { loadEmbeddedConfig } from './config';
import { EmbeddedSystem, startEmbedded } from './system';

async function main(): Promise<void> {
  let config;
  let adminAddr: HostPort | undefined;
  let telemetryConfig: TelemetryConfig;
  try {
    config = loadEmbeddedConfig();
    adminAddr = loadAdminAddr();
    telemetryConfig = loadTelemetryConfig('embedded', process.env, { embedded: true });
  } catch (err) {
    process.stderr.write(`im: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, { svc: 'embedded' });
  const telemetry = startTelemetry(telemetryConfig, { logger });
  let system: EmbeddedSystem | undefined;
  let admin: AdminServer | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    (system ? system.stop() : Promise.resolve()).then(() => admin?.stop()).then(() => telemetry.shutdown()).then(() => {
      process.stdout.write('im embedded: stopped\n');
      process.exit(0);
    }, (err) => {
      logger.error('shutdown failed', { err });
      process.exit(1);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  let adminNote = '';
  if (adminAddr) {
    admin = new AdminServer({
      host: adminAddr.host, port: adminAddr.port, logger,
      readiness: () => (system && !stopping ? system.readinessChecks() : { started: false }),
    });
    adminNote = `  admin http://${formatHostPort({ host: adminAddr.host, port: await admin.start() })}`;
  }
  system = await startEmbedded({ ...config, logger });
  process.stdout.write(
    `im embedded: gateway ${[system.gatewayAddr && `tcp://${system.gatewayAddr}`, system.gatewayTlsAddr && `tls://${system.gatewayTlsAddr}`].filter(Boolean).join(' ')}  route API ${system.routerUrl}/v1/route  ` +
    `WebSocket ${system.gatewayWsUrl ?? 'off'}  ` +
    `HTTP API ${system.httpUrl ?? 'off'}  ` +
    `internal gRPC ${system.logicAddr}${config.grpcTls ? ' (mTLS)' : ''}${system.adminApi ? '' : ' (LogicAdmin off: set IM_LOGIC_ADMIN_TOKENS)'}  data ${system.dataDir}${adminNote}  ` +
    `web chat ${system.webUrl ? `${system.webUrl}${system.webDevTokens ? '' : ' (no sign-in tokens: not on loopback)'}` : 'off'}\n`);
}

main().catch((err) => {
  process.stderr.write(`im: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
