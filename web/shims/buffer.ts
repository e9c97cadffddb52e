/**
 * Browser stand-in for Node's Buffer (injected as the global `Buffer`, and node:buffer): the
 * subset the SDK and the wire codecs use (from/alloc/isBuffer/concat, utf8 toString,
 * writeUInt32BE/readUInt32BE). Only for the web page's bundle (web/build.js).
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function checkEncoding(encoding: string | undefined): void {
  if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) throw new Error(`Buffer shim: encoding "${encoding}" is not supported`);
}

class BrowserBuffer extends Uint8Array {
  override toString(encoding?: string, start = 0, end = this.length): string {
    checkEncoding(encoding);
    return decoder.decode(this.subarray(start, end));
  }

  writeUInt32BE(value: number, offset = 0): number {
    new DataView(this.buffer, this.byteOffset, this.byteLength).setUint32(offset, value, false);
    return offset + 4;
  }

  readUInt32BE(offset = 0): number {
    return new DataView(this.buffer, this.byteOffset, this.byteLength).getUint32(offset, false);
  }
}

function from(value: string | ArrayBufferLike | ArrayLike<number>, encodingOrOffset?: string | number, length?: number): BrowserBuffer {
  if (typeof value === 'string') {
    checkEncoding(encodingOrOffset as string | undefined);
    const bytes = encoder.encode(value);
    return new BrowserBuffer(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer)) {
    const offset = (encodingOrOffset as number | undefined) ?? 0;
    return new BrowserBuffer(value as ArrayBuffer, offset, length ?? value.byteLength - offset);
  }
  const out = new BrowserBuffer((value as ArrayLike<number>).length);
  out.set(value as ArrayLike<number>);
  return out;
}

function alloc(size: number, fill?: number | string): BrowserBuffer {
  const out = new BrowserBuffer(size);
  if (typeof fill === 'number') out.fill(fill);
  else if (typeof fill === 'string' && fill.length > 0) {
    const pattern = encoder.encode(fill);
    for (let i = 0; i < size; i++) out[i] = pattern[i % pattern.length];
  }
  return out;
}

function concat(list: readonly Uint8Array[], total?: number): BrowserBuffer {
  const out = new BrowserBuffer(total ?? list.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of list) {
    if (at >= out.length) break;
    out.set(b.subarray(0, out.length - at), at);
    at += b.length;
  }
  return out;
}

export type Buffer = BrowserBuffer;
export const Buffer = Object.assign(BrowserBuffer, {
  from,
  alloc,
  allocUnsafe: (size: number) => new BrowserBuffer(size),
  allocUnsafeSlow: (size: number) => new BrowserBuffer(size),
  isBuffer: (value: unknown): value is BrowserBuffer => value instanceof BrowserBuffer,
  byteLength: (value: string) => encoder.encode(value).byteLength,
  concat,
});

export function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictDecoder.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

export default { Buffer, isUtf8 };
