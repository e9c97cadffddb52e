/**
 * Which pluggable backends a service process uses, as a pure function of env and flags:
 *   IM_STORE  sqlite | cassandra      IM_BUS  nats | inprocess
 * plus each one's own settings. The bus factory lives here (both buses are in common/); the
 * store factory is storage/open.ts, because common/ must not depend on the storage layer.
 */
import * as path from 'node:path';
import { InProcessBus, type Bus } from './bus';
import { NatsBus } from './bus-nats';
import { loadCassandraTls, type CassandraTlsConfig } from './cassandra-tls';
import { ConfigError, type Env, parseFlags, parseHostPort, Settings } from './config';
import { silentLogger, type Level, type Logger } from './log';
import { loadNatsAuth, urlCredentials, type NatsAuthConfig } from './nats-auth';

export const STORE_KINDS = ['sqlite', 'cassandra'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/**
 * Levels the Cassandra store accepts. LOCAL_ONE and ALL are left out on purpose: the store pairs
 * each level with the serial level of its lightweight transactions and only defines that pairing
 * for these three (storage/cassandra-options.ts), so accepting more here would only fail later.
 */
export const CASSANDRA_CONSISTENCIES = ['ONE', 'LOCAL_QUORUM', 'QUORUM'] as const;
export type CassandraConsistency = (typeof CASSANDRA_CONSISTENCIES)[number];

export interface SqliteStoreConfig {
  kind: 'sqlite';
  /** Absolute; the database file goes inside it. */
  dataDir: string;
}

export interface CassandraStoreConfig {
  kind: 'cassandra';
  contactPoints: string[];
  localDataCenter: string;
  keyspace: string;
  consistency: CassandraConsistency;
  /** Replication factor used when the keyspace is created. */
  replication: number;
  /** Password authentication, when the cluster requires it (IM_CASSANDRA_USERNAME / _PASSWORD). */
  credentials?: { username: string; password: string };
  /** TLS to the nodes (IM_CASSANDRA_TLS*, common/cassandra-tls.ts); absent: plaintext. */
  tls?: CassandraTlsConfig;
  /** Shard lease of a logic process (docs/sequencer.md), ms: how long its shards wait after a kill -9. */
  leaseMs: number;
  /** How long logged rows wait to be written to their tables (docs/sequencer.md, "Owner log"), ms. */
  writeBehindMs: number;
}

export type StoreConfig = SqliteStoreConfig | CassandraStoreConfig;

export const BUS_KINDS = ['nats', 'inprocess'] as const;
export type BusKind = (typeof BUS_KINDS)[number];

export type BusConfig = { kind: 'nats'; servers: string[]; auth?: NatsAuthConfig } | { kind: 'inprocess' };

export interface BackendDefaults {
  store?: StoreKind;
  bus?: BusKind;
  /**
   * An in-process bus only reaches subscribers in the same process, so a process running one
   * service alone must refuse it: its pushes would silently go nowhere. Default false.
   */
  allowInProcessBus?: boolean;
}

/** Same shape as a CQL unquoted identifier, which is what the store will accept. */
const KEYSPACE_RE = /^[a-z][a-z0-9_]{0,47}$/;
const DC_RE = /^[\w.-]+$/;
const HOST_RE = /^[A-Za-z0-9.-]+$/;

/** IM_STORE (--store) and the chosen store's settings. */
export function loadStoreConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2),
  defaults: BackendDefaults = {}): StoreConfig {
  const s = new Settings(env, parseFlags(argv));
  const kind = s.oneOf('IM_STORE', STORE_KINDS, defaults.store ?? 'sqlite', 'store');
  if (kind === 'sqlite') return { kind, dataDir: path.resolve(s.str('IM_DATA_DIR', './data', 'data-dir')) };

  const contactPoints = s.list('IM_CASSANDRA_CONTACT_POINTS', ['127.0.0.1:9042'], 'cassandra-contact-points');
  if (contactPoints.length === 0) throw new ConfigError('IM_CASSANDRA_CONTACT_POINTS', 'at least one host or host:port is required');
  for (const c of contactPoints) {
    if (!HOST_RE.test(c) && !parseHostPort(c)) {
      throw new ConfigError('IM_CASSANDRA_CONTACT_POINTS', `expected host or host:port, got "${c}"`);
    }
  }
  const localDataCenter = s.str('IM_CASSANDRA_DC', 'datacenter1', 'cassandra-dc');
  if (!DC_RE.test(localDataCenter)) throw new ConfigError('IM_CASSANDRA_DC', `bad data center name "${localDataCenter}"`);
  const keyspace = s.str('IM_CASSANDRA_KEYSPACE', 'im', 'cassandra-keyspace');
  if (!KEYSPACE_RE.test(keyspace)) throw new ConfigError('IM_CASSANDRA_KEYSPACE', `must match ${KEYSPACE_RE}, got "${keyspace}"`);
  const consistency = s.oneOf('IM_CASSANDRA_CONSISTENCY', CASSANDRA_CONSISTENCIES, 'LOCAL_QUORUM', 'cassandra-consistency');
  const replication = s.int('IM_CASSANDRA_REPLICATION', 1, { min: 1, max: 100, flag: 'cassandra-replication' });
  const leaseMs = s.int('IM_CASSANDRA_LEASE_MS', 10_000, { min: 500, max: 600_000, flag: 'cassandra-lease-ms' });
  const writeBehindMs = s.int('IM_CASSANDRA_WRITE_BEHIND_MS', 10_000, { min: 1, max: 60_000, flag: 'cassandra-write-behind-ms' });
  const username = s.raw('IM_CASSANDRA_USERNAME', 'cassandra-username');
  const password = s.raw('IM_CASSANDRA_PASSWORD');
  if ((username === undefined) !== (password === undefined)) {
    throw new ConfigError(username === undefined ? 'IM_CASSANDRA_USERNAME' : 'IM_CASSANDRA_PASSWORD',
      'IM_CASSANDRA_USERNAME and IM_CASSANDRA_PASSWORD go together');
  }
  const credentials = username !== undefined ? { username, password: password! } : undefined;
  const tls = loadCassandraTls(s);
  return {
    kind, contactPoints, localDataCenter, keyspace, consistency, replication, leaseMs, writeBehindMs,
    ...(credentials && { credentials }), ...(tls && { tls }),
  };
}

/**
 * IM_BUS (--bus) and, for nats, IM_NATS_URL (--nats-url; comma-separated for a cluster) and the
 * credential and TLS settings (IM_NATS_USER, IM_NATS_PASSWORD, IM_NATS_NKEY_SEED_FILE, IM_NATS_TLS_CA).
 */
export function loadBusConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2),
  defaults: BackendDefaults = {}): BusConfig {
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
  return HOST_RE.test(hostPart) || parseHostPort(hostPart) !== undefined;
}

/** IM_LOG_LEVEL (--log-level): debug, info, warn, error or silent. */
export function loadLogLevel(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): Level {
  const s = new Settings(env, parseFlags(argv));
  return s.logLevel();
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
export function describeBackends(store: StoreConfig | undefined, bus?: BusConfig): Record<string, string> {
  const out: Record<string, string> = {};
  if (bus) out.bus = bus.kind === 'nats' ? `nats ${bus.servers.map(stripCredentials).join(',')}` : 'inprocess';
  if (store) {
    out.store = store.kind === 'sqlite' ? `sqlite ${store.dataDir}`
      : `cassandra ${store.contactPoints.join(',')}/${store.keyspace} ${store.consistency}${store.tls ? ' tls' : ''}`;
  }
  return out;
}

function stripCredentials(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//');
}
