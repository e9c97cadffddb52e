/**
 * How messages map to inbox and history rows, and the timeline specs of those two tables.
 */
import type { TimelineSpec } from './timeline';
import type { AppendInput, InboxEntry, StoredMessage } from '../store';
import { bytesOf, num } from './util';

/** Per-entry overhead counted toward a round's byte bound, besides the content. */
const ROW_OVERHEAD_BYTES = 200;

export const HISTORY_COLUMNS = ['msg_id', 'from_uid', 'to_uid', 'group_id', 'client_msg_id', 'content_type', 'content', 'sent_at_ms'] as const;
export const INBOX_COLUMNS = ['msg_id', 'conv_id', 'conv_seq', 'from_uid', 'to_uid', 'group_id', 'client_msg_id', 'content_type', 'content', 'sent_at_ms'] as const;

export function historySpec(bucketSize: number): TimelineSpec<AppendInput> {
  return {
    kind: 'history', table: 'history', keyColumn: 'conv_id', columns: HISTORY_COLUMNS, bucketSize,
    values: (m) => [m.msgId, m.from, m.to, m.groupId, m.clientMsgId, m.contentType, bytesOf(m.content), m.sentAtMs],
    idOf: (m) => m.msgId,
    sizeOf: (m) => m.content.byteLength + ROW_OVERHEAD_BYTES,
  };
}

/** Inbox rows; the unread index they imply is derived when they are written (unread-index.ts). */
export function inboxSpec(bucketSize: number): TimelineSpec<StoredMessage> {
  return {
    kind: 'inbox', table: 'inbox', keyColumn: 'uid', columns: INBOX_COLUMNS, bucketSize,
    values: (m) => [m.msgId, m.convId, m.convSeq, m.from, m.to, m.groupId, m.clientMsgId, m.contentType, bytesOf(m.content), m.sentAtMs],
    idOf: (m) => m.msgId,
    sizeOf: (m) => m.content.byteLength + ROW_OVERHEAD_BYTES,
  };
}

type Row = Record<string, unknown>;

function content(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0); // an empty blob can read back as null
}

export function historyRowToMessage(convId: string, r: Row): StoredMessage {
  return {
    msgId: r.msg_id as string, convId, from: r.from_uid as string, to: (r.to_uid as string | null) ?? '',
    groupId: (r.group_id as string | null) ?? '', clientMsgId: r.client_msg_id as string,
    contentType: (r.content_type as string | null) ?? '', content: content(r.content),
    sentAtMs: num(r.sent_at_ms) ?? 0, convSeq: num(r.seq) ?? 0,
  };
}

export function inboxRowToEntry(r: Row): InboxEntry {
  return {
    seq: num(r.seq) ?? 0, msgId: r.msg_id as string, convId: r.conv_id as string, from: r.from_uid as string,
    to: (r.to_uid as string | null) ?? '', groupId: (r.group_id as string | null) ?? '',
    clientMsgId: r.client_msg_id as string, contentType: (r.content_type as string | null) ?? '',
    content: content(r.content), sentAtMs: num(r.sent_at_ms) ?? 0, convSeq: num(r.conv_seq) ?? 0,
  };
}

export function toStoredMessage(input: AppendInput, convSeq: number): StoredMessage {
  return {
    msgId: input.msgId, convId: input.convId, from: input.from, to: input.to, groupId: input.groupId,
    clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
    sentAtMs: input.sentAtMs, convSeq,
  };
}
