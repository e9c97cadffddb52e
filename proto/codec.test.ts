import * as assert from 'node:assert/strict';
import { Code } from '../common/errors';
import { FrameDecoder } from './codec';
import { decodeFrame, frameBytes, Op } from './wire';

const frame = (requestId: number, size = 10) => frameBytes({ op: Op.SEND, requestId, body: Buffer.alloc(size, requestId) });

describe('FrameDecoder', () => {
  it('reassembles a frame delivered one byte at a time', () => {
    const d = new FrameDecoder();
    const bytes = frame(7, 300);
    const out: Buffer[] = [];
    for (const b of bytes) out.push(...d.push(Buffer.from([b])));
    assert.equal(out.length, 1);
    assert.equal(decodeFrame(out[0]).requestId, 7);
    assert.equal(d.pendingBytes, 0);
  });

  it('splits many frames arriving in one chunk, keeping the partial tail', () => {
    const d = new FrameDecoder();
    const all = Buffer.concat([frame(1), frame(2), frame(3)]);
    const out = d.push(all.subarray(0, all.length - 5));
    assert.deepEqual(out.map((b) => decodeFrame(b).requestId), [1, 2]);
    assert.ok(d.pendingBytes > 0);
    assert.deepEqual(d.push(all.subarray(all.length - 5)).map((b) => decodeFrame(b).requestId), [3]);
  });

  it('rejects an oversized length from the prefix alone, before buffering the body', () => {
    const d = new FrameDecoder(1024);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1025, 0);
    assert.throws(() => d.push(prefix), (err: any) => err.code === Code.FRAME_TOO_LARGE);
  });

  it('accepts a frame of exactly the limit and an empty frame', () => {
    const d = new FrameDecoder(64);
    const body = Buffer.alloc(64, 1);
    const f = Buffer.concat([Buffer.from([0, 0, 0, 64]), body, Buffer.from([0, 0, 0, 0])]);
    const out = d.push(f);
    assert.equal(out.length, 2);
    assert.equal(out[0].length, 64);
    assert.equal(out[1].length, 0);
  });

  it('takeState returns the unconsumed bytes so another decoder can continue', () => {
    const d = new FrameDecoder();
    const all = Buffer.concat([frame(1), frame(2)]);
    assert.deepEqual(d.push(all.subarray(0, 7)), []);
    const rest = d.takeState();
    const d2 = new FrameDecoder();
    const out = [...d2.push(rest), ...d2.push(all.subarray(7))];
    assert.deepEqual(out.map((b) => decodeFrame(b).requestId), [1, 2]);
  });
});
