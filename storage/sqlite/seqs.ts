/**
 * The newest seq of each user inbox and each conversation, kept in memory. The embedded store is
 * the only writer of its file, so it can hand out seqs without writing a counter: a seq exists
 * on disk only as the key of the row it numbers, and a cold key is loaded from the largest such
 * key (one index probe). Bounded: about maxKeys are kept; keys unused for a while are dropped
 * and later reloaded from their rows.
 *
 * A seq taken inside a write transaction is written by that transaction. When the transaction
 * (or one item's savepoint) rolls back, the caller forgets the keys it touched; reloading them
 * on the same connection then reads exactly what is still written.
 */
export class SeqCache {
  /**
   * Two generations instead of a strict LRU order: a key used since the last turnover is in
   * `young`, updated in place (a Map set on an existing key), and a hit in `old` moves it to
   * `young`. When `young` holds half of maxKeys it becomes `old` and what was `old` is dropped:
   * the keys not used for a whole generation. The strict order cost a delete and a re-insert per
   * seq taken (2 % of the embedded process at a few thousand sends/s).
   */
  private young = new Map<string, number>();
  private old = new Map<string, number>();
  private readonly maxYoung: number;

  constructor(
    /** The newest seq written for key, 0 when none. */
    private readonly load: (key: string) => number,
    maxKeys: number,
  ) {
    this.maxYoung = Math.max(1, Math.floor(maxKeys / 2));
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  /** The newest seq of key (0 when it has none). */
  current(key: string): number {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    const seq = o ?? this.load(key);
    if (o !== undefined) this.old.delete(key);
    this.remember(key, seq);
    return seq;
  }

  /** Takes the next seq of key; its row must be written in the current transaction. */
  next(key: string): number {
    const v = this.current(key) + 1;
    // current() left the key in young: this only updates its value.
    this.young.set(key, v);
    return v;
  }

  /** Hands back `seq`, the last one next(key) took, when its row was not written after all. */
  giveBack(key: string, seq: number): void {
    if (this.young.get(key) === seq) this.young.set(key, seq - 1);
    else this.forget([key]);
  }

  /** Drops keys whose taken seqs were rolled back; the next use reloads them. */
  forget(keys: Iterable<string>): void {
    for (const k of keys) {
      this.young.delete(k);
      this.old.delete(k);
    }
  }

  private remember(key: string, seq: number): void {
    if (this.young.size >= this.maxYoung) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, seq);
  }
}
