/**
 * `node dist/gateway/main.js`: one gateway node. Subscribes to its bus subject, keeps a stream to
 * every logic address, reports to the router, accepts clients on IM_GATEWAY_ADDR. SIGTERM/SIGINT
 * drain (clients get Disconnect DRAINING and reconnect elsewhere) before the process exits.
 */
import { describeBackends, loadBusConfig, loadLogLevel, openBus } from '../common/backends';
import { formatHostPort } from '../common/config';
import { serviceMain } from '../common/service-main';
import { RouterClient } from '../router/client';
import { gatewayShutdownTimeoutMs, loadGatewayConfig } from './config';
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
    const bus = await openBus(busConfig, { name: `gateway-${config.node}`, logger: logger.child({ component: 'bus' }) });
    proc.onStop('bus', () => bus.close());
    if (proc.stopping) return;
    const router = new RouterClient({ address: config.routerAddr, logger });
    proc.onStop('router', () => router.close());
    const { listen, routerAddr, logicAddresses, ...tuning } = config;
    const gateway = new Gateway({ ...tuning, host: listen.host, port: listen.port, logicAddresses, router, bus, logger });
    proc.onStop('gateway', () => gateway.stop()); // drains clients, closes its logic streams
    proc.readiness(() => gateway.readinessChecks());
    const { port, wsPort } = await gateway.start();
    if (proc.stopping) return;
    const addr = formatHostPort({ host: listen.host, port });
    proc.listening({
      node: config.node, addr, publicAddr: config.publicAddr ?? addr,
      ...(config.ws && wsPort !== undefined ? { wsAddr: formatHostPort({ host: config.ws.host, port: wsPort }) } : {}),
      logic: logicAddresses.join(','), router: routerAddr, ...describeBackends(undefined, busConfig),
    });
  },
});
