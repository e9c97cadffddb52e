/**
 * The client wire protocol in TypeScript: typed encode/decode of the messages in client.proto,
 * shared by the gateway (Frame and session messages only) and the SDK (everything).
 */
import { isUtf8 } from 'node:buffer';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { InvalidUtf8Error } from '../common/errors';

export const CLIENT_PROTO = path.resolve(__dirname, '..', '..', 'proto', 'client.proto');

export const Op = {
  AUTH: 1, PING: 2, PUSH: 3, DISCONNECT: 4, ERROR: 5, SYNC_HINT: 6,
  SEND: 100, SYNC: 101, HISTORY: 102, READ: 103, UNREAD: 104,
  GROUP_CREATE: 110, GROUP_ADD: 111, GROUP_REMOVE: 112, GROUP_LEAVE: 113, GROUP_MEMBERS: 114,
} as const;

/** Ops at or above this go to logic untouched. */
export const FIRST_BUSINESS_OP = 100;

export interface WireError { code: number; message: string; retryable: boolean }
export interface Frame { op: number; requestId: number; body: Uint8Array; error?: WireError | null }
export interface Disconnect { code: number; reason: string; reconnect: boolean }
export interface Auth { token: string; deviceId: string; lastSeq: number }
export interface AuthOk {
  uid: string; deviceId: string; heartbeatIntervalMs: number; maxFrameBytes: number;
  serverTimeMs: number; node: string; connId: string;
}
export interface Ping { clientTimeMs: number }
export interface Pong { serverTimeMs: number }
export interface Message {
  msgId: string; seq: number; convId: string; from: string; to: string; groupId: string;
  clientMsgId: string; sentAtMs: number; contentType: string; content: Uint8Array; convSeq: number;
}
export interface SendReq { to: string; groupId: string; clientMsgId: string; contentType: string; content: Uint8Array }
export interface SendResp { msgId: string; seq: number; sentAtMs: number; duplicate: boolean; convId: string; convSeq: number }
export interface SyncReq { fromSeq: number; limit: number }
export interface SyncResp { messages: Message[]; hasMore: boolean; maxSeq: number }
export interface HistoryReq { with: string; groupId: string; beforeConvSeq: number; limit: number }
export interface HistoryResp { messages: Message[]; hasMore: boolean }
export interface ReadReq { convId: string; seq: number }
export interface Unread { convId: string; count: number; readSeq: number; lastSeq: number }
export interface ReadResp { unread: Unread | null }
export interface UnreadReq { convIds: string[] }
export interface UnreadResp { convs: Unread[]; total: number }
export interface GroupCreateReq { name: string; members: string[] }
export interface GroupMembersReq { groupId: string; uids: string[] }
export interface GroupInfo { groupId: string; name: string; owner: string; members: string[]; createdAtMs: number }
export interface GroupResp { group: GroupInfo | null }

/** Message type names in client.proto, mapped to their TypeScript shapes. */
export interface WireTypes {
  Frame: Frame; Error: WireError; Disconnect: Disconnect; Auth: Auth; AuthOk: AuthOk; Ping: Ping; Pong: Pong;
  Message: Message; SendReq: SendReq; SendResp: SendResp; SyncReq: SyncReq; SyncResp: SyncResp;
  HistoryReq: HistoryReq; HistoryResp: HistoryResp; ReadReq: ReadReq; ReadResp: ReadResp;
  UnreadReq: UnreadReq; UnreadResp: UnreadResp; Unread: Unread;
  GroupCreateReq: GroupCreateReq; GroupMembersReq: GroupMembersReq; GroupInfo: GroupInfo; GroupResp: GroupResp;
}
export type WireTypeName = keyof WireTypes;

let root: protobuf.Root | undefined;
const types = new Map<string, protobuf.Type>();

/** A message type of client.proto, fields resolved (stripDefaults walks nested types). */
export function type(name: WireTypeName): protobuf.Type {
  let t = types.get(name);
  if (!t) {
    if (!root) {
      root = protobuf.loadSync(CLIENT_PROTO);
      root.resolveAll();
    }
    t = root.lookupType(`im.client.v1.${name}`);
    types.set(name, t);
  }
  return t;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, defaults: true, arrays: true };

/**
 * Encodes a (possibly partial) message as canonical proto3: a scalar at its default (0, false,
 * '', empty bytes) is not written even when given explicitly, so the bytes equal what any
 * standard proto3 encoder produces (and the vectors in docs/protocol.md).
 */
export function encode<N extends WireTypeName>(name: N, value: Partial<WireTypes[N]>): Uint8Array {
  const t = type(name);
  const m = t.fromObject(value as Record<string, unknown>);
  stripDefaults(t, m as unknown as Record<string, unknown>);
  return t.encode(m).finish();
}

/** protobufjs writes every field that is set, defaults included; drop those (recursively). */
function stripDefaults(t: protobuf.Type, m: Record<string, unknown>): void {
  for (const f of t.fieldsArray) {
    const v = m[f.name];
    if (v === null || v === undefined) continue;
    if (f.resolvedType instanceof protobuf.Type) {
      // Message fields have presence: an empty sub-message stays; its own fields are stripped.
      const sub = f.resolvedType;
      for (const e of f.repeated ? (v as Record<string, unknown>[]) : [v as Record<string, unknown>]) stripDefaults(sub, e);
    } else if (!f.repeated && !f.map && !f.partOf && isDefaultScalar(v)) {
      delete m[f.name];
    }
  }
}

function isDefaultScalar(v: unknown): boolean {
  if (v === 0 || v === false || v === '') return true;
  if (v instanceof Uint8Array) return v.length === 0;
  // 64-bit fields arrive as Long objects from fromObject.
  const long = v as { low?: unknown; high?: unknown };
  return typeof v === 'object' && long.low === 0 && long.high === 0;
}

/**
 * A Reader whose string() refuses invalid UTF-8. protobufjs would replace bad bytes with U+FFFD,
 * which makes distinct values equal (two client_msg_ids that differ only in bad bytes would
 * deduplicate to one message). Nested messages are read through the same reader, so this covers
 * every string field at any depth.
 */
export function strictReader(bytes: Uint8Array): protobuf.Reader {
  const r = protobuf.Reader.create(bytes);
  r.string = function strictString(this: protobuf.Reader): string {
    const b = this.bytes();
    if (!isUtf8(b)) throw new InvalidUtf8Error('a string field is not valid UTF-8');
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
  };
  return r;
}

/**
 * Decodes bytes into a plain object with every field present. Throws on malformed bytes, and
 * InvalidUtf8Error (a BadRequestError) when a string field is not valid UTF-8.
 */
export function decode<N extends WireTypeName>(name: N, bytes: Uint8Array): WireTypes[N] {
  const t = type(name);
  return t.toObject(t.decode(strictReader(bytes)), TO_OBJECT) as WireTypes[N];
}

/**
 * A Frame ready for the socket: 4-byte big-endian length, then the encoded Frame. Hand-rolled
 * because every push and reply goes through it; writes only non-default fields (canonical proto3).
 */
export function frameBytes(frame: Partial<Frame>): Buffer {
  const w = protobuf.Writer.create();
  if (frame.op) w.uint32(8).uint32(frame.op);
  if (frame.requestId) w.uint32(16).uint32(frame.requestId);
  if (frame.body && frame.body.length > 0) w.uint32(26).bytes(frame.body);
  if (frame.error) {
    w.uint32(34).fork();
    if (frame.error.code) w.uint32(8).uint32(frame.error.code);
    if (frame.error.message) w.uint32(18).string(frame.error.message);
    if (frame.error.retryable) w.uint32(24).bool(true);
    w.ldelim();
  }
  const body = w.finish();
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

/** Decodes a Frame body (without the length prefix). error is null when absent. */
export function decodeFrame(bytes: Uint8Array): Frame {
  const f = decode('Frame', bytes);
  if (!f.error) f.error = null;
  return f;
}

export function textContent(text: string): { contentType: string; content: Uint8Array } {
  return { contentType: 'text/plain', content: Buffer.from(text, 'utf8') };
}
