/** A bounded map for caches: least recently used out first. */

/** A Map that forgets its least recently used key beyond `max` entries (never one `keep` pins). */
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
    for (const [k, v] of this.map) {
      if (this.map.size <= this.max) break;
      if (!this.keep?.(v)) this.map.delete(k);
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
