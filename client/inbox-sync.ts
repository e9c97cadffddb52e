/**
 * Drives the Inbox over a connection: the catch-up sync after every (re)connect and the
 * gap-filling sync when a push skips ahead. Single-flight (a trigger while a sync runs makes it go
 * round once more, unless that sync closed the gap the trigger was for) and bounded (failed syncs
 * back off and stop after a few).
 *
 * One sync settles a gap (docs/protocol.md, "Gaps in inbox seqs"): the server's answer is
 * authoritative for every seq above the one asked from, so seqs its pages jump over were never
 * written and never will be; lastSeq moves to the highest seq they returned. Only an answer that
 * leaves out a message pushed before it was asked says nothing about the gap below it (a stale
 * read): that one is retried with backoff, and after a few the held messages are delivered.
 */
import { Op, Message, decode, encode } from '../proto/wire';
import type { Connection } from './connection';
import { Inbox } from './inbox';
import type { Waits } from './waits';

export interface InboxSyncOptions {
  inbox: Inbox;
  pageLimit: number;
  /** The live connection to sync on, or undefined (then the next connect triggers a sync). */
  connection: () => Connection | undefined;
  deliver: (messages: Message[]) => void;
  onSynced: (lastSeq: number) => void;
  onError: (err: unknown) => void;
  /** Pause before retry number `attempt` (1-based) of a failed sync or a stale answer. */
  retryDelayMs: (attempt: number) => number;
  /** The client's pending-wait registry: its close() ends the sync loop and its pauses. */
  waits: Pick<Waits, 'closed' | 'sleep'>;
  /** Stale answers in a row (below) before the gap under the held messages is accepted. 3. */
  maxGapSyncs?: number;
  /** Consecutive failed syncs on one connection before waiting for the next trigger. 5. */
  maxSyncFailures?: number;
}

export class InboxSync {
  private running = false;
  /** A catch-up is owed whatever the inbox holds: a (re)connect, a SYNC_HINT, a failed sync. */
  private catchUpWanted = false;
  /** A push opened a gap no send in flight can fill; owed only while that is still so. */
  private gapWanted = false;
  private gapSyncs = 0;
  private ownSendsInFlight = 0;
  private readonly maxGapSyncs: number;
  private readonly maxSyncFailures: number;

  constructor(private readonly o: InboxSyncOptions) {
    this.maxGapSyncs = o.maxGapSyncs ?? 3;
    this.maxSyncFailures = o.maxSyncFailures ?? 5;
  }

  /** A new connection: forget stale answers seen on the old one and catch up. */
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
    if (!this.gapNeedsSync()) return;
    this.gapWanted = true;
    this.start();
  }

  private gapNeedsSync(): boolean {
    const inbox = this.o.inbox;
    return inbox.hasGap && inbox.missingCount > this.ownSendsInFlight;
  }

  /** Whether a sync is owed; a gap's request lapses once the gap is closed (by a sync or an ack). */
  private owed(): boolean {
    if (this.gapWanted && !this.gapNeedsSync()) this.gapWanted = false;
    return this.catchUpWanted || this.gapWanted;
  }

  /** Catch up from lastSeq: after a (re)connect, or when the gateway says pushes may be lost. */
  request(): void {
    this.catchUpWanted = true;
    this.start();
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    this.run()
      .catch((err) => this.o.onError(err))
      .finally(() => {
        this.running = false;
        const conn = this.o.connection();
        if (conn && !conn.closed && !this.o.waits.closed && this.owed()) this.start();
      });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.owed() && !this.o.waits.closed) {
      this.catchUpWanted = false;
      const conn = this.o.connection();
      if (!conn || conn.closed) return;
      try {
        await this.catchUp(conn);
        failures = 0;
      } catch (err) {
        if (conn !== this.o.connection() || conn.closed) continue; // lost with its connection
        this.o.onError(err);
        if (++failures >= this.maxSyncFailures) return; // the next gap or reconnect tries again
        this.catchUpWanted = true;
        await this.o.waits.sleep(this.o.retryDelayMs(failures));
      }
    }
  }

  /**
   * Pages from lastSeq until the server has no more; the pages settle every gap below the
   * messages this inbox had seen when the last one was asked for.
   */
  private async catchUp(conn: Connection): Promise<void> {
    const inbox = this.o.inbox;
    let seenWhenAsked: number;
    for (;;) {
      const fromSeq = inbox.lastSeq;
      seenWhenAsked = inbox.highestSeq;
      this.gapWanted = false; // this page answers for every push received so far
      const reply = await conn.request(Op.SYNC, encode('SyncReq', { fromSeq, limit: this.o.pageLimit }));
      const page = decode('SyncResp', reply);
      this.o.deliver(inbox.syncPage(page.messages));
      if (!page.hasMore || inbox.lastSeq === fromSeq) break; // no progress: never spin
    }
    if (inbox.lastSeq >= seenWhenAsked) {
      // A gap still open is below pushes that came during the last page: they asked for a sync.
      this.gapSyncs = 0;
      if (!this.owed()) this.o.onSynced(inbox.lastSeq);
      return;
    }
    // The answer left out a message pushed before it was asked for: a stale read.
    if (++this.gapSyncs > this.maxGapSyncs) {
      this.gapSyncs = 0;
      this.o.deliver(inbox.skipGap());
      this.o.onSynced(inbox.lastSeq);
      return;
    }
    await this.o.waits.sleep(this.o.retryDelayMs(this.gapSyncs));
    this.gapWanted = true;
  }
}
