/**
 * The inbox's unread index (docs/storage.md, user_convs and conv_unread), derived from the inbox
 * rows as they are written to their table — never logged itself.
 *
 * The owner log (log.ts) writes a partition's rows behind, a window's worth at once. The index
 * rows those inbox rows imply are computed at that moment, per user and conversation over the
 * whole window: one `user_convs` update for the newest seq (and one for the newest incoming seq),
 * and ONE `conv_unread` row per (user, conversation, bucket) carrying every incoming seq of the
 * window. Before, each delivery logged and wrote its own three index rows; a 100-member group
 * message was 300 index rows. A replay (takeover, orphan sweep) derives the same rows from the
 * same logged inbox rows, so nothing about the index has to be logged.
 *
 * A `conv_unread` row is keyed by the largest seq it holds and carries the others in `seqs`
 * (deltas below that key, varints): every row with a seq above a read cursor has a key above it.
 * Replays may group seqs differently, so a reader counts distinct seqs. Rows written before
 * schema version 6 hold one seq each and no `seqs`.
 */
import type { types } from 'cassandra-driver';

/** How a reader runs a query (the store's gate and error mapping around the driver). */
type Execute = (query: string, params: unknown[], options: { prepare: true; fetchSize: number; pageState?: string }) => Promise<types.ResultSet>;
import { num } from './util';
import { routingKey, type TableRow } from './writer';
import { packVarints, unpackVarints } from './values';
import { inboxHead } from './rows';

/** Positions in an inbox insert's values (TimelineReader's: key, bucket, seq, then inboxSpec's columns). */
const UID = 0;
const SEQ = 2;
/** Version 7 layout: conv_id and from_uid are columns. */
const CONV_ID = 4;
const FROM = 6;
/** Version 9 layout: both are in the body (rows.ts inboxHead). */
const BODY = 4;

export class UnreadIndex {
  private readonly q: { own: string; incoming: string; unread: string; count: string };

  /** `inserts`: the inbox insert of each row layout (rows.ts). */
  constructor(keyspace: string, private readonly inserts: { v7: string; v9: string }, private readonly bucketSize: number) {
    this.q = {
      own: `UPDATE ${keyspace}.user_convs USING TIMESTAMP ? SET last_seq = ? WHERE uid = ? AND conv_id = ?`,
      incoming: `UPDATE ${keyspace}.user_convs USING TIMESTAMP ? SET last_seq = ?, last_incoming_seq = ? WHERE uid = ? AND conv_id = ?`,
      unread: `INSERT INTO ${keyspace}.conv_unread (uid, conv_id, bucket, seq, seqs) VALUES (?, ?, ?, ?, ?)`,
      count: `SELECT seq, seqs FROM ${keyspace}.conv_unread WHERE uid = ? AND conv_id = ? AND bucket = ? AND seq > ?`,
    };
  }

  /**
   * The index rows of the inbox rows among `rows` (other rows are ignored). user_convs cells are
   * written at timestamp = seq, so the largest value wins whatever order windows and replays land
   * in; a conv_unread row takes the newest timestamp of the inbox rows it comes from.
   */
  derive = (rows: readonly TableRow[]): TableRow[] => {
    let convs: Map<string, Conv> | undefined;
    for (const r of rows) {
      let convId: string;
      let from: unknown;
      if (r.query === this.inserts.v9) ({ convId, from } = inboxHead(r.params[BODY] as Buffer));
      else if (r.query === this.inserts.v7) [convId, from] = [r.params[CONV_ID] as string, r.params[FROM]];
      else continue;
      const uid = r.params[UID] as string;
      const seq = r.params[SEQ] as number;
      const k = `${uid}\0${convId}`;
      convs ??= new Map();
      let c = convs.get(k);
      if (!c) convs.set(k, (c = { uid, convId, last: 0, lastIncoming: 0, incoming: new Map(), ts: undefined }));
      if (seq > c.last) c.last = seq;
      if (from === uid) continue;
      if (seq > c.lastIncoming) c.lastIncoming = seq;
      const bucket = Math.floor(seq / this.bucketSize);
      const seqs = c.incoming.get(bucket);
      if (seqs) seqs.push(seq);
      else c.incoming.set(bucket, [seq]);
      if (r.ts !== undefined && (c.ts === undefined || r.ts > c.ts)) c.ts = r.ts;
    }
    if (!convs) return [];
    const out: TableRow[] = [];
    for (const c of convs.values()) {
      const user = routingKey(c.uid);
      if (c.lastIncoming > 0) {
        out.push({ query: this.q.incoming, params: [c.lastIncoming, c.lastIncoming, c.lastIncoming, c.uid, c.convId], routingKey: user, bytes: 64, ts: undefined });
      }
      if (c.last > c.lastIncoming) {
        out.push({ query: this.q.own, params: [c.last, c.last, c.uid, c.convId], routingKey: user, bytes: 64, ts: undefined });
      }
      for (const [bucket, seqs] of c.incoming) {
        let key = 0;
        for (const s of seqs) if (s > key) key = s;
        out.push({
          query: this.q.unread, params: [c.uid, c.convId, bucket, key, packSeqs(key, seqs)],
          routingKey: routingKey(c.uid, c.convId, bucket), bytes: 48 + 2 * seqs.length, ts: c.ts,
        });
      }
    }
    return out;
  };

  /**
   * Incoming seqs of the conversation in `bucket` above `after`, added to `into` (distinct: a seq
   * in two rows counts once), reading until `into` holds `cap`.
   */
  async collect(exec: Execute, uid: string, convId: string, bucket: number, after: number, into: Set<number>, cap: number): Promise<void> {
    let pageState: string | undefined;
    do {
      const page = await exec(this.q.count, [uid, convId, bucket, after], { prepare: true, fetchSize: 500, pageState });
      for (const r of page.rows) {
        const key = num(r.seq) ?? 0;
        into.add(key);
        const packed = r.seqs as Buffer | null;
        if (packed) for (const s of unpackSeqs(key, packed)) if (s > after) into.add(s);
        if (into.size >= cap) return;
      }
      pageState = page.pageState ?? undefined;
    } while (pageState);
  }
}

interface Conv {
  uid: string;
  convId: string;
  last: number;
  lastIncoming: number;
  /** Incoming seqs by bucket. */
  incoming: Map<number, number[]>;
  ts: number | undefined;
}

/** The seqs of a row other than its key, as varints of (key - seq); null when there are none. */
export function packSeqs(key: number, seqs: readonly number[]): Buffer | null {
  if (seqs.length === 1) return null;
  return packVarints(seqs.filter((s) => s !== key).map((s) => key - s));
}

export function unpackSeqs(key: number, packed: Buffer): number[] {
  return unpackVarints(packed).map((d) => key - d);
}
