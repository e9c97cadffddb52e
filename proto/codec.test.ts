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
    for (const b of bytes) out.push(...d.push(Buffer.from([b])).frames);
    assert.equal(out.length, 1);
    assert.equal(decodeFrame(out[0]).requestId, 7);
    assert.equal(d.pendingBytes, 0);
  });

  it('splits many frames arriving in one chunk, keeping the partial tail', () => {
    const d = new FrameDecoder();
    const all = Buffer.concat([frame(1), frame(2), frame(3)]);
    const out = d.push(all.subarray(0, all.length - 5)).frames;
    assert.deepEqual(out.map((b) => decodeFrame(b).requestId), [1, 2]);
    assert.ok(d.pendingBytes > 0);
    assert.deepEqual(d.push(all.subarray(all.length - 5)).frames.map((b) => decodeFrame(b).requestId), [3]);
  });

  it('rejects an oversized length from the prefix alone, before buffering the body', () => {
    const d = new FrameDecoder(1024);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(1025, 0);
    const r = d.push(prefix);
    assert.deepEqual(r.frames, []);
    assert.equal(r.error?.code, Code.FRAME_TOO_LARGE);
    assert.equal(d.retainedBytes, 0, 'nothing held, not even the prefix');
  });

  it('returns the frames that came before an oversized prefix in the same chunk, then the error', () => {
    const d = new FrameDecoder(1024);
    const r = d.push(Buffer.concat([frame(1), frame(2), Buffer.from([0x00, 0x01, 0x00, 0x01])]));
    assert.deepEqual(r.frames.map((b) => decodeFrame(b).requestId), [1, 2]);
    assert.equal(r.error?.code, Code.FRAME_TOO_LARGE);
    const later = d.push(frame(3));
    assert.deepEqual([later.frames, later.error?.code], [[], Code.FRAME_TOO_LARGE], 'nothing after the break is read');
  });

  it('returns a frame completed in the same chunk as an oversized prefix that began in the chunk before', () => {
    const d = new FrameDecoder(1024);
    const f = frame(4);
    assert.deepEqual(d.push(f.subarray(0, 6)).frames, []);
    const r = d.push(Buffer.concat([f.subarray(6), Buffer.from([0xff, 0xff, 0xff, 0xff])]));
    assert.deepEqual(r.frames.map((b) => decodeFrame(b).requestId), [4]);
    assert.equal(r.error?.code, Code.FRAME_TOO_LARGE);
  });

  it('holds memory bounded by the bytes received, not one buffer per chunk (64 KiB sent 1 byte at a time)', () => {
    const max = 64 * 1024;
    const d = new FrameDecoder(max);
    const body = Buffer.alloc(max, 7);
    const bytes = Buffer.concat([Buffer.from([0, 1, 0, 0]), body]);
    let worst = 0;
    const out: Buffer[] = [];
    for (let i = 0; i < bytes.length; i++) {
      out.push(...d.push(bytes.subarray(i, i + 1)).frames);
      // At most twice what arrived (geometric growth), plus the first small allocation.
      worst = Math.max(worst, d.retainedBytes - 2 * (i + 1));
    }
    assert.ok(worst <= 512, `held ${worst} bytes more than twice what was received`);
    assert.equal(out.length, 1);
    assert.deepEqual(out[0], body);
    assert.equal(d.retainedBytes, 0, 'nothing kept once the frame is out');
  });

  it('a peer that declares the limit and sends one byte holds about one byte, not the declared length', () => {
    const d = new FrameDecoder(64 * 1024);
    d.push(Buffer.from([0, 1, 0, 0, 42]));
    assert.equal(d.pendingBytes, 1);
    assert.ok(d.retainedBytes <= 512, `holds ${d.retainedBytes} bytes for 1 received`);
  });

  it('decodes the same frames whatever offset a read is cut at', () => {
    const all = Buffer.concat([frame(1, 0), frame(2, 300), frame(3, 1)]);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new FrameDecoder();
      const out = [...d.push(all.subarray(0, cut)).frames, ...d.push(all.subarray(cut)).frames];
      assert.deepEqual(out.map((b) => decodeFrame(b).requestId), [1, 2, 3], `cut at ${cut}`);
      assert.equal(d.pendingBytes, 0);
    }
  });

  it('accepts a frame of exactly the limit and an empty frame', () => {
    const d = new FrameDecoder(64);
    const body = Buffer.alloc(64, 1);
    const f = Buffer.concat([Buffer.from([0, 0, 0, 64]), body, Buffer.from([0, 0, 0, 0])]);
    const out = d.push(f).frames;
    assert.equal(out.length, 2);
    assert.equal(out[0].length, 64);
    assert.equal(out[1].length, 0);
  });

  it('takeState returns the unconsumed bytes so another decoder can continue', () => {
    const d = new FrameDecoder();
    const all = Buffer.concat([frame(1), frame(2)]);
    assert.deepEqual(d.push(all.subarray(0, 7)).frames, []);
    const rest = d.takeState();
    const d2 = new FrameDecoder();
    const out = [...d2.push(rest).frames, ...d2.push(all.subarray(7)).frames];
    assert.deepEqual(out.map((b) => decodeFrame(b).requestId), [1, 2]);
  });

  it('idle only between frames: not with a prefix complete and no body byte yet, nor once broken', () => {
    const d = new FrameDecoder(1024);
    assert.equal(d.idle, true);
    d.push(Buffer.from([0, 0, 0, 2]));
    assert.equal(d.pendingBytes, 0);
    assert.equal(d.idle, false, 'a frame is under way');
    d.push(Buffer.from([8, 1]));
    assert.equal(d.idle, true);
    d.push(Buffer.from([0, 1, 0, 0]));
    assert.equal(d.idle, false, 'broken');
  });

  it('takeState hands over a prefix still being read', () => {
    const d = new FrameDecoder();
    const f = frame(5);
    d.push(f.subarray(0, 3));
    assert.equal(d.pendingBytes, 3);
    const d2 = new FrameDecoder();
    assert.deepEqual([...d2.push(d.takeState()).frames, ...d2.push(f.subarray(3)).frames].map((b) => decodeFrame(b).requestId), [5]);
    assert.equal(d.pendingBytes, 0);
  });
});
