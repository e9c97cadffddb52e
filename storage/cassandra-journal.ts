/**
 * Idempotent send without a per-message LWT (docs/sequencer.md): the owner of the SENDER's shard
 * keeps the dedup journal of (sender, clientMsgId). Being the only writer of those rows, it needs
 * no conditional write: it looks the pair up (memory, else one point read) and either answers
 * with the stored original, tells the caller to re-drive an earlier attempt that did not finish
 * (same msgId; appends are idempotent by msgId), or writes a new journal row and lets the send go
 * ahead. Calls for one pair are serialized here, so two racing attempts see one journal row.
 */
import type { Client } from 'cassandra-driver';
import type { Lease } from './cassandra-lease';
import { NotOwnerError, type Shards } from './cassandra-shards';
import { KeyedMutex, LruMap, num } from './cassandra-util';
import { routingKey, type RowWriter } from './cassandra-writer';
import { checkSameSend, sendDigest } from './send-digest';
import type { AppendInput } from './store';

export type JournalAnswer =
  | { state: 'new'; createdMs: number }
  | { state: 'redrive'; msgId: string; sinceMs: number }
  | { state: 'done'; msgId: string; convId: string; convSeq: number; senderSeq: number };

export interface Completion {
  from: string;
  clientMsgId: string;
  msgId: string;
  convId: string;
  convSeq: number;
  senderSeq: number;
}

interface Record {
  shard: number;
  msgId: string;
  expiresAtMs: number;
  createdMs: number;
  digest: Buffer | null;
  done?: { convId: string; convSeq: number; senderSeq: number };
}

export interface JournalOptions {
  client: Client;
  keyspace: string;
  lease: Lease;
  shards: Shards;
  writer: RowWriter;
  maxCached: number;
  ttlSlackSeconds: number;
}

export class Journal {
  private readonly mem: LruMap<string, Record>;
  private readonly mutex = new KeyedMutex();
  private readonly q: { get: string; open: string };

  constructor(private readonly o: JournalOptions) {
    this.mem = new LruMap(o.maxCached);
    const t = `${o.keyspace}.dedup`;
    this.q = {
      get: `SELECT msg_id, expires_at_ms, claimed_at_ms, conv_id, conv_seq, sender_seq, digest FROM ${t} WHERE from_uid = ? AND client_msg_id = ?`,
      // Every column written, so a late write of an older attempt (lower timestamp) leaves nothing behind.
      open: `INSERT INTO ${t} (from_uid, client_msg_id, msg_id, expires_at_ms, claimed_at_ms, digest, conv_id, conv_seq, sender_seq)
             VALUES (?, ?, ?, ?, ?, ?, null, null, null) USING TTL ?`,
    };
  }

  ttlSeconds(input: Pick<AppendInput, 'dedupWindowMs'>): number {
    return Math.max(1, Math.ceil(input.dedupWindowMs / 1000) + this.o.ttlSlackSeconds);
  }

  forget(shard?: number): void {
    this.mem.deleteWhere((r) => shard === undefined || r.shard === shard);
  }

  open(input: AppendInput): Promise<JournalAnswer> {
    const shard = this.owned(input.from);
    return this.mutex.run(pairKey(input.from, input.clientMsgId), async () => {
      const key = pairKey(input.from, input.clientMsgId);
      const digest = sendDigest(input);
      const rec = this.mem.get(key) ?? (await this.read(shard, input.from, input.clientMsgId));
      if (rec && rec.expiresAtMs > input.sentAtMs) {
        checkSameSend(rec.digest, input, digest);
        this.mem.set(key, rec);
        if (rec.done) return { state: 'done', msgId: rec.msgId, ...rec.done };
        return { state: 'redrive', msgId: rec.msgId, sinceMs: rec.createdMs };
      }
      const fresh: Record = { shard, msgId: input.msgId, expiresAtMs: input.sentAtMs + input.dedupWindowMs, createdMs: Date.now(), digest };
      const stillMine = this.guard(input.from);
      await this.o.writer.write([{
        query: this.q.open,
        params: [input.from, input.clientMsgId, fresh.msgId, fresh.expiresAtMs, fresh.createdMs, digest, this.ttlSeconds(input)],
        routingKey: routingKey(input.from, input.clientMsgId), bytes: 160,
      }], stillMine);
      this.o.lease.check(0, 'send journal');
      stillMine();
      this.mem.set(key, fresh);
      return { state: 'new', createdMs: fresh.createdMs };
    });
  }

  /**
   * Records, in this owner's memory, where the message went: later attempts here answer with it
   * at once. Nothing is written: a partition write costs as much as one of the message's own rows
   * (docs/sequencer.md, Cost), and a retry that finds the journal row without it (after a change
   * of owner, or once memory forgot it) re-drives, which the idempotent appends answer with the
   * seqs the message already has. Ignores a replaced record.
   */
  complete(c: Completion): Promise<void> {
    const shard = this.owned(c.from);
    return this.mutex.run(pairKey(c.from, c.clientMsgId), async () => {
      const key = pairKey(c.from, c.clientMsgId);
      const rec = this.mem.get(key) ?? (await this.read(shard, c.from, c.clientMsgId));
      if (!rec || rec.msgId !== c.msgId) return;
      rec.done ??= { convId: c.convId, convSeq: c.convSeq, senderSeq: c.senderSeq };
      this.mem.set(key, rec);
    });
  }

  /** A check that the sender's shard is still owned here in the epoch it is owned in now. */
  private guard(from: string): () => void {
    const shard = this.o.shards.of(from);
    const epoch = this.o.shards.mine(shard)?.epoch;
    return () => {
      if (epoch === undefined || this.o.shards.mine(shard)?.epoch !== epoch) {
        throw new NotOwnerError(`send journal of ${from}: shard ${shard} changed owner`);
      }
    };
  }

  private owned(from: string): number {
    const shard = this.o.shards.of(from);
    if (!this.o.shards.mine(shard)) throw new NotOwnerError(`send journal of ${from}: shard ${shard} is not owned here`);
    return shard;
  }

  private async read(shard: number, from: string, clientMsgId: string): Promise<Record | undefined> {
    const rs = await this.o.client.execute(this.q.get, [from, clientMsgId], { prepare: true });
    const r = rs.first();
    if (!r) return undefined;
    const convId = (r.conv_id as string | null) ?? null;
    const convSeq = num(r.conv_seq);
    const senderSeq = num(r.sender_seq);
    return {
      shard, msgId: String(r.msg_id), expiresAtMs: num(r.expires_at_ms) ?? 0, createdMs: num(r.claimed_at_ms) ?? 0,
      digest: (r.digest as Buffer | null) ?? null,
      ...(convId !== null && convSeq !== null && senderSeq !== null && { done: { convId, convSeq, senderSeq } }),
    };
  }
}

function pairKey(from: string, clientMsgId: string): string {
  return `${from}\n${clientMsgId}`;
}
