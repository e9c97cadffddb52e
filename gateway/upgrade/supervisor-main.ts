/**
 * `node dist/gateway/upgrade/supervisor-main.js`: a gateway node that can be upgraded without closing
 * client connections. Takes the gateway's settings (IM_GATEWAY_ADDR, IM_NODE_ID, IM_LOGIC_ADDRS,
 * IM_NATS_URL, ...), owns the listener and runs the gateway in a worker process
 * (worker-main.js). SIGHUP, or POST /upgrade on IM_SUPERVISOR_ADDR, starts the worker again from
 * the code on disk and moves every connection to it. SIGTERM/SIGINT drain the worker and exit.
 */
import * as path from 'node:path';
import { formatHostPort, loadLogLevel } from '../../common/config';
import { serviceMain } from '../../common/service-main';
import { GatewaySupervisor } from './supervisor';
import { SupervisorAdmin } from './supervisor-admin';
import { loadSupervisorConfig, supervisorShutdownTimeoutMs, workerEnv } from './supervisor-config';

serviceMain({
  svc: 'gateway-supervisor',
  // Above the worker's own shutdown bound (its drain window plus margin).
  shutdownTimeoutMs: supervisorShutdownTimeoutMs(),
  loadConfig: () => ({
    sup: loadSupervisorConfig(process.env, process.argv.slice(2), path.join(path.dirname(process.argv[1]), 'worker-main.js')),
    logLevel: loadLogLevel(),
  }),
  logLevel: (c) => c.logLevel,
  logFields: (c) => ({ node: c.sup.node }),
  async start(proc, { sup }) {
    const { logger } = proc;
    const supervisor = new GatewaySupervisor({
      host: sup.listen.host, port: sup.listen.port, plaintext: sup.plaintext, tls: sup.tlsListen, ws: sup.ws, workerScript: sup.workerScript, workerArgs: process.argv.slice(2),
      workerEnv: workerEnv(process.env), readyTimeoutMs: sup.readyTimeoutMs, handOffTimeoutMs: sup.handOffTimeoutMs,
      exitTimeoutMs: sup.exitTimeoutMs, stopTimeoutMs: sup.stopTimeoutMs, logger,
    });
    proc.onStop('supervisor', () => supervisor.stop());
    process.on('SIGHUP', () => {
      logger.info('SIGHUP: upgrading the gateway worker');
      supervisor.upgrade().then(
        (r) => logger.info('upgrade finished', { ...r }),
        (err) => logger.error('upgrade failed', { err }),
      );
    });
    const { port, tlsPort, wsPort, workerPid } = await supervisor.start();
    if (proc.stopping) return;
    let control: string | undefined;
    if (sup.controlAddr) {
      const admin = new SupervisorAdmin({ host: sup.controlAddr.host, port: sup.controlAddr.port, supervisor, logger });
      proc.onStop('supervisor-control', () => admin.stop());
      control = formatHostPort({ host: sup.controlAddr.host, port: await admin.start() });
    }
    proc.listening({
      node: sup.node, addr: sup.plaintext ? formatHostPort({ host: sup.listen.host, port }) : '',
      ...(sup.tlsListen ? { tlsAddr: formatHostPort({ host: sup.tlsListen.host, port: tlsPort }) } : {}),
      workerPid, worker: sup.workerScript,
      ...(sup.ws && wsPort !== undefined ? { wsAddr: formatHostPort({ host: sup.ws.host, port: wsPort }) } : {}),
      ...(control ? { control } : {}),
    });
  },
});
