/**
 * Drives the Inbox over a connection: the catch-up sync after every (re)connect and the
 * gap-filling sync when a push skips ahead. Single-flight (a trigger while a sync runs makes it go
 * round once more) and bounded (failed syncs back off and stop after a few; gaps that sync cannot
 * fill are given up after a few tries).
 */
import { Op, Message, decode, encode } from '../proto/wire';
import { sleep } from './backoff';
import type { Connection } from './connection';
import { Inbox } from './inbox';

export interface InboxSyncOptions {
  inbox: Inbox;
  pageLimit: number;
  /** The live connection to sync on, or undefined (then the next connect triggers a sync). */
  connection: () => Connection | undefined;
  deliver: (messages: Message[]) => void;
  onSynced: (lastSeq: number) => void;
  onError: (err: unknown) => void;
  /** Pause before retry number `attempt` (1-based) of a failed sync or an unfilled gap. */
  retryDelayMs: (attempt: number) => number;
  signal: AbortSignal;
  /** Gap-filling syncs before a gap is declared permanent (its seqs were never written). 3. */
  maxGapSyncs?: number;
  /** Consecutive failed syncs on one connection before waiting for the next trigger. 5. */
  maxSyncFailures?: number;
}

export class InboxSync {
  private running = false;
  private wanted = false;
  private gapSyncs = 0;
  private ownSendsInFlight = 0;
  private readonly maxGapSyncs: number;
  private readonly maxSyncFailures: number;

  constructor(private readonly o: InboxSyncOptions) {
    this.maxGapSyncs = o.maxGapSyncs ?? 3;
    this.maxSyncFailures = o.maxSyncFailures ?? 5;
  }

  /** A new connection: forget gap attempts made on the old one and catch up. */
  onConnected(): void {
    this.gapSyncs = 0;
    this.request();
  }

  /** A pushed message: deliver what is now in order; a gap asks for a sync. */
  onPush(msg: Message): void {
    this.o.deliver(this.o.inbox.push(msg));
    this.syncIfGap();
  }

  /** A send of this client's is in flight: its seq arrives with the ack, not in a push. */
  ownSendStarted(): void {
    this.ownSendsInFlight++;
  }

  /**
   * A send of this client's ended: `own` is the message built from its ack (none when it failed).
   * It takes its seq's place in the inbox, so nobody waits or syncs for a push of it.
   */
  ownSendEnded(own?: Message): void {
    this.ownSendsInFlight--;
    if (own) this.o.deliver(this.o.inbox.push(own));
    this.syncIfGap();
  }

  /**
   * A push can overtake the ack of an own send (they travel different paths), which looks like a
   * gap; while sends in flight could fill every missing seq, their acks are awaited instead of a sync.
   */
  private syncIfGap(): void {
    const inbox = this.o.inbox;
    if (inbox.hasGap && inbox.missingCount > this.ownSendsInFlight) this.request();
  }

  request(): void {
    this.wanted = true;
    if (this.running) return;
    this.running = true;
    this.run()
      .catch((err) => this.o.onError(err))
      .finally(() => {
        this.running = false;
        const conn = this.o.connection();
        if (this.wanted && conn && !conn.closed && !this.o.signal.aborted) this.request();
      });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.wanted && !this.o.signal.aborted) {
      this.wanted = false;
      const conn = this.o.connection();
      if (!conn || conn.closed) return;
      try {
        await this.catchUp(conn);
        failures = 0;
      } catch (err) {
        if (conn !== this.o.connection() || conn.closed) continue; // lost with its connection
        this.o.onError(err);
        if (++failures >= this.maxSyncFailures) return; // the next gap or reconnect tries again
        this.wanted = true;
        await sleep(this.o.retryDelayMs(failures), this.o.signal);
      }
    }
  }

  /** Pages from lastSeq until the server has no more, then checks for a gap left by pushes. */
  private async catchUp(conn: Connection): Promise<void> {
    const inbox = this.o.inbox;
    for (;;) {
      const fromSeq = inbox.lastSeq;
      const reply = await conn.request(Op.SYNC, encode('SyncReq', { fromSeq, limit: this.o.pageLimit }));
      const page = decode('SyncResp', reply);
      this.o.deliver(inbox.syncPage(page.messages));
      if (!page.hasMore || inbox.lastSeq === fromSeq) break; // no progress: never spin
    }
    if (!inbox.hasGap) {
      this.gapSyncs = 0;
      this.o.onSynced(inbox.lastSeq);
      return;
    }
    // A push is ahead of what sync can see: the missing seqs may still be committing.
    if (++this.gapSyncs > this.maxGapSyncs) {
      this.gapSyncs = 0;
      this.o.deliver(inbox.skipGap());
      this.o.onSynced(inbox.lastSeq);
      return;
    }
    await sleep(this.o.retryDelayMs(this.gapSyncs), this.o.signal);
    this.wanted = true;
  }
}
