/**
 * The reader and writer every generated codec (proto/gen-ts, see proto/README.md) runs on, with
 * the two properties the protocol promises on top of the stock @bufbuild/protobuf wire runtime:
 *
 * - Strings are strict UTF-8. The stock reader would replace bad bytes with U+FFFD, which makes
 *   distinct values equal (two client_msg_ids that differ only in bad bytes would deduplicate to
 *   one message). Nested messages are read through the same reader, so this covers every string
 *   field at any depth.
 * - uint64 fields (seqs, ms timestamps) are read straight into a number. The stock reader builds a
 *   bigint that the generated code then turns into a string and parses; on the push path that is
 *   most of a Message's decode cost.
 *
 * No Node-only import: the client SDK runs this in browsers too. Where Node's Buffer exists (the
 * server, the SDK in Node) bytes come out as Buffers, as before; elsewhere as plain Uint8Arrays.
 */
import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { InvalidUtf8Error } from '../common/errors';

/** Node's Buffer, or undefined in a browser (typeof never throws for a missing global). */
const NodeBuffer: typeof Buffer | undefined = typeof Buffer === 'function' ? Buffer : undefined;

/** Strict: throws on bytes that are not UTF-8 (no U+FFFD); a leading BOM is kept, as Buffer#toString keeps it. */
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** The reader's fallback for strings that are not all ASCII (ASCII is read inline). */
function strictUtf8(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new InvalidUtf8Error('a string field is not valid UTF-8');
  }
}

/** A string as UTF-8 bytes: a Buffer in Node, a Uint8Array elsewhere. */
export function utf8Bytes(text: string): Buffer {
  return (NodeBuffer ? NodeBuffer.from(text, 'utf8') : encoder.encode(text)) as Buffer;
}

const MAX_VARINT_BYTES = 10;

export class WireReader extends BinaryReader {
  /** BinaryReader keeps its buffer private; uint64() reads it directly. */
  private readonly bytesIn: Uint8Array;

  /**
   * In Node `bytes` is viewed as a Buffer so that bytes fields come out as Buffer views of the
   * input (no copy), as callers that hand them on to sockets and Buffer APIs expect.
   */
  constructor(bytes: Uint8Array) {
    const buf = !NodeBuffer || NodeBuffer.isBuffer(bytes) ? bytes : NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    super(buf, strictUtf8);
    this.bytesIn = buf;
  }

  /** A number, exact up to 2^53 - 1; larger values are refused rather than rounded. */
  override uint64(): bigint {
    const buf = this.bytesIn;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (this.pos >= this.len) throw new RangeError('premature end of a varint');
      const b = buf[this.pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) throw new RangeError('uint64 value is larger than Number.MAX_SAFE_INTEGER');
        // The generated code passes it through Number(x.toString()), which is exact for a number.
        return value as unknown as bigint;
      }
      scale *= 128;
    }
    throw new RangeError('varint longer than 10 bytes');
  }
}

const TWO_POW_28 = 0x10000000;

/** The fields of BinaryWriter this file reads; private in its typings, stable in its code. */
interface WriterInternals { buffer: Uint8Array; pos: number; stackPos: number[] }

/**
 * BinaryWriter with a number fast path for uint64 and a finish that copies into a pooled Buffer:
 * the stock finish() allocates an unpooled Uint8Array, which costs more than encoding a Frame.
 */
export class WireWriter extends BinaryWriter {
  override uint64(value: string | number | bigint): this {
    if (typeof value !== 'number' || !(value >= 0 && value <= Number.MAX_SAFE_INTEGER) || !Number.isInteger(value)) {
      return super.uint64(value);
    }
    if (value <= 0xffffffff) return this.uint32(value); // same varint bytes as a uint64
    // The low 28 bits as four varint bytes with the continuation bit (little-endian, so one
    // fixed32), then the rest (< 2^25) as the final varint bytes.
    const lo = value % TWO_POW_28;
    this.fixed32((((lo & 0x7f) | 0x80) | ((((lo >>> 7) & 0x7f) | 0x80) << 8)
      | ((((lo >>> 14) & 0x7f) | 0x80) << 16) | ((((lo >>> 21) & 0x7f) | 0x80) << 24)) >>> 0);
    return this.uint32((value - lo) / TWO_POW_28);
  }

  /** The bytes written, copied into a (pooled) Buffer, and the writer reset for reuse. */
  finishBuffer(): Buffer {
    const self = this as unknown as WriterInternals;
    const out = (NodeBuffer ? NodeBuffer.allocUnsafe(self.pos) : new Uint8Array(self.pos)) as Buffer;
    out.set(self.pos === self.buffer.length ? self.buffer : self.buffer.subarray(0, self.pos));
    self.pos = 0;
    self.stackPos.length = 0;
    return out;
  }
}

/**
 * One writer reused for every encode in this process: encoding is synchronous, and the writer
 * keeps its grown buffer, so steady state allocates only the result.
 */
const shared = new WireWriter();

/** Runs `write` on the shared writer and returns the bytes it wrote. */
export function encodeWith(write: (w: BinaryWriter) => unknown): Buffer {
  try {
    write(shared);
  } catch (err) {
    shared.finishBuffer(); // drop the partial bytes so the next encode starts clean
    throw err;
  }
  return shared.finishBuffer();
}

const LENGTH_PLACEHOLDER = new Uint8Array(4);

/** Like encodeWith, preceded by the 4-byte big-endian length of what `write` wrote (a frame). */
export function encodeLengthPrefixed(write: (w: BinaryWriter) => unknown): Buffer {
  shared.raw(LENGTH_PLACEHOLDER);
  const out = encodeWith(write);
  const n = out.length - 4; // big-endian, written by hand: a browser's Uint8Array has no writeUInt32BE
  out[0] = n >>> 24;
  out[1] = (n >>> 16) & 0xff;
  out[2] = (n >>> 8) & 0xff;
  out[3] = n & 0xff;
  return out;
}
