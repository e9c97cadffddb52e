/** `node dist/router/main.js`: the router as its own process. */
import { formatHostPort } from '../common/config';
import { describeGrpcTls } from '../common/grpc-tls';
import { serviceMain } from '../common/service-main';
import { loadRouterConfig } from './config';
import { RouterService } from './service';

serviceMain({
  svc: 'router',
  shutdownTimeoutMs: 15_000,
  loadConfig: () => {
    const config = loadRouterConfig();
    return { config, service: new RouterService(config) }; // validates its options (ConfigError, OptionError)
  },
  logLevel: ({ config }) => config.logLevel,
  async start(proc, { config, service }) {
    proc.onStop('router', () => service.stop()); // waits for a start() still in progress
    const { grpcPort, httpPort } = await service.start();
    proc.listening({
      grpc: formatHostPort({ host: config.grpcHost, port: grpcPort }),
      http: formatHostPort({ host: config.httpHost, port: httpPort }),
      httpTls: config.httpTls !== undefined,
      grpcTls: describeGrpcTls(config.grpcTls),
    });
  },
});
