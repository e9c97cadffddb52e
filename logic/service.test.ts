import { strict as assert } from 'node:assert';
import { Code } from '../common/errors';
import { groupConvId, peerConvId } from '../common/ids';
import type { LogicEnv } from './logic.test-support';
import { caller, errorCode, makeLogicEnv, rejection } from './logic.test-support';

const alice = caller('alice');
const bob = caller('bob');
const carol = caller('carol');
const dave = caller('dave');
const text = (s: string) => Buffer.from(s, 'utf8');

describe('LogicService', () => {
  let env: LogicEnv;
  beforeEach(() => { env = makeLogicEnv(); });
  afterEach(async () => { await env.close(); });

  describe('send (1:1)', () => {
    it('gives both sides strictly increasing inbox seqs and one conversation', async () => {
      const s = env.service;
      const r1 = await s.send(alice, { to: 'bob', clientMsgId: 'a1', content: text('hi') });
      const r2 = await s.send(bob, { to: 'alice', clientMsgId: 'b1', content: text('hey') });
      const r3 = await s.send(alice, { to: 'bob', clientMsgId: 'a2', content: text('how are you') });
      assert.deepEqual([r1.seq, r2.seq, r3.seq], [1, 2, 3]);
      assert.equal(r1.convId, peerConvId('alice', 'bob'));
      assert.equal(r2.convId, r1.convId);
      assert.deepEqual([r1.convSeq, r2.convSeq, r3.convSeq], [1, 2, 3]);
      assert.equal(r1.duplicate, false);

      const bobSync = await s.sync(bob, { fromSeq: 0, limit: 0 });
      assert.deepEqual(bobSync.messages.map((m) => [m.seq, m.from, Buffer.from(m.content).toString()]),
        [[1, 'alice', 'hi'], [2, 'bob', 'hey'], [3, 'alice', 'how are you']]);
      assert.equal(bobSync.maxSeq, 3);
      assert.equal(bobSync.hasMore, false);
      assert.equal(bobSync.messages[0].msgId, r1.msgId);
      assert.equal(bobSync.messages[0].contentType, 'text/plain');

      // carol's inbox is untouched; a message to carol starts her timeline at 1 and moves alice on.
      assert.equal((await s.sync(carol, { fromSeq: 0, limit: 0 })).maxSeq, 0);
      const r4 = await s.send(alice, { to: 'carol', clientMsgId: 'a3', content: text('hello') });
      assert.equal(r4.seq, 4);
      const carolSync = await s.sync(carol, { fromSeq: 0, limit: 0 });
      assert.deepEqual(carolSync.messages.map((m) => m.seq), [1]);
    });

    it('cuts sync and history pages by bytes, with hasMore, but always returns at least one message', async () => {
      const small = makeLogicEnv({ maxReplyBytes: 10_000, maxContentBytes: 8000 });
      try {
        for (let i = 0; i < 4; i++) {
          await small.service.send(alice, { to: 'bob', clientMsgId: `big${i}`, content: Buffer.alloc(4000, i) });
        }
        const page = await small.service.sync(bob, { fromSeq: 0, limit: 100 });
        assert.deepEqual(page.messages.map((m) => m.seq), [1, 2]);
        assert.equal(page.hasMore, true);
        const hist = await small.service.history(bob, { with: 'alice', limit: 100 });
        assert.deepEqual(hist.messages.map((m) => m.convSeq), [4, 3]);
        assert.equal(hist.hasMore, true);
        await small.service.send(alice, { to: 'bob', clientMsgId: 'huge', content: Buffer.alloc(8000, 9) });
        const one = await small.service.sync(bob, { fromSeq: 4, limit: 100 });
        assert.deepEqual(one.messages.map((m) => m.seq), [5]);
      } finally {
        await small.close();
      }
    });

    it('writes one inbox entry when sending to oneself', async () => {
      const r = await env.service.send(alice, { to: 'alice', clientMsgId: 'note', content: text('memo') });
      assert.equal(r.convId, peerConvId('alice', 'alice'));
      const sync = await env.service.sync(alice, { fromSeq: 0, limit: 0 });
      assert.equal(sync.messages.length, 1);
      assert.equal(sync.maxSeq, 1);
    });

    it('syncs from a seq with paging', async () => {
      for (let i = 0; i < 5; i++) await env.service.send(alice, { to: 'bob', clientMsgId: `m${i}` });
      const page = await env.service.sync(bob, { fromSeq: 2, limit: 2 });
      assert.deepEqual(page.messages.map((m) => m.seq), [3, 4]);
      assert.equal(page.hasMore, true);
      assert.equal(page.maxSeq, 5);
      const rest = await env.service.sync(bob, { fromSeq: 4, limit: 2 });
      assert.deepEqual(rest.messages.map((m) => m.seq), [5]);
      assert.equal(rest.hasMore, false);
    });

    it('rejects malformed sends with a code', async () => {
      const s = env.service;
      assert.equal(await errorCode(s.send(alice, { to: 'bob', groupId: 'g', clientMsgId: 'x' })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.send(alice, { clientMsgId: 'x' })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.send(alice, { to: 'bob' })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.send(alice, { to: 'bob', clientMsgId: 'x'.repeat(129) })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.send(alice, { to: 'bo:b', clientMsgId: 'x' })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.send(alice, { to: 'bob', clientMsgId: 'x', contentType: 't'.repeat(65) })), Code.BAD_REQUEST);
      const big = await rejection(s.send(alice, { to: 'bob', clientMsgId: 'x', content: new Uint8Array(16_385) }));
      assert.equal(big.code, Code.CONTENT_TOO_LARGE);
      assert.match(big.message, /16385 bytes; the limit is 16384/);
      assert.equal(await errorCode(s.send(caller(''), { to: 'bob', clientMsgId: 'x' })), Code.NOT_AUTHENTICATED);
      // Nothing was written by any of them.
      assert.equal((await s.sync(bob, { fromSeq: 0, limit: 0 })).maxSeq, 0);
      // Exactly at the limit is fine.
      await s.send(alice, { to: 'bob', clientMsgId: 'ok', content: new Uint8Array(16_384) });
    });
  });

  describe('idempotent send', () => {
    it('answers a sequential retry with the original message', async () => {
      const first = await env.service.send(alice, { to: 'bob', clientMsgId: 'same', content: text('once') });
      const again = await env.service.send(alice, { to: 'bob', clientMsgId: 'same', content: text('once') });
      assert.equal(again.duplicate, true);
      assert.deepEqual({ ...again, duplicate: false }, first);
      const sync = await env.service.sync(bob, { fromSeq: 0, limit: 0 });
      assert.equal(sync.messages.length, 1);
    });

    it('creates one message from concurrent duplicates, all answered with the same msgId and seq', async () => {
      const sends = Array.from({ length: 8 }, () => env.service.send(alice, { to: 'bob', clientMsgId: 'race', content: text('x') }));
      const results = await Promise.all(sends);
      assert.equal(new Set(results.map((r) => r.msgId)).size, 1);
      assert.equal(new Set(results.map((r) => r.seq)).size, 1);
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      assert.equal((await env.service.sync(bob, { fromSeq: 0, limit: 0 })).messages.length, 1);
      assert.equal((await env.service.sync(alice, { fromSeq: 0, limit: 0 })).messages.length, 1);
    });

    it('keys dedup on the sender: another user may reuse the client id', async () => {
      const a = await env.service.send(alice, { to: 'carol', clientMsgId: 'c1' });
      const b = await env.service.send(bob, { to: 'carol', clientMsgId: 'c1' });
      assert.notEqual(a.msgId, b.msgId);
      assert.equal(b.duplicate, false);
    });
  });

  describe('groups', () => {
    it('fans a group message out to every member with their own seqs', async () => {
      const s = env.service;
      // Give members different inbox positions first.
      await s.send(carol, { to: 'bob', clientMsgId: 'pre1' });
      await s.send(carol, { to: 'dave', clientMsgId: 'pre2' });
      const { group } = await s.createGroup(alice, { name: 'team', members: ['bob', 'carol', 'dave'] });
      assert.ok(group);
      assert.equal(group.owner, 'alice');
      assert.deepEqual(group.members, ['alice', 'bob', 'carol', 'dave']);

      const r = await s.send(alice, { groupId: group.groupId, clientMsgId: 'g1', content: text('all') });
      assert.equal(r.convId, groupConvId(group.groupId));
      assert.equal(r.seq, 1);
      const seqOf = async (c: typeof alice) => {
        const msgs = (await s.sync(c, { fromSeq: 0, limit: 0 })).messages.filter((m) => m.msgId === r.msgId);
        assert.equal(msgs.length, 1, `${c.uid} has the group message once`);
        assert.equal(msgs[0].groupId, group.groupId);
        assert.equal(msgs[0].from, 'alice');
        assert.equal(msgs[0].to, '');
        return msgs[0].seq;
      };
      assert.deepEqual([await seqOf(alice), await seqOf(bob), await seqOf(carol), await seqOf(dave)], [1, 2, 3, 2]);
    });

    it('refuses sends, history and member lists to non-members and unknown groups', async () => {
      const s = env.service;
      const { group } = await s.createGroup(alice, { name: 'private', members: ['bob'] });
      const e = await rejection(s.send(carol, { groupId: group!.groupId, clientMsgId: 'x' }));
      assert.equal(e.code, Code.NOT_GROUP_MEMBER);
      assert.equal(await errorCode(s.history(carol, { groupId: group!.groupId })), Code.NOT_GROUP_MEMBER);
      assert.equal(await errorCode(s.members(carol, { groupId: group!.groupId })), Code.NOT_GROUP_MEMBER);
      assert.equal(await errorCode(s.addMembers(carol, { groupId: group!.groupId, uids: ['carol'] })), Code.NOT_GROUP_MEMBER);
      assert.equal(await errorCode(s.send(alice, { groupId: 'nope', clientMsgId: 'x' })), Code.GROUP_NOT_FOUND);
      assert.equal((await s.sync(bob, { fromSeq: 0, limit: 0 })).maxSeq, 0);
    });

    it('caps a group at 100 members on create and on add', async () => {
      const s = env.service;
      const others = (n: number, p = 'u') => Array.from({ length: n }, (_, i) => `${p}${i}`);
      const tooBig = await rejection(s.createGroup(alice, { name: 'big', members: others(100) }));
      assert.equal(tooBig.code, Code.GROUP_FULL);
      assert.equal(tooBig.message, 'group would have 101 members; the limit is 100');

      const { group } = await s.createGroup(alice, { name: 'full', members: others(99) });
      assert.equal(group!.members.length, 100);
      const add = await rejection(s.addMembers(alice, { groupId: group!.groupId, uids: ['bob'] }));
      assert.equal(add.code, Code.GROUP_FULL);
      assert.equal(add.message, 'group would have 101 members; the limit is 100');
      // Adding someone already in is not growth.
      const same = await s.addMembers(alice, { groupId: group!.groupId, uids: ['u0'] });
      assert.equal(same.group!.members.length, 100);
      assert.equal((await s.members(alice, { groupId: group!.groupId })).group!.members.length, 100);
    });

    it('respects a configured member cap', async () => {
      const small = makeLogicEnv({ maxGroupMembers: 3 });
      try {
        const { group } = await small.service.createGroup(alice, { name: 'trio', members: ['bob'] });
        await small.service.addMembers(bob, { groupId: group!.groupId, uids: ['carol'] });
        const e = await rejection(small.service.addMembers(bob, { groupId: group!.groupId, uids: ['dave'] }));
        assert.equal(e.message, 'group would have 4 members; the limit is 3');
      } finally {
        await small.close();
      }
    });

    it('validates group requests', async () => {
      const s = env.service;
      assert.equal(await errorCode(s.createGroup(alice, { name: '', members: [] })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.createGroup(alice, { name: 'n'.repeat(65), members: [] })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.createGroup(alice, { name: 'x', members: ['ok', 'not ok'] })), Code.BAD_REQUEST);
      const { group } = await s.createGroup(alice, { name: 'x', members: [] });
      const many = Array.from({ length: 101 }, (_, i) => `m${i}`);
      assert.equal(await errorCode(s.addMembers(alice, { groupId: group!.groupId, uids: many })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.addMembers(alice, { groupId: group!.groupId, uids: [] })), Code.BAD_REQUEST);
    });

    it('lets only the owner remove others; anyone may remove themselves', async () => {
      const s = env.service;
      const { group } = await s.createGroup(alice, { name: 'g', members: ['bob', 'carol', 'dave'] });
      const gid = group!.groupId;
      assert.equal(await errorCode(s.removeMembers(bob, { groupId: gid, uids: ['carol'] })), Code.NOT_GROUP_OWNER);
      assert.equal(await errorCode(s.removeMembers(bob, { groupId: gid, uids: ['bob', 'carol'] })), Code.NOT_GROUP_OWNER);
      assert.deepEqual((await s.members(alice, { groupId: gid })).group!.members, ['alice', 'bob', 'carol', 'dave']);

      const self = await s.removeMembers(bob, { groupId: gid, uids: ['bob'] });
      assert.deepEqual(self.group!.members, ['alice', 'carol', 'dave']);
      const byOwner = await s.removeMembers(alice, { groupId: gid, uids: ['carol'] });
      assert.deepEqual(byOwner.group!.members, ['alice', 'dave']);
      assert.equal(await errorCode(s.send(carol, { groupId: gid, clientMsgId: 'x' })), Code.NOT_GROUP_MEMBER);
    });

    it('passes ownership to the next member in join order when the owner leaves', async () => {
      const s = env.service;
      const { group } = await s.createGroup(alice, { name: 'g', members: ['bob', 'carol'] });
      const gid = group!.groupId;
      await s.addMembers(bob, { groupId: gid, uids: ['dave'] });
      const left = await s.leave(alice, { groupId: gid });
      assert.equal(left.group!.owner, 'bob');
      assert.deepEqual(left.group!.members, ['bob', 'carol', 'dave']);
      // The new owner has the owner's powers; the old one is gone.
      await s.removeMembers(bob, { groupId: gid, uids: ['dave'] });
      assert.equal(await errorCode(s.members(alice, { groupId: gid })), Code.NOT_GROUP_MEMBER);
      const again = await s.removeMembers(bob, { groupId: gid, uids: ['bob'] });
      assert.equal(again.group!.owner, 'carol');
    });
  });

  describe('history', () => {
    it('pages a conversation newest first with seq 0', async () => {
      const s = env.service;
      for (let i = 1; i <= 5; i++) await s.send(i % 2 ? alice : bob, { to: i % 2 ? 'bob' : 'alice', clientMsgId: `h${i}` });
      const page = await s.history(alice, { with: 'bob', limit: 3 });
      assert.deepEqual(page.messages.map((m) => m.convSeq), [5, 4, 3]);
      assert.ok(page.messages.every((m) => m.seq === 0));
      assert.equal(page.hasMore, true);
      const older = await s.history(bob, { with: 'alice', beforeConvSeq: 3 });
      assert.deepEqual(older.messages.map((m) => m.clientMsgId), ['h2', 'h1']);
      assert.equal(older.hasMore, false);
      assert.equal((await s.history(carol, { with: 'bob' })).messages.length, 0);
      assert.equal(await errorCode(s.history(alice, {})), Code.BAD_REQUEST);
    });

    it('reads group history for members', async () => {
      const s = env.service;
      const { group } = await s.createGroup(alice, { name: 'g', members: ['bob'] });
      await s.send(bob, { groupId: group!.groupId, clientMsgId: 'x' });
      const h = await s.history(alice, { groupId: group!.groupId });
      assert.deepEqual(h.messages.map((m) => m.from), ['bob']);
    });
  });

  describe('read cursor and unread', () => {
    it('counts unread messages from others and moves the cursor forward only', async () => {
      const s = env.service;
      const conv = peerConvId('alice', 'bob');
      await s.send(bob, { to: 'alice', clientMsgId: 'own' });          // bob's own: never unread for bob
      const seqs = [];
      for (let i = 0; i < 3; i++) seqs.push((await s.send(alice, { to: 'bob', clientMsgId: `u${i}` })).seq);
      const bobSeqs = (await s.sync(bob, { fromSeq: 0, limit: 0 })).messages.map((m) => m.seq);
      assert.deepEqual(bobSeqs, [1, 2, 3, 4]);

      let u = await s.unread(bob, { convIds: [conv] });
      assert.deepEqual(u.convs.map((c) => [c.convId, c.count, c.lastSeq]), [[conv, 3, 4]]);
      assert.equal(u.total, 3);

      const r = await s.read(bob, { convId: conv, seq: 3 });
      assert.deepEqual(r.unread, { convId: conv, count: 1, readSeq: 3, lastSeq: 4 });
      const back = await s.read(bob, { convId: conv, seq: 1 });
      assert.equal(back.unread!.readSeq, 3, 'the cursor never moves back');

      const { group } = await s.createGroup(carol, { name: 'g', members: ['bob'] });
      await s.send(carol, { groupId: group!.groupId, clientMsgId: 'g' });
      u = await s.unread(bob, { convIds: [] });
      assert.equal(u.total, 2);
      assert.deepEqual(u.convs.map((c) => c.convId).sort(), [groupConvId(group!.groupId), conv].sort());
    });

    it('refuses cursors on conversations that are not the caller\'s', async () => {
      const s = env.service;
      const { group } = await s.createGroup(alice, { name: 'g', members: ['bob'] });
      assert.equal(await errorCode(s.read(carol, { convId: peerConvId('alice', 'bob'), seq: 1 })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.read(carol, { convId: groupConvId(group!.groupId), seq: 1 })), Code.NOT_GROUP_MEMBER);
      assert.equal(await errorCode(s.read(carol, { convId: 'g:missing', seq: 1 })), Code.GROUP_NOT_FOUND);
      assert.equal(await errorCode(s.read(carol, { convId: 'x:whatever', seq: 1 })), Code.BAD_REQUEST);
      assert.equal(await errorCode(s.read(carol, { convId: 'p:dave:carol', seq: 1 })), Code.BAD_REQUEST);
      // The canonical form works.
      await s.read(carol, { convId: peerConvId('dave', 'carol'), seq: 0 });
      await s.read(bob, { convId: groupConvId(group!.groupId), seq: 0 });
      assert.equal(await errorCode(s.unread(dave, { convIds: Array.from({ length: 501 }, () => 'p:a:b') })), Code.BAD_REQUEST);
    });
  });
});
