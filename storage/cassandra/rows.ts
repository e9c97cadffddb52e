/**
 * How messages map to inbox and history rows, and the timeline specs of those two tables.
 *
 * Since schema version 7 a row carries the message in one packed `body` cell (values.ts): msgId,
 * from, to, groupId, clientMsgId, contentType, content, sentAtMs. The history row and every inbox
 * row of a message share one body buffer (encoded once per message and process; the owner log
 * writes it once per round). Cassandra spends much of a write per cell (cloning, serializing,
 * merging each), so two to five cells a row instead of eight to ten is most of a row's cost.
 * Besides the body, rows keep the cells a query needs alone: msg_id (the owner's tail read and
 * its write time), and in the inbox conv_id, conv_seq and from_uid (the unread index,
 * unread-index.ts). Rows written before version 7 have the separate columns and no body; both
 * read back the same.
 *
 * Since schema version 9 an inbox row of a group message carries no body: its `body` cell is a
 * two-byte reference (REF_TAG) and the message is read from its history row, (conv_id, conv_seq).
 * A 100-member group message then stores its content once, not 101 times: fewer bytes through
 * Cassandra's memtables, flushes and compactions, and on disk. The history row is in its table
 * (or logged and flushed on demand, store.ts `sync`) before any inbox row refers to it: a group
 * message's inbox rows are appended only after its history append is acknowledged. Keyspaces
 * upgraded from an earlier version keep writing bodies until the operator turns references on
 * (docs/storage.md, "Group messages in the inbox"), so a process of an earlier release never reads one.
 */
import type { TimelineSpec } from './timeline';
import type { AppendInput, InboxEntry, StoredMessage } from '../store';
import { num } from './util';
import { packValues, unpackValues } from './values';

/** Per-entry overhead counted toward a round's byte bound, besides the content. */
const ROW_OVERHEAD_BYTES = 200;

/** Columns of rows written before version 7, still read. */
const LEGACY = ['from_uid', 'to_uid', 'group_id', 'client_msg_id', 'content_type', 'content', 'sent_at_ms'] as const;
const BODY_TAG = 0x01;
const REF_TAG = 0x02;
/** The body cell of an inbox row that refers to its history row (no values: the row's columns say where). */
const REF_BODY = packValues(REF_TAG, []);

/** Packed bodies by content buffer: the history row and the inbox rows of a message share one. */
const bodies = new WeakMap<Uint8Array, { msgId: string; body: Buffer }>();

/** The message's packed body cell, encoded once per message (its content buffer) in this process. */
export function bodyOf(m: AppendInput | StoredMessage): Buffer {
  const cached = bodies.get(m.content);
  if (cached && cached.msgId === m.msgId) return cached.body;
  const body = packValues(BODY_TAG, [m.msgId, m.from, m.to, m.groupId, m.clientMsgId, m.contentType, m.content, m.sentAtMs]);
  bodies.set(m.content, { msgId: m.msgId, body });
  return body;
}

type Row = Record<string, unknown>;

/** A row's message fields, from its body or (rows before version 7) its separate columns. */
function fields(r: Row): Omit<StoredMessage, 'convId' | 'convSeq'> {
  const body = r.body as Buffer | null | undefined;
  if (body) {
    const [msgId, from, to, groupId, clientMsgId, contentType, c, sentAtMs] = unpackValues(BODY_TAG, body);
    return {
      msgId: msgId as string, from: from as string, to: to as string, groupId: groupId as string, clientMsgId: clientMsgId as string,
      contentType: contentType as string, content: content(c), sentAtMs: sentAtMs as number,
    };
  }
  return {
    msgId: r.msg_id as string, from: r.from_uid as string, to: (r.to_uid as string | null) ?? '',
    groupId: (r.group_id as string | null) ?? '', clientMsgId: r.client_msg_id as string,
    contentType: (r.content_type as string | null) ?? '', content: content(r.content), sentAtMs: num(r.sent_at_ms) ?? 0,
  };
}

export function historySpec(bucketSize: number): TimelineSpec<AppendInput> {
  return {
    kind: 'history', table: 'history', keyColumn: 'conv_id', bucketSize,
    columns: ['msg_id', 'body'], readColumns: ['msg_id', 'body', ...LEGACY],
    row: (key, bucket, seq, m) => [key, bucket, seq, m.msgId, bodyOf(m)],
    idOf: (m) => m.msgId,
    sizeOf: (m) => m.content.byteLength + ROW_OVERHEAD_BYTES,
  };
}

/**
 * Inbox rows; the unread index they imply is derived when they are written (unread-index.ts).
 * With `groupRefs`, a group message's rows refer to its history row instead of carrying the body.
 */
export function inboxSpec(bucketSize: number, groupRefs = false): TimelineSpec<StoredMessage> {
  return {
    kind: 'inbox', table: 'inbox', keyColumn: 'uid', bucketSize,
    // from_uid third: the unread index reads it from the logged row (unread-index.ts).
    columns: ['msg_id', 'conv_id', 'conv_seq', 'from_uid', 'body'], readColumns: ['msg_id', 'conv_id', 'conv_seq', 'body', ...LEGACY],
    row: (key, bucket, seq, m) => [key, bucket, seq, m.msgId, m.convId, m.convSeq, m.from, groupRefs && m.groupId ? REF_BODY : bodyOf(m)],
    idOf: (m) => m.msgId,
    sizeOf: (m) => m.content.byteLength + ROW_OVERHEAD_BYTES,
  };
}

function content(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0); // an empty blob can read back as null
}

export function historyRowToMessage(convId: string, r: Row): StoredMessage {
  return { ...fields(r), convId, convSeq: num(r.seq) ?? 0 };
}

/** Where an inbox row's message is when the row refers to its history row; undefined when it carries the message. */
export function inboxRef(r: Row): { convId: string; convSeq: number } | undefined {
  const body = r.body as Buffer | null | undefined;
  return body && body[0] === REF_TAG ? { convId: r.conv_id as string, convSeq: num(r.conv_seq) ?? 0 } : undefined;
}

/**
 * The entry of an inbox row. A row that refers to its history row (inboxRef) takes the message
 * from `message`, that history row read back; without it the entry has the row's own columns
 * only (msgId, from, conversation) and empty content.
 */
export function inboxRowToEntry(r: Row, message?: StoredMessage): InboxEntry {
  const at = { seq: num(r.seq) ?? 0, convId: r.conv_id as string, convSeq: num(r.conv_seq) ?? 0 };
  if (!inboxRef(r)) return { ...fields(r), ...at };
  if (message) return { ...message, ...at };
  return {
    ...at, msgId: r.msg_id as string, from: (r.from_uid as string | null) ?? '', to: '', groupId: '', clientMsgId: '',
    contentType: '', content: new Uint8Array(0), sentAtMs: 0,
  };
}

export function toStoredMessage(input: AppendInput, convSeq: number): StoredMessage {
  return {
    msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
    clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
    sentAtMs: input.sentAtMs, convSeq,
  };
}
