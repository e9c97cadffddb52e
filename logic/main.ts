/**
 * `node dist/logic/main.js`: one stateless logic process. Opens the store and the bus, connects to
 * the router, serves the gateway stream and, when an admin token is configured, the internal admin API (with
 * reflection) on IM_LOGIC_ADDR, and with IM_HTTP_ADDR the client HTTP API (docs/http-api.md).
 */
import { describeBus, openBus } from '../bus/config';
import { describeStore } from '../storage/config';
import { flushBus } from '../bus/bus';
import { formatHostPort } from '../common/config';
import { describeGrpcTls } from '../common/grpc-tls';
import { serviceMain } from '../common/service-main';
import { RouterClient } from '../router/client';
import { openStore } from '../storage/open';
import { addInternalApis } from './admin';
import { loadLogicProcessConfig } from './config';
import { HttpApi } from './http-api';
import { OpRegistry, registerClientOps } from './ops';
import { LogicServer } from './server';
import { LogicService } from './service';

serviceMain({
  svc: 'logic',
  // Longer than LogicServer's own drain bound (5 s) plus a store and a bus closing.
  shutdownTimeoutMs: 15_000,
  loadConfig: () => loadLogicProcessConfig(),
  logLevel: (c) => c.logLevel,
  // Closed in reverse: server (drains running calls), service (flushes pushes), router, store (hands
  // its shards back), bus.
  async start(proc, config) {
    const { logger } = proc;
    const addr = formatHostPort({ host: config.logic.host, port: config.logic.port });
    // The bus first: Cassandra stores of the logic processes forward writes to each other over it.
    const bus = await openBus(config.bus, { name: `logic-${addr}`, logger: logger.child({ component: 'bus' }) });
    proc.onStop('bus', () => bus.close());
    if (proc.stopping) return;
    const store = await openStore(config.store, { logger: logger.child({ component: 'store' }), bus });
    proc.onStop('store', () => store.close());
    if (proc.stopping) return;
    const router = new RouterClient({ address: config.routerAddr, grpcTls: config.grpcTls, logger });
    proc.onStop('router', () => router.close());
    const service = new LogicService({ ...config.logic, store, bus, router, logger });
    proc.onStop('service', () => service.close());
    const registry = new OpRegistry();
    registerClientOps(registry, service);
    const server = new LogicServer({ registry, host: config.logic.host, port: config.logic.port, grpcTls: config.grpcTls, logger });
    const internal = addInternalApis(server.server, { service, router, logger, admin: config.admin });
    proc.onStop('admin tokens', () => internal.close());
    proc.onStop('server', () => server.stop());
    // The client HTTP API (IM_HTTP_ADDR): stopped before the service, so its sends still push.
    const httpApi = config.http && new HttpApi({ ...config.http, service, auth: config.auth, logger: logger.child({ component: 'http-api' }) });
    if (httpApi) proc.onStop('http api', () => httpApi.stop());
    // The store is open once openStore returned (start() finishing is a readiness check of its own).
    proc.readiness(() => ({ bus: bus.connected }));
    // Throws (exit 2) when NATS refused a subscription of the store's peers or the group sync.
    await flushBus(bus);
    const port = await server.start();
    if (proc.stopping) return;
    const httpPort = await httpApi?.start();
    if (proc.stopping) return;
    proc.listening({
      addr: formatHostPort({ host: config.logic.host, port }), router: config.routerAddr, grpcTls: describeGrpcTls(config.grpcTls),
      httpApi: config.http && httpPort !== undefined ? `http://${formatHostPort({ host: config.http.host, port: httpPort })}` : 'off (no IM_HTTP_ADDR)',
      adminApi: internal.admin ? 'on' : 'off (no IM_LOGIC_ADMIN_TOKENS or IM_LOGIC_ADMIN_TOKEN_FILE)',
      ...describeStore(config.store), ...describeBus(config.bus),
    });
  },
});
