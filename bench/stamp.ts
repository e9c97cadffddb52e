/**
 * What the load generator puts in a message and on the wire: a SEND frame (over the generated
 * codec in proto/wire, the same one the servers and the SDK use) whose content carries the send
 * time and phase, so a push's latency is read from the push itself.
 */
import { encode, frameBytes, Op } from '../proto/wire';

const TEXT_PLAIN = 'text/plain';

/** A whole SEND frame (length prefix included): to a peer (`to`) or a group (`groupId`). */
export function sendFrame(requestId: number, target: { to?: string; groupId?: string }, clientMsgId: string, content: Uint8Array): Buffer {
  // One object shape for every call (no spread of `target`): this runs per send in the generator.
  const req = { to: target.to ?? '', groupId: target.groupId ?? '', clientMsgId, contentType: TEXT_PLAIN, content };
  return frameBytes({ op: Op.SEND, requestId, body: encode('SendReq', req) });
}

/**
 * Message content the generator sends: the send time (a CLOCK_MONOTONIC microsecond count, the
 * same clock in every process on the machine) and the phase number, padded to `bytes`.
 */
export const STAMP_BYTES = 9;

export function stampContent(bytes: number, sentUs: number, phase: number): Buffer {
  const b = Buffer.alloc(Math.max(STAMP_BYTES, bytes), 0x61);
  b.writeDoubleLE(sentUs, 0);
  b[8] = phase & 0xff;
  return b;
}

export function readStamp(content: Uint8Array | undefined): { sentUs: number; phase: number } | undefined {
  if (!content || content.length < STAMP_BYTES) return undefined;
  const b = Buffer.from(content.buffer, content.byteOffset, content.length);
  return { sentUs: b.readDoubleLE(0), phase: b[8] };
}

/** Monotonic microseconds, comparable between processes on one machine. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
