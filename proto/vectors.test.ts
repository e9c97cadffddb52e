/**
 * Every test vector in docs/protocol.md decodes to what the page says, is canonical proto3 (no
 * scalar at its default value on the wire, checked by walking the bytes, independently of our
 * encoder), and equals our encoder's output byte for byte.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FrameDecoder } from './codec';
import * as protobuf from 'protobufjs';
import { pushFrame } from './push';
import { decode, decodeFrame, encode, frameBytes, Op, WireTypeName } from './wire';

/** dist/proto/ -> the source proto/client.proto. */
const CLIENT_PROTO = path.resolve(__dirname, '..', '..', 'proto', 'client.proto');

/** client.proto read by protobufjs reflection: a second opinion, independent of the generated codec. */
let root: protobuf.Root | undefined;
function type(name: WireTypeName): protobuf.Type {
  if (!root) {
    root = protobuf.loadSync(CLIENT_PROTO);
    root.resolveAll();
  }
  return root.lookupType(`im.client.v1.${name}`);
}

interface Vector { name: string; bytes: Buffer; expected: any }

function readVectors(): Vector[] {
  const doc = fs.readFileSync(path.resolve(__dirname, '..', '..', 'docs', 'protocol.md'), 'utf8');
  const re = /<!-- vector: ([\w-]+) -->\s*```hex\n([\s\S]*?)```\s*```json\n([\s\S]*?)```/g;
  const out: Vector[] = [];
  for (let m; (m = re.exec(doc));) {
    out.push({ name: m[1], bytes: Buffer.from(m[2].replace(/\s+/g, ''), 'hex'), expected: JSON.parse(m[3]) });
  }
  return out;
}

/** JSON form of byte fields on the page: {"utf8": "..."} -> bytes. */
function revive(value: any): any {
  if (Array.isArray(value)) return value.map(revive);
  if (value && typeof value === 'object') {
    if (typeof value.utf8 === 'string' && Object.keys(value).length === 1) return Buffer.from(value.utf8, 'utf8');
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

/** Keeps only the fields the page lists, so defaults the decoder fills in do not matter. */
function pick(actual: any, expected: any): any {
  if (Buffer.isBuffer(expected)) return Buffer.from(actual);
  if (Array.isArray(expected)) return expected.map((e, i) => pick(actual[i], e));
  if (expected && typeof expected === 'object') {
    return Object.fromEntries(Object.keys(expected).map((k) => [k, pick(actual?.[k], expected[k])]));
  }
  return actual;
}

/**
 * Paths of singular scalar fields written with their default value (0, false, '', empty bytes).
 * A proto3 encoder omits those, so a vector that has one cannot be reproduced by a third party.
 */
function defaultsOnWire(t: protobuf.Type, bytes: Uint8Array, at: string): string[] {
  const r = protobuf.Reader.create(bytes);
  const found: string[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    const f = t.fieldsById[tag >>> 3];
    const wireType = tag & 7;
    if (!f) {
      r.skipType(wireType);
    } else if (f.resolvedType instanceof protobuf.Type) {
      found.push(...defaultsOnWire(f.resolvedType, r.bytes(), `${at}.${f.name}`));
    } else if (wireType === 0) {
      if (String(r.uint64()) === '0' && !f.repeated) found.push(`${at}.${f.name}`);
    } else if (wireType === 2) {
      if (r.bytes().length === 0 && !f.repeated) found.push(`${at}.${f.name}`);
    } else {
      r.skipType(wireType);
    }
  }
  return found;
}

describe('protocol test vectors (docs/protocol.md)', () => {
  const vectors = readVectors();

  it('our encoder writes canonical proto3: explicit defaults are omitted at every depth', () => {
    const explicit = encode('SyncResp', {
      messages: [{ msgId: 'm', seq: 0, convId: '', sentAtMs: 0, content: new Uint8Array(), convSeq: 1 } as never],
      hasMore: false, maxSeq: 0,
    });
    assert.equal(Buffer.from(explicit).toString('hex'), Buffer.from(encode('SyncResp', { messages: [{ msgId: 'm', convSeq: 1 } as never] })).toString('hex'));
    assert.equal(encode('SendResp', { duplicate: false, seq: 0 }).length, 0);
  });

  it('the page has a vector for every frame type', () => {
    const ops = new Set(vectors.map((v) => v.expected.op));
    for (const op of [1, 2, 3, 4, 5, 6, 100, 101, 102, 103, 104, 110, 111]) assert.ok(ops.has(op), `no vector for op ${op}`);
    assert.ok(vectors.some((v) => v.expected.error), 'no error reply vector');
  });

  for (const v of readVectors()) {
    it(`decodes and re-encodes "${v.name}"`, () => {
      assert.equal(v.bytes.readUInt32BE(0), v.bytes.length - 4, 'length prefix');
      const { frames } = new FrameDecoder().push(v.bytes);
      assert.equal(frames.length, 1);
      const frame = decodeFrame(frames[0]);
      assert.equal(frame.op, v.expected.op);
      assert.equal(frame.requestId, v.expected.requestId);
      if (v.expected.error) assert.deepEqual(pick(frame.error, v.expected.error), v.expected.error);
      else assert.equal(frame.error, null);
      const defaults = defaultsOnWire(type('Frame'), frames[0], 'Frame');
      if (v.expected.bodyType) defaults.push(...defaultsOnWire(type(v.expected.bodyType), frame.body, v.expected.bodyType));
      assert.deepEqual(defaults, [], 'default-valued fields written explicitly (not canonical proto3)');
      let body: Uint8Array = new Uint8Array();
      if (v.expected.bodyType) {
        const want = revive(v.expected.body);
        assert.deepEqual(pick(decode(v.expected.bodyType as WireTypeName, frame.body), want), want);
        body = encode(v.expected.bodyType as WireTypeName, want);
      }
      // A push is written as the gateway frames it: seq first, then the shared Message bytes.
      const again = v.expected.op === Op.PUSH
        ? pushFrame(v.expected.body.seq, encode('Message', { ...revive(v.expected.body), seq: 0 }))
        : frameBytes({ op: v.expected.op, requestId: v.expected.requestId, body, error: v.expected.error });
      assert.equal(again.toString('hex'), v.bytes.toString('hex'));
    });
  }
});
