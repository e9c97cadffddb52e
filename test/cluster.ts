/**
 * Distributed mode for tests: router, two logic services and two gateways, each with its own
 * Cassandra session and NATS connection as separate processes would have, wired over real gRPC,
 * real NATS and a real Cassandra keyspace. `make up` runs the same pieces as separate processes.
 */
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import { NatsBus } from '../bus/nats';
import { Logger, silentLogger } from '../common/log';
import { Gateway } from '../gateway/server';
import { LogicClient } from '../gateway/logic-client';
import { OpRegistry, registerClientOps } from '../logic/ops';
import { LogicServer } from '../logic/server';
import { LogicService } from '../logic/service';
import { RouterClient } from '../router/client';
import { RouterService } from '../router/service';
import { CassandraStore, type CassandraStoreOptions } from '../storage/cassandra/store';
import type { EmbeddedOptions, GatewayTuning } from '../embedded/system';
import { CASSANDRA_CONTACT, NATS_URL } from './infra';

const LOOPBACK = '127.0.0.1';

export interface ClusterOptions {
  /** Reuse a keyspace to restart over the same data; default a fresh one (created on open). */
  keyspace?: string;
  gateways?: number;        // default 2
  logics?: number;          // default 2
  gateway?: GatewayTuning;
  logic?: EmbeddedOptions['logic'];
  registerOps?: EmbeddedOptions['registerOps'];
  /** Default IM_NATS_URL; a test that restarts NATS passes its own server. */
  natsUrl?: string;
  /** Extra Cassandra store options of every logic (e.g. a short leaseMs). */
  store?: Partial<CassandraStoreOptions>;
  /** Gateway i talks to logic i only (so a retry through the other gateway also crosses logic). */
  pinLogic?: boolean;
  logger?: Logger;
}

export interface Cluster {
  keyspace: string;
  authSecret: string;
  routerUrl: string;
  gatewayAddrs: string[];
  /** A route API that lists only gateway i, so a test can pin a client to it. */
  routeUrlFor(i: number): string;
  logicServers: LogicServer[];
  /** The logic services behind logicServers, in the same order. */
  logicServices: LogicService[];
  /** The NATS connection of every logic and gateway. */
  buses: NatsBus[];
  stop(): Promise<void>;
}

export function freshKeyspace(): string {
  return `im_e2e_${randomBytes(4).toString('hex')}`;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const logger = options.logger ?? silentLogger;
  const keyspace = options.keyspace ?? freshKeyspace();
  const authSecret = `cluster-secret-${keyspace}`;
  const natsUrl = options.natsUrl ?? NATS_URL;
  const stops: Array<() => Promise<void> | void> = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      try { await stop(); } catch (err) { logger.warn('cluster: stop failed', { err }); }
    }
  };
  try {
    const router = new RouterService({ grpcHost: LOOPBACK, grpcPort: 0, httpHost: LOOPBACK, httpPort: 0, logger });
    const ports = await router.start();
    stops.push(() => router.stop());
    const routerAddr = `${LOOPBACK}:${ports.grpcPort}`;

    const logicAddrs: string[] = [];
    const logicServers: LogicServer[] = [];
    const logicServices: LogicService[] = [];
    const buses: NatsBus[] = [];
    for (let i = 0; i < (options.logics ?? 2); i++) {
      const bus = await NatsBus.connect({ servers: natsUrl, name: `logic-${i}`, logger });
      buses.push(bus);
      stops.push(() => bus.close());
      const store = await CassandraStore.open({ contactPoints: CASSANDRA_CONTACT.split(','), keyspace, consistency: 'ONE', logger, bus, ...options.store });
      stops.push(() => store.close());
      const routerClient = new RouterClient({ address: routerAddr, logger });
      stops.push(() => routerClient.close());
      const service = new LogicService({ ...options.logic, store, bus, router: routerClient, logger });
      stops.push(() => service.close());
      logicServices.push(service);
      const registry = new OpRegistry();
      registerClientOps(registry, service);
      options.registerOps?.(registry);
      const server = new LogicServer({ registry, host: LOOPBACK, port: 0, logger });
      logicAddrs.push(`${LOOPBACK}:${await server.start()}`);
      logicServers.push(server);
      stops.push(() => server.stop());
    }

    const gatewayAddrs: string[] = [];
    for (let i = 0; i < (options.gateways ?? 2); i++) {
      const bus = await NatsBus.connect({ servers: natsUrl, name: `gw-${i}`, logger });
      buses.push(bus);
      stops.push(() => bus.close());
      const routerClient = new RouterClient({ address: routerAddr, logger });
      stops.push(() => routerClient.close());
      const logic = new LogicClient({ addresses: options.pinLogic ? [logicAddrs[i % logicAddrs.length]] : logicAddrs, logger });
      logic.start();
      stops.push(() => logic.close());
      const gateway = new Gateway({
        ...options.gateway, node: `gw-${keyspace}-${i}`, host: LOOPBACK, port: 0,
        auth: { secret: authSecret }, logic, router: routerClient, bus, logger,
      });
      const { port } = await gateway.start();
      await bus.flush(); // its subscription is live before any client can be routed to it
      stops.push(() => gateway.stop());
      gatewayAddrs.push(`${LOOPBACK}:${port}`);
    }

    const pinned = await Promise.all(gatewayAddrs.map(async (addr, i) => {
      const srv = http.createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ gateways: [{ node: `gw-${i}`, addr, region: '', zone: '', load: 0 }], backoff: { baseMs: 50, maxMs: 500 } }));
      });
      await new Promise<void>((resolve) => srv.listen(0, LOOPBACK, resolve));
      stops.push(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()); }));
      return `http://${LOOPBACK}:${(srv.address() as { port: number }).port}`;
    }));

    let stopping: Promise<void> | undefined;
    return {
      keyspace, authSecret, gatewayAddrs, logicServers, logicServices, buses,
      routerUrl: `http://${LOOPBACK}:${ports.httpPort}`,
      routeUrlFor: (i) => pinned[i],
      stop: () => (stopping ??= stopAll()),
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
