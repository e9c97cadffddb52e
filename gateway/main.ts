/**
 * `node dist/gateway/main.js`: one gateway node. Subscribes to its bus subject, keeps a stream to
 * every logic address, reports to the router, accepts clients on IM_GATEWAY_ADDR. SIGTERM/SIGINT
 * drain (clients get Disconnect DRAINING and reconnect elsewhere) before the process exits.
 */
import { describeBus, loadBusConfig } from '../bus/config';
import { formatHostPort, loadLogLevel } from '../common/config';
import { describeGrpcTls } from '../common/grpc-tls';
import { serviceMain } from '../common/service-main';
import { gatewayShutdownTimeoutMs, gatewayTlsOptions, loadGatewayConfig } from './config';
import { openGatewayBackends } from './backends';
import { Gateway } from './server';

serviceMain({
  svc: 'gateway',
  // The drain window (IM_DRAIN_WINDOW, 30 s) plus a margin above the gateway's other bounds.
  shutdownTimeoutMs: gatewayShutdownTimeoutMs(),
  loadConfig: () => ({
    gateway: loadGatewayConfig(),
    // A gateway alone in its process: an in-process bus would never see logic's pushes.
    bus: loadBusConfig(process.env, process.argv.slice(2), { allowInProcessBus: false }),
    logLevel: loadLogLevel(),
  }),
  logLevel: (c) => c.logLevel,
  logFields: (c) => ({ node: c.gateway.node }),
  async start(proc, { gateway: config, bus: busConfig }) {
    const { logger } = proc;
    const backends = await openGatewayBackends(proc, config, busConfig, `gateway-${config.node}`);
    if (!backends) return;
    const { bus, router, logic } = backends;
    const { listen, routerAddr, logicAddresses, grpcTls, tls, ...tuning } = config;
    const gateway = new Gateway({ ...tuning, host: listen.host, port: listen.port, tls: gatewayTlsOptions(tls), logic, router, bus, logger });
    proc.onStop('gateway', () => gateway.stop()); // drains clients; the logic streams close after it
    proc.readiness(() => gateway.readinessChecks());
    const { port, tlsPort, wsPort } = await gateway.start();
    if (proc.stopping) return;
    const addr = config.plaintext ? formatHostPort({ host: listen.host, port }) : '';
    const tlsAddr = tls ? formatHostPort({ host: tls.listen.host, port: tlsPort! }) : '';
    proc.listening({
      node: config.node, addr, publicAddr: config.plaintext ? config.publicAddr ?? addr : '',
      ...(tls ? { tlsAddr, tlsPublicAddr: tls.publicAddr ?? tlsAddr } : {}),
      ...(config.ws && wsPort !== undefined ? { wsAddr: formatHostPort({ host: config.ws.host, port: wsPort }) } : {}),
      logic: logicAddresses.join(','), router: routerAddr, grpcTls: describeGrpcTls(grpcTls), ...describeBus(busConfig),
    });
  },
});
