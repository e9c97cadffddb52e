/**
 * What a dedup record remembers of the send it accepted, so a reused clientMsgId can be told
 * apart from a retry: a retry carries the same recipient and content, a reuse does not. Both
 * stores keep this digest next to (sender, clientMsgId) and compare it the same way.
 */
import { hash } from 'node:crypto';
import { IdempotencyConflictError } from '../common/errors';
import type { AppendInput } from './store';

type Sent = Pick<AppendInput, 'to' | 'groupId' | 'contentType' | 'content' | 'clientMsgId'>;

/** SHA-256 over the recipient and content; each field length-prefixed so no two sends collide by concatenation. */
export function sendDigest(input: Sent): Buffer {
  // One buffer and a one-shot hash: the same bytes as hashing the pieces one by one.
  const strings = [input.to, input.groupId, input.contentType];
  let n = 16 + input.content.byteLength;
  for (const s of strings) n += Buffer.byteLength(s, 'utf8');
  const buf = Buffer.allocUnsafe(n);
  let at = 0;
  for (const s of strings) {
    const len = buf.write(s, at + 4, 'utf8');
    buf.writeUInt32BE(len, at);
    at += 4 + len;
  }
  buf.writeUInt32BE(input.content.byteLength, at);
  buf.set(input.content, at + 4);
  return hash('sha256', buf, 'buffer');
}

/**
 * Throws IdempotencyConflictError when `stored` (the digest of the accepted send) differs from
 * this one. A record without a digest (written before digests were kept) cannot be checked and
 * counts as the same send, as it always did.
 */
export function checkSameSend(stored: Uint8Array | null | undefined, input: Sent, digest = sendDigest(input)): void {
  if (!stored || stored.length === 0) return;
  if (Buffer.compare(Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength), digest) === 0) return;
  throw new IdempotencyConflictError(
    `client_msg_id "${input.clientMsgId.slice(0, 80)}" was already used for a different message; use a new id for new content`);
}
