/**
 * Heads handed off at a clean release of a shard (docs/sequencer.md, "Heads handed off").
 *
 * An owner that releases a shard (a handover, or a clean stop) has written every row of the
 * shard's keys to the tables first. It then writes, in one row of `shard_heads`, the heads of the
 * keys it loaded in that epoch (heads.ts: a timeline's end and coverage, a sender's clientMsgId
 * hashes), and only then releases the shard. The next owner, taking the shard from that release,
 * reads the row once and starts those keys from it: no bucket list, tail or journal read and no
 * fence per key, where a takeover from a dead or paused owner still reads and fences each key.
 *
 * The row is used only by a take from the release of the epoch it names (the shard row shows
 * `owner = null` at that epoch): a row of an earlier epoch, a late write of one, or none at all
 * leaves the keys to their first-touch reads. An epoch in which a write of the shard's keys failed
 * hands nothing off (the failed write may still land, and only a fence covers it).
 */
import type { Client } from 'cassandra-driver';
import type { Logger } from '../../common/log';
import type { OwnedShard } from './shards';
import { ValueReader, ValueWriter } from './values';
import type { PackedHeads } from './heads';

export interface HandedOff {
  inbox: PackedHeads;
  history: PackedHeads;
  journal: PackedHeads;
}

const TAG = 0x0a;
const KINDS = ['inbox', 'history', 'journal'] as const;

/** A shard's row stays under this size: heads beyond it are left out (their keys read at first touch). */
export const MAX_HANDOFF_BYTES = 1 << 20;

/** The row's body: per head, its kind, key and numbers (zigzag varints), until the body ends or is full. */
export function encodeHandOff(h: HandedOff, maxBytes = MAX_HANDOFF_BYTES): { body: Buffer; heads: number } {
  const w = new ValueWriter();
  w.byte(TAG);
  let heads = 0;
  for (const [k, kind] of KINDS.entries()) {
    for (const [key, nums] of h[kind]) {
      if (w.at >= maxBytes) return { body: Buffer.from(w.buf.subarray(0, w.at)), heads };
      w.byte(k);
      w.str(key);
      w.varint(nums.length);
      for (const n of nums) w.varint(n >= 0 ? n * 2 : -n * 2 - 1);
      heads++;
    }
  }
  return { body: Buffer.from(w.buf.subarray(0, w.at)), heads };
}

export function decodeHandOff(body: Buffer): HandedOff {
  const r = new ValueReader(body);
  if (r.byte() !== TAG) throw new Error('shard heads: unknown layout');
  const out: HandedOff = { inbox: [], history: [], journal: [] };
  while (r.at < body.length) {
    const kind = KINDS[r.byte()];
    if (!kind) throw new Error('shard heads: unknown kind');
    const key = r.str();
    const nums: number[] = new Array<number>(r.varint());
    for (let i = 0; i < nums.length; i++) {
      const z = r.varint();
      nums[i] = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    out[kind].push([key, nums]);
  }
  return out;
}

/** The row is written and read at the store's consistency (the client's default): at LOCAL_QUORUM the next owner's read sees a row written before the release. */
export interface HandOffOptions {
  client: Client;
  keyspace: string;
  writeTimeoutMs: () => number;
  logger: Logger;
}

/** The `shard_heads` table: one row per shard, written by the owner that releases it. */
export class HandOffs {
  private readonly q: { put: string; get: string };

  constructor(private readonly o: HandOffOptions) {
    const t = `${o.keyspace}.shard_heads`;
    this.q = {
      put: `INSERT INTO ${t} (shard, epoch, body) VALUES (?, ?, ?)`,
      get: `SELECT epoch, body FROM ${t} WHERE shard = ?`,
    };
  }

  /**
   * Writes the heads of the shard's epoch `st`, to be called once every row of the shard is in
   * its table and before the release. False when nothing was written (the epoch had a failed
   * write, or the write failed: the release goes ahead, the next owner reads its keys).
   */
  async put(st: OwnedShard, heads: HandedOff): Promise<boolean> {
    if (st.failed) return false;
    const { body, heads: count } = encodeHandOff(heads);
    if (count === 0) return false;
    try {
      await this.o.client.execute(this.q.put, [st.shard, st.epoch, body],
        { prepare: true, readTimeout: this.o.writeTimeoutMs() });
      return true;
    } catch (err) {
      this.o.logger.warn('cassandra store: could not hand off the shard\'s heads; its next owner reads its keys', { shard: st.shard, err });
      return false;
    }
  }

  /** What the owner of the shard's `epoch` handed off at its release; undefined if it did not. */
  async get(shard: number, epoch: number): Promise<HandedOff | undefined> {
    try {
      const row = (await this.o.client.execute(this.q.get, [shard], { prepare: true })).first();
      if (!row || Number(row.epoch) !== epoch || !row.body) return undefined;
      return decodeHandOff(row.body as Buffer);
    } catch (err) {
      this.o.logger.warn('cassandra store: could not read the shard\'s handed-off heads; its keys are read at first touch', { shard, err });
      return undefined;
    }
  }
}
