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
 * Since schema version 9 an inbox row is two cells: msg_id and one packed `body` (INBOX_TAG) that
 * holds the conversation, its seq and the sender (what the unread index needs, unread-index.ts)
 * and then the message. Every inbox row of a message has the same body (its own key is in the
 * primary key), encoded once. A group message's inbox rows stop after the sender: they refer to
 * the message's history row, (conversation, seq), and sync reads the message from there (store.ts).
 * A 100-member group message then stores its content once, not 101 times. The history row is
 * logged before any inbox row refers to it (a group message's inbox appends start after its
 * history append is acknowledged); sync has its owner write it on demand when it is not in its
 * table yet. Keyspaces upgraded from an earlier version keep the version-7 layout until the
 * operator turns this one on (docs/storage.md, "Inbox rows"), so a process of an earlier release
 * never reads one. Every layout reads back the same.
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
const INBOX_TAG = 0x03;
/** Values of an INBOX_TAG body before the message's: msgId, convId, convSeq, from. Only these: a reference. */
const INBOX_HEAD = 4;

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

/** Inbox bodies (version 9) by content buffer: every inbox row of a message shares one. */
const inboxBodies = new WeakMap<Uint8Array, { msgId: string; convSeq: number; body: Buffer }>();

/**
 * The packed body of a message's inbox rows in the version-9 layout, encoded once per message
 * in this process: the head, then (not for a group message: a reference) the message.
 */
export function inboxBodyOf(m: StoredMessage): Buffer {
  const cached = inboxBodies.get(m.content);
  if (cached && cached.msgId === m.msgId && cached.convSeq === m.convSeq) return cached.body;
  const head = [m.msgId, m.convId, m.convSeq, m.from];
  const body = packValues(INBOX_TAG, m.groupId ? head : [...head, m.to, m.groupId, m.clientMsgId, m.contentType, m.content, m.sentAtMs]);
  inboxBodies.set(m.content, { msgId: m.msgId, convSeq: m.convSeq, body });
  heads.set(body, { convId: m.convId, from: m.from });
  return body;
}

/** Heads of the bodies encoded here: the unread index reads a message's once, not once per row. */
const heads = new WeakMap<Buffer, { convId: string; from: string }>();

/** The conversation and sender of a version-9 inbox body (the unread index's inputs). */
export function inboxHead(body: Buffer): { convId: string; from: string } {
  const known = heads.get(body);
  if (known) return known;
  const [, convId, , from] = unpackValues(INBOX_TAG, body, INBOX_HEAD);
  return { convId: convId as string, from: from as string };
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
 * `compact`: the version-9 layout (msg_id and one body); otherwise version 7's.
 */
export function inboxSpec(bucketSize: number, compact = false): TimelineSpec<StoredMessage> {
  const read = ['msg_id', 'conv_id', 'conv_seq', 'body', ...LEGACY];
  const base = { kind: 'inbox' as const, table: 'inbox', keyColumn: 'uid', bucketSize, readColumns: read, idOf: (m: StoredMessage) => m.msgId, sizeOf: (m: StoredMessage) => m.content.byteLength + ROW_OVERHEAD_BYTES };
  return compact
    ? { ...base, columns: ['msg_id', 'body'], row: (key, bucket, seq, m) => [key, bucket, seq, m.msgId, inboxBodyOf(m)] }
    // from_uid third: the unread index reads it from the logged row (unread-index.ts).
    : { ...base, columns: ['msg_id', 'conv_id', 'conv_seq', 'from_uid', 'body'], row: (key, bucket, seq, m) => [key, bucket, seq, m.msgId, m.convId, m.convSeq, m.from, bodyOf(m)] };
}

function content(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0); // an empty blob can read back as null
}

export function historyRowToMessage(convId: string, r: Row): StoredMessage {
  return { ...fields(r), convId, convSeq: num(r.seq) ?? 0 };
}

/** An inbox row read back: its entry, and whether the message is still to be read from its history row. */
export interface InboxRead {
  entry: InboxEntry;
  /** The row refers to the history row (convId, convSeq): entry has the row's own fields and no content yet. */
  ref: boolean;
}

/** The entry of an inbox row of any layout (a reference has msgId, sender and conversation only). */
export function readInboxRow(r: Row): InboxRead {
  const seq = num(r.seq) ?? 0;
  const body = r.body as Buffer | null | undefined;
  if (body && body[0] === INBOX_TAG) {
    const v = unpackValues(INBOX_TAG, body);
    const [msgId, convId, convSeq, from] = v as [string, string, number, string];
    if (v.length === INBOX_HEAD) {
      return { entry: { seq, msgId, convId, convSeq, from, to: '', groupId: '', clientMsgId: '', contentType: '', content: new Uint8Array(0), sentAtMs: 0 }, ref: true };
    }
    const [to, groupId, clientMsgId, contentType, c, sentAtMs] = v.slice(INBOX_HEAD) as [string, string, string, string, unknown, number];
    return { entry: { seq, msgId, convId, convSeq, from, to, groupId, clientMsgId, contentType, content: content(c), sentAtMs }, ref: false };
  }
  return { entry: { ...fields(r), seq, convId: r.conv_id as string, convSeq: num(r.conv_seq) ?? 0 }, ref: false };
}

export function toStoredMessage(input: AppendInput, convSeq: number): StoredMessage {
  return {
    msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
    clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
    sentAtMs: input.sentAtMs, convSeq,
  };
}
