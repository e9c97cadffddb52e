/**
 * The newest seq of each user inbox and each conversation, kept in memory. The embedded store is
 * the only writer of its file, so it can hand out seqs without writing a counter: a seq exists
 * on disk only as the key of the row it numbers, and a cold key is loaded from the largest such
 * key (one index probe). Bounded: past maxKeys the least recently used key is dropped and later
 * reloaded from its rows.
 *
 * A seq taken inside a write transaction is written by that transaction. When the transaction
 * (or one item's savepoint) rolls back, the caller forgets the keys it touched; reloading them
 * on the same connection then reads exactly what is still written.
 */
export class SeqCache {
  private readonly seqs = new Map<string, number>();

  constructor(
    /** The newest seq written for key, 0 when none. */
    private readonly load: (key: string) => number,
    private readonly maxKeys: number,
  ) {}

  get size(): number {
    return this.seqs.size;
  }

  /** The newest seq of key (0 when it has none). */
  current(key: string): number {
    const v = this.seqs.get(key);
    if (v !== undefined) return v;
    const loaded = this.load(key);
    this.remember(key, loaded);
    return loaded;
  }

  /** Takes the next seq of key; its row must be written in the current transaction. */
  next(key: string): number {
    const v = this.current(key) + 1;
    this.remember(key, v);
    return v;
  }

  /** Drops keys whose taken seqs were rolled back; the next use reloads them. */
  forget(keys: Iterable<string>): void {
    for (const k of keys) this.seqs.delete(k);
  }

  private remember(key: string, seq: number): void {
    // Re-inserting moves the key to the end of the Map's order: the front is least recently used.
    this.seqs.delete(key);
    this.seqs.set(key, seq);
    if (this.seqs.size > this.maxKeys) this.seqs.delete(this.seqs.keys().next().value as string);
  }
}
