/**
 * A log-bucket latency histogram in the spirit of HdrHistogram: values are non-negative integers
 * (microseconds here), exact below 128 and within 1/128 (~0.8 %) above, up to 2^53. Fixed memory
 * (a few KB), O(1) record, mergeable across processes (sparse [index, count] pairs travel over IPC).
 */

/** Values below this are counted exactly, one bucket each. */
const LINEAR = 128;
/** Buckets per power of two above LINEAR: relative precision 1/SUB. */
const SUB = 64;
const SUB_BITS = 6;
/** Octaves above LINEAR that fit under 2^53. */
const OCTAVES = 53 - 7;
export const BUCKETS = LINEAR + OCTAVES * SUB;

export interface HistogramSnapshot {
  count: number;
  min: number;
  max: number;
  sum: number;
  /** Sparse [bucket index, count] pairs, ascending index. */
  buckets: Array<[number, number]>;
}

export interface Percentiles {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Bucket index of a value (clamped to [0, 2^53)). */
export function bucketOf(value: number): number {
  let v = Math.floor(value);
  if (!(v > 0)) return 0;
  if (v < LINEAR) return v;
  if (v >= 2 ** 53) v = 2 ** 53 - 1;
  // Exponent of the highest set bit; Math.clz32 only covers 32 bits, so go through log2 and fix
  // the rare off-by-one float rounding at exact powers of two.
  let msb = Math.floor(Math.log2(v));
  if (2 ** msb > v) msb--;
  else if (2 ** (msb + 1) <= v) msb++;
  const shift = msb - SUB_BITS;                 // >= 1 because v >= 128 = 2^7
  const top = Math.floor(v / 2 ** shift);       // in [SUB, 2*SUB)
  return LINEAR + (shift - 1) * SUB + (top - SUB);
}

/** The smallest value that lands in bucket `index`. */
export function bucketLow(index: number): number {
  if (index < LINEAR) return index;
  const shift = Math.floor((index - LINEAR) / SUB) + 1;
  const top = SUB + ((index - LINEAR) % SUB);
  return top * 2 ** shift;
}

/** The value reported for a bucket: the middle of its range (exact for the linear buckets). */
export function bucketValue(index: number): number {
  if (index < LINEAR) return index;
  const shift = Math.floor((index - LINEAR) / SUB) + 1;
  return bucketLow(index) + (2 ** shift - 1) / 2;
}

export class Histogram {
  private counts = new Float64Array(BUCKETS);
  private _count = 0;
  private _min = Infinity;
  private _max = 0;
  private _sum = 0;

  get count(): number { return this._count; }
  get max(): number { return this._count ? this._max : 0; }
  get min(): number { return this._count ? this._min : 0; }

  record(value: number): void {
    const v = value > 0 ? value : 0;
    this.counts[bucketOf(v)]++;
    this._count++;
    this._sum += v;
    if (v < this._min) this._min = v;
    if (v > this._max) this._max = v;
  }

  /** The value at quantile q in [0, 1] (bucket midpoint, clamped to the exact min and max). */
  quantile(q: number): number {
    if (this._count === 0) return 0;
    const rank = Math.max(1, Math.ceil(Math.min(1, Math.max(0, q)) * this._count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(this._max, Math.max(this._min, bucketValue(i)));
    }
    return this._max;
  }

  percentiles(): Percentiles {
    return {
      count: this._count, min: this.min, mean: this._count ? this._sum / this._count : 0,
      p50: this.quantile(0.5), p95: this.quantile(0.95), p99: this.quantile(0.99), max: this.max,
    };
  }

  add(other: Histogram | HistogramSnapshot): void {
    const snap = other instanceof Histogram ? other.snapshot() : other;
    if (snap.count === 0) return;
    for (const [i, n] of snap.buckets) this.counts[i] += n;
    this._count += snap.count;
    this._sum += snap.sum;
    if (snap.min < this._min) this._min = snap.min;
    if (snap.max > this._max) this._max = snap.max;
  }

  reset(): void {
    this.counts.fill(0);
    this._count = 0;
    this._min = Infinity;
    this._max = 0;
    this._sum = 0;
  }

  snapshot(): HistogramSnapshot {
    const buckets: Array<[number, number]> = [];
    if (this._count > 0) for (let i = 0; i < BUCKETS; i++) if (this.counts[i] > 0) buckets.push([i, this.counts[i]]);
    return { count: this._count, min: this.min, max: this.max, sum: this._sum, buckets };
  }

  static from(snap: HistogramSnapshot): Histogram {
    const h = new Histogram();
    h.add(snap);
    return h;
  }
}

/** Percentiles converted from microseconds to milliseconds, rounded to 3 decimals. */
export function toMs(p: Percentiles): Percentiles {
  const r = (us: number) => Math.round(us) / 1000;
  return { count: p.count, min: r(p.min), mean: r(p.mean), p50: r(p.p50), p95: r(p.p95), p99: r(p.p99), max: r(p.max) };
}
