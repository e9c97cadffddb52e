/**
 * The PUSH frame as the gateway writes it, from a Message body shared by every recipient.
 *
 * Logic encodes a message once, without seq; each recipient's seq is the only part that differs.
 * So the frame body is `seq` (Message field 2) first, then the shared bytes: protobuf parsers accept
 * fields in any order, and the shared buffer goes to every socket untouched (no copy per
 * recipient). A recipient's frame is two buffers: `pushFrameHead(seq, n)` and the n shared bytes.
 */
import { LENGTH_BYTES } from './codec';
import { Op } from './wire';

const SEQ_TAG = 0x10;        // Message.seq: field 2, varint
const FRAME_OP_TAG = 0x08;   // Frame.op: field 1, varint
const FRAME_BODY_TAG = 0x1a; // Frame.body: field 3, length-delimited

/** The most bytes pushFrameHead returns (length prefix, 3 tag bytes, two 10-byte varints). */
export const PUSH_HEAD_MAX_BYTES = LENGTH_BYTES + 3 + 10 + 10;

/** Length prefix, Frame.op = PUSH, Frame.body's tag and length, and the body's leading seq field. */
export function pushFrameHead(seq: number, messageBytes: number): Buffer {
  if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`push seq must be a positive integer, got ${seq}`);
  const bodyBytes = 1 + varintBytes(seq) + messageBytes;
  const frameBytes = 2 + 1 + varintBytes(bodyBytes) + bodyBytes;
  const head = Buffer.allocUnsafe(LENGTH_BYTES + frameBytes - messageBytes);
  head.writeUInt32BE(frameBytes, 0);
  let at = LENGTH_BYTES;
  head[at++] = FRAME_OP_TAG;
  head[at++] = Op.PUSH;
  head[at++] = FRAME_BODY_TAG;
  at = writeVarint(head, at, bodyBytes);
  head[at++] = SEQ_TAG;
  writeVarint(head, at, seq);
  return head;
}

/** The whole frame in one buffer (tests, vectors; the gateway writes the two parts instead). */
export function pushFrame(seq: number, messageWithoutSeq: Uint8Array): Buffer {
  return Buffer.concat([pushFrameHead(seq, messageWithoutSeq.length), messageWithoutSeq]);
}

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Division, not bit operations: seqs may exceed 2^31. */
function writeVarint(buf: Buffer, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}
