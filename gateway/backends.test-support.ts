/**
 * What gateway processes under test dial: a router (gRPC + route API) and logic over a given store,
 * publishing pushes on a NATS server, all in the test's own process.
 */
import { NatsBus } from '../bus/nats';
import { OpRegistry, registerClientOps } from '../logic/ops';
import { LogicServer } from '../logic/server';
import { LogicService } from '../logic/service';
import { RouterClient } from '../router/client';
import { RouterService } from '../router/service';
import type { Store } from '../storage/store';

export interface TestBackends {
  /** The route API's base URL. */
  routerHttp: string;
  /** For IM_ROUTER_GRPC_ADDR and IM_LOGIC_ADDRS. */
  routerAddr: string;
  logicAddr: string;
}

/** Starts both on loopback; each stop is pushed on `stops` (run them in reverse). */
export async function startTestBackends(store: Store, natsUrl: string, busName: string, stops: Array<() => unknown>): Promise<TestBackends> {
  const host = '127.0.0.1';
  const router = new RouterService({ grpcHost: host, grpcPort: 0, httpHost: host, httpPort: 0 });
  const ports = await router.start();
  stops.push(() => router.stop());
  const routerAddr = `${host}:${ports.grpcPort}`;
  const bus = await NatsBus.connect({ servers: natsUrl, name: busName });
  stops.push(() => bus.close());
  const logicRouter = new RouterClient({ address: routerAddr });
  stops.push(() => logicRouter.close());
  const service = new LogicService({ store, bus, router: logicRouter });
  stops.push(() => service.close());
  const registry = new OpRegistry();
  registerClientOps(registry, service);
  const logic = new LogicServer({ registry, host, port: 0 });
  const logicAddr = `${host}:${await logic.start()}`;
  stops.push(() => logic.stop());
  return { routerHttp: `http://${host}:${ports.httpPort}`, routerAddr, logicAddr };
}
