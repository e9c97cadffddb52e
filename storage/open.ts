/**
 * Opens the Store a StoreConfig (config.ts) describes. Lives in storage/ so that common/
 * stays below the storage layer.
 */
import * as path from 'node:path';
import type { CassandraConsistency, StoreConfig } from './config';
import { ConfigError } from '../common/config';
import type { Bus } from '../bus/bus';
import { silentLogger, type Logger } from '../common/log';
import { CassandraStore } from './cassandra/store';
import type { ConsistencyName } from './cassandra/options';
import { SqliteStore } from './sqlite/store';
import type { Store } from './store';

export const SQLITE_DB_FILE = 'im.db';

/** The store's option names, mapped back to the settings an operator sets. */
const CASSANDRA_FIELDS: Record<string, string> = {
  contactPoints: 'IM_CASSANDRA_CONTACT_POINTS',
  localDataCenter: 'IM_CASSANDRA_DC',
  keyspace: 'IM_CASSANDRA_KEYSPACE',
  consistency: 'IM_CASSANDRA_CONSISTENCY',
  replication: 'IM_CASSANDRA_REPLICATION',
  leaseMs: 'IM_CASSANDRA_LEASE_MS',
  writeBehindMs: 'IM_CASSANDRA_WRITE_BEHIND_MS',
  maxCachedHeads: 'IM_CASSANDRA_MAX_KEY_STATES',
  maxKeyHeads: 'IM_CASSANDRA_MAX_KEY_HEADS',
  shedAfterMs: 'IM_CASSANDRA_SHED_AFTER_MS',
};

// Compile-time check: every level the config accepts is one the store accepts.
const consistencyFits = (c: CassandraConsistency): ConsistencyName => c;

export interface OpenStoreOptions {
  logger?: Logger;
  /** How Cassandra stores of one keyspace reach each other (the logic processes' NATS bus). */
  bus?: Bus;
}

/**
 * SQLite: opens (creating) dataDir/im.db. Cassandra: connects and creates or upgrades the schema.
 * A ConfigError from the store is re-raised naming the operator's setting (IM_CASSANDRA_...).
 */
export async function openStore(config: StoreConfig, options: OpenStoreOptions = {}): Promise<Store> {
  const logger = options.logger ?? silentLogger;
  if (config.kind === 'sqlite') {
    const store = SqliteStore.open({ path: path.join(config.dataDir, SQLITE_DB_FILE) });
    const { replay } = store.appendStats();
    // The last stop was not clean (kill -9, a crash, power): what it left unindexed is back.
    if (replay.replayed > 0 || replay.tornSegments > 0) {
      logger.warn('sqlite: replayed the message log', { messages: replay.replayed, tornSegments: replay.tornSegments });
    }
    return store;
  }
  try {
    return await CassandraStore.open({
      contactPoints: config.contactPoints,
      localDataCenter: config.localDataCenter,
      keyspace: config.keyspace,
      consistency: consistencyFits(config.consistency),
      replication: config.replication,
      credentials: config.credentials,
      tls: config.tls,
      leaseMs: config.leaseMs,
      writeBehindMs: config.writeBehindMs,
      maxCachedHeads: config.maxKeyStates,
      maxKeyHeads: config.maxKeyHeads,
      shedAfterMs: config.shedAfterMs,
      bus: options.bus,
      logger,
    });
  } catch (err) {
    if (err instanceof ConfigError && CASSANDRA_FIELDS[err.field]) {
      throw new ConfigError(CASSANDRA_FIELDS[err.field], err.message.replace(/^config \S+: /, ''));
    }
    throw err;
  }
}
