/**
 * The few frames the load generator sends and reads on its hot path, encoded and decoded by hand
 * over protobufjs' Reader/Writer (the field numbers of proto/client.proto). The generic
 * fromObject/toObject path of proto/wire.ts costs more CPU than the gateway spends on a frame,
 * and the generator shares the machine with the servers it measures. A unit test checks these
 * against proto/wire.ts.
 */
import * as protobuf from 'protobufjs';
import { Op } from '../proto/wire';

const TEXT_PLAIN = 'text/plain';

export interface FastFrame {
  op: number;
  requestId: number;
  /** Undefined when the frame has no body. */
  body: Uint8Array | undefined;
  /** 0 when the frame carries no error. */
  errorCode: number;
}

/** The fields of a pushed Message the checker needs. */
export interface FastMessage {
  seq: number;
  from: string;
  clientMsgId: string;
  content: Uint8Array | undefined;
}

function lengthPrefixed(w: protobuf.Writer): Buffer {
  const body = w.finish();
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

/** A whole SEND frame (length prefix included): to a peer (`to`) or a group (`groupId`). */
export function sendFrame(requestId: number, target: { to?: string; groupId?: string }, clientMsgId: string, content: Uint8Array): Buffer {
  const body = protobuf.Writer.create();
  if (target.to) body.uint32(42).string(target.to);
  if (target.groupId) body.uint32(50).string(target.groupId);
  body.uint32(58).string(clientMsgId);
  body.uint32(74).string(TEXT_PLAIN);
  body.uint32(82).bytes(content);
  const w = protobuf.Writer.create();
  w.uint32(8).uint32(Op.SEND);
  if (requestId) w.uint32(16).uint32(requestId);
  w.uint32(26).bytes(body.finish());
  return lengthPrefixed(w);
}

/** A whole request frame of any op with an already encoded body. */
export function requestFrame(op: number, requestId: number, body: Uint8Array): Buffer {
  const w = protobuf.Writer.create();
  w.uint32(8).uint32(op);
  if (requestId) w.uint32(16).uint32(requestId);
  if (body.length) w.uint32(26).bytes(body);
  return lengthPrefixed(w);
}

/** Decodes a Frame body (no length prefix). Throws on malformed bytes. */
export function readFrame(bytes: Uint8Array): FastFrame {
  const r = protobuf.Reader.create(bytes);
  const f: FastFrame = { op: 0, requestId: 0, body: undefined, errorCode: 0 };
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: f.op = r.uint32(); break;
      case 2: f.requestId = r.uint32(); break;
      case 3: f.body = r.bytes(); break;
      case 4: f.errorCode = readErrorCode(r.bytes()); break;
      default: r.skipType(tag & 7);
    }
  }
  return f;
}

function readErrorCode(bytes: Uint8Array): number {
  const r = protobuf.Reader.create(bytes);
  let code = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) code = r.uint32();
    else r.skipType(tag & 7);
  }
  // An Error without a code is still an error.
  return code || -1;
}

/** Decodes the Message fields the checker uses; everything else is skipped. */
export function readMessage(bytes: Uint8Array): FastMessage {
  const r = protobuf.Reader.create(bytes);
  const m: FastMessage = { seq: 0, from: '', clientMsgId: '', content: undefined };
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 2: m.seq = longToNumber(r.uint64()); break;
      case 4: m.from = r.string(); break;
      case 7: m.clientMsgId = r.string(); break;
      case 10: m.content = r.bytes(); break;
      default: r.skipType(tag & 7);
    }
  }
  return m;
}

function longToNumber(v: number | { low: number; high: number }): number {
  // protobufjs gives a Long when the long package is present: fine for seqs below 2^53.
  return typeof v === 'number' ? v : v.high * 0x100000000 + (v.low >>> 0);
}

/** SendResp.seq (field 2): the only part of a send reply the generator keeps. */
export function readSendSeq(bytes: Uint8Array): number {
  const r = protobuf.Reader.create(bytes);
  let seq = 0;
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 2) seq = longToNumber(r.uint64());
    else r.skipType(tag & 7);
  }
  return seq;
}

/** SyncResp: the messages (decoded as above), has_more and max_seq. */
export function readSyncResp(bytes: Uint8Array): { messages: FastMessage[]; hasMore: boolean; maxSeq: number } {
  const r = protobuf.Reader.create(bytes);
  const out = { messages: [] as FastMessage[], hasMore: false, maxSeq: 0 };
  while (r.pos < r.len) {
    const tag = r.uint32();
    switch (tag >>> 3) {
      case 1: out.messages.push(readMessage(r.bytes())); break;
      case 2: out.hasMore = r.bool(); break;
      case 3: out.maxSeq = longToNumber(r.uint64()); break;
      default: r.skipType(tag & 7);
    }
  }
  return out;
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
