/**
 * The owner log's row body (log.ts): the rows of one round, in a compact binary form.
 * A round repeats the same few things many times — a handful of statements, each user's and
 * conversation's id in several rows, a message's content in its history row and every inbox
 * row — so every string and every routing key is written once and referred to by index after,
 * and a byte value is written once per distinct buffer slice. About a third of the size of the
 * JSON form it replaces (which carried every byte value in base64), and no base64 or JSON text to
 * build and collect in the owner.
 *
 *   body    = 0x02 baseTs:value rowCount:varint row*
 *   row     = query:str shard:varint epoch:varint ts:value routingKey:str bytes:varint
 *             paramCount:varint value*
 *   (str and value: values.ts, one string table and one blob table for the whole body)
 *
 * A row's timestamp is written as its difference from the first row's (most are equal), or null.
 * Routing keys are interned as latin1 strings (one byte per byte). Bodies written by the
 * previous release (JSON, first byte '{') are still read.
 */

import { ValueReader, ValueWriter } from './values';

const VERSION = 0x02;

/** What the body carries of each row. */
export interface BodyRow {
  query: string;
  shard: number;
  epoch: number;
  ts: number | undefined;
  routingKey: Buffer;
  /** routingKey as latin1, when the caller has it already. */
  routingKeyText?: string;
  bytes: number;
  params: unknown[];
}

export function encodeBody(rows: readonly BodyRow[]): Buffer {
  const w = new ValueWriter();
  w.byte(VERSION);
  const base = rows.find((r) => r.ts !== undefined)?.ts ?? 0;
  w.value(base);
  w.varint(rows.length);
  for (const r of rows) {
    w.str(r.query);
    w.varint(r.shard);
    w.varint(r.epoch);
    w.value(r.ts === undefined ? null : r.ts - base);
    w.str(r.routingKeyText ?? r.routingKey.toString('latin1'), 'latin1');
    w.varint(r.bytes);
    w.varint(r.params.length);
    for (const p of r.params) w.value(p);
  }
  return w.buf.subarray(0, w.at);
}

export function decodeBody(body: Buffer): BodyRow[] {
  if (body[0] === 0x7b) return decodeJsonBody(body);
  if (body[0] !== VERSION) throw new Error(`owner log body: unknown version ${body[0]}`);
  const r = new ValueReader(body);
  r.byte();
  const base = r.value() as number;
  const count = r.varint();
  const out: BodyRow[] = [];
  for (let i = 0; i < count; i++) {
    const query = r.str();
    const shard = r.varint();
    const epoch = r.varint();
    const delta = r.value() as number | null;
    const routingKey = Buffer.from(r.str('latin1'), 'latin1');
    const bytes = r.varint();
    const n = r.varint();
    const params: unknown[] = [];
    for (let j = 0; j < n; j++) params.push(r.value());
    out.push({ query, shard, epoch, ts: delta === null ? undefined : base + delta, routingKey, bytes, params });
  }
  return out;
}

/** The previous release's body: { q: queries, b: base64 byte values, r: rows }, bytes as { $r: index }. */
function decodeJsonBody(body: Buffer): BodyRow[] {
  const parsed = JSON.parse(body.toString('utf8')) as
    { q: string[]; b: string[]; r: [number, number, number, number | null, string, number, unknown[]][] };
  const blobs = parsed.b.map((b) => Buffer.from(b, 'base64'));
  const param = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(param);
    if (v && typeof v === 'object' && typeof (v as { $r?: unknown }).$r === 'number') return blobs[(v as { $r: number }).$r];
    return v;
  };
  return parsed.r.map(([qi, shard, epoch, ts, rk, bytes, params]) => ({
    query: parsed.q[qi], params: params.map(param), routingKey: Buffer.from(rk, 'base64'), bytes, ts: ts ?? undefined, shard, epoch,
  }));
}
