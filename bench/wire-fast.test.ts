import { strict as assert } from 'node:assert';
import { FrameDecoder } from '../proto/codec';
import { decode, encode, frameBytes, Op } from '../proto/wire';
import { readFrame, readMessage, readStamp, readSyncResp, sendFrame, stampContent } from './wire-fast';

/** The frame body without its 4-byte length prefix. */
function body(frame: Buffer): Buffer {
  const out = new FrameDecoder().push(frame).frames;
  assert.equal(out.length, 1);
  return out[0];
}

describe('bench hand-rolled wire codec', () => {
  it('encodes a SEND frame exactly as proto/wire.ts does', () => {
    const content = stampContent(100, 123456.75, 3);
    for (const target of [{ to: 'bob' }, { groupId: 'g1' }]) {
      const fast = sendFrame(42, target, '17', content);
      const ref = frameBytes({ op: Op.SEND, requestId: 42, body: encode('SendReq', { ...target, clientMsgId: '17', contentType: 'text/plain', content }) });
      assert.deepEqual(fast, ref);
      const req = decode('SendReq', decode('Frame', body(fast)).body);
      assert.equal(req.clientMsgId, '17');
      assert.deepEqual(readStamp(req.content), { sentUs: 123456.75, phase: 3 });
    }
  });

  it('reads frames, errors and pushed messages like proto/wire.ts', () => {
    const msg = { msgId: 'm1', seq: 2 ** 40 + 5, convId: 'p:a:b', from: 'alice', to: 'bob', groupId: '', clientMsgId: '9', sentAtMs: 1767225600000, contentType: 'text/plain', content: Buffer.from('hi'), convSeq: 1 };
    const push = readFrame(body(frameBytes({ op: Op.PUSH, body: encode('Message', msg) })));
    assert.equal(push.op, Op.PUSH);
    assert.equal(push.errorCode, 0);
    const m = readMessage(push.body!);
    assert.deepEqual({ seq: m.seq, from: m.from, clientMsgId: m.clientMsgId, content: Buffer.from(m.content!).toString() },
      { seq: msg.seq, from: 'alice', clientMsgId: '9', content: 'hi' });

    const err = readFrame(body(frameBytes({ op: Op.SEND, requestId: 7, error: { code: 1007, message: 'slow down', retryable: true } })));
    assert.deepEqual({ op: err.op, requestId: err.requestId, errorCode: err.errorCode }, { op: Op.SEND, requestId: 7, errorCode: 1007 });

    const sync = readSyncResp(encode('SyncResp', { messages: [msg, { ...msg, seq: 3, clientMsgId: '10' }], hasMore: true, maxSeq: 99 }));
    assert.deepEqual(sync.messages.map((x) => [x.seq, x.clientMsgId]), [[msg.seq, '9'], [3, '10']]);
    assert.equal(sync.hasMore, true);
    assert.equal(sync.maxSeq, 99);
  });
});
