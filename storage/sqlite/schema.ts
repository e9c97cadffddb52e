/**
 * The embedded store's schema as an ordered list of migrations. `migrate` applies the ones a
 * database has not seen yet, each in its own IMMEDIATE transaction together with its
 * schema_version row, so opening a database twice (or from two processes at once) is harmless
 * and a crash mid-upgrade leaves the database at the last complete version.
 *
 * Released migrations never change; a schema change is a new entry at the end.
 */
import type Database from 'better-sqlite3';
import { InternalError } from '../../common/errors';
import { MINIMAL_WRITES_SQL } from './schema-v4';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'messages, per-conversation and per-user sequences, inbox timelines, dedup',
    sql: `
      CREATE TABLE messages (
        msg_id        TEXT PRIMARY KEY,
        conv_id       TEXT NOT NULL,
        conv_seq      INTEGER NOT NULL,
        from_uid      TEXT NOT NULL,
        to_uid        TEXT NOT NULL,
        group_id      TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        content_type  TEXT NOT NULL,
        content       BLOB NOT NULL,
        sent_at_ms    INTEGER NOT NULL,
        UNIQUE (conv_id, conv_seq)
      );
      CREATE TABLE convs (
        conv_id      TEXT PRIMARY KEY,
        max_conv_seq INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE users (
        uid     TEXT PRIMARY KEY,
        max_seq INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE inbox (
        uid      TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        msg_id   TEXT NOT NULL,
        conv_id  TEXT NOT NULL,
        from_uid TEXT NOT NULL,
        PRIMARY KEY (uid, seq)
      ) WITHOUT ROWID;
      -- Unread counts: a range scan of one user's entries in one conversation.
      CREATE INDEX inbox_by_conv ON inbox (uid, conv_id, seq);
      -- One row per (user, conversation) the user has inbox entries in. last_incoming_seq is the
      -- newest entry from someone else, so "conversations with unread" is last_incoming_seq >
      -- read cursor without scanning the inbox.
      CREATE TABLE user_convs (
        uid               TEXT NOT NULL,
        conv_id           TEXT NOT NULL,
        last_seq          INTEGER NOT NULL,
        last_incoming_seq INTEGER NOT NULL,
        PRIMARY KEY (uid, conv_id)
      ) WITHOUT ROWID;
      CREATE INDEX user_convs_by_incoming ON user_convs (uid, last_incoming_seq);
      CREATE TABLE dedup (
        from_uid      TEXT NOT NULL,
        client_msg_id TEXT NOT NULL,
        msg_id        TEXT NOT NULL,
        sender_seq    INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        PRIMARY KEY (from_uid, client_msg_id)
      );
      -- Bounded purge of expired records walks this index.
      CREATE INDEX dedup_by_expiry ON dedup (expires_at_ms);
    `,
  },
  {
    version: 2,
    description: 'groups, members in join order, read cursors',
    sql: `
      CREATE TABLE groups (
        group_id      TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        owner         TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        next_join     INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE group_members (
        group_id   TEXT NOT NULL,
        uid        TEXT NOT NULL,
        join_order INTEGER NOT NULL,
        PRIMARY KEY (group_id, uid)
      ) WITHOUT ROWID;
      CREATE INDEX group_members_by_order ON group_members (group_id, join_order);
      CREATE TABLE read_cursors (
        uid      TEXT NOT NULL,
        conv_id  TEXT NOT NULL,
        read_seq INTEGER NOT NULL,
        PRIMARY KEY (uid, conv_id)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 3,
    description: 'dedup remembers a digest of the accepted send, so a reused client_msg_id is refused',
    // Nullable: records written before this version have none and keep their old meaning.
    sql: 'ALTER TABLE dedup ADD COLUMN digest BLOB;',
  },
  {
    version: 4,
    description: 'minimal writes: seqs kept in memory, dedup as a unique key of messages, summaries written behind',
    sql: MINIMAL_WRITES_SQL,
  },
  {
    version: 5,
    description: 'messages acknowledged from an append-only message log, indexed into the tables behind',
    // How far the message log (storage/sqlite/message-log.ts) is in the tables: records after it
    // are replayed at open. A version-4 database has no log: everything is indexed.
    sql: `
      CREATE TABLE log_state (
        id          INTEGER PRIMARY KEY CHECK (id = 0),
        indexed_lsn INTEGER NOT NULL
      );
      INSERT INTO log_state (id, indexed_lsn) VALUES (0, 0);
    `,
  },
];

/** The schema version a database is at (0 when it has none yet). */
export function schemaVersion(db: Database.Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
  return row.v ?? 0;
}

/**
 * Brings `db` up to the last of `migrations` and returns the resulting version. Refuses a
 * database written by a newer release (its schema is unknown here) instead of corrupting it.
 */
export function migrate(
  db: Database.Database,
  migrations: readonly Migration[] = MIGRATIONS,
  nowMs: () => number = Date.now,
): number {
  checkOrdered(migrations);
  db.exec(`CREATE TABLE IF NOT EXISTS schema_version (
    version       INTEGER PRIMARY KEY,
    description   TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL
  )`);
  const latest = migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
  const insert = db.prepare('INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?, ?, ?)');
  for (const m of migrations) {
    // IMMEDIATE takes the write lock before reading the version, so two processes opening the
    // same file cannot both apply a migration.
    db.transaction(() => {
      if (schemaVersion(db) >= m.version) return;
      db.exec(m.sql);
      insert.run(m.version, m.description, nowMs());
    }).immediate();
  }
  const version = schemaVersion(db);
  if (version > latest) {
    throw new InternalError(`database schema version ${version} is newer than this release knows (${latest})`);
  }
  return version;
}

function checkOrdered(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration #${i} has version ${m.version}, expected ${i + 1}`);
  });
}
