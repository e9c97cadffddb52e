/**
 * Every SQL statement the SQLite store runs, prepared once per connection, plus the row shapes
 * and their mapping to the Store types. Kept apart from the store so the store reads as logic.
 */
import type Database from 'better-sqlite3';
import type { InboxEntry, StoredMessage } from '../store';

export interface MessageRow {
  msg_id: string;
  conv_id: string;
  conv_seq: number;
  from_uid: string;
  to_uid: string;
  group_id: string;
  client_msg_id: string;
  content_type: string;
  content: Buffer;
  sent_at_ms: number;
}

export interface InboxRow extends MessageRow {
  seq: number;
}

/** The newest message a (sender, clientMsgId) was accepted as, with what its dedup check needs. */
export interface DedupRow extends MessageRow {
  sender_seq: number;
  dedup_until_ms: number;
  dedup_gen: number;
}

export interface GroupRow {
  group_id: string;
  name: string;
  owner: string;
  created_at_ms: number;
}

export interface UnreadCandidateRow {
  conv_id: string;
  last_seq: number;
  read_seq: number;
}

export function toMessage(r: MessageRow): StoredMessage {
  return {
    msgId: r.msg_id,
    convId: r.conv_id,
    from: r.from_uid,
    to: r.to_uid,
    groupId: r.group_id,
    clientMsgId: r.client_msg_id,
    contentType: r.content_type,
    content: r.content,
    sentAtMs: r.sent_at_ms,
    convSeq: r.conv_seq,
  };
}

export function toInboxEntry(r: InboxRow): InboxEntry {
  return { ...toMessage(r), seq: r.seq };
}

const MESSAGE_COLUMNS = 'msg_id, conv_id, conv_seq, from_uid, to_uid, group_id, client_msg_id, content_type, content, sent_at_ms';

export type Statements = ReturnType<typeof prepareStatements>;

export function prepareStatements(db: Database.Database) {
  return {
    // Append path (storage/sqlite/message-log.ts): the dedup check of a key not held in memory.
    dedupGet: db.prepare<[string, string], DedupRow>(
      `SELECT ${MESSAGE_COLUMNS}, sender_seq, dedup_until_ms, dedup_gen FROM messages
       WHERE from_uid = ? AND client_msg_id = ? ORDER BY dedup_gen DESC LIMIT 1`),
    // Newest indexed seqs, read once per key into memory (storage/sqlite/seqs.ts).
    convMaxSeq: db.prepare<[string], { s: number | null }>('SELECT MAX(conv_seq) AS s FROM messages WHERE conv_id = ?'),
    userMaxSeq: db.prepare<[string], { s: number | null }>('SELECT MAX(seq) AS s FROM inbox WHERE uid = ?'),

    // Reads.
    sync: db.prepare<[string, number, number], InboxRow>(
      `SELECT i.seq AS seq, ${MESSAGE_COLUMNS.split(', ').map((c) => `m.${c}`).join(', ')}
       FROM inbox i JOIN messages m ON m.conv_id = i.conv_id AND m.conv_seq = i.conv_seq
       WHERE i.uid = ? AND i.seq > ? ORDER BY i.seq ASC LIMIT ?`),
    history: db.prepare<[string, number, number], MessageRow>(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE conv_id = ? AND conv_seq < ? ORDER BY conv_seq DESC LIMIT ?`),

    // Groups.
    groupGet: db.prepare<[string], GroupRow>(
      'SELECT group_id, name, owner, created_at_ms FROM groups WHERE group_id = ?'),
    groupPut: db.prepare<[string, string, string, number, number]>(
      'INSERT INTO groups (group_id, name, owner, created_at_ms, next_join) VALUES (?, ?, ?, ?, ?)'),
    groupTakeJoin: db.prepare<[string], { join_order: number }>(
      'UPDATE groups SET next_join = next_join + 1 WHERE group_id = ? RETURNING next_join - 1 AS join_order'),
    groupSetOwner: db.prepare<[string, string]>('UPDATE groups SET owner = ? WHERE group_id = ?'),
    membersGet: db.prepare<[string], { uid: string }>(
      'SELECT uid FROM group_members WHERE group_id = ? ORDER BY join_order ASC'),
    memberPut: db.prepare<[string, string, number]>(
      'INSERT INTO group_members (group_id, uid, join_order) VALUES (?, ?, ?)'),
    memberDelete: db.prepare<[string, string]>('DELETE FROM group_members WHERE group_id = ? AND uid = ?'),

    // Read cursors and unread.
    cursorGet: db.prepare<[string, string], { read_seq: number }>(
      'SELECT read_seq FROM read_cursors WHERE uid = ? AND conv_id = ?'),
    cursorPut: db.prepare<[string, string, number]>(
      `INSERT INTO read_cursors (uid, conv_id, read_seq) VALUES (?, ?, ?)
       ON CONFLICT (uid, conv_id) DO UPDATE SET read_seq = MAX(read_seq, excluded.read_seq)`),
    userConvLastSeq: db.prepare<[string, string], { last_seq: number }>(
      'SELECT last_seq FROM user_convs WHERE uid = ? AND conv_id = ?'),
    unreadCount: db.prepare<[string, string, number], { n: number }>(
      'SELECT COUNT(*) AS n FROM unread_marks WHERE uid = ? AND conv_id = ? AND seq > ?'),
    unreadCandidates: db.prepare<[string, number], UnreadCandidateRow>(
      `SELECT uc.conv_id AS conv_id, uc.last_seq AS last_seq, COALESCE(rc.read_seq, 0) AS read_seq
       FROM user_convs uc LEFT JOIN read_cursors rc ON rc.uid = uc.uid AND rc.conv_id = uc.conv_id
       WHERE uc.uid = ? AND uc.last_incoming_seq > COALESCE(rc.read_seq, 0)
       ORDER BY uc.last_incoming_seq DESC LIMIT ?`),
  };
}
