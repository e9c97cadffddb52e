/**
 * Which bus a process uses, as a pure function of env and flags: IM_BUS nats | inprocess plus
 * the NATS settings, and the factory that connects it.
 */
import { InProcessBus, type Bus } from './bus';
import { NatsBus } from './nats';
import { ConfigError, type Env, HOST_NAME_RE, parseFlags, parseHostPort, Settings } from '../common/config';
import { silentLogger, type Logger } from '../common/log';
import { loadNatsAuth, urlCredentials, type NatsAuthConfig } from './nats-auth';

export const BUS_KINDS = ['nats', 'inprocess'] as const;
export type BusKind = (typeof BUS_KINDS)[number];

export type BusConfig = { kind: 'nats'; servers: string[]; auth?: NatsAuthConfig } | { kind: 'inprocess' };

export interface BusDefaults {
  bus?: BusKind;
  /**
   * An in-process bus only reaches subscribers in the same process, so a process running one
   * service alone must refuse it: its pushes would silently go nowhere. Default false.
   */
  allowInProcessBus?: boolean;
}

/**
 * IM_BUS (--bus) and, for nats, IM_NATS_URL (--nats-url; comma-separated for a cluster) and the
 * credential and TLS settings (IM_NATS_USER, IM_NATS_PASSWORD, IM_NATS_NKEY_SEED_FILE, IM_NATS_TLS_CA).
 */
export function loadBusConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2),
  defaults: BusDefaults = {}): BusConfig {
  const s = new Settings(env, parseFlags(argv));
  const kind = s.oneOf('IM_BUS', BUS_KINDS, defaults.bus ?? 'nats', 'bus');
  if (kind === 'inprocess') {
    if (!defaults.allowInProcessBus) {
      throw new ConfigError('IM_BUS', 'inprocess only reaches services in the same process (embedded mode); use nats');
    }
    return { kind };
  }
  const servers = s.list('IM_NATS_URL', ['nats://127.0.0.1:4222'], 'nats-url');
  if (servers.length === 0) throw new ConfigError('IM_NATS_URL', 'at least one nats://host:port is required');
  for (const url of servers) {
    if (!validNatsUrl(url)) throw new ConfigError('IM_NATS_URL', `expected nats://host:port, got "${url}"`);
  }
  const auth = loadNatsAuth(s);
  urlCredentials(servers, auth); // a conflict between URL and settings is refused here, at start-up
  return { kind, servers, ...(auth && { auth }) };
}

function validNatsUrl(v: string): boolean {
  const m = /^(?:(nats|tls|ws|wss):\/\/)?(?:[^@/\s]+@)?([^/\s]+)$/.exec(v);
  if (!m) return false;
  const hostPart = m[2];
  return HOST_NAME_RE.test(hostPart) || parseHostPort(hostPart) !== undefined;
}

export interface OpenBusOptions {
  /** Connection name the NATS server shows, e.g. `logic-127.0.0.1:7190`. */
  name: string;
  logger?: Logger;
}

/** Connects the configured bus; for NATS, waits for the first connection. */
export async function openBus(config: BusConfig, options: OpenBusOptions): Promise<Bus> {
  if (config.kind === 'inprocess') return new InProcessBus();
  return NatsBus.connect({ servers: config.servers, name: options.name, auth: config.auth, logger: options.logger ?? silentLogger });
}

/** A one-line description for logs and the listening line, never including credentials. */
export function describeBus(bus: BusConfig): { bus: string } {
  return { bus: bus.kind === 'nats' ? `nats ${bus.servers.map(stripCredentials).join(',')}` : 'inprocess' };
}

function stripCredentials(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}
