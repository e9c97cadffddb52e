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
