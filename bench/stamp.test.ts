import { strict as assert } from 'node:assert';
import { FrameDecoder } from '../proto/codec';
import { decode, Op } from '../proto/wire';
import { readStamp, sendFrame, stampContent } from './stamp';

/** The frame body without its 4-byte length prefix. */
function body(frame: Buffer): Buffer {
  const out = new FrameDecoder().push(frame).frames;
  assert.equal(out.length, 1);
  return out[0];
}

describe('bench load frames', () => {
  it('sends a SEND frame whose content carries the send time and phase', () => {
    const content = stampContent(100, 123456.75, 3);
    for (const target of [{ to: 'bob' }, { groupId: 'g1' }]) {
      const frame = decode('Frame', body(sendFrame(42, target, '17', content)));
      assert.deepEqual([frame.op, frame.requestId], [Op.SEND, 42]);
      const req = decode('SendReq', frame.body);
      assert.deepEqual({ to: req.to, groupId: req.groupId, clientMsgId: req.clientMsgId, contentType: req.contentType },
        { to: '', groupId: '', ...target, clientMsgId: '17', contentType: 'text/plain' });
      assert.equal(req.content.length, 100);
      assert.deepEqual(readStamp(req.content), { sentUs: 123456.75, phase: 3 });
    }
  });

  it('reads no stamp from content too short to hold one', () => {
    assert.equal(readStamp(Buffer.from('hi')), undefined);
  });
});
