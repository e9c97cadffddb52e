import { strict as assert } from 'node:assert';
import { FrameDecoder } from './codec';
import { pushFrame, PUSH_HEAD_MAX_BYTES, pushFrameHead } from './push';
import { decode, decodeFrame, encode, Op } from './wire';

describe('pushFrame', () => {
  const withoutSeq = encode('Message', {
    msgId: 'm', convId: 'p:a:b', from: 'a', to: 'b', clientMsgId: 'c', contentType: 'text/plain',
    content: Buffer.from('hi'), sentAtMs: 1, convSeq: 7,
  });

  it('is a PUSH frame whose Message carries the recipient\'s seq, including seqs beyond 2^32', () => {
    for (const seq of [1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
      const { frames } = new FrameDecoder().push(pushFrame(seq, withoutSeq));
      assert.equal(frames.length, 1);
      const f = decodeFrame(frames[0]);
      assert.equal(f.op, Op.PUSH);
      assert.equal(f.requestId, 0);
      const m = decode('Message', f.body);
      assert.equal(m.seq, seq);
      assert.equal(m.convSeq, 7);
      assert.equal(Buffer.from(m.content).toString(), 'hi');
      assert.ok(pushFrameHead(seq, withoutSeq.length).length <= PUSH_HEAD_MAX_BYTES);
    }
  });

  it('frames bodies whose length needs several varint bytes', () => {
    const big = encode('Message', { msgId: 'm', content: Buffer.alloc(70_000, 1) });
    const { frames } = new FrameDecoder(1 << 20).push(pushFrame(9, big));
    assert.equal(decode('Message', decodeFrame(frames[0]).body).content.length, 70_000);
  });

  it('refuses a seq that is not a positive integer', () => {
    for (const seq of [0, -1, 1.5, 2 ** 53]) assert.throws(() => pushFrameHead(seq, 1), RangeError);
  });
});
