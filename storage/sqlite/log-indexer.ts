/**
 * Writes message log records (storage/sqlite/log-record.ts) into the tables reads use: each
 * message's `messages` row (history, dedup) and one `inbox` row per recipient, together with the
 * log position they reach (`log_state.indexed_lsn`), in one transaction. The writer thread runs it
 * behind the acknowledgements (storage/sqlite/writer.ts); the store runs it at open for what a
 * crash left unindexed (storage/sqlite/message-log.ts, replay).
 *
 * Many records per transaction is the point: a commit costs every page it dirtied, and the
 * entries of one user's inbox or one conversation written together share their page.
 *
 * Every insert is INSERT OR IGNORE: a record indexed twice (it cannot be, since the lsn commits
 * with the rows, but a damaged log could repeat one) changes nothing.
 */
import type Database from 'better-sqlite3';
import type { LogRecord } from './log-record';
import type { SummaryEntry } from './summaries';

export interface IndexWritten {
  messages: number;
  inbox: number;
  /** One per inbox row written: what the summaries queue takes. */
  entries: SummaryEntry[];
}

/** The last log record in the tables, as committed. */
export function readIndexedLsn(db: Database.Database): number {
  return (db.prepare('SELECT indexed_lsn AS lsn FROM log_state WHERE id = 0').get() as { lsn: number }).lsn;
}

export class LogIndexer {
  private readonly tx: Database.Transaction<(records: LogRecord[]) => IndexWritten>;
  /** The last record in the tables. */
  indexedLsn: number;

  constructor(
    db: Database.Database,
    /** Called with each recipient before its inbox row is written (the writer checks its summaries once). */
    private readonly beforeUser: (uid: string) => void = () => undefined,
  ) {
    const messagePut = db.prepare<[string, number, string, string, string, string, string, string, Uint8Array, number, number, number, number]>(
      `INSERT OR IGNORE INTO messages (conv_id, conv_seq, msg_id, from_uid, to_uid, group_id, client_msg_id, content_type, content,
         sent_at_ms, sender_seq, dedup_until_ms, dedup_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const inboxPut = db.prepare<[string, number, string, number, string]>(
      'INSERT OR IGNORE INTO inbox (uid, seq, conv_id, conv_seq, from_uid) VALUES (?, ?, ?, ?, ?)');
    const lsnPut = db.prepare<[number]>('UPDATE log_state SET indexed_lsn = ? WHERE id = 0');
    this.indexedLsn = readIndexedLsn(db);
    this.tx = db.transaction((records: LogRecord[]) => {
      const out: IndexWritten = { messages: 0, inbox: 0, entries: [] };
      for (const r of records) {
        out.messages += messagePut.run(r.convId, r.convSeq, r.msgId, r.from, r.to, r.groupId, r.clientMsgId, r.contentType,
          r.content, r.sentAtMs, r.senderSeq, r.dedupUntilMs, r.dedupGen).changes;
        for (let i = 0; i < r.recipients.length; i++) {
          const uid = r.recipients[i];
          this.beforeUser(uid);
          if (inboxPut.run(uid, r.seqs[i], r.convId, r.convSeq, r.from).changes === 0) continue;
          out.inbox++;
          out.entries.push({ uid, seq: r.seqs[i], convId: r.convId, from: r.from });
        }
      }
      lsnPut.run(records[records.length - 1].lsn);
      return out;
    });
  }

  /** Writes records (in lsn order, after indexedLsn) in one IMMEDIATE transaction. */
  write(records: LogRecord[]): IndexWritten {
    const out = this.tx.immediate(records);
    this.indexedLsn = records[records.length - 1].lsn;
    return out;
  }
}
