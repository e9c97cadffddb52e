import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sendDigest } from './send-digest';

/** The digest as stores have written it since schema version 2 (SQLite 3): each field length-prefixed, hashed piece by piece. */
function reference(to: string, groupId: string, contentType: string, content: Uint8Array): Buffer {
  const h = createHash('sha256');
  for (const field of [to, groupId, contentType, content]) {
    const bytes = typeof field === 'string' ? Buffer.from(field, 'utf8') : field;
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.byteLength, 0);
    h.update(len).update(bytes);
  }
  return h.digest();
}

describe('sendDigest', () => {
  it('is the digest stored records hold (length-prefixed fields), for ASCII, multi-byte and empty fields', () => {
    const cases: [string, string, string, Uint8Array][] = [
      ['bob', '', 'text/plain', Buffer.from('hello')],
      ['', 'g-1', 'application/x.custom', new Uint8Array(0)],
      ['bøb', '组', 'text/plain; charset=utf-8', new TextEncoder().encode('héllo 👋')],
      ['a', 'b', 'c', Buffer.alloc(70_000, 7).subarray(3, 69_000)],
    ];
    for (const [to, groupId, contentType, content] of cases) {
      assert.deepEqual(sendDigest({ to, groupId, contentType, content, clientMsgId: 'c' }), reference(to, groupId, contentType, content), `${to}/${groupId}`);
    }
  });
});
