/**
 * The compact binary value encoding of the owner log's body (log-body.ts) and of a message row's
 * packed columns (rows.ts): strings written once and referred to by index after, byte values once
 * per distinct buffer slice, integers as zigzag varints.
 *
 *   value = NULL | TRUE | FALSE | INT zigzag:varint | F64 8 bytes | STR str | BLOB new-or-ref
 *           | ARRAY count:varint value* | JSON str (anything else, JSON.stringify'd)
 *   str   = 0x00 len:varint utf8 (new: appended to the string table) | 0x01 index:varint
 */

const T = { NULL: 0, TRUE: 1, FALSE: 2, INT: 3, F64: 4, STR: 5, BLOB_NEW: 6, BLOB_REF: 7, ARRAY: 8, JSON: 9 } as const;

export class ValueWriter {
  buf = Buffer.allocUnsafe(4096);
  at = 0;
  private readonly strings = new Map<string, number>();
  private readonly blobs = new Map<ArrayBufferLike, Map<string, number>>();
  private blobCount = 0;

  /** Empty again, for the next buffer (its tables too). */
  reset(): void {
    this.at = 0;
    this.strings.clear();
    this.blobs.clear();
    this.blobCount = 0;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.at++] = b;
  }

  /** An unsigned integer up to 2^53, 7 bits a byte. */
  varint(n: number): void {
    this.room(8);
    while (n >= 0x80) {
      this.buf[this.at++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.at++] = n;
  }

  str(s: string, encoding: 'utf8' | 'latin1' = 'utf8'): void {
    const i = this.strings.get(s);
    if (i !== undefined) {
      this.byte(1);
      this.varint(i);
      return;
    }
    this.strings.set(s, this.strings.size);
    const n = encoding === 'utf8' ? Buffer.byteLength(s, 'utf8') : s.length;
    this.byte(0);
    this.varint(n);
    this.room(n);
    this.at += this.buf.write(s, this.at, n, encoding);
  }

  value(v: unknown): void {
    if (v === null || v === undefined) this.byte(T.NULL);
    else if (v === true) this.byte(T.TRUE);
    else if (v === false) this.byte(T.FALSE);
    else if (typeof v === 'number') {
      if (Number.isSafeInteger(v)) {
        this.byte(T.INT);
        this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
      } else {
        this.byte(T.F64);
        this.room(8);
        this.at = this.buf.writeDoubleBE(v, this.at);
      }
    } else if (typeof v === 'string') {
      this.byte(T.STR);
      this.str(v);
    } else if (v instanceof Uint8Array) this.blob(v);
    else if (Array.isArray(v)) {
      this.byte(T.ARRAY);
      this.varint(v.length);
      for (const x of v) this.value(x);
    } else {
      this.byte(T.JSON);
      this.str(JSON.stringify(v));
    }
  }

  private blob(v: Uint8Array): void {
    let inBuffer = this.blobs.get(v.buffer);
    if (!inBuffer) this.blobs.set(v.buffer, (inBuffer = new Map()));
    // The same slice (one message's content in several rows) is one value.
    const key = `${v.byteOffset}:${v.byteLength}`;
    const i = inBuffer.get(key);
    if (i !== undefined) {
      this.byte(T.BLOB_REF);
      this.varint(i);
      return;
    }
    inBuffer.set(key, this.blobCount++);
    this.byte(T.BLOB_NEW);
    this.varint(v.byteLength);
    this.room(v.byteLength);
    this.buf.set(v, this.at);
    this.at += v.byteLength;
  }
}

export class ValueReader {
  at = 0;
  private readonly strings: string[] = [];
  private readonly blobs: Buffer[] = [];
  constructor(private readonly buf: Buffer) {}

  byte(): number {
    this.need(1);
    return this.buf[this.at++];
  }

  private need(n: number): void {
    if (this.at + n > this.buf.length) throw new Error('packed values: truncated');
  }

  varint(): number {
    let n = 0;
    for (let mul = 1; ; mul *= 0x80) {
      const b = this.byte();
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
    }
  }

  str(encoding: 'utf8' | 'latin1' = 'utf8'): string {
    if (this.byte() === 1) return this.strings[this.varint()];
    const n = this.varint();
    this.need(n);
    const s = this.buf.toString(encoding, this.at, this.at + n);
    this.at += n;
    this.strings.push(s);
    return s;
  }

  value(): unknown {
    const t = this.byte();
    switch (t) {
      case T.NULL: return null;
      case T.TRUE: return true;
      case T.FALSE: return false;
      case T.INT: {
        const z = this.varint();
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case T.F64: {
        this.need(8);
        const v = this.buf.readDoubleBE(this.at);
        this.at += 8;
        return v;
      }
      case T.STR: return this.str();
      case T.BLOB_NEW: {
        const n = this.varint();
        this.need(n);
        // Copied: the replayed row must not keep the whole page of log rows alive.
        const b = Buffer.from(this.buf.subarray(this.at, this.at + n));
        this.at += n;
        this.blobs.push(b);
        return b;
      }
      case T.BLOB_REF: return this.blobs[this.varint()];
      case T.ARRAY: {
        const n = this.varint();
        const out: unknown[] = [];
        for (let i = 0; i < n; i++) out.push(this.value());
        return out;
      }
      case T.JSON: return JSON.parse(this.str()) as unknown;
      default: throw new Error(`packed values: unknown value tag ${t}`);
    }
  }
}


const scratch = new ValueWriter();

/** Values packed in one buffer (a row's columns): `tag` first, so a reader can tell layouts apart. */
export function packValues(tag: number, values: readonly unknown[]): Buffer {
  // One writer reused (JavaScript is single-threaded, and nothing here awaits): no 4 KiB
  // buffer and two tables per message; the result is copied out at its length.
  const w = scratch;
  w.reset();
  w.byte(tag);
  w.varint(values.length);
  for (const v of values) w.value(v);
  return Buffer.from(w.buf.subarray(0, w.at));
}

/** Unsigned integers as bare varints, one after another (no tag, no count). */
export function packVarints(ns: Iterable<number>): Buffer {
  const w = scratch;
  w.reset();
  for (const n of ns) w.varint(n);
  return Buffer.from(w.buf.subarray(0, w.at));
}

/** The integers packVarints wrote. */
export function unpackVarints(packed: Buffer): number[] {
  const r = new ValueReader(packed);
  const out: number[] = [];
  while (r.at < packed.length) out.push(r.varint());
  return out;
}

/** The values packValues wrote (the first `max` of them at most), after checking its tag. */
export function unpackValues(tag: number, packed: Buffer, max = Infinity): unknown[] {
  const r = new ValueReader(packed);
  const t = r.byte();
  if (t !== tag) throw new Error(`packed values: tag ${t}, expected ${tag}`);
  const n = Math.min(r.varint(), max);
  const out: unknown[] = [];
  for (let i = 0; i < n; i++) out.push(r.value());
  return out;
}
