/**
 * The streaming frame decoder: bytes in as TCP delivers them (a frame split over many chunks, or
 * many frames in one chunk), whole frame bodies out. The length limit is checked from the 4-byte
 * prefix before any body byte is buffered.
 *
 * Memory: a frame that sits whole in one chunk is returned as a view of that chunk (no copy).
 * A partial frame is copied into one buffer that grows geometrically up to its declared length,
 * so what a connection holds is at most about twice what it has sent of the frame, never more
 * than the limit, and never one object per TCP segment (a peer sending 1 byte per segment would
 * otherwise pin a Buffer, and its chunk, per byte).
 */
import { FrameTooLargeError } from '../common/errors';

export const LENGTH_BYTES = 4;
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
/** First allocation for a partial body: small frames do not reallocate byte by byte. */
const MIN_BODY_CAPACITY = 256;

export type FrameTooLarge = InstanceType<typeof FrameTooLargeError>;

/** What one push completed: every frame before the point of failure, then the failure if any. */
export interface Decoded {
  frames: Buffer[];
  /** The stream is broken at this point (a length prefix over the limit); nothing after it is read. */
  error?: FrameTooLarge;
}

/** What an idle decoder holds: one shared empty buffer, so a connection between frames costs no buffer. */
const EMPTY = Buffer.alloc(0);

export class FrameDecoder {
  /** A length prefix split across chunks, accumulated big-endian in a number rather than a buffer. */
  private headValue = 0;
  private headBytes = 0;
  private need = -1; // body length of the frame in progress, -1 while reading its prefix
  private body: Buffer = EMPTY;
  private bodyBytes = 0;
  private failed: FrameTooLarge | undefined;

  constructor(readonly maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes received of a frame not yet complete (its prefix, or its body once the prefix is read). */
  get pendingBytes(): number {
    return this.need < 0 ? this.headBytes : this.bodyBytes;
  }

  /** Between frames: nothing received of a next one, and the stream is not broken. */
  get idle(): boolean {
    return this.need < 0 && this.headBytes === 0 && !this.failed;
  }

  /** Bytes this decoder holds in memory for the frame in progress (its buffer's capacity). */
  get retainedBytes(): number {
    return this.body.length;
  }

  /**
   * Feeds a chunk; returns every frame body it completes and, when a length prefix is over the
   * limit, the error after the frames that came before it. A failed decoder drops what it held
   * and answers every later push with the same error.
   */
  push(chunk: Buffer): Decoded {
    const frames: Buffer[] = [];
    if (this.failed) return { frames, error: this.failed };
    let at = 0;
    while (at < chunk.length) {
      if (this.need < 0 && this.headBytes === 0) {
        at = this.wholeFrames(chunk, at, frames);
        if (this.failed || at >= chunk.length) break;
      }
      if (this.need < 0) {
        while (this.headBytes < LENGTH_BYTES && at < chunk.length) {
          this.headValue = this.headValue * 256 + chunk[at++];
          this.headBytes++;
        }
        if (this.headBytes < LENGTH_BYTES) break;
        if (!this.start(this.headValue)) break;
        if (this.need === 0) { frames.push(this.finish()); continue; }
      }
      const n = Math.min(this.need - this.bodyBytes, chunk.length - at);
      this.reserve(this.bodyBytes + n);
      chunk.copy(this.body, this.bodyBytes, at, at + n);
      this.bodyBytes += n;
      at += n;
      if (this.bodyBytes === this.need) frames.push(this.finish());
    }
    return this.failed ? { frames, error: this.failed } : { frames };
  }

  /** The unconsumed bytes, so a connection can be handed to another process mid-frame. */
  takeState(): Buffer {
    let rest: Buffer;
    if (this.need < 0) {
      rest = Buffer.alloc(this.headBytes);
      for (let i = 0, v = this.headValue; i < this.headBytes; i++, v = Math.floor(v / 256)) rest[this.headBytes - 1 - i] = v % 256;
    } else {
      rest = Buffer.alloc(LENGTH_BYTES + this.bodyBytes);
      rest.writeUInt32BE(this.need, 0);
      this.body.copy(rest, LENGTH_BYTES, 0, this.bodyBytes);
    }
    this.reset();
    this.failed = undefined;
    return rest;
  }

  /** Zero-copy path: frames that sit whole in `chunk` from `at`; returns where the rest starts. */
  private wholeFrames(chunk: Buffer, at: number, frames: Buffer[]): number {
    while (chunk.length - at >= LENGTH_BYTES) {
      const len = chunk.readUInt32BE(at);
      if (len > this.maxFrameBytes) {
        this.fail(len);
        return chunk.length;
      }
      if (chunk.length - at - LENGTH_BYTES < len) break;
      frames.push(chunk.subarray(at + LENGTH_BYTES, at + LENGTH_BYTES + len));
      at += LENGTH_BYTES + len;
    }
    return at;
  }

  /** A prefix is complete: checks it and begins its body. False when the stream is broken. */
  private start(len: number): boolean {
    if (len > this.maxFrameBytes) {
      this.fail(len);
      return false;
    }
    this.need = len;
    this.bodyBytes = 0;
    return true;
  }

  /** Grows the body buffer to hold `bytes`: doubling, capped at the declared length. */
  private reserve(bytes: number): void {
    if (bytes <= this.body.length) return;
    const capacity = Math.min(this.need, Math.max(bytes, this.body.length * 2, MIN_BODY_CAPACITY));
    // Unpooled: a pooled slice would pin its whole 8 KiB pool for as long as the frame waits.
    const grown = Buffer.allocUnsafeSlow(capacity);
    this.body.copy(grown, 0, 0, this.bodyBytes);
    this.body = grown;
  }

  private finish(): Buffer {
    // The buffer's capacity is exactly the declared length once full (growth is capped at it).
    const out = this.need === 0 ? Buffer.alloc(0) : this.body;
    this.reset();
    return out;
  }

  private fail(len: number): void {
    this.failed = new FrameTooLargeError(`frame of ${len} bytes exceeds the limit of ${this.maxFrameBytes}`);
    this.reset();
  }

  private reset(): void {
    this.headValue = 0;
    this.headBytes = 0;
    this.need = -1;
    this.body = EMPTY;
    this.bodyBytes = 0;
  }
}
