/** A bounded map for caches: least recently used out first. */

/** Entries one set() looks at, at most, to find one to forget. */
const EVICTION_LOOKS = 8;

/**
 * A Map that forgets its least recently used key beyond `max` entries, never one `keep` pins.
 * Pinned entries may hold it above `max` for as long as they are pinned. Each set() looks at a
 * few of the oldest entries at most: a pinned one is moved to the recent end, so the next look
 * starts with the others (with many pinned entries a full scan per set() would cost O(n) each).
 */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number, private readonly keep?: (value: V) => boolean) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size <= this.max) return;
    let looks = EVICTION_LOOKS;
    for (const [k, v] of this.map) {
      if (this.map.size <= this.max || looks-- === 0) break;
      this.map.delete(k);
      if (this.keep?.(v)) this.map.set(k, v);
    }
  }

  get size(): number {
    return this.map.size;
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  deleteWhere(test: (value: V) => boolean): void {
    for (const [k, v] of this.map) if (test(v)) this.map.delete(k);
  }
}
