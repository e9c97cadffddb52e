/**
 * Conversation summaries written behind: `user_convs` (each user's newest and newest incoming
 * seq per conversation) and `unread_marks` (the seqs of incoming messages, for unread counts).
 * They are derived from the inbox, so the append transaction leaves them out: committed inbox
 * entries queue here and a later, bounded transaction writes a whole tick's worth at once, one
 * upsert per (user, conversation) however many messages it got.
 *
 * Crash safety: every summary write is idempotent (MAX upserts, INSERT OR IGNORE), and a user's
 * summaries are complete up to the largest `user_convs.last_seq` of that user, because a flush
 * writes a prefix of each user's entries in one transaction. When a user is first used after
 * opening (or after its seq was evicted from memory), `noteLoaded` compares that mark with the
 * inbox and, when the inbox is ahead, the next flush re-reads the missing entries from the inbox.
 * Until then the user's queued entries are dropped: the re-read covers them. Queued entries are
 * folded per user and conversation as they arrive, so a flush writes one upsert per pair.
 */
import { performance } from 'node:perf_hooks';
import type Database from 'better-sqlite3';

export interface SummaryEntry {
  uid: string;
  seq: number;
  convId: string;
  from: string;
}

export interface SummariesOptions {
  /** Entries one flush transaction writes at most (bounds the time appends on the writer wait behind it). */
  maxFlushEntries: number;
}

export class Summaries {
  /** Rows written so far (upserts that changed a row, marks inserted), for the bench's cost counts. */
  readonly rowsWritten = { userConvs: 0, unreadMarks: 0 };
  /** Flush transactions so far, the longest (ms), and how many took over 5 ms. */
  flushes = 0;
  longestFlushMs = 0;
  flushesOver5Ms = 0;
  /** What is queued, already folded per user and conversation: one upsert each however many messages. */
  private readonly queued = new Map<string, UserSummary>();
  private queuedEntries = 0;
  /** uid -> the seq its summaries are complete to, for users whose inbox is ahead of them. */
  private readonly catchUp = new Map<string, number>();
  private readonly sql;

  constructor(private readonly db: Database.Database, private readonly options: SummariesOptions) {
    this.sql = {
      summarizedTo: db.prepare<[string], { s: number | null }>('SELECT MAX(last_seq) AS s FROM user_convs WHERE uid = ?'),
      inboxAfter: db.prepare<[string, number, number], { seq: number; conv_id: string; from_uid: string }>(
        'SELECT seq, conv_id, from_uid FROM inbox WHERE uid = ? AND seq > ? ORDER BY seq LIMIT ?'),
      convPut: db.prepare<[string, string, number, number]>(
        `INSERT INTO user_convs (uid, conv_id, last_seq, last_incoming_seq) VALUES (?, ?, ?, ?)
         ON CONFLICT (uid, conv_id) DO UPDATE SET
           last_seq = MAX(last_seq, excluded.last_seq),
           last_incoming_seq = MAX(last_incoming_seq, excluded.last_incoming_seq)`),
      markPut: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO unread_marks (uid, conv_id, seq) VALUES (?, ?, ?)'),
    };
  }

  /** Entries queued or users waiting for a re-read: work the next flush has. */
  get pending(): number {
    return this.queuedEntries + this.catchUp.size;
  }

  /** Queues entries of a committed append transaction. */
  add(entries: readonly SummaryEntry[]): void {
    for (const e of entries) {
      let u = this.queued.get(e.uid);
      if (!u) this.queued.set(e.uid, u = new UserSummary());
      u.add(e);
    }
    this.queuedEntries += entries.length;
  }

  /** Called when uid's newest inbox seq was loaded from disk: schedules a re-read if summaries lag. */
  noteLoaded(uid: string, inboxMaxSeq: number): void {
    if (this.catchUp.has(uid)) return;
    const to = this.sql.summarizedTo.get(uid)?.s ?? 0;
    if (inboxMaxSeq > to) this.catchUp.set(uid, to);
  }

  /**
   * One transaction of about maxFlushEntries rows. Returns whether work is left. A user's queued
   * summaries are written whole, in one transaction: that keeps "complete up to the user's
   * largest last_seq" true at every commit.
   */
  flushSome(): boolean {
    if (this.pending === 0) return false;
    const t0 = performance.now();
    this.db.transaction(() => {
      let budget = this.options.maxFlushEntries;
      for (const [uid, from] of this.catchUp) {
        if (budget <= 0) break;
        const read = this.sql.inboxAfter.all(uid, from, budget);
        const u = new UserSummary();
        for (const r of read) u.add({ uid, seq: r.seq, convId: r.conv_id, from: r.from_uid });
        budget -= this.write(uid, u);
        if (read.length === 0 || budget > 0) this.catchUp.delete(uid);
        else this.catchUp.set(uid, read[read.length - 1].seq);
      }
      for (const [uid, u] of this.queued) {
        if (budget <= 0) break;
        this.queued.delete(uid);
        this.queuedEntries -= u.entries;
        // A user still being re-read from the inbox gets these entries from there.
        if (!this.catchUp.has(uid)) budget -= this.write(uid, u);
      }
    }).immediate();
    const tookMs = performance.now() - t0;
    this.flushes++;
    this.longestFlushMs = Math.max(this.longestFlushMs, tookMs);
    if (tookMs > 5) this.flushesOver5Ms++;
    return this.pending > 0;
  }

  /** Writes everything queued, for a read that must see every acknowledged append. */
  flushAll(): void {
    while (this.flushSome());
  }

  /** Writes one user's summaries; returns the rows written. */
  private write(uid: string, u: UserSummary): number {
    for (const m of u.marks) this.rowsWritten.unreadMarks += this.sql.markPut.run(uid, m.convId, m.seq).changes;
    for (const [convId, c] of u.convs) this.rowsWritten.userConvs += this.sql.convPut.run(uid, convId, c.last, c.incoming).changes;
    return u.marks.length + u.convs.size;
  }
}

/** One user's queued summaries: newest seq and newest incoming seq per conversation, and the incoming seqs. */
class UserSummary {
  readonly convs = new Map<string, { last: number; incoming: number }>();
  readonly marks: { convId: string; seq: number }[] = [];
  entries = 0;

  add(e: SummaryEntry): void {
    this.entries++;
    let c = this.convs.get(e.convId);
    if (!c) this.convs.set(e.convId, c = { last: 0, incoming: 0 });
    c.last = Math.max(c.last, e.seq);
    if (e.from !== e.uid) {
      c.incoming = Math.max(c.incoming, e.seq);
      this.marks.push({ convId: e.convId, seq: e.seq });
    }
  }
}
