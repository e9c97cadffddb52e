/**
 * What a gateway process opens before its Gateway (main.ts, upgrade/worker-main.ts): the bus, a
 * client of the router and one of logic, each closed when the process stops (in reverse order).
 */
import { type BusConfig, openBus } from '../bus/config';
import type { Bus } from '../bus/bus';
import type { ServiceProcess } from '../common/service-main';
import { RouterClient } from '../router/client';
import type { GatewayConfig } from './config';
import { LogicClient } from './logic-client';

export interface GatewayBackends {
  bus: Bus;
  router: RouterClient;
  logic: LogicClient;
}

/** Undefined when a stop signal came while the bus was opening: start() should return. */
export async function openGatewayBackends(
  proc: ServiceProcess, config: GatewayConfig, busConfig: BusConfig, busName: string,
): Promise<GatewayBackends | undefined> {
  const { logger } = proc;
  const bus = await openBus(busConfig, { name: busName, logger: logger.child({ component: 'bus' }) });
  proc.onStop('bus', () => bus.close());
  if (proc.stopping) return undefined;
  const router = new RouterClient({ address: config.routerAddr, grpcTls: config.grpcTls, logger });
  proc.onStop('router', () => router.close());
  const logic = new LogicClient({ addresses: config.logicAddresses, grpcTls: config.grpcTls, logger });
  logic.start();
  proc.onStop('logic', () => logic.close());
  return { bus, router, logic };
}
