/** A bounded map for caches: least recently used out first. */

/** Entries one set() looks at, at most, to find one to forget. */
const EVICTION_LOOKS = 8;

/**
 * A Map that forgets its least recently used keys beyond `max` entries, never one `keep` pins.
 * Pinned entries may hold it above `max` for as long as they are pinned.
 *
 * Recency is tracked the CLOCK way (second chance): get() only marks an entry used, and a set()
 * beyond max walks from the oldest end, moving used and pinned entries to the recent end (used
 * ones unmarked) and forgetting the first that is neither. A get() that moved its entry (a Map
 * delete and insert) cost more than the lookup itself on the store's hot path. Each set() looks at
 * a few entries at most, so with many pinned entries a set() does not scan them all.
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, { v: V; used: boolean }>();
  constructor(private readonly max: number, private readonly keep?: (value: V) => boolean) {}

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
    if (this.map.size <= this.max) return;
    let looks = EVICTION_LOOKS;
    for (const [k, old] of this.map) {
      if (this.map.size <= this.max || looks-- === 0) break;
      this.map.delete(k);
      if (old.used || this.keep?.(old.v)) {
        old.used = false;
        this.map.set(k, old);
      }
    }
  }

  get size(): number {
    return this.map.size;
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  deleteWhere(test: (value: V) => boolean): void {
    for (const [k, e] of this.map) if (test(e.v)) this.map.delete(k);
  }
}
