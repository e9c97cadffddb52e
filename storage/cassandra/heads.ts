/**
 * What an owner keeps of a key once the key's full state left memory, so that touching it again
 * reads nothing (docs/sequencer.md, "Keys out of memory"): of a timeline, its end (`Head`); of a
 * sender's send journal, hashes of the clientMsgIds it has rows for.
 *
 * Only for a key loaded in the shard's current epoch: in that epoch this process is the only
 * writer of the key's rows, so what it wrote is all a read could find beyond what it read at the
 * first touch (for a timeline, the newest seq it allocated is the key's end, and every earlier
 * epoch's seqs are already below it). Kept per shard with the epoch it was kept in; a head of
 * another epoch is never used.
 */

/**
 * Timeline keys (each of inboxes and conversations) and senders an owner keeps in full by default
 * (`maxCachedHeads`): ~1.1 KB of heap each (a store held 424 MiB with 100,000 of each kind, 98 MiB
 * with 1,000: BENCHMARKS.md, "Keys out of memory").
 */
export const DEFAULT_MAX_CACHED_KEYS = 100_000;

/** Heads kept by default over a store's keys: ~125 MiB of heap at ~250 bytes each (BENCHMARKS.md, "Keys out of memory"). */
export const DEFAULT_MAX_KEY_HEADS = 500_000;

export interface Head {
  /** The newest seq allocated to the key in this epoch (or its loaded end). */
  cur: number;
  /** Memory vouches for every append of the key since this time (ms): none happened since it left. */
  coveredFromMs: number;
  /** The bucket of `cur` when it is listed in seq_heads; -1 when not (the next append lists it). */
  listedBucket: number;
  /**
   * Handed off only (handoff.ts): hashes (`hash32`) of the msgIds appended since coveredFromMs, which
   * the head vouches for only as hashes: an append whose msgId's hash is among them looks in the tail.
   */
  carried?: number[];
}

/** A 32-bit FNV-1a hash of an id (a small integer: an array of them is packed as numbers). */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** A timeline head as numbers: cur, coveredFromMs, listedBucket, then the carried hashes. */
export function packHead(h: Head): number[] {
  const packed = [h.cur, h.coveredFromMs, h.listedBucket];
  if (h.carried) for (const x of h.carried) packed.push(x);
  return packed;
}

export function unpackHead(p: number[]): Head {
  return { cur: p[0], coveredFromMs: p[1], listedBucket: p[2], ...(p.length > 3 && { carried: p.slice(3) }) };
}

/** Heads as handed off (handoff.ts): each key with its head packed as numbers. */
export type PackedHeads = [string, number[]][];

/** How many heads the store keeps over all its timelines, how many it has, and how many were used. */
export interface HeadBudget {
  readonly max: number;
  count: number;
  /** Heads taken back by a touch so far (each a tail or journal read saved). */
  used: number;
}

interface ShardHeads {
  epoch: number;
  /** key -> its head packed as numbers (a timeline's: [cur, coveredFromMs, listedBucket]), the smallest form here. */
  keys: Map<string, number[]>;
  /** The oldest heads first: an iterator kept across evictions, so no eviction walks the slots freed before it. */
  hand?: Iterator<string>;
}

export class KeyHeads {
  private readonly shards = new Map<number, ShardHeads>();

  constructor(private readonly budget: HeadBudget) {}

  /** Keeps a timeline key's head. */
  put(shard: number, epoch: number, key: string, head: Head): void {
    this.putPacked(shard, epoch, key, packHead(head));
  }

  /** A timeline key's head of this epoch, removed (the caller's lane holds it from now on). */
  take(shard: number, epoch: number, key: string): Head | undefined {
    const h = this.takePacked(shard, epoch, key);
    return h && unpackHead(h);
  }

  /** Keeps key's head (replacing one it had), forgetting the oldest of its shard beyond the budget. */
  putPacked(shard: number, epoch: number, key: string, packed: number[]): void {
    if (this.budget.max <= 0) return;
    let s = this.shards.get(shard);
    if (s && s.epoch !== epoch) {
      this.drop(shard, s);
      s = undefined;
    }
    if (!s) {
      s = { epoch, keys: new Map() };
      this.shards.set(shard, s);
    }
    if (s.keys.delete(key)) this.budget.count--;
    s.keys.set(key, packed);
    this.budget.count++;
    if (this.budget.count > this.budget.max) this.evictOne(s, key);
  }

  /** The key's head of this epoch, removed (the caller holds it from now on). */
  takePacked(shard: number, epoch: number, key: string): number[] | undefined {
    const s = this.shards.get(shard);
    if (!s) return undefined;
    if (s.epoch !== epoch) {
      this.drop(shard, s);
      return undefined;
    }
    const h = s.keys.get(key);
    if (h === undefined) return undefined;
    s.keys.delete(key);
    this.budget.count--;
    this.budget.used++;
    return h;
  }

  /**
   * For the next owners of the shards in `owned` (handoff.ts), per shard: the heads of the keys
   * still in memory that were loaded in the shard's epoch (`packedOf`: undefined for one that has
   * none), then the heads kept here of keys not in memory. Nothing is removed.
   */
  handOff<T extends { shard: number; epoch: number }>(owned: ReadonlyMap<number, { epoch: number }>, inMemory: Iterable<T>,
    keyOf: (x: T) => string, packedOf: (x: T) => number[] | undefined, held: (key: string) => boolean): Map<number, PackedHeads> {
    const out = new Map<number, PackedHeads>([...owned.keys()].map((n) => [n, []]));
    for (const x of inMemory) {
      if (owned.get(x.shard)?.epoch !== x.epoch) continue;
      const packed = packedOf(x);
      if (packed) out.get(x.shard)!.push([keyOf(x), packed]);
    }
    for (const [n, { epoch }] of owned) {
      const s = this.shards.get(n);
      if (s?.epoch === epoch) for (const [key, packed] of s.keys) if (!held(key)) out.get(n)!.push([key, packed]);
    }
    return out;
  }

  /** Forgets the heads of one shard, or all. */
  forget(shard?: number): void {
    for (const [n, s] of this.shards) if (shard === undefined || n === shard) this.drop(n, s);
  }

  get size(): number {
    let n = 0;
    for (const s of this.shards.values()) n += s.keys.size;
    return n;
  }

  private drop(n: number, s: ShardHeads): void {
    this.budget.count -= s.keys.size;
    this.shards.delete(n);
  }

  /** The oldest head of this shard other than `except` (keys hash evenly over shards), else of any. */
  private evictOne(s: ShardHeads, except: string): void {
    if (s.keys.size > 1 && this.evictFrom(s, except)) return;
    for (const other of this.shards.values()) if (other !== s && other.keys.size > 0 && this.evictFrom(other, except)) return;
  }

  private evictFrom(s: ShardHeads, except: string): boolean {
    for (let pass = 0; pass < 2; pass++) {
      let next = s.hand?.next();
      if (!next || next.done) {
        s.hand = s.keys.keys();
        next = s.hand.next();
      }
      for (; !next.done; next = s.hand!.next()) {
        if (next.value === except) continue;
        s.keys.delete(next.value);
        this.budget.count--;
        return true;
      }
    }
    return false;
  }
}
