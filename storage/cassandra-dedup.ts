/**
 * Idempotent send across processes: a (sender, clientMsgId) pair is CLAIMED with an LWT insert
 * before anything of the message is written, so of any number of concurrent attempts (in this
 * process or others) exactly one writes the message. The winner fills in where the message went
 * (conv_id, conv_seq, sender_seq) once it is stored; a loser polls the record for a bounded time
 * and answers with the winner's message.
 *
 * Two clocks: the row's TTL (wall clock) removes it eventually; expires_at_ms (sentAtMs +
 * dedupWindowMs) decides, against the new attempt's sentAtMs, whether it is still a duplicate.
 * An expired row is replaced with an LWT conditional on the old msg_id, so two late retries
 * still produce one message. A claim whose winner died before completing it is taken over once
 * it is older than claimLeaseMs.
 */
import type { Client } from 'cassandra-driver';
import { UnavailableError } from '../common/errors';
import type { AppendInput } from './store';
import { num, sleep } from './cassandra-util';
import { checkSameSend, sendDigest } from './send-digest';

export interface DedupRecord {
  msgId: string;
  convId: string;
  convSeq: number;
  senderSeq: number;
  expiresAtMs: number;
}

export type Claim = { won: true; expiresAtMs: number } | { won: false; record: DedupRecord };

export interface DedupOptions {
  client: Client;
  keyspace: string;
  serialConsistency: number;
  /** How long a loser waits for the winner to complete before failing with UNAVAILABLE. */
  waitMs: number;
  pollMs: number;
  /** An incomplete claim older than this (wall clock) is presumed abandoned and taken over. */
  claimLeaseMs: number;
  /** Added to the window for the row's TTL, so sentAtMs a little ahead of the wall clock still dedups. */
  ttlSlackSeconds: number;
}

interface Row {
  msgId: string;
  expiresAtMs: number;
  claimedAtMs: number;
  convId: string | null;
  convSeq: number | null;
  senderSeq: number | null;
  digest: Buffer | null;
}

export class Dedup {
  private readonly q: { claim: string; takeover: string; complete: string; get: string; release: string };

  constructor(private readonly o: DedupOptions) {
    const t = `${o.keyspace}.dedup`;
    this.q = {
      claim: `INSERT INTO ${t} (from_uid, client_msg_id, msg_id, expires_at_ms, claimed_at_ms, digest)
              VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?`,
      takeover: `UPDATE ${t} USING TTL ? SET msg_id = ?, expires_at_ms = ?, claimed_at_ms = ?, digest = ?,
                 conv_id = null, conv_seq = null, sender_seq = null
                 WHERE from_uid = ? AND client_msg_id = ? IF msg_id = ?`,
      complete: `UPDATE ${t} USING TTL ? SET conv_id = ?, conv_seq = ?, sender_seq = ?
                 WHERE from_uid = ? AND client_msg_id = ? IF msg_id = ?`,
      get: `SELECT msg_id, expires_at_ms, claimed_at_ms, conv_id, conv_seq, sender_seq, digest FROM ${t}
            WHERE from_uid = ? AND client_msg_id = ?`,
      release: `DELETE FROM ${t} WHERE from_uid = ? AND client_msg_id = ? IF msg_id = ?`,
    };
  }

  ttlSeconds(input: AppendInput): number {
    return Math.max(1, Math.ceil(input.dedupWindowMs / 1000) + this.o.ttlSlackSeconds);
  }

  /**
   * Claims (from, clientMsgId) for input.msgId, or returns the accepted original. Throws
   * IdempotencyConflictError when the pair is held, within its window, by a different send.
   */
  async claim(input: AppendInput): Promise<Claim> {
    const digest = sendDigest(input);
    const expiresAtMs = input.sentAtMs + input.dedupWindowMs;
    const ttl = this.ttlSeconds(input);
    const deadline = Date.now() + this.o.waitMs;
    let row: Row | 'free' = 'free';
    for (let turn = 0; ; turn++) {
      if (turn > 0 && Date.now() >= deadline) {
        throw new UnavailableError(`send ${input.clientMsgId} from ${input.from} is still being stored by another attempt; retry`);
      }
      if (row === 'free') {
        const rs = await this.o.client.execute(this.q.claim,
          [input.from, input.clientMsgId, input.msgId, expiresAtMs, Date.now(), digest, ttl], { prepare: true });
        const r = rs.first();
        if (r?.['[applied]'] === true) return { won: true, expiresAtMs };
        row = toRow(r);
      }
      // Applied on an earlier try whose answer was lost: this attempt is the winner already.
      if (row.msgId === input.msgId) return { won: true, expiresAtMs };
      const complete = row.senderSeq !== null && row.convId !== null && row.convSeq !== null;
      const expired = row.expiresAtMs <= input.sentAtMs;
      // Checked before any takeover: even an abandoned claim may have been stored and acknowledged.
      if (!expired) checkSameSend(row.digest, input, digest);
      const abandoned = !complete && Date.now() - row.claimedAtMs > this.o.claimLeaseMs;
      if (expired || abandoned) {
        const rs = await this.o.client.execute(this.q.takeover,
          [ttl, input.msgId, expiresAtMs, Date.now(), digest, input.from, input.clientMsgId, row.msgId], { prepare: true });
        if (rs.first()?.['[applied]'] === true) return { won: true, expiresAtMs };
        row = await this.read(input);
        continue;
      }
      if (complete) {
        return { won: false, record: { msgId: row.msgId, convId: row.convId!, convSeq: row.convSeq!, senderSeq: row.senderSeq!, expiresAtMs: row.expiresAtMs } };
      }
      await sleep(this.o.pollMs);
      row = await this.read(input);
    }
  }

  /** Records where the winner's message went; duplicates answer with it from now on. */
  async complete(input: AppendInput, convSeq: number, senderSeq: number): Promise<void> {
    await this.o.client.execute(this.q.complete,
      [this.ttlSeconds(input), input.convId, convSeq, senderSeq, input.from, input.clientMsgId, input.msgId], { prepare: true });
  }

  /** Gives the claim up when nothing of the message was written, so a retry can go ahead at once. */
  async release(input: AppendInput): Promise<void> {
    await this.o.client.execute(this.q.release, [input.from, input.clientMsgId, input.msgId], { prepare: true });
  }

  /** Serial read: sees the latest committed claim, finishing any Paxos round in progress. */
  private async read(input: AppendInput): Promise<Row | 'free'> {
    const rs = await this.o.client.execute(this.q.get, [input.from, input.clientMsgId],
      { prepare: true, consistency: this.o.serialConsistency });
    const r = rs.first();
    // A row that vanished (TTL, release) is free: the next loop turn claims it again.
    return r ? toRow(r) : 'free';
  }
}

/** A dedup row, as read or as an unapplied LWT returned it. */
function toRow(r: Record<string, unknown> | null | undefined): Row {
  return {
    msgId: String(r?.msg_id ?? ''),
    expiresAtMs: num(r?.expires_at_ms) ?? 0,
    claimedAtMs: num(r?.claimed_at_ms) ?? 0,
    convId: (r?.conv_id as string | null | undefined) ?? null,
    convSeq: num(r?.conv_seq),
    senderSeq: num(r?.sender_seq),
    digest: (r?.digest as Buffer | null | undefined) ?? null,
  };
}
