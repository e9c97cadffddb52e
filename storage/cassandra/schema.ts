/**
 * Versioned, idempotent schema migrations for the Cassandra store. `migrate` is safe to run from
 * several processes at once and on every start: each step is `CREATE ... IF NOT EXISTS` and the
 * record of an applied version is an LWT insert. A future `im migrate` command calls it directly.
 *
 * Bucket sizes are chosen when the keyspace is created and recorded in `store_settings`; they can
 * never change afterwards (every seq's partition is computed from them), so later opens read the
 * recorded values and ignore what they were asked for.
 */
import type { Client } from 'cassandra-driver';
import { ConfigError } from '../../common/config';

export interface MigrateOptions {
  /** Replication factor in `localDataCenter` (NetworkTopologyStrategy). Default 1. */
  replication?: number;
  /** Data center the replication factor applies to. Default 'datacenter1'. */
  localDataCenter?: string;
  /** Inbox seqs per (uid, bucket) partition, used only when the keyspace is new. Default 10000. */
  inboxBucketSize?: number;
  /** Conversation seqs per (conv_id, bucket) partition, used only when the keyspace is new. Default 10000. */
  historyBucketSize?: number;
  /** Sequencer shards, used only when the keyspace is new. Default 1024. */
  shardCount?: number;
}

export interface StoreSettings {
  inboxBucketSize: number;
  historyBucketSize: number;
  /**
   * When the journal table took over from dedup (ms; 0 for a keyspace created with it): a send
   * journaled before then is looked up in dedup too, for one dedup window.
   */
  journalSinceMs?: number;
  /** Sequencer shards (docs/sequencer.md); fixed when the keyspace is created. */
  shardCount: number;
  /**
   * The layout inbox rows are written in (rows.ts): 9, msg_id and one packed body, a group
   * message's rows referring to its history row; 7, the earlier one. 9 for a keyspace created
   * with version 9; an upgraded keyspace keeps 7 until the operator sets 9 (docs/storage.md),
   * once no earlier release runs.
   */
  inboxLayout: 7 | 9;
}

export const DEFAULT_BUCKET_SIZE = 10_000;
export const DEFAULT_SHARD_COUNT = 1024;

interface Migration {
  version: number;
  description: string;
  statements: (ks: string) => string[];
}

/** Append-only: a released migration never changes; a change is a new version. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'inbox, history, seq heads, dedup, groups, user conversations, unread index',
    statements: (ks) => [
      `CREATE TABLE IF NOT EXISTS ${ks}.store_settings (name text PRIMARY KEY, value bigint)`,
      // One user's timeline, cut into partitions of inboxBucketSize seqs. max_seq is the
      // partition's allocation cursor: a conditional update of it and the rows it allocates are
      // one single-partition Paxos round, so a seq is never visible without its message.
      `CREATE TABLE IF NOT EXISTS ${ks}.inbox (
         uid text, bucket int, seq bigint,
         msg_id text, conv_id text, conv_seq bigint, from_uid text, to_uid text, group_id text,
         client_msg_id text, content_type text, content blob, sent_at_ms bigint,
         max_seq bigint static,
         PRIMARY KEY ((uid, bucket), seq)
       ) WITH CLUSTERING ORDER BY (seq ASC)`,
      // One conversation's history, same scheme; read newest first, so stored descending.
      `CREATE TABLE IF NOT EXISTS ${ks}.history (
         conv_id text, bucket int, seq bigint,
         msg_id text, from_uid text, to_uid text, group_id text,
         client_msg_id text, content_type text, content blob, sent_at_ms bigint,
         max_seq bigint static,
         PRIMARY KEY ((conv_id, bucket), seq)
       ) WITH CLUSTERING ORDER BY (seq DESC)`,
      // Hint of the newest bucket per timeline, so a cold reader does not probe from bucket 0.
      // Written USING TIMESTAMP = bucket: concurrent writers converge on the largest.
      `CREATE TABLE IF NOT EXISTS ${ks}.seq_heads (kind text, id text, bucket int, PRIMARY KEY ((kind, id)))`,
      // (sender, clientMsgId) claims. Rows expire by TTL; expires_at_ms is the logical window.
      `CREATE TABLE IF NOT EXISTS ${ks}.dedup (
         from_uid text, client_msg_id text,
         msg_id text, expires_at_ms bigint, claimed_at_ms bigint,
         conv_id text, conv_seq bigint, sender_seq bigint,
         PRIMARY KEY ((from_uid, client_msg_id))
       ) WITH gc_grace_seconds = 10800`,
      // A group and its members in one partition (bounded by the member cap), so the cap check
      // (version/member_count) and the member rows change in one conditional batch.
      `CREATE TABLE IF NOT EXISTS ${ks}.groups (
         group_id text, uid text, join_order int,
         name text static, owner text static, created_at_ms bigint static,
         version int static, member_count int static, next_join int static,
         PRIMARY KEY ((group_id), uid)
       )`,
      // Per user and conversation: newest seq, newest incoming seq, read cursor. Each column is
      // written USING TIMESTAMP = its seq, so the largest value wins without a read.
      `CREATE TABLE IF NOT EXISTS ${ks}.user_convs (
         uid text, conv_id text, last_seq bigint, last_incoming_seq bigint, read_seq bigint,
         PRIMARY KEY ((uid), conv_id)
       )`,
      // Seqs of incoming (from != uid) messages per user and conversation, for unread counts.
      `CREATE TABLE IF NOT EXISTS ${ks}.conv_unread (
         uid text, conv_id text, bucket int, seq bigint,
         PRIMARY KEY ((uid, conv_id, bucket), seq)
       )`,
    ],
  },
  {
    version: 2,
    description: 'dedup remembers a digest of the accepted send, so a reused client_msg_id is refused',
    // Null in rows claimed before this version: those cannot be checked and keep their old meaning.
    statements: (ks) => [`ALTER TABLE ${ks}.dedup ADD IF NOT EXISTS digest blob`],
  },
  {
    version: 3,
    description: 'owned sequencers: process leases, shard owners with epochs and seq bounds, bucket sets',
    statements: (ks) => [
      // One row per running store (logic process), renewed with a plain write every lease/3 and
      // expiring by TTL; until_ms is what a taker waits out (plus the clock-skew margin).
      `CREATE TABLE IF NOT EXISTS ${ks}.logic_leases (process text PRIMARY KEY, until_ms bigint, started_ms bigint)`,
      // Who allocates seqs (and writes rows) for the inboxes, histories and dedup records of a
      // shard. Changed only by LWTs: taking (epoch + 1), advancing bound, releasing (owner = null).
      // Every seq of the shard handed out in epochs before the current one is <= start_bound.
      `CREATE TABLE IF NOT EXISTS ${ks}.shard_owners (
         shard int PRIMARY KEY, owner text, epoch bigint, start_bound bigint, bound bigint, fence_ts bigint)`,
      // Buckets a timeline has rows in: seqs jump across an ownership change, so buckets may be skipped.
      `ALTER TABLE ${ks}.seq_heads ADD IF NOT EXISTS buckets set<int>`,
    ],
  },
  {
    version: 4,
    description: 'owner log: one log row per round, tables written behind; send journal partitioned by sender',
    statements: (ks) => [
      // Every row an owner writes, made durable by one write per round in the process's own
      // partition (docs/sequencer.md, "Owner log"). Partitions behind log_marks are deleted by
      // their process; the TTL is the backstop for the log of a process that died. No grace for
      // tombstones: only positions after a process's mark are ever read, and those are never deleted.
      `CREATE TABLE IF NOT EXISTS ${ks}.store_log (process text, part int, pos bigint, body blob,
         PRIMARY KEY ((process, part), pos)) WITH default_time_to_live = 604800 AND gc_grace_seconds = 0`,
      // How far each process's log is in the tables: a takeover replays what comes after.
      `CREATE TABLE IF NOT EXISTS ${ks}.log_marks (process text PRIMARY KEY, flushed bigint) WITH default_time_to_live = 604800`,
      // The send journal, one partition per sender: a window's journal rows of one sender are one
      // partition write (the dedup table had one partition per send).
      `CREATE TABLE IF NOT EXISTS ${ks}.journal (
         from_uid text, client_msg_id text,
         msg_id text, expires_at_ms bigint, claimed_at_ms bigint, digest blob,
         conv_id text, conv_seq bigint, sender_seq bigint,
         PRIMARY KEY ((from_uid), client_msg_id)
       ) WITH gc_grace_seconds = 10800`,
    ],
  },
  {
    version: 5,
    description: 'owner log: each log says how many positions one of its partitions holds',
    // Null for logs started before this version: those used 1,000.
    statements: (ks) => [`ALTER TABLE ${ks}.log_marks ADD IF NOT EXISTS part_rows int`],
  },
  {
    version: 6,
    description: 'conv_unread rows carry every incoming seq of a write-behind window (unread-index.ts)',
    // Null in rows written before this version: each of those holds the one seq of its key.
    statements: (ks) => [`ALTER TABLE ${ks}.conv_unread ADD IF NOT EXISTS seqs blob`],
  },
  {
    version: 7,
    description: 'inbox and history rows carry the message in one packed body cell (rows.ts)',
    // Null in rows written before this version: those keep the separate columns.
    statements: (ks) => [`ALTER TABLE ${ks}.inbox ADD IF NOT EXISTS body blob`, `ALTER TABLE ${ks}.history ADD IF NOT EXISTS body blob`],
  },
  {
    version: 8,
    description: 'journal rows carry msg_id, expiry, time and digest in one packed body cell',
    // Null in rows written before this version: those keep the separate columns.
    statements: (ks) => [`ALTER TABLE ${ks}.journal ADD IF NOT EXISTS body blob`],
  },
  {
    version: 9,
    description: 'inbox rows as msg_id and one packed body; a group message\'s rows refer to its history row (store_settings inboxLayout; rows.ts)',
    // Nothing to change in the tables (the columns exist since version 7). The setting is recorded below.
    statements: () => [],
  },
  {
    version: 10,
    description: 'shard_heads: the heads an owner hands to the next owner of a shard it releases (handoff.ts)',
    statements: (ks) => [
      // One row per shard, overwritten at each clean release; used only by the take from the
      // release of the epoch it names. The TTL only bounds rows of shards nobody took again.
      `CREATE TABLE IF NOT EXISTS ${ks}.shard_heads (shard int PRIMARY KEY, epoch bigint, body blob)
         WITH default_time_to_live = 604800 AND gc_grace_seconds = 3600`,
    ],
  },
];

const KEYSPACE_RE = /^[a-z][a-z0-9_]{0,47}$/;

export function validateKeyspace(keyspace: string): string {
  if (typeof keyspace !== 'string' || !KEYSPACE_RE.test(keyspace)) {
    throw new ConfigError('keyspace', `must match ${KEYSPACE_RE}, got ${JSON.stringify(keyspace)}`);
  }
  return keyspace;
}

/** Creates the keyspace and applies every migration not yet recorded. Returns the versions applied now. */
export async function migrate(client: Client, keyspace: string, options: MigrateOptions = {}): Promise<number[]> {
  const ks = validateKeyspace(keyspace);
  const rf = options.replication ?? 1;
  const dc = options.localDataCenter ?? 'datacenter1';
  if (!Number.isSafeInteger(rf) || rf < 1) throw new ConfigError('replication', `must be an integer >= 1, got ${rf}`);
  if (!/^[\w.-]+$/.test(dc)) throw new ConfigError('localDataCenter', `bad data center name ${JSON.stringify(dc)}`);
  const sizes: Omit<StoreSettings, 'inboxLayout'> = {
    inboxBucketSize: options.inboxBucketSize ?? DEFAULT_BUCKET_SIZE,
    historyBucketSize: options.historyBucketSize ?? DEFAULT_BUCKET_SIZE,
    shardCount: options.shardCount ?? DEFAULT_SHARD_COUNT,
  };
  for (const [k, v] of Object.entries(sizes)) {
    const min = k === 'shardCount' ? 1 : 2;
    if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(k, `must be an integer >= ${min}, got ${v}`);
  }

  await client.execute(`CREATE KEYSPACE IF NOT EXISTS ${ks}
    WITH replication = {'class': 'NetworkTopologyStrategy', '${dc}': ${rf}}`);
  await client.execute(`CREATE TABLE IF NOT EXISTS ${ks}.schema_migrations (
    version int PRIMARY KEY, description text, applied_at timestamp)`);
  const done = new Set((await client.execute(`SELECT version FROM ${ks}.schema_migrations`)).rows.map((r) => r.version as number));
  // A keyspace nothing was recorded in yet is new: no process of an earlier release reads it.
  const fresh = done.size === 0;
  const applied: number[] = [];
  for (const m of MIGRATIONS) {
    if (done.has(m.version)) continue;
    for (const stmt of m.statements(ks)) await client.execute(stmt);
    const rs = await client.execute(
      `INSERT INTO ${ks}.schema_migrations (version, description, applied_at) VALUES (?, ?, ?) IF NOT EXISTS`,
      [m.version, m.description, new Date()], { prepare: true });
    if (rs.first()?.['[applied]'] === true) applied.push(m.version);
  }
  // A keyspace created now has nothing in dedup; one upgraded now looks there for a window.
  const journalSinceMs = applied.includes(4) && !applied.includes(1) ? Date.now() : 0;
  const inboxLayout = fresh ? 9 : 7;
  for (const [name, value] of Object.entries({ ...sizes, journalSinceMs, inboxLayout })) {
    // First writer wins; every later open reads what it chose.
    await client.execute(`INSERT INTO ${ks}.store_settings (name, value) VALUES (?, ?) IF NOT EXISTS`,
      [name, value], { prepare: true });
  }
  return applied;
}

/** The bucket sizes recorded when the keyspace was created. */
export async function readSettings(client: Client, keyspace: string): Promise<StoreSettings> {
  const rs = await client.execute(`SELECT name, value FROM ${validateKeyspace(keyspace)}.store_settings`);
  const byName = new Map(rs.rows.map((r) => [r.name as string, Number(r.value)]));
  const out = {
    inboxBucketSize: byName.get('inboxBucketSize'),
    historyBucketSize: byName.get('historyBucketSize'),
    // Keyspaces created before version 3 get the default on their first open (migrate records it).
    shardCount: byName.get('shardCount'),
    journalSinceMs: byName.get('journalSinceMs') ?? 0,
    inboxLayout: byName.get('inboxLayout') === 9 ? 9 : 7,
  };
  if (!out.inboxBucketSize || !out.historyBucketSize || !out.shardCount) {
    throw new ConfigError('keyspace', `${keyspace}.store_settings has no bucket sizes (run migrate first)`);
  }
  return out as StoreSettings;
}
