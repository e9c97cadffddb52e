/**
 * Which store a process uses, as a pure function of env and flags: IM_STORE sqlite | cassandra
 * plus the chosen store's settings. The store factory is open.ts.
 */
import * as path from 'node:path';
import { loadCassandraTls, type CassandraTlsConfig } from './cassandra/tls';
import { DEFAULT_MAX_CACHED_KEYS, DEFAULT_MAX_KEY_HEADS } from './cassandra/heads';
import { ConfigError, type Env, HOST_NAME_RE, parseFlags, parseHostPort, Settings } from '../common/config';

export const STORE_KINDS = ['sqlite', 'cassandra'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/**
 * Levels the Cassandra store accepts. LOCAL_ONE and ALL are left out on purpose: the store pairs
 * each level with the serial level of its lightweight transactions and only defines that pairing
 * for these three (storage/cassandra/options.ts), so accepting more here would only fail later.
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
  /** TLS to the nodes (IM_CASSANDRA_TLS*, storage/cassandra/tls.ts); absent: plaintext. */
  tls?: CassandraTlsConfig;
  /** Shard lease of a logic process (docs/sequencer.md), ms: how long its shards wait after a kill -9. */
  leaseMs: number;
  /** How long logged rows wait to be written to their tables (docs/sequencer.md, "Owner log"), ms. */
  writeBehindMs: number;
  /** Keys of each kind (inboxes, conversations, senders) a logic process keeps in full (docs/sequencer.md, "Keys out of memory"). */
  maxKeyStates: number;
  /** Keys out of memory whose head a logic process keeps (docs/sequencer.md, "Keys out of memory"). */
  maxKeyHeads: number;
  /** Sends are refused OVERLOADED while every send waits longer than this, ms; 0: never (docs/storage.md, Options). */
  shedAfterMs: number;
}

export type StoreConfig = SqliteStoreConfig | CassandraStoreConfig;

/** Same shape as a CQL unquoted identifier, which is what the store will accept. */
const KEYSPACE_RE = /^[a-z][a-z0-9_]{0,47}$/;
const DC_RE = /^[\w.-]+$/;

/** IM_STORE (--store) and the chosen store's settings. */
export function loadStoreConfig(env: Env = process.env, argv: readonly string[] = process.argv.slice(2),
  defaults: { store?: StoreKind } = {}): StoreConfig {
  const s = new Settings(env, parseFlags(argv));
  const kind = s.oneOf('IM_STORE', STORE_KINDS, defaults.store ?? 'sqlite', 'store');
  if (kind === 'sqlite') return { kind, dataDir: path.resolve(s.str('IM_DATA_DIR', './data', 'data-dir')) };

  const contactPoints = s.list('IM_CASSANDRA_CONTACT_POINTS', ['127.0.0.1:9042'], 'cassandra-contact-points');
  if (contactPoints.length === 0) throw new ConfigError('IM_CASSANDRA_CONTACT_POINTS', 'at least one host or host:port is required');
  for (const c of contactPoints) {
    if (!HOST_NAME_RE.test(c) && !parseHostPort(c)) {
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
  const maxKeyStates = s.int('IM_CASSANDRA_MAX_KEY_STATES', DEFAULT_MAX_CACHED_KEYS, { min: 1, max: 10_000_000, flag: 'cassandra-max-key-states' });
  const maxKeyHeads = s.int('IM_CASSANDRA_MAX_KEY_HEADS', DEFAULT_MAX_KEY_HEADS, { min: 0, max: 100_000_000, flag: 'cassandra-max-key-heads' });
  const shedAfterMs = s.int('IM_CASSANDRA_SHED_AFTER_MS', 2000, { min: 0, max: 600_000, flag: 'cassandra-shed-after-ms' });
  const username = s.raw('IM_CASSANDRA_USERNAME', 'cassandra-username');
  const password = s.raw('IM_CASSANDRA_PASSWORD');
  if ((username === undefined) !== (password === undefined)) {
    throw new ConfigError(username === undefined ? 'IM_CASSANDRA_USERNAME' : 'IM_CASSANDRA_PASSWORD',
      'IM_CASSANDRA_USERNAME and IM_CASSANDRA_PASSWORD go together');
  }
  const credentials = username !== undefined ? { username, password: password! } : undefined;
  const tls = loadCassandraTls(s);
  return {
    kind, contactPoints, localDataCenter, keyspace, consistency, replication, leaseMs, writeBehindMs, maxKeyStates, maxKeyHeads, shedAfterMs,
    ...(credentials && { credentials }), ...(tls && { tls }),
  };
}

/** A one-line description for logs and the listening line. */
export function describeStore(store: StoreConfig): { store: string } {
  return {
    store: store.kind === 'sqlite' ? `sqlite ${store.dataDir}`
      : `cassandra ${store.contactPoints.join(',')}/${store.keyspace} ${store.consistency}${store.tls ? ' tls' : ''}`,
  };
}
