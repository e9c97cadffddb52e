import * as assert from 'node:assert/strict';
import type { Message } from '../proto/wire';
import { Inbox } from './inbox';
import { inboxMessage as msg } from './client.test-support';

const seqs = (ms: Message[]) => ms.map((m) => m.seq);

describe('client/inbox', () => {
  it('delivers contiguous pushes at once', () => {
    const inbox = new Inbox({ lastSeq: 4 });
    assert.deepEqual(seqs(inbox.push(msg(5))), [5]);
    assert.deepEqual(seqs(inbox.push(msg(6))), [6]);
    assert.equal(inbox.lastSeq, 6);
    assert.equal(inbox.hasGap, false);
  });

  it('drops duplicates and anything at or below lastSeq', () => {
    const inbox = new Inbox({ lastSeq: 10 });
    assert.deepEqual(inbox.push(msg(3)), []);
    assert.deepEqual(inbox.push(msg(10)), []);
    assert.deepEqual(seqs(inbox.push(msg(11))), [11]);
    assert.deepEqual(inbox.push(msg(11)), []);
    assert.deepEqual(seqs(inbox.syncPage([msg(9), msg(10), msg(11), msg(12)])), [12]);
    assert.equal(inbox.lastSeq, 12);
  });

  it('holds out-of-order pushes and releases them in seq order once the gap closes', () => {
    const inbox = new Inbox();
    assert.deepEqual(inbox.push(msg(3)), []);
    assert.equal(inbox.hasGap, true, 'a push past lastSeq+1 must ask for a sync');
    assert.deepEqual(inbox.push(msg(2)), []);
    assert.deepEqual(inbox.push(msg(3)), [], 'a duplicate of a held push is not held twice');
    assert.equal(inbox.bufferedCount, 2);
    assert.deepEqual(seqs(inbox.push(msg(1))), [1, 2, 3]);
    assert.equal(inbox.hasGap, false);
    assert.equal(inbox.lastSeq, 3);
  });

  it('counts the seqs missing below the highest held push', () => {
    const inbox = new Inbox({ lastSeq: 1 });
    assert.equal(inbox.missingCount, 0);
    inbox.push(msg(4));
    inbox.push(msg(6));
    assert.equal(inbox.missingCount, 3); // 2, 3 and 5
    inbox.push(msg(2));
    assert.equal(inbox.missingCount, 2);
  });

  it('a sync page fills the gap and releases held pushes without duplicates', () => {
    const inbox = new Inbox({ lastSeq: 1 });
    inbox.push(msg(5));
    inbox.push(msg(4));
    assert.equal(inbox.hasGap, true);
    // The sync returns 2..4; 4 was also pushed (delivered once), then 5 follows from the buffer.
    assert.deepEqual(seqs(inbox.syncPage([msg(2), msg(3), msg(4)])), [2, 3, 4, 5]);
    assert.equal(inbox.hasGap, false);
    assert.equal(inbox.bufferedCount, 0);
  });

  it('pages: a later page supersedes pushes it covers', () => {
    const inbox = new Inbox();
    inbox.push(msg(150)); // arrives while page one (1..100) is in flight
    assert.deepEqual(seqs(inbox.syncPage(Array.from({ length: 100 }, (_, i) => msg(i + 1)))).length, 100);
    assert.equal(inbox.hasGap, true);
    const page2 = inbox.syncPage(Array.from({ length: 60 }, (_, i) => msg(i + 101)));
    assert.deepEqual(seqs(page2), Array.from({ length: 60 }, (_, i) => i + 101), '150 delivered once, in place');
    assert.equal(inbox.hasGap, false);
  });

  it('treats sync as authoritative: seqs it skips do not exist', () => {
    const inbox = new Inbox({ lastSeq: 5 });
    assert.deepEqual(seqs(inbox.syncPage([msg(7), msg(9)])), [7, 9]);
    assert.equal(inbox.lastSeq, 9);
  });

  it('skipGap gives up on a permanent gap and delivers what is held, in order', () => {
    const inbox = new Inbox({ lastSeq: 1 });
    inbox.push(msg(9));
    inbox.push(msg(4));
    assert.deepEqual(seqs(inbox.skipGap()), [4, 9]);
    assert.equal(inbox.lastSeq, 9);
    assert.equal(inbox.hasGap, false);
    assert.deepEqual(inbox.skipGap(), []);
  });

  it('is bounded: at the limit the highest seqs are dropped (sync re-fetches them)', () => {
    const inbox = new Inbox({ maxBufferedMessages: 3 });
    for (const s of [10, 20, 30]) inbox.push(msg(s));
    inbox.push(msg(5)); // lower than everything held: evicts 30
    inbox.push(msg(40)); // higher than everything held: not kept
    assert.equal(inbox.bufferedCount, 3);
    assert.equal(inbox.droppedCount, 2);
    assert.deepEqual(seqs(inbox.skipGap()), [5, 10, 20]);
  });

  it('rejects bad options', () => {
    assert.throws(() => new Inbox({ lastSeq: -1 }), /lastSeq/);
    assert.throws(() => new Inbox({ maxBufferedMessages: 0 }), /maxBufferedMessages/);
  });
});
