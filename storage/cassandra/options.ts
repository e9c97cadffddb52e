/**
 * Options of the Cassandra store: the public options object, its defaults (applied once, here)
 * and validation that names the bad field.
 */
import type { ConnectionOptions } from 'node:tls';
import { types } from 'cassandra-driver';
import type { CassandraTlsConfig } from './tls';
import { ConfigError } from '../../common/config';
import type { Bus } from '../../bus/bus';
import { silentLogger, type Logger } from '../../common/log';
import { DEFAULT_BUCKET_SIZE, DEFAULT_SHARD_COUNT, validateKeyspace } from './schema';
import { DEFAULT_MAX_CACHED_KEYS, DEFAULT_MAX_KEY_HEADS } from './heads';

export type ConsistencyName = 'ONE' | 'LOCAL_QUORUM' | 'QUORUM';

export interface CassandraStoreOptions {
  /** "host" or "host:port" of one or more nodes. */
  contactPoints: string[];
  /** Data center the driver routes to (token-aware, within it). Default 'datacenter1'. */
  localDataCenter?: string;
  /** Default 'im'. Created, with all tables, when missing. */
  keyspace?: string;
  /** Reads and writes (and the commit of LWTs). Default LOCAL_QUORUM; LWTs use the matching serial level. */
  consistency?: ConsistencyName;
  /** Replication factor in localDataCenter when the keyspace is created. Default 1. */
  replication?: number;
  /** Password authentication (PlainTextAuthProvider); none by default. */
  credentials?: { username: string; password: string };
  /** TLS to the nodes, PEM contents; none (plaintext) by default. The chain is always verified. */
  tls?: CassandraTlsConfig;
  logger?: Logger;
  /**
   * How stores of one keyspace reach each other: a write for a key whose shard another process
   * owns is forwarded to it (docs/sequencer.md). NATS in a deployment. Without one, a private
   * in-process bus: right only when this is the one process writing the keyspace.
   */
  bus?: Bus;

  /** Inbox / history seqs per partition; only used when the keyspace is created. Default 10000. */
  inboxBucketSize?: number;
  historyBucketSize?: number;
  /** Statements this store has in flight at most; more wait in order. Default 256. */
  maxInFlight?: number;
  /** Appends accepted but not yet stored; one more fails with OverloadedError. Default 20000. */
  maxPendingAppends?: number;
  /**
   * When even the quickest send that finished in the last interval (half of this, at least 100 ms)
   * took longer than this, new sends fail with OverloadedError at once until one is quicker again
   * (admission.ts). 0: never. Default 2000.
   */
  shedAfterMs?: number;
  /** Entries of one timeline written in one round at most. Default 100. */
  maxBatchEntries?: number;
  /** Content bytes of one timeline round at most (one entry always fits). Default 256 KiB. */
  maxBatchBytes?: number;
  /** Rows of one unlogged batch (one replica, one tick) at most. Default 200. */
  maxWriteBatchRows?: number;
  /** Bytes of one unlogged batch at most; keep under the cluster's batch_size_fail_threshold. Default 48 KiB. */
  maxWriteBatchBytes?: number;
  /** Tries of a contended group LWT before UnavailableError. Default 50. */
  maxCasAttempts?: number;
  /** Timeline keys (recent msgIds, queue) and senders (clientMsgIds) the owner keeps in full, per kind. Default 100000 (IM_CASSANDRA_MAX_KEY_STATES). */
  maxCachedHeads?: number;
  /**
   * Keys (inboxes, conversations and senders, each counted) the owner keeps a compact head of
   * once they left the cache above, so touching one again reads nothing (docs/sequencer.md,
   * "Keys out of memory"). ~250 bytes of heap each. 0: none. Default 500000.
   */
  maxKeyHeads?: number;
  /** Extra TTL on dedup rows beyond the window, for clock skew. Default 300. */
  dedupTtlSlackSeconds?: number;
  /** Shard lease of this process (docs/sequencer.md): a retry after a kill -9 waits at most this plus clockSkewMs. Default 10000. */
  leaseMs?: number;
  /** Wall-clock skew tolerated between processes; a takeover waits this beyond a lease's end. Default 500. */
  clockSkewMs?: number;
  /** Seqs per persisted bound advance of a shard (one LWT per step). Default 1000. */
  seqStep?: number;
  /** Sequencer shards, used only when the keyspace is created. Default 1024. */
  shardCount?: number;
  /** How long a call forwarded to another store waits for its answer. Default leaseMs / 2. */
  peerTimeoutMs?: number;
  /** Shards handed to their preferred owner per balance round (every leaseMs / 3); 0: none. Default 64. */
  maxShardMoves?: number;
  /**
   * How long logged rows wait before they are written to their tables, gathered per partition
   * (docs/sequencer.md, "Owner log"). Longer: fewer partition writes; the rows are durable from
   * the log either way. Default 10000.
   */
  writeBehindMs?: number;
  /** Bytes of rows logged and not yet written to their tables at most; beyond it appends fail OVERLOADED. Default 256 MiB. */
  maxUnflushedBytes?: number;
  /** Items one sync/history page returns at most. Default 1000. */
  maxPageItems?: number;
  /** Conversations unread() accepts, and returns at most without convIds. Default 1000. */
  maxUnreadConvs?: number;
  /** user_convs rows unread() without convIds looks at. Default 10000. */
  maxUnreadScanConvs?: number;
  /** An unread count stops here (a client shows "N+"). Default 10000. */
  maxUnreadCount?: number;
  connectTimeoutMs?: number;
  /** Client-side timeout of one request. Default 12000 (above the server's own write/CAS timeouts). */
  requestTimeoutMs?: number;
}

export type ResolvedCassandraOptions = Required<Omit<CassandraStoreOptions, 'logger' | 'credentials' | 'tls' | 'bus'>>
  & Pick<CassandraStoreOptions, 'credentials' | 'tls' | 'bus'> & { logger: Logger; journalSinceMs?: number; inboxLayout?: 7 | 9 };

const NUMERIC_DEFAULTS = {
  replication: 1,
  inboxBucketSize: DEFAULT_BUCKET_SIZE,
  historyBucketSize: DEFAULT_BUCKET_SIZE,
  maxInFlight: 256,
  maxPendingAppends: 20_000,
  shedAfterMs: 2000,
  maxBatchEntries: 100,
  maxBatchBytes: 256 * 1024,
  maxWriteBatchRows: 200,
  maxWriteBatchBytes: 48 * 1024,
  maxCasAttempts: 50,
  maxCachedHeads: DEFAULT_MAX_CACHED_KEYS,
  maxKeyHeads: DEFAULT_MAX_KEY_HEADS,
  dedupTtlSlackSeconds: 300,
  leaseMs: 10_000,
  clockSkewMs: 500,
  seqStep: 1000,
  shardCount: DEFAULT_SHARD_COUNT,
  peerTimeoutMs: 0,
  maxShardMoves: 64,
  writeBehindMs: 10_000,
  maxUnflushedBytes: 256 * 1024 * 1024,
  maxPageItems: 1000,
  maxUnreadConvs: 1000,
  maxUnreadScanConvs: 10_000,
  maxUnreadCount: 10_000,
  connectTimeoutMs: 5000,
  requestTimeoutMs: 12_000,
};

const MINIMUM: Partial<Record<keyof typeof NUMERIC_DEFAULTS, number>> = {
  inboxBucketSize: 2, historyBucketSize: 2, leaseMs: 500, clockSkewMs: 0, peerTimeoutMs: 0, maxShardMoves: 0, maxKeyHeads: 0, shedAfterMs: 0,
};

export function resolveCassandraOptions(options: CassandraStoreOptions): ResolvedCassandraOptions {
  if (!Array.isArray(options.contactPoints) || options.contactPoints.length === 0
    || options.contactPoints.some((c) => typeof c !== 'string' || c === '')) {
    throw new ConfigError('contactPoints', 'expected one or more "host" or "host:port" strings');
  }
  const consistency = options.consistency ?? 'LOCAL_QUORUM';
  if (!['ONE', 'LOCAL_QUORUM', 'QUORUM'].includes(consistency)) {
    throw new ConfigError('consistency', `expected ONE, LOCAL_QUORUM or QUORUM, got ${String(consistency)}`);
  }
  const out = {
    contactPoints: options.contactPoints,
    localDataCenter: options.localDataCenter ?? 'datacenter1',
    keyspace: validateKeyspace(options.keyspace ?? 'im'),
    consistency,
    credentials: options.credentials,
    tls: options.tls,
    bus: options.bus,
    logger: options.logger ?? silentLogger,
  } as ResolvedCassandraOptions;
  for (const [key, def] of Object.entries(NUMERIC_DEFAULTS) as [keyof typeof NUMERIC_DEFAULTS, number][]) {
    const v = options[key] ?? def;
    const min = MINIMUM[key] ?? 1;
    if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(key, `must be an integer >= ${min}, got ${v}`);
    out[key] = v;
  }
  if (out.peerTimeoutMs === 0) out.peerTimeoutMs = Math.floor(out.leaseMs / 2);
  return out;
}

/**
 * The driver's sslOptions (handed to tls.connect). The driver's own default is
 * rejectUnauthorized: false, so it is set here explicitly: an unverified chain always fails.
 */
export function driverSslOptions(tls: CassandraTlsConfig): ConnectionOptions {
  return {
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
    ...(tls.ca !== undefined && { ca: tls.ca }),
    ...(tls.cert !== undefined && { cert: tls.cert, key: tls.key }),
    ...(!tls.verifyHostname && { checkServerIdentity: () => undefined }),
  };
}

/** The driver's consistency for reads/writes and the serial level its LWTs use. */
export function consistencyLevels(name: ConsistencyName): { consistency: number; serial: number } {
  const c = types.consistencies;
  switch (name) {
    case 'ONE': return { consistency: c.one, serial: c.localSerial };
    case 'LOCAL_QUORUM': return { consistency: c.localQuorum, serial: c.localSerial };
    case 'QUORUM': return { consistency: c.quorum, serial: c.serial };
  }
}
