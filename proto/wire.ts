/**
 * The client wire protocol in TypeScript: typed encode/decode of the messages in client.proto,
 * shared by the gateway (Frame and session messages only), logic, the SDK and the bench. The
 * types and codecs are generated from client.proto at build time (proto/gen-ts); this file names
 * them and adds the framing. No Node-only import (the SDK runs it in browsers too).
 */
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as gen from './gen-ts/client';
import type { Frame } from './gen-ts/client';
import { encodeLengthPrefixed, encodeWith, utf8Bytes, WireReader } from './binary';

export type {
  Auth, AuthOk, Disconnect, Frame, GroupCreateReq, GroupInfo, GroupMembersReq, GroupResp, HistoryReq, HistoryResp,
  Message, Ping, Pong, ReadReq, ReadResp, SendReq, SendResp, SyncReq, SyncResp, Unread, UnreadReq, UnreadResp,
  Error as WireError,
} from './gen-ts/client';

const EMPTY = new Uint8Array(0);

/** The ops of client.proto's Op enum, by short name (values from the generated enum). */
export const Op = {
  AUTH: gen.Op.OP_AUTH, PING: gen.Op.OP_PING, PUSH: gen.Op.OP_PUSH, DISCONNECT: gen.Op.OP_DISCONNECT,
  ERROR: gen.Op.OP_ERROR, SYNC_HINT: gen.Op.OP_SYNC_HINT,
  SEND: gen.Op.OP_SEND, SYNC: gen.Op.OP_SYNC, HISTORY: gen.Op.OP_HISTORY, READ: gen.Op.OP_READ, UNREAD: gen.Op.OP_UNREAD,
  GROUP_CREATE: gen.Op.OP_GROUP_CREATE, GROUP_ADD: gen.Op.OP_GROUP_ADD, GROUP_REMOVE: gen.Op.OP_GROUP_REMOVE,
  GROUP_LEAVE: gen.Op.OP_GROUP_LEAVE, GROUP_MEMBERS: gen.Op.OP_GROUP_MEMBERS,
} as const;

/** Ops at or above this go to logic untouched. */
export const FIRST_BUSINESS_OP = 100;

type Generated = typeof gen;
/** The message type names of client.proto (the generated exports that decode). */
export type WireTypeName = { [K in keyof Generated]: Generated[K] extends { decode(...args: never[]): unknown } ? K : never }[keyof Generated];
/** Message type names in client.proto, mapped to their (generated) TypeScript shapes. */
export type WireTypes = { [N in WireTypeName]: Generated[N] extends { decode(...args: never[]): infer T } ? T : never };

interface Codec<T> {
  encode(value: T, w: BinaryWriter): BinaryWriter;
  decode(r: WireReader): T;
  fromPartial(value: unknown): T;
}
const codec = <N extends WireTypeName>(name: N) => gen[name] as unknown as Codec<WireTypes[N]>;

/**
 * Encodes a (possibly partial) message as canonical proto3: a scalar at its default (0, false,
 * '', empty bytes) is not written even when given explicitly, so the bytes equal what any
 * standard proto3 encoder produces (and the vectors in docs/protocol.md).
 */
export function encode<N extends WireTypeName>(name: N, value: Partial<WireTypes[N]>): Buffer {
  const c = codec(name);
  return encodeWith((w) => c.encode(c.fromPartial(value), w));
}

/**
 * Decodes bytes into a plain object with every field present (an absent sub-message is null).
 * Throws on malformed bytes, and InvalidUtf8Error (a BadRequestError) when a string field is not
 * valid UTF-8. Bytes fields are views of `bytes`.
 */
export function decode<N extends WireTypeName>(name: N, bytes: Uint8Array): WireTypes[N] {
  return codec(name).decode(new WireReader(bytes));
}

/** A Frame ready for the socket: 4-byte big-endian length, then the encoded Frame. */
export function frameBytes(frame: Partial<Frame>): Buffer {
  const full: Frame = { op: frame.op ?? 0, requestId: frame.requestId ?? 0, body: frame.body ?? EMPTY, error: frame.error ?? null };
  if (full.error) full.error = gen.Error.fromPartial(full.error);
  return encodeLengthPrefixed((w) => gen.Frame.encode(full, w));
}

/** Decodes a Frame body (without the length prefix). error is null when absent. */
export function decodeFrame(bytes: Uint8Array): Frame {
  return gen.Frame.decode(new WireReader(bytes));
}

export function textContent(text: string): { contentType: string; content: Uint8Array } {
  return { contentType: 'text/plain', content: utf8Bytes(text) };
}
