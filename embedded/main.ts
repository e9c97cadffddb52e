/** `npm start`: the whole system in one process (router, logic, gateway, SQLite, in-process bus). */
import { createLogger } from '../common/log';
import { loadEmbeddedConfig } from './config';
import { EmbeddedSystem, startEmbedded } from './system';

async function main(): Promise<void> {
  let config;
  try {
    config = loadEmbeddedConfig();
  } catch (err) {
    process.stderr.write(`im: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, { svc: 'embedded' });
  let system: EmbeddedSystem | undefined;
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    (system ? system.stop() : Promise.resolve()).then(() => {
      process.stdout.write('im embedded: stopped\n');
      process.exit(0);
    }, (err) => {
      logger.error('shutdown failed', { err });
      process.exit(1);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  system = await startEmbedded({ ...config, logger });
  process.stdout.write(
    `im embedded: gateway tcp://${system.gatewayAddr}  route API ${system.routerUrl}/v1/route  ` +
    `internal gRPC ${system.logicAddr}  data ${system.dataDir}\n`);
}

main().catch((err) => {
  process.stderr.write(`im: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
