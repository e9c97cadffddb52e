/** Storage records as client wire shapes. Pure functions, no rules. */
import type { GroupInfo as StoredGroup, StoredMessage, UnreadInfo } from '../storage/store';
import type { GroupInfo, Message, Unread } from '../proto/wire';

/** A stored message as the client sees it; seq is the reader's inbox seq (0 outside an inbox). */
export function toWireMessage(m: StoredMessage, seq: number): Message {
  return {
    msgId: m.msgId, seq, convId: m.convId, from: m.from, to: m.to, groupId: m.groupId,
    clientMsgId: m.clientMsgId, sentAtMs: m.sentAtMs, contentType: m.contentType,
    content: m.content, convSeq: m.convSeq,
  };
}

export function toWireGroup(g: StoredGroup): GroupInfo {
  return { groupId: g.groupId, name: g.name, owner: g.owner, members: [...g.members], createdAtMs: g.createdAtMs };
}

export function toWireUnread(u: UnreadInfo): Unread {
  return { convId: u.convId, count: u.count, readSeq: u.readSeq, lastSeq: u.lastSeq };
}

/**
 * Sets Message.seq (field 2, varint) on an encoded Message that was encoded with seq 0. Protobuf
 * parsers accept fields in any order, so a group message is encoded once and each recipient's
 * copy only gets its own seq appended: the hot path does one protobuf encode per message, not
 * one per recipient.
 */
export function withSeq(encodedWithoutSeq: Uint8Array, seq: number): Uint8Array {
  if (seq === 0) return encodedWithoutSeq;
  const tail: number[] = [0x10]; // (field 2 << 3) | wire type 0
  // Division instead of bit operations: seqs may exceed 2^31.
  let v = seq;
  while (v >= 0x80) {
    tail.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  tail.push(v);
  const out = new Uint8Array(encodedWithoutSeq.length + tail.length);
  out.set(encodedWithoutSeq, 0);
  out.set(tail, encodedWithoutSeq.length);
  return out;
}
