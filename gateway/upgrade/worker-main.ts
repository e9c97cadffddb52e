/**
 * A gateway worker, forked by the supervisor (supervisor-main.js) with an IPC channel; not run by
 * hand. The same gateway as main.ts, except that it does not listen: client sockets arrive over
 * IPC, and on an upgrade it hands them all to the next worker (or adopts them from the previous
 * one) instead of draining. SIGTERM/SIGINT drain as main.ts does.
 */
import { describeBus, loadBusConfig } from '../../bus/config';
import { flushBus } from '../../bus/bus';
import { ConfigError, formatHostPort, loadLogLevel } from '../../common/config';
import { serviceMain } from '../../common/service-main';
import { gatewayShutdownTimeoutMs, gatewayTlsOptions, loadGatewayConfig } from '../config';
import { openGatewayBackends } from '../backends';
import { Gateway } from '../server';
import { loadWorkerSettings } from './supervisor-config';
import { GatewayWorker } from './worker';

// SIGHUP is the supervisor's signal (an upgrade); one that reaches the process group must not end a worker.
process.on('SIGHUP', () => undefined);

serviceMain({
  svc: 'gateway',
  // The drain window (IM_DRAIN_WINDOW) plus a margin, as main.ts.
  shutdownTimeoutMs: gatewayShutdownTimeoutMs(),
  loadConfig: () => {
    if (typeof process.send !== 'function') {
      throw new ConfigError('IPC', 'a gateway worker runs under the supervisor: node dist/gateway/upgrade/supervisor-main.js');
    }
    return {
      gateway: loadGatewayConfig(),
      bus: loadBusConfig(process.env, process.argv.slice(2), { allowInProcessBus: false }),
      worker: loadWorkerSettings(process.env),
      logLevel: loadLogLevel(),
    };
  },
  logLevel: (c) => c.logLevel,
  logFields: (c) => ({ node: c.gateway.node, worker: c.worker.generation }),
  async start(proc, { gateway: config, bus: busConfig, worker: settings }) {
    const { logger } = proc;
    const backends = await openGatewayBackends(proc, config, busConfig, `gateway-${config.node}-w${settings.generation}`);
    if (!backends) return;
    const { bus, router, logic } = backends;
    const { listen, routerAddr, logicAddresses, publicAddr, grpcTls, tls, ...tuning } = config;
    const gateway = new Gateway({
      ...tuning, host: listen.host, port: 0, listen: false, publicAddr: publicAddr ?? `${listen.host}:${listen.port}`,
      // The supervisor listens and sets IM_GATEWAY_TLS_PUBLIC_ADDR; this process runs the handshakes.
      tls: gatewayTlsOptions(tls, tls && (tls.publicAddr ?? formatHostPort(tls.listen))),
      successor: settings.successor, logic, router, bus, logger,
    });
    const worker = new GatewayWorker({
      gateway, channel: process, node: config.node, logger,
      onFinished: (why) => {
        logger.info('worker finished', { why });
        process.kill(process.pid, 'SIGTERM');
      },
    });
    // After a hand-off the clients live on in the next worker: no drain, no word to the router.
    proc.onStop('gateway', () => (worker.handedOff ? gateway.closeAfterHandOff() : gateway.stop()));
    await gateway.start();
    await flushBus(bus); // the subscription is live at the server before anything is routed here
    // A successor is ready only with a logic stream up: the old worker keeps serving until then.
    while (settings.successor && !proc.stopping && !(await logic.whenUp(1000)));
    if (proc.stopping) return;
    proc.readiness(() => gateway.readinessChecks());
    worker.attach();
    logger.info('gateway worker ready', {
      pid: process.pid, generation: settings.generation, successor: settings.successor, ...describeBus(busConfig),
    });
  },
});
