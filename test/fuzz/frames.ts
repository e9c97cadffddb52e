/**
 * What the fuzzer sends: valid frames, business ops with garbage bodies, random ops, mutations of
 * valid frames (bit flips, truncation, duplicated fields, huge and overlong varints, wrong wire
 * types) and edge lengths (0, 1, max-1, max, max+1, 2^32-1), each as the bytes of one length-
 * prefixed frame, plus how a connection cuts them into writes.
 */
import { encode, frameBytes, Op } from '../../proto/wire';
import { LENGTH_BYTES } from '../../proto/codec';
import { Prng } from './prng';

export const BUSINESS_OPS = [Op.SEND, Op.SYNC, Op.HISTORY, Op.READ, Op.UNREAD, Op.GROUP_CREATE, Op.GROUP_ADD, Op.GROUP_REMOVE, Op.GROUP_LEAVE, Op.GROUP_MEMBERS];

/** How a connection's bytes are cut into socket writes. */
export type WritePattern = 'one-write' | 'frame-per-write' | 'random-cuts' | 'trickle';
export const WRITE_PATTERNS: readonly WritePattern[] = ['one-write', 'frame-per-write', 'random-cuts', 'trickle'];

export interface FrameContext {
  rng: Prng;
  maxFrameBytes: number;
  /** A fuzz user other connections log in as (messages between them are stored like any other). */
  peerUid: string;
}

/** Prefixes an arbitrary envelope (which may not decode) with its length. */
export function prefixed(envelope: Uint8Array, declared = envelope.length): Buffer {
  const out = Buffer.allocUnsafe(LENGTH_BYTES + envelope.length);
  out.writeUInt32BE(declared >>> 0, 0);
  out.set(envelope, LENGTH_BYTES);
  return out;
}

/** A well-formed request the gateway and logic accept (or refuse with a business code). */
export function validFrame(c: FrameContext): Buffer {
  const { rng } = c;
  const requestId = rng.u32();
  switch (rng.int(6)) {
    case 0: return frameBytes({ op: Op.PING, requestId, body: encode('Ping', { clientTimeMs: rng.u32() }) });
    case 1: return frameBytes({ op: Op.SEND, requestId, body: encode('SendReq', { to: c.peerUid, clientMsgId: `f${rng.u32()}`, contentType: 'text/plain', content: rng.bytes(rng.int(64)) }) });
    case 2: return frameBytes({ op: Op.SYNC, requestId, body: encode('SyncReq', { fromSeq: rng.int(1000), limit: rng.int(600) }) });
    case 3: return frameBytes({ op: Op.HISTORY, requestId, body: encode('HistoryReq', { with: c.peerUid, limit: rng.int(100) }) });
    case 4: return frameBytes({ op: Op.UNREAD, requestId, body: encode('UnreadReq', { convIds: [rng.bytes(8).toString('hex')] }) });
    default: return frameBytes({ op: Op.AUTH, requestId, body: encode('Auth', { token: rng.bytes(rng.int(40)).toString('base64'), deviceId: 'fz' }) });
  }
}

/** A valid envelope around an op and body chosen at random: garbage for whoever parses the body. */
function garbageOp(c: FrameContext): Buffer {
  const { rng } = c;
  const op = rng.chance(0.7) ? rng.pick(BUSINESS_OPS) : rng.chance(0.5) ? rng.int(200) : rng.u32();
  return frameBytes({ op, requestId: rng.u32(), body: rng.bytes(rng.int(128)) });
}

/** A 10-byte varint (2^64-1), or an 11-byte one no decoder may accept. */
function hugeVarint(rng: Prng): Buffer {
  return rng.chance(0.5) ? Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) : Buffer.alloc(11, 0xff);
}

/** A valid frame changed so that its envelope (or its body) is wrong in one specific way. */
function mutated(c: FrameContext): Buffer {
  const { rng } = c;
  const envelope = Buffer.from(validFrame(c).subarray(LENGTH_BYTES));
  switch (rng.int(6)) {
    case 0: { // bit flips
      for (let i = 1 + rng.int(3); i > 0 && envelope.length > 0; i--) envelope[rng.int(envelope.length)] ^= 1 << rng.int(8);
      return prefixed(envelope);
    }
    case 1: return prefixed(envelope.subarray(0, rng.int(envelope.length))); // truncated envelope
    case 2: return prefixed(Buffer.concat([envelope, envelope])); // every field twice
    case 3: { // a huge varint as request id or op, or as a body field
      const field = rng.pick([0x08, 0x10]);
      return prefixed(Buffer.concat([envelope, Buffer.from([field]), hugeVarint(rng)]));
    }
    case 4: { // a field with the wrong wire type: op as length-delimited, body as varint
      const wrong = rng.chance(0.5) ? Buffer.from([0x0a, 0x03, 1, 2, 3]) : Buffer.concat([Buffer.from([0x18]), hugeVarint(rng)]);
      return prefixed(Buffer.concat([wrong, envelope]));
    }
    default: // a length prefix that lies about a valid envelope (shorter: the rest reads as the next prefix)
      return prefixed(envelope, Math.max(0, envelope.length - 1 - rng.int(4)));
  }
}

/** The declared lengths around the limit; bodies up to the limit are sent, beyond it only the prefix. */
function edgeLength(c: FrameContext): Buffer {
  const { rng, maxFrameBytes: max } = c;
  const len = rng.pick([0, 1, max - 1, max, max + 1, 2 ** 32 - 1]);
  if (len > max) return prefixed(rng.bytes(rng.int(8)), len);
  // Cheap to build: a few random bytes, then one repeated byte (a 64 KiB body per frame adds up).
  const body = Buffer.alloc(len, rng.int(256));
  rng.bytes(Math.min(len, 16)).copy(body);
  return prefixed(body);
}

/** One fuzz frame. Mostly ones a connection survives, so that each carries many frames. */
export function fuzzFrame(c: FrameContext): Buffer {
  const roll = c.rng.int(100);
  if (roll < 45) return validFrame(c);
  if (roll < 90) return garbageOp(c);
  if (roll < 98) return mutated(c);
  return edgeLength(c);
}

/** Cuts `bytes` into the writes of `pattern` (frame boundaries are where `frames` end). */
export function cutWrites(rng: Prng, frames: Buffer[], pattern: WritePattern): Buffer[] {
  if (pattern === 'frame-per-write') return frames;
  const all = Buffer.concat(frames);
  if (pattern === 'one-write') return [all];
  if (pattern === 'trickle') {
    // One byte per write for a while (slowloris-like), then the rest at once.
    const slow = Math.min(all.length, 1 + rng.int(512));
    return [...Array.from({ length: slow }, (_, i) => all.subarray(i, i + 1)), all.subarray(slow)];
  }
  const cuts = [...new Set(Array.from({ length: 1 + rng.int(20) }, () => rng.int(all.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts, all.length]) {
    if (at > from) out.push(all.subarray(from, at));
    from = Math.max(from, at);
  }
  return out;
}
