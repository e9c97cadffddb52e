/** A bounded map for caches: least recently used out first. */

/** Entries one set() looks at, at most, to find one to forget. */
const EVICTION_LOOKS = 8;

/**
 * A Map that forgets its least recently used keys beyond `max` entries, never one `keep` pins.
 * Pinned entries may hold it above `max` for as long as they are pinned.
 *
 * Recency is kept the second-chance way: get() only marks an entry used; a set() beyond max looks
 * at the oldest entries, moving used (then unmarked) and pinned ones to the recent end and
 * forgetting the first that is neither, so an entry goes once it was neither read nor pinned for
 * a whole turn of the others. The look starts where the previous one stopped (a Map iterator kept
 * across calls survives changes to the Map): started from the oldest end every time, it walked
 * over every slot deleted since the Map last compacted itself, 19 % of the logic process once the
 * send journal's cache was full; and a get() that moved its entry (a Map delete and insert) cost
 * more than the lookup itself. Each set() looks at a few entries at most, so with many pinned
 * entries it does not scan them all; it never forgets the entry it sets.
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, { v: V; used: boolean }>();
  /** Where the last look stopped: an iterator over the map in insertion order, oldest first. */
  private hand: Iterator<[K, { v: V; used: boolean }]> | undefined;
  /**
   * `keep` pins an entry; `forgot` hears each entry forgotten for room (not one deleted), so a
   * cache can keep a smaller form of it.
   */
  constructor(
    private readonly max: number,
    private readonly keep?: (value: V) => boolean,
    private readonly forgot?: (key: K, value: V) => void,
  ) {}

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    e.used = true;
    return e.v;
  }

  set(key: K, value: V): void {
    const e = this.map.get(key);
    if (e !== undefined) {
      e.v = value;
      e.used = true;
      return;
    }
    this.map.set(key, { v: value, used: false });
    for (let looks = EVICTION_LOOKS; looks > 0 && this.map.size > this.max; looks--) {
      let next = this.hand?.next();
      if (!next || next.done) {
        this.hand = this.map.entries();
        next = this.hand.next();
        if (next.done) return;
      }
      const [k, old] = next.value;
      // Never the entry being set: its caller goes on to use it (a timeline lane is pinned
      // only once its first append starts).
      if (k === key) continue;
      this.map.delete(k);
      if (old.used || this.keep?.(old.v)) {
        old.used = false;
        this.map.set(k, old);
      } else {
        this.forgot?.(k, old.v);
      }
    }
  }

  get size(): number {
    return this.map.size;
  }

  /** Whether key is here (without marking it used). */
  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Every value, oldest first (without marking any used). */
  *values(): IterableIterator<V> {
    for (const e of this.map.values()) yield e.v;
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  deleteWhere(test: (value: V) => boolean): void {
    for (const [k, e] of this.map) if (test(e.v)) this.map.delete(k);
  }
}
