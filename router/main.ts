/** `node dist/router/main.js`: the router as its own process. */
import { ConfigError, formatHostPort } from '../common/config';
import { loadRouterConfig } from './config';
import { RouterService } from './service';

async function main(): Promise<void> {
  let service: RouterService;
  let config;
  try {
    config = loadRouterConfig();
    service = new RouterService(config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`im-router: ${err.message}\n`);
    process.exit(2);
  }
  // Handlers first: a supervisor may signal as soon as it reads the listening line.
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    config.logger?.info('shutting down', { signal });
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    service.stop().then(() => process.exit(0), (err) => {
      config.logger?.error('shutdown failed', { err });
      process.exit(1);
    });
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  const { grpcPort, httpPort } = await service.start();
  // Always printed (whatever the log level) so scripts can find the ports, e.g. when given port 0.
  process.stdout.write(JSON.stringify({
    t: new Date().toISOString(), level: 'info', msg: 'router listening', svc: 'router',
    grpc: formatHostPort({ host: config.grpcHost, port: grpcPort }),
    http: formatHostPort({ host: config.httpHost, port: httpPort }),
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`im-router: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
