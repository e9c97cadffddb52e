/**
 * Messages accepted into the message log and not yet indexed into the tables, kept on the event
 * loop so reads see them (storage/sqlite/message-log.ts): per user inbox, per conversation, and
 * per dedup key, each list in lsn order (which is seq order within an inbox or a conversation).
 *
 * A message enters when it takes its seqs, before its log write; it is `durable` once the write
 * returned, and only durable entries are read (an acknowledged message is durable; one whose
 * write is still under way is not shown, since a crash could still take it back). It leaves once
 * the writer reports its lsn indexed: from then on the tables answer for it. Durability and
 * indexing both go in lsn order, so every list is [durable..., not yet durable...], and entries
 * leave from the front.
 */
import type { LogRecord } from './log-record';
import type { AppendResult, InboxEntry, StoredMessage } from '../store';

export interface Pending {
  rec: LogRecord;
  durable: boolean;
  /** Until durable: the append to settle when its log write is done, and duplicates of it that wait too. */
  waiter?: Waiter;
  duplicates?: Waiter[];
}

export interface Waiter {
  resolve: (value: AppendResult) => void;
  reject: (error: unknown) => void;
  value: AppendResult;
}

interface InboxItem {
  seq: number;
  p: Pending;
}

export function dedupKey(from: string, clientMsgId: string): string {
  return `${from}\u0000${clientMsgId}`;
}

export function messageOf(r: LogRecord): StoredMessage {
  return {
    msgId: r.msgId, convId: r.convId, from: r.from, to: r.to, groupId: r.groupId, clientMsgId: r.clientMsgId,
    contentType: r.contentType, content: r.content, sentAtMs: r.sentAtMs, convSeq: r.convSeq,
  };
}

export class Unindexed {
  private readonly inboxes = new Map<string, InboxItem[]>();
  private readonly convs = new Map<string, Pending[]>();
  private readonly dedup = new Map<string, Pending>();
  /** Every entry, in lsn order; `head` is the first not yet indexed. */
  private order: Pending[] = [];
  private head = 0;

  /** Messages held (durable or not). */
  get size(): number {
    return this.order.length - this.head;
  }

  add(rec: LogRecord): Pending {
    const p: Pending = { rec, durable: false };
    this.order.push(p);
    for (let i = 0; i < rec.recipients.length; i++) {
      const uid = rec.recipients[i];
      const list = this.inboxes.get(uid);
      if (list) list.push({ seq: rec.seqs[i], p });
      else this.inboxes.set(uid, [{ seq: rec.seqs[i], p }]);
    }
    const conv = this.convs.get(rec.convId);
    if (conv) conv.push(p);
    else this.convs.set(rec.convId, [p]);
    this.dedup.set(dedupKey(rec.from, rec.clientMsgId), p);
    return p;
  }

  /** The newest message held for a dedup key. */
  byDedupKey(from: string, clientMsgId: string): Pending | undefined {
    return this.dedup.get(dedupKey(from, clientMsgId));
  }

  /** The newest seq held for uid's inbox, durable or not (for taking the next one). */
  lastUserSeq(uid: string): number | undefined {
    const list = this.inboxes.get(uid);
    return list && list[list.length - 1].seq;
  }

  lastConvSeq(convId: string): number | undefined {
    const list = this.convs.get(convId);
    return list && list[list.length - 1].rec.convSeq;
  }

  /** The newest durable seq held for uid's inbox. */
  lastDurableUserSeq(uid: string): number | undefined {
    const list = this.inboxes.get(uid);
    if (!list) return undefined;
    for (let i = list.length - 1; i >= 0; i--) if (list[i].p.durable) return list[i].seq;
    return undefined;
  }

  /** uid's durable entries with seq > afterSeq, oldest first, up to limit. */
  inboxAfter(uid: string, afterSeq: number, limit: number, out: InboxEntry[]): void {
    const list = this.inboxes.get(uid);
    if (!list) return;
    for (const it of list) {
      if (out.length >= limit || !it.p.durable) return;
      if (it.seq > afterSeq) out.push({ ...messageOf(it.p.rec), seq: it.seq });
    }
  }

  /** convId's durable messages with convSeq < beforeConvSeq, newest first, up to limit. */
  convBefore(convId: string, beforeConvSeq: number, limit: number, out: StoredMessage[]): void {
    const list = this.convs.get(convId);
    if (!list) return;
    let i = list.length - 1;
    while (i >= 0 && !list[i].durable) i--;
    for (; i >= 0 && out.length < limit; i--) {
      if (list[i].rec.convSeq < beforeConvSeq) out.push(messageOf(list[i].rec));
    }
  }

  /** Messages up to lsn are in the tables: they leave. */
  indexed(lsn: number): void {
    const order = this.order;
    while (this.head < order.length && order[this.head].rec.lsn <= lsn) {
      const p = order[this.head];
      order[this.head++] = undefined as unknown as Pending;
      const rec = p.rec;
      for (const uid of rec.recipients) shiftFrom(this.inboxes, uid);
      shiftFrom(this.convs, rec.convId);
      const key = dedupKey(rec.from, rec.clientMsgId);
      if (this.dedup.get(key) === p) this.dedup.delete(key);
    }
    if (this.head > 1024 && this.head * 2 > order.length) {
      this.order = order.slice(this.head);
      this.head = 0;
    }
  }

  /**
   * The log write of every message not yet durable failed: they leave (they are the newest of
   * every list they are in). Returns them, oldest first.
   */
  dropNotDurable(): Pending[] {
    const dropped: Pending[] = [];
    while (this.order.length > this.head && !this.order[this.order.length - 1].durable) {
      const p = this.order.pop()!;
      dropped.push(p);
      const rec = p.rec;
      for (const uid of rec.recipients) popFrom(this.inboxes, uid);
      popFrom(this.convs, rec.convId);
      const key = dedupKey(rec.from, rec.clientMsgId);
      if (this.dedup.get(key) !== p) continue;
      this.dedup.delete(key);
      // An earlier message under this key (a reuse after its window) answers for it again.
      for (let i = this.order.length - 1; i >= this.head; i--) {
        const o = this.order[i].rec;
        if (o.from === rec.from && o.clientMsgId === rec.clientMsgId) {
          this.dedup.set(key, this.order[i]);
          break;
        }
      }
    }
    return dropped.reverse();
  }

  /** Every durable message held, oldest first (to post again to a new writer). */
  durable(): LogRecord[] {
    const out: LogRecord[] = [];
    for (let i = this.head; i < this.order.length && this.order[i].durable; i++) out.push(this.order[i].rec);
    return out;
  }
}

function shiftFrom<T>(map: Map<string, T[]>, key: string): void {
  const list = map.get(key);
  if (!list) return;
  list.shift();
  if (list.length === 0) map.delete(key);
}

function popFrom<T>(map: Map<string, T[]>, key: string): void {
  const list = map.get(key);
  if (!list) return;
  list.pop();
  if (list.length === 0) map.delete(key);
}
