/** The reader and writer under the generated codecs: uint64 as numbers, and the shared writer. */
import * as assert from 'node:assert/strict';
import * as protobuf from 'protobufjs';
import { encodeWith, WireReader } from './binary';

/** Values where a varint gains a byte, the 32-bit edge, a ms timestamp, and the largest exact double. */
const VALUES = [0, 1, 127, 128, 2 ** 14, 2 ** 28 - 1, 2 ** 28, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 7, 1_767_225_600_123, Number.MAX_SAFE_INTEGER];

function reference(value: number): Buffer {
  return Buffer.from(protobuf.Writer.create().uint64(protobuf.util.LongBits.fromNumber(value).toLong(true)).finish());
}

describe('proto/binary', () => {
  it('writes uint64 numbers as the same varint bytes as protobufjs', () => {
    for (const v of VALUES) assert.equal(encodeWith((w) => w.uint64(v)).toString('hex'), reference(v).toString('hex'), `value ${v}`);
  });

  it('reads uint64 varints back as exact numbers', () => {
    for (const v of VALUES) assert.equal(new WireReader(reference(v)).uint64() as unknown as number, v, `value ${v}`);
  });

  it('refuses a uint64 above 2^53 - 1 instead of rounding it, and a truncated varint', () => {
    assert.throws(() => new WireReader(Buffer.from('8080808080808010', 'hex')).uint64(), RangeError); // 2^53
    assert.throws(() => new WireReader(Buffer.from('ffffffffffffffffff01', 'hex')).uint64(), RangeError); // 2^64 - 1
    assert.throws(() => new WireReader(Buffer.from('8080', 'hex')).uint64(), RangeError);
  });

  it('starts clean after an encode that threw midway', () => {
    assert.throws(() => encodeWith((w) => { w.uint32(8).uint32(1); throw new Error('bad value'); }), /bad value/);
    assert.equal(encodeWith((w) => w.uint32(16).uint32(2)).toString('hex'), '1002');
  });
});
