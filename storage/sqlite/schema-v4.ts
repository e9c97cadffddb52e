/**
 * Schema version 4: the layout the store writes today, and the copy of a version-3 database into
 * it. A 1:1 message writes 4 B-tree entries (version 3 wrote 16; since version 5 they are written
 * behind the message log, storage/sqlite/message-log.ts, rather than before the ack): its
 * `messages` row, that row's dedup key, and two `inbox` rows. The conversation summaries
 * (`user_convs`, `unread_marks`, `summarized`) are written behind in batches and rebuilt from the
 * inbox after a crash (storage/sqlite/summaries.ts). Nothing stores a seq counter: the newest
 * seq of a user or a conversation is the largest key of its rows, read once into memory.
 *
 * Every index, and the query that needs it:
 * - messages PRIMARY KEY (conv_id, conv_seq): history(); sync's join from an inbox row; the
 *   newest conv seq on first use (MAX(conv_seq)).
 * - messages_dedup UNIQUE (from_uid, client_msg_id, dedup_gen): the duplicate check of every
 *   append. dedup_gen numbers the messages that reused one clientMsgId after its window, so the
 *   key stays unique and the newest is the one that answers.
 * - inbox PRIMARY KEY (uid, seq): sync(); the newest user seq on first use; summary catch-up.
 * - user_convs PRIMARY KEY (uid, conv_id): unread() for given convs and, read whole per user,
 *   unread() without convs (the version-3 index by last_incoming_seq is gone: the per-user scan
 *   is bounded by the user's conversation count, and the index cost a write per message).
 * - unread_marks PRIMARY KEY (uid, conv_id, seq): unread counts (incoming messages only).
 * - summarized PRIMARY KEY (uid): how far each inbox has been summarized.
 *
 * messages is WITHOUT ROWID so the history key is the table itself rather than a second index;
 * rows larger than a few KB then overflow as they would in a rowid table.
 */
export const MINIMAL_WRITES_SQL = `
  CREATE TABLE messages_v4 (
    conv_id        TEXT NOT NULL,
    conv_seq       INTEGER NOT NULL,
    msg_id         TEXT NOT NULL,
    from_uid       TEXT NOT NULL,
    to_uid         TEXT NOT NULL,
    group_id       TEXT NOT NULL,
    client_msg_id  TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    content        BLOB NOT NULL,
    sent_at_ms     INTEGER NOT NULL,
    sender_seq     INTEGER NOT NULL,
    dedup_until_ms INTEGER NOT NULL,
    dedup_gen      INTEGER NOT NULL,
    PRIMARY KEY (conv_id, conv_seq)
  ) WITHOUT ROWID;
  -- The sender's seq and the dedup expiry come from the version-3 inbox and dedup rows; a message
  -- whose dedup record was gone is past its window (0). dedup_gen follows insertion order, so the
  -- newest reuse of an id is the one the dedup check finds.
  INSERT INTO messages_v4
    SELECT m.conv_id, m.conv_seq, m.msg_id, m.from_uid, m.to_uid, m.group_id, m.client_msg_id,
      m.content_type, m.content, m.sent_at_ms,
      COALESCE((SELECT i.seq FROM inbox i WHERE i.uid = m.from_uid AND i.conv_id = m.conv_id AND i.msg_id = m.msg_id), 0),
      COALESCE((SELECT d.expires_at_ms FROM dedup d
        WHERE d.from_uid = m.from_uid AND d.client_msg_id = m.client_msg_id AND d.msg_id = m.msg_id), 0),
      ROW_NUMBER() OVER (PARTITION BY m.from_uid, m.client_msg_id ORDER BY m.rowid) - 1
    FROM messages m;
  CREATE TABLE inbox_v4 (
    uid      TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    conv_id  TEXT NOT NULL,
    conv_seq INTEGER NOT NULL,
    from_uid TEXT NOT NULL,
    PRIMARY KEY (uid, seq)
  ) WITHOUT ROWID;
  INSERT INTO inbox_v4 SELECT i.uid, i.seq, i.conv_id, m.conv_seq, i.from_uid FROM inbox i JOIN messages m ON m.msg_id = i.msg_id;
  CREATE TABLE unread_marks (
    uid     TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (uid, conv_id, seq)
  ) WITHOUT ROWID;
  INSERT INTO unread_marks SELECT uid, conv_id, seq FROM inbox WHERE from_uid <> uid;
  -- Version 3 wrote its summaries with each message, so every inbox is summarized to its end.
  CREATE TABLE summarized (
    uid TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
  ) WITHOUT ROWID;
  INSERT INTO summarized SELECT uid, max_seq FROM users;
  DROP INDEX user_convs_by_incoming;
  DROP TABLE dedup;
  DROP TABLE inbox;
  DROP TABLE messages;
  DROP TABLE users;
  DROP TABLE convs;
  ALTER TABLE messages_v4 RENAME TO messages;
  ALTER TABLE inbox_v4 RENAME TO inbox;
  CREATE UNIQUE INDEX messages_dedup ON messages (from_uid, client_msg_id, dedup_gen);
`;
