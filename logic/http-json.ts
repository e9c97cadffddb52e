/**
 * The HTTP API's JSON shapes (docs/http-api.md): field names are the lowerCamelCase names of the
 * client.proto fields, 64-bit integers are JSON numbers, and message content travels as `content`
 * (UTF-8 text) or `contentBase64` (any bytes). Only the JSON is checked here (types, unknown
 * fields): every business rule stays in LogicService, so both channels validate alike.
 */
import { BadRequestError } from '../common/errors';
import type { Message, SendReq } from '../proto/wire';

export type Json = Record<string, unknown>;

/** What a field must hold; checked before the value reaches the service. */
type FieldKind = 'string' | 'integer' | 'strings';

function kindOk(kind: FieldKind, v: unknown): boolean {
  switch (kind) {
    case 'string': return typeof v === 'string';
    case 'integer': return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    case 'strings': return Array.isArray(v) && v.every((s) => typeof s === 'string');
  }
}

const KIND_TEXT: Record<FieldKind, string> = {
  string: 'a string', integer: 'a non-negative integer', strings: 'an array of strings',
};

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks a parsed body against its fields: an object, no unknown field, each present field of its
 * kind, strings well-formed (a lone surrogate is the JSON twin of invalid UTF-8 on the wire: it
 * would be stored as U+FFFD, making distinct values equal, so it is refused).
 */
export function checkFields(body: unknown, fields: Record<string, FieldKind>): Json {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('the body must be a JSON object');
  const obj = body as Json;
  for (const [name, v] of Object.entries(obj)) {
    const kind = fields[name];
    if (kind === undefined) throw new BadRequestError(`unknown field "${name.slice(0, 64)}"`);
    if (v === null) continue;
    if (!kindOk(kind, v)) throw new BadRequestError(`${name} must be ${KIND_TEXT[kind]}`);
    const strings = typeof v === 'string' ? [v] : Array.isArray(v) ? v as unknown[] : [];
    for (const s of strings) {
      if (typeof s === 'string' && LONE_SURROGATE.test(s)) throw new BadRequestError(`${name} is not valid Unicode (lone surrogate)`);
    }
  }
  return obj;
}

/** A query string as body-like fields: integers parsed, repeated names only where `repeated`. */
export function queryFields(query: URLSearchParams, fields: Record<string, FieldKind>): Json {
  const out: Json = {};
  for (const name of new Set(query.keys())) {
    const kind = fields[name];
    if (kind === undefined) throw new BadRequestError(`unknown query parameter "${name.slice(0, 64)}"`);
    const values = query.getAll(name);
    if (kind === 'strings') {
      out[name] = values;
      continue;
    }
    if (values.length > 1) throw new BadRequestError(`query parameter ${name} given ${values.length} times`);
    if (kind === 'integer') {
      if (!/^\d{1,16}$/.test(values[0]) || !Number.isSafeInteger(Number(values[0]))) {
        throw new BadRequestError(`${name} must be a non-negative integer`);
      }
      out[name] = Number(values[0]);
    } else {
      out[name] = values[0];
    }
  }
  return checkFields(out, fields);
}

export const SEND_FIELDS = {
  to: 'string', groupId: 'string', clientMsgId: 'string', contentType: 'string', content: 'string', contentBase64: 'string',
} as const satisfies Record<string, FieldKind>;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A send body as a SendReq: `content` as UTF-8 bytes, or `contentBase64` decoded (not both). */
export function toSendReq(body: Json): Partial<SendReq> {
  const text = body.content as string | undefined | null;
  const b64 = body.contentBase64 as string | undefined | null;
  if (text != null && b64 != null) throw new BadRequestError('give content or contentBase64, not both');
  if (b64 != null && !BASE64.test(b64)) throw new BadRequestError('contentBase64 is not standard padded base64');
  const content = text != null ? Buffer.from(text, 'utf8') : b64 != null ? Buffer.from(b64, 'base64') : new Uint8Array(0);
  return {
    to: body.to as string | undefined, groupId: body.groupId as string | undefined,
    clientMsgId: body.clientMsgId as string | undefined, contentType: body.contentType as string | undefined,
    content: new Uint8Array(content.buffer, content.byteOffset, content.byteLength),
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A Message as JSON: contentBase64 always, content too when the bytes are valid UTF-8. */
export function messageJson(m: Message): Json {
  const { content, ...rest } = m;
  let text: string | undefined;
  try {
    text = utf8.decode(content);
  } catch {
    text = undefined;
  }
  return { ...rest, ...(text !== undefined && { content: text }), contentBase64: Buffer.from(content).toString('base64') };
}

/** A reply carrying messages (sync, history) with each message as JSON. */
export function withMessagesJson<T extends { messages: Message[] }>(reply: T): Json {
  return { ...reply, messages: reply.messages.map(messageJson) };
}
