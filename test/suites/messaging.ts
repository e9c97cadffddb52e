/** End-to-end messaging through the SDK over real TCP, in any mode. */
import * as assert from 'node:assert/strict';
import { Code } from '../../common/errors';
import { peerConvId } from '../../common/ids';
import { decode, encode, frameBytes, Op, textContent } from '../../proto/wire';
import { Mode, TestSystem, text } from '../harness';
import { needsAll } from './needs';

/**
 * Inbox seqs only increase. Not necessarily from 1 or without gaps: in distributed mode a shard
 * that changed owner continues above the old owner's bound (docs/sequencer.md).
 */
function assertIncreasing(seqs: number[]): void {
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `seqs ${seqs.join(', ')}`);
  assert.ok(seqs[0] >= 1, `seqs ${seqs.join(', ')}`);
}

export function messagingSuite(mode: Mode): void {
  describe(`e2e messaging (${mode.name})`, function () {
    let t: TestSystem;
    before(async function () { await needsAll(this, mode); });
    beforeEach(async () => { t = await TestSystem.start(mode); });
    afterEach(async () => { await t?.stop(); });

    it('1:1: alice and bob exchange messages, delivered in seq order to both sides', async () => {
      const alice = await t.client('alice');
      const bob = await t.client('bob');
      const r1 = await alice.send(t.uid('bob'), 'hi bob');
      const r2 = await bob.send(t.uid('alice'), 'hi alice');
      assert.equal(r1.duplicate, false);
      const bobGot = await t.inbox(bob).waitFor(2);
      assert.deepEqual(bobGot.map(text), ['hi bob', 'hi alice']);
      assert.deepEqual(bobGot.map((m) => m.from), t.uids('alice', 'bob'));
      assertIncreasing(bobGot.map((m) => m.seq));
      const aliceGot = await t.inbox(alice).waitFor(2);
      assert.equal(aliceGot[0].msgId, r1.msgId);
      assert.equal(aliceGot[0].seq, r1.seq);
      assert.equal(aliceGot[1].msgId, r2.msgId);
      const hist = await alice.history({ with: t.uid('bob') });
      assert.deepEqual(hist.messages.map(text), ['hi alice', 'hi bob']);
    });

    it('the sending connection gets no PUSH of its own send; the same user\'s other device does', async () => {
      const phone = await t.rawAuthed('alice', 'phone');
      const laptop = await t.rawAuthed('alice', 'laptop');
      const bob = await t.rawAuthed('bob', 'phone');
      const pushes = (r: typeof phone) => r.frames.filter((f) => f.op === Op.PUSH).map((f) => decode('Message', f.body));
      // Both of alice's sessions are bound once both get a push of bob's.
      await bob.request(Op.SEND, 'SendReq', { to: t.uid('alice'), clientMsgId: 'warm-up', ...textContent('hi alice') });
      await Promise.all([phone, laptop].map((r) => r.waitFor((f) => f.op === Op.PUSH, 10_000)));

      const reply = await phone.request(Op.SEND, 'SendReq', { to: t.uid('bob'), clientMsgId: 'mine', ...textContent('hi bob') });
      assert.equal(reply.error, null);
      const sent = decode('SendResp', reply.body);
      await laptop.waitForCount((f) => f.op === Op.PUSH, 2, 10_000);
      await bob.waitFor((f) => f.op === Op.PUSH, 10_000);
      const onLaptop = pushes(laptop)[1];
      assert.deepEqual([onLaptop.msgId, onLaptop.seq, onLaptop.from], [sent.msgId, sent.seq, t.uid('alice')]);
      // One gateway writes a uid's push to all its connections at once: a push owed to the phone
      // would be on the wire before a pong asked for after the laptop got its copy.
      await phone.request(Op.PING, 'Ping', { clientTimeMs: Date.now() });
      assert.deepEqual(pushes(phone).map((m) => m.clientMsgId), ['warm-up'], 'the sending connection is not pushed its own send');
      assert.deepEqual(pushes(bob).map((m) => m.clientMsgId), ['mine'], 'nor was bob pushed his warm-up');
    });

    it('a group of 3 users with 2 devices each: every device gets every message once, in order', async () => {
      const names = ['ann', 'ben', 'cat'];
      const devices = [];
      for (const u of names) for (const d of ['phone', 'laptop']) devices.push({ u, d, c: await t.client(u, d) });
      const { group } = await devices[0].c.createGroup('trio', t.uids('ben', 'cat'));
      assert.ok(group);
      assert.deepEqual([...group.members].sort(), t.uids(...names).sort());
      for (let i = 0; i < 3; i++) await devices[i * 2 + 1].c.sendGroup(group.groupId, `from ${names[i]}`);
      for (const x of devices) {
        const got = await t.inbox(x.c).waitFor(3);
        assert.deepEqual(got.map(text), ['from ann', 'from ben', 'from cat'], `device ${x.u}/${x.d}`);
        assertIncreasing(got.map((m) => m.seq));
        assert.ok(got.every((m) => m.groupId === group.groupId));
      }
      // A marker sent after the three: pushes to an inbox come in seq order, so once it arrived a
      // duplicate of any of them would have too.
      const marker = await devices[0].c.sendGroup(group.groupId, 'marker');
      for (const x of devices) {
        await t.inbox(x.c).waitForMsgId(marker.msgId);
        assert.deepEqual(t.inbox(x.c).messages.map(text), ['from ann', 'from ben', 'from cat', 'marker'], `device ${x.u}/${x.d} got a duplicate`);
      }
      const members = await devices[4].c.groupMembers(group.groupId);
      assert.equal(members.group?.owner, t.uid('ann'));
    });

    it('after a removal is acknowledged, the removed member receives nothing more of the group', async () => {
      await t.stop();
      // Short hellos: logic's group cache lease holds within 40 ms, so the sends below use it.
      t = await TestSystem.start(mode, { logic: { groupSyncIntervalMs: 20 } });
      const ann = await t.client('ann');
      const ben = await t.client('ben');
      const cat = await t.client('cat');
      const { group } = await ann.createGroup('g', t.uids('ben', 'cat'));
      // A send before the removal puts the membership in logic's cache (when its lease holds).
      await ben.sendGroup(group!.groupId, 'before');
      await t.inbox(cat).waitFor(1);
      await ann.removeMembers(group!.groupId, [t.uid('cat')]);
      await ben.sendGroup(group!.groupId, 'after');
      // Sent after it: once cat has the marker, a push of 'after' would have come first (inbox seq order).
      await ben.send(t.uid('cat'), 'marker');
      assert.deepEqual((await t.inbox(cat).waitFor(2)).map(text), ['before', 'marker']);
      assert.deepEqual((await cat.sync(0)).messages.map(text), ['before', 'marker'], 'nothing of the group after the removal is stored for cat');
      assert.deepEqual((await t.inbox(ann).waitFor(2)).map(text), ['before', 'after']);
    });

    it('idempotent send: sequential and concurrent retries, on one and on two connections, give one message', async () => {
      const a1 = await t.client('alice', 'phone');
      const a2 = await t.client('alice', 'laptop');
      const bob = await t.client('bob');
      const to = t.uid('bob');
      const first = await a1.send(to, 'once', { clientMsgId: 'cm-1' });
      const again = await a1.send(to, 'once', { clientMsgId: 'cm-1' });
      const other = await a2.send(to, 'once', { clientMsgId: 'cm-1' });
      assert.equal(again.msgId, first.msgId);
      assert.equal(again.seq, first.seq);
      assert.equal(again.duplicate, true);
      assert.equal(other.msgId, first.msgId);
      // Several at once on two connections, before any has been stored.
      const all = await Promise.all([
        a1.send(to, 'race', { clientMsgId: 'cm-2' }),
        a2.send(to, 'race', { clientMsgId: 'cm-2' }),
        a1.send(to, 'race', { clientMsgId: 'cm-2' }),
      ]);
      assert.equal(new Set(all.map((r) => r.msgId)).size, 1);
      assert.equal(new Set(all.map((r) => r.seq)).size, 1);
      assert.equal(all.filter((r) => !r.duplicate).length, 1);
      await t.inbox(bob).waitFor(2);
      const synced = await bob.sync(0);
      assert.deepEqual(synced.messages.map(text), ['once', 'race']);
    });

    it('an offline user gets everything on connect via sync, in order', async () => {
      const alice = await t.client('alice');
      for (let i = 1; i <= 30; i++) await alice.send(t.uid('dora'), `m${i}`);
      const dora = await t.client('dora', 'd1', { lastSeq: 0 });
      const got = await t.inbox(dora).waitFor(30);
      assert.deepEqual(got.map(text), Array.from({ length: 30 }, (_, i) => `m${i + 1}`));
      // Consecutive; from 1 in embedded mode, above earlier owners' bound in distributed mode.
      const s0 = got[0].seq;
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 30 }, (_, i) => s0 + i));
      if (mode.name === 'embedded') assert.equal(s0, 1);
    });

    it('the 101st member is refused, at create and at add', async () => {
      const owner = await t.client('owner');
      const ninetyNine = t.uids(...Array.from({ length: 99 }, (_, i) => `u${i}`));
      await assert.rejects(owner.createGroup('big', [...ninetyNine, t.uid('extra')]), (e: any) => e.code === Code.GROUP_FULL);
      const { group } = await owner.createGroup('big', ninetyNine);
      assert.equal(group?.members.length, 100);
      await assert.rejects(owner.addMembers(group!.groupId, [t.uid('u100')]),
        (e: any) => e.code === Code.GROUP_FULL && /100/.test(e.message));
      const after = await owner.groupMembers(group!.groupId);
      assert.equal(after.group?.members.length, 100);
    });

    it('only members send to or read a group', async () => {
      const ann = await t.client('ann');
      const eve = await t.client('eve');
      const { group } = await ann.createGroup('private', [t.uid('ben')]);
      await assert.rejects(eve.sendGroup(group!.groupId, 'let me in'), (e: any) => e.code === Code.NOT_GROUP_MEMBER);
      await assert.rejects(eve.history({ groupId: group!.groupId }), (e: any) => e.code === Code.NOT_GROUP_MEMBER);
      await assert.rejects(eve.groupMembers(group!.groupId), (e: any) => e.code === Code.NOT_GROUP_MEMBER);
      const hist = await ann.history({ groupId: group!.groupId });
      assert.equal(hist.messages.length, 0);
    });

    it('a forged sender field has no effect: the sender is the token uid', async () => {
      const mallory = await t.rawAuthed('mallory');
      const bob = await t.client('bob');
      // A Message-shaped body claiming to be from alice; SendReq shares its field numbers.
      const body = encode('Message', {
        from: t.uid('alice'), to: t.uid('bob'), clientMsgId: 'forge-1', contentType: 'text/plain', content: Buffer.from('trust me'),
      });
      mallory.write(frameBytes({ op: Op.SEND, requestId: 77, body }));
      const reply = await mallory.waitFor((f) => f.requestId === 77);
      assert.equal(reply.error, null);
      const [m] = await t.inbox(bob).waitFor(1);
      assert.equal(m.from, t.uid('mallory'));
      assert.equal(m.convId, peerConvId(t.uid('bob'), t.uid('mallory')));
    });

    it('read cursor gives unread counts', async () => {
      const alice = await t.client('alice');
      const bob = await t.client('bob');
      for (let i = 0; i < 3; i++) await alice.send(t.uid('bob'), `u${i}`);
      const got = await t.inbox(bob).waitFor(3);
      assert.equal((await bob.unread()).total, 3);
      await bob.markRead(got[1].convId, got[1].seq);
      const after = await bob.unread();
      assert.equal(after.total, 1);
      assert.equal(after.convs[0].convId, peerConvId(t.uid('alice'), t.uid('bob')));
    });
  });
}
