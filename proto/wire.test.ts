/** decode refuses strings that are not UTF-8 instead of replacing their bytes. */
import * as assert from 'node:assert/strict';
import { Code, InvalidUtf8Error } from '../common/errors';
import { decode, encode } from './wire';

describe('wire decode: strings must be valid UTF-8', () => {
  it('refuses a SendReq whose client_msg_id is not UTF-8 (the bodies of issue 11)', () => {
    for (const hex of ['2a07726570726f2d623a0469642dff52056669727374', '2a07726570726f2d623a0469642dfe52067365636f6e64']) {
      assert.throws(() => decode('SendReq', Buffer.from(hex, 'hex')), (err: unknown) => {
        assert.ok(err instanceof InvalidUtf8Error);
        assert.equal(err.code, Code.BAD_REQUEST);
        return true;
      });
    }
  });

  it('refuses bad bytes in a string of a nested message and in a repeated string', () => {
    // SyncResp{messages: [Message{msg_id: "\xc3("}]}: an overlong/truncated sequence one level down.
    assert.throws(() => decode('SyncResp', Buffer.from('0a040a02c328', 'hex')), InvalidUtf8Error);
    // GroupCreateReq{members: ["ok", "\xed\xa0\x80"]}: a UTF-16 surrogate encoded as UTF-8 is not UTF-8.
    assert.throws(() => decode('GroupCreateReq', Buffer.from('12026f6b1203eda080', 'hex')), InvalidUtf8Error);
  });

  it('still decodes valid UTF-8 of every width and leaves bytes fields alone', () => {
    const value = { to: 'b', clientMsgId: 'é✓😀', contentType: 'text/plain', content: Buffer.from([0xff, 0xfe]) };
    const back = decode('SendReq', encode('SendReq', value));
    assert.equal(back.clientMsgId, 'é✓😀');
    assert.deepEqual(Buffer.from(back.content), Buffer.from([0xff, 0xfe]));
  });
});
