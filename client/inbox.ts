/**
 * The ordering buffer between the network and the application: messages go in from pushes and
 * sync pages in any order, with duplicates and gaps; they come out strictly in seq order, each seq
 * once. Pure (no I/O, no timers): the ImClient runs the syncs this asks for.
 *
 * Rules (docs/protocol.md, "Ordering and sync"):
 * - seq <= lastSeq: already delivered, dropped.
 * - seq == lastSeq + 1: delivered, then any buffered successors that are now contiguous.
 * - seq > lastSeq + 1 from a push: a gap; buffered, and `hasGap` asks the owner to sync.
 * - the client's own sends go in like pushes, built from their acks: the server pushes them to
 *   the user's other connections only, never back to the sending one.
 * - a sync page is authoritative: it returns everything after the requested seq, so whatever it
 *   skips does not exist and its messages are delivered even when they are not contiguous (seqs
 *   jump across a change of the shard's owner: docs/protocol.md, "Gaps in inbox seqs").
 */
import type { Message } from '../proto/wire';
import { numberOption } from '../common/options';

export interface InboxOptions {
  /** The highest seq the application has already processed. */
  lastSeq?: number;
  /** Pushes held while a gap is open. At the limit the highest seqs are dropped: the sync that
   * the gap triggers fetches them again, so dropping costs bandwidth, never messages. */
  maxBufferedMessages?: number;
}

export const DEFAULT_MAX_BUFFERED_MESSAGES = 10_000;

export class Inbox {
  private last: number;
  private readonly maxBuffered: number;
  private readonly buffered = new Map<number, Message>();
  private droppedForSpace = 0;

  constructor(options: InboxOptions = {}) {
    this.last = numberOption('Inbox', 'lastSeq', options.lastSeq, 0, { integer: true, min: 0 });
    this.maxBuffered = numberOption('Inbox', 'maxBufferedMessages', options.maxBufferedMessages, DEFAULT_MAX_BUFFERED_MESSAGES, { integer: true });
  }

  /** The highest seq delivered so far. */
  get lastSeq(): number {
    return this.last;
  }

  get bufferedCount(): number {
    return this.buffered.size;
  }

  /** Pushes dropped because the buffer was full (they are re-fetched by sync). */
  get droppedCount(): number {
    return this.droppedForSpace;
  }

  /** True when a message after a missing seq is waiting: the owner should sync from lastSeq. */
  get hasGap(): boolean {
    return this.buffered.size > 0;
  }

  /** The highest seq this inbox holds or has delivered. */
  get highestSeq(): number {
    let highest = this.last;
    for (const seq of this.buffered.keys()) if (seq > highest) highest = seq;
    return highest;
  }

  /** How many seqs are missing below the highest buffered one (0 without a gap). */
  get missingCount(): number {
    return this.highestSeq - this.last - this.buffered.size;
  }

  /** A pushed message. Returns what is now deliverable, in order. */
  push(msg: Message): Message[] {
    if (msg.seq <= this.last) return [];
    if (msg.seq === this.last + 1) {
      const out = [msg];
      this.last = msg.seq;
      this.drainContiguous(out);
      return out;
    }
    this.hold(msg);
    return [];
  }

  /** One page of a SyncResp (ascending seq, all after the seq the sync asked from). */
  syncPage(messages: readonly Message[]): Message[] {
    const out: Message[] = [];
    for (const msg of messages) {
      if (msg.seq <= this.last) continue;
      out.push(msg);
      this.last = msg.seq;
    }
    if (out.length > 0) {
      for (const seq of this.buffered.keys()) if (seq <= this.last) this.buffered.delete(seq);
      this.drainContiguous(out);
    }
    return out;
  }

  /**
   * Gives up on a gap that syncs kept leaving open although the server had pushed what lies
   * above it (stale answers): delivers everything buffered, in order.
   */
  skipGap(): Message[] {
    const out = [...this.buffered.values()].sort((a, b) => a.seq - b.seq);
    this.buffered.clear();
    if (out.length > 0) this.last = out[out.length - 1].seq;
    return out;
  }

  private hold(msg: Message): void {
    if (this.buffered.has(msg.seq)) return;
    if (this.buffered.size >= this.maxBuffered) {
      let highest = msg.seq;
      for (const seq of this.buffered.keys()) if (seq > highest) highest = seq;
      this.droppedForSpace++;
      if (highest === msg.seq) return;
      this.buffered.delete(highest);
    }
    this.buffered.set(msg.seq, msg);
  }

  private drainContiguous(out: Message[]): void {
    for (;;) {
      const next = this.buffered.get(this.last + 1);
      if (!next) return;
      this.buffered.delete(next.seq);
      out.push(next);
      this.last = next.seq;
    }
  }
}
