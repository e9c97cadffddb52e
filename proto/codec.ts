/**
 * The streaming frame decoder: bytes in as TCP delivers them (a frame split over many chunks, or
 * many frames in one chunk), whole frame bodies out. The length limit is checked from the 4-byte
 * prefix before any body byte is buffered.
 */
import { FrameTooLargeError } from '../common/errors';

export const LENGTH_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;

export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = -1; // body length of the frame in progress, -1 while reading its prefix

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for a frame not yet complete (part of a connection's state). */
  get pendingBytes(): number {
    return this.buffered;
  }

  /** Feeds a chunk; returns every frame body it completes. Throws FrameTooLargeError. */
  push(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (chunk.length === 0) return out;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.need < 0) {
        if (this.buffered < LENGTH_BYTES) break;
        const len = this.peekLength();
        if (len > this.maxFrameBytes) {
          throw new FrameTooLargeError(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
        }
        this.consume(LENGTH_BYTES);
        this.need = len;
      }
      if (this.buffered < this.need) break;
      out.push(this.consume(this.need));
      this.need = -1;
    }
    return out;
  }

  /** The unconsumed bytes, so a connection can be handed to another process mid-frame. */
  takeState(): Buffer {
    const prefix = this.need >= 0 ? Buffer.alloc(LENGTH_BYTES) : Buffer.alloc(0);
    if (this.need >= 0) prefix.writeUInt32BE(this.need, 0);
    const rest = Buffer.concat([prefix, ...this.chunks]);
    this.chunks = [];
    this.buffered = 0;
    this.need = -1;
    return rest;
  }

  private peekLength(): number {
    const head = this.chunks[0].length >= LENGTH_BYTES ? this.chunks[0] : Buffer.concat(this.chunks);
    return head.readUInt32BE(0);
  }

  private consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const all = Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered -= n;
    return out;
  }
}
