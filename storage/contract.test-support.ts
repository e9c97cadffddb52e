/**
 * The Store contract suite: every Store implementation runs it (see sqlite/store.test.ts). Each test
 * opens its own store and uses fresh random uids, so it also passes over a shared database.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Code, GroupFullError, GroupNotFoundError, IdempotencyConflictError } from '../common/errors';
import { groupConvId, newId, peerConvId } from '../common/ids';
import type { AppendInput, AppendResult, GroupInfo, Store } from './store';

export interface StoreContractOptions {
  /** Closes `store` and opens a new one over the same data; enables the durability tests. */
  reopen?: (store: Store) => Promise<Store>;
  /**
   * A new timeline starts at seq 1 and never skips one (SQLite). Without it (Cassandra's owned
   * sequencers, docs/sequencer.md) a timeline may start higher and jump across a change of owner;
   * within one owner, as in every test here, seqs are still consecutive.
   */
  seqsFromOne?: boolean;
}

const MAX_MEMBERS = 100;
const WINDOW_MS = 60_000;

function uid(name: string): string {
  return `${name}-${randomBytes(5).toString('hex')}`;
}

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function assertBytes(actual: Uint8Array, expected: Uint8Array): void {
  assert.ok(actual instanceof Uint8Array, 'content is a Uint8Array');
  assert.deepEqual(Buffer.from(actual), Buffer.from(expected));
}

let clock = Date.now();
/** Distinct, increasing send times so tests never depend on the wall clock. */
function nextMs(): number {
  clock += 1;
  return clock;
}

function direct(from: string, to: string, text: string, over: Partial<AppendInput> = {}): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: bytes(text), sentAtMs: nextMs(), recipients: [from, to],
    dedupWindowMs: WINDOW_MS, ...over,
  };
}

function toGroup(from: string, groupId: string, members: string[], text: string): AppendInput {
  return {
    msgId: newId(), convId: groupConvId(groupId), from, to: '', groupId, clientMsgId: newId(),
    contentType: 'text/plain', content: bytes(text), sentAtMs: nextMs(), recipients: members,
    dedupWindowMs: WINDOW_MS,
  };
}

function group(owner: string, members: string[], name = 'g'): GroupInfo {
  return { groupId: uid('grp'), name, owner, members, createdAtMs: nextMs() };
}

async function rejectsWithCode(p: Promise<unknown>, code: number, cls?: abstract new (...args: never[]) => Error) {
  await assert.rejects(p, (err: unknown) => {
    assert.equal((err as { code?: number }).code, code, `error code of ${String(err)}`);
    if (cls) assert.ok(err instanceof cls, `${String(err)} is a ${cls.name}`);
    return true;
  });
}

export function storeContract(
  name: string,
  openStore: () => Promise<Store>,
  options: StoreContractOptions = {},
): void {
  describe(`Store contract: ${name}`, () => {
    let store: Store;
    /** Asserts seqs are consecutive (and start at 1 where the store promises it); returns the first. */
    const run = (seqs: (number | undefined)[], what = 'seqs'): number => {
      const first = seqs[0] ?? 0;
      assert.ok(first >= 1, `${what} start at 1 or above`);
      if (options.seqsFromOne) assert.equal(first, 1, `${what} start at 1`);
      assert.deepEqual(seqs, seqs.map((_, i) => first + i), `${what} consecutive`);
      return first;
    };
    beforeEach(async () => {
      store = await openStore();
    });
    afterEach(async () => {
      await store.close();
    });

    describe('inbox timelines', () => {
      it('gives each user consecutive seqs, independent of other users', async () => {
        const [alice, bob, carol, dave] = [uid('alice'), uid('bob'), uid('carol'), uid('dave')];
        assert.equal(await store.maxSeq(alice), 0);
        const ab: AppendResult[] = [];
        for (let i = 0; i < 3; i++) ab.push(await store.appendMessage(direct(alice, bob, `ab${i}`)));
        const cd1 = await store.appendMessage(direct(carol, dave, 'cd'));
        const ba = await store.appendMessage(direct(bob, alice, 'ba'));
        const a0 = run([...ab.map((r) => r.senderSeq), ba.senderSeq], 'alice');
        run([...ab.map((r) => r.seqs.get(bob)), ba.seqs.get(bob)], 'bob');
        const c0 = run([...ab.map((r) => r.message.convSeq), ba.message.convSeq], 'both directions share one conversation');
        run([cd1.senderSeq], 'carol');
        run([cd1.seqs.get(dave)], 'dave');
        assert.equal(ba.seqs.get(alice), a0 + 3);
        assert.equal(ba.message.convSeq, c0 + 3);
        assert.equal(await store.maxSeq(alice), a0 + 3);
        assert.equal(await store.maxSeq(carol), cd1.senderSeq);
      });

      it('writes a 1:1 message to both inboxes with the same bytes and fields', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const content = new Uint8Array([0, 1, 2, 250, 255, 0, 7]);
        const input = direct(alice, bob, '', { content, contentType: 'application/octet-stream' });
        const res = await store.appendMessage(input);
        assert.equal(res.duplicate, false);
        assert.equal(res.message.msgId, input.msgId);
        assert.deepEqual([...res.seqs.keys()].sort(), [alice, bob].sort());
        run([res.message.convSeq], 'conv');
        for (const who of [alice, bob]) {
          const page = await store.sync(who, 0, 10);
          assert.equal(page.items.length, 1);
          assert.equal(page.hasMore, false);
          const e = page.items[0];
          assert.equal(e.seq, run([res.seqs.get(who)], who));
          assert.equal(e.msgId, input.msgId);
          assert.equal(e.convId, peerConvId(alice, bob));
          assert.equal(e.from, alice);
          assert.equal(e.to, bob);
          assert.equal(e.groupId, '');
          assert.equal(e.clientMsgId, input.clientMsgId);
          assert.equal(e.contentType, 'application/octet-stream');
          assert.equal(e.sentAtMs, input.sentAtMs);
          assert.equal(e.convSeq, res.message.convSeq);
          assertBytes(e.content, content);
        }
      });

      it('fans a group message out to every recipient inbox', async () => {
        const [a, b, c] = [uid('a'), uid('b'), uid('c')];
        const before = await store.appendMessage(direct(b, c, 'first, so seqs differ'));
        const g = await store.createGroup(group(a, [b, c]), MAX_MEMBERS);
        const res = await store.appendMessage(toGroup(a, g.groupId, [a, b, c], 'hi all'));
        assert.deepEqual([...res.seqs.keys()].sort(), [a, b, c].sort());
        run([res.seqs.get(a)], a);
        run([before.senderSeq, res.seqs.get(b)], b);
        run([before.seqs.get(c), res.seqs.get(c)], c);
        for (const who of [a, b, c]) {
          const [e] = (await store.sync(who, res.seqs.get(who)! - 1, 10)).items;
          assert.equal(e.msgId, res.message.msgId);
          assert.equal(e.groupId, g.groupId);
          assert.equal(e.to, '');
          assert.equal(e.convId, groupConvId(g.groupId));
          assertBytes(e.content, bytes('hi all'));
        }
      });

      it('gives 50 concurrent appends to one recipient 50 distinct consecutive seqs', async () => {
        const bob = uid('bob');
        const senders = Array.from({ length: 50 }, (_, i) => uid(`s${i}`));
        const results = await Promise.all(senders.map((s, i) => store.appendMessage(direct(s, bob, `m${i}`))));
        const seqs = results.map((r) => r.seqs.get(bob)!).sort((x, y) => x - y);
        run(seqs, 'bob');
        const page = await store.sync(bob, 0, 100);
        assert.deepEqual(page.items.map((e) => e.seq), seqs);
        assert.equal(new Set(page.items.map((e) => e.msgId)).size, 50);
        for (const [i, r] of results.entries()) assert.equal(await store.maxSeq(senders[i]), run([r.senderSeq]), 'each sender has its own timeline');
      });

      it('pages sync forward with hasMore', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        for (let i = 0; i < 25; i++) await store.appendMessage(direct(alice, bob, `m${i}`));
        const seen: number[] = [];
        let after = 0;
        const more: boolean[] = [];
        let s0 = 0;
        for (;;) {
          const page = await store.sync(bob, after, 10);
          seen.push(...page.items.map((e) => e.seq));
          s0 ||= seen[0];
          more.push(page.hasMore);
          assert.deepEqual(page.items.map((e) => new TextDecoder().decode(e.content)),
            page.items.map((e) => `m${e.seq - s0}`));
          if (!page.hasMore) break;
          after = page.items[page.items.length - 1].seq;
        }
        assert.equal(seen.length, 25);
        run(seen, 'bob');
        assert.deepEqual(more, [true, true, false]);
        const exact = await store.sync(bob, s0 + 14, 10);
        assert.equal(exact.items.length, 10);
        assert.equal(exact.hasMore, false, 'exactly `limit` left is not "more"');
        assert.deepEqual(await store.sync(bob, s0 + 24, 10), { items: [], hasMore: false });
      });

      it('pages history backwards in convSeq order with hasMore', async () => {
        const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
        for (let i = 1; i <= 25; i++) {
          const [from, to] = i % 2 ? [alice, bob] : [bob, alice];
          await store.appendMessage(direct(from, to, `h${i}`));
          if (i % 5 === 0) await store.appendMessage(direct(alice, carol, 'elsewhere'));
        }
        const conv = peerConvId(alice, bob);
        const all = await store.history(conv, 0, 100);
        const c0 = run([...all.items.map((m) => m.convSeq)].reverse(), 'conv') - 1;
        const down = (hi: number, n: number) => Array.from({ length: n }, (_, i) => c0 + hi - i);
        const p1 = await store.history(conv, 0, 10);
        assert.deepEqual(p1.items.map((m) => m.convSeq), down(25, 10));
        assert.equal(p1.hasMore, true);
        assert.deepEqual(p1.items.map((m) => new TextDecoder().decode(m.content)), p1.items.map((m) => `h${m.convSeq - c0}`));
        const p2 = await store.history(conv, c0 + 16, 10);
        assert.deepEqual(p2.items.map((m) => m.convSeq), down(15, 10));
        assert.equal(p2.hasMore, true);
        const p3 = await store.history(conv, c0 + 6, 10);
        assert.deepEqual(p3.items.map((m) => m.convSeq), down(5, 5));
        assert.equal(p3.hasMore, false);
        const other = await store.history(peerConvId(alice, carol), 0, 100);
        assert.equal(other.items.length, 5);
        run([...other.items.map((m) => m.convSeq)].reverse(), 'other conv');
        assert.deepEqual(await store.history(`p:${uid('x')}:${uid('y')}`, 0, 10), { items: [], hasMore: false });
      });

      it('refuses bad input with BAD_REQUEST', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        await rejectsWithCode(store.appendMessage(direct(alice, bob, 'x', { recipients: [bob] })), Code.BAD_REQUEST);
        await rejectsWithCode(store.appendMessage(direct(alice, bob, 'x', { recipients: [alice, bob, bob] })), Code.BAD_REQUEST);
        await rejectsWithCode(store.sync(bob, 0, 0), Code.BAD_REQUEST);
        await rejectsWithCode(store.sync(bob, -1, 10), Code.BAD_REQUEST);
        await rejectsWithCode(store.history(peerConvId(alice, bob), 0, -5), Code.BAD_REQUEST);
        assert.equal(await store.maxSeq(alice), 0, 'a refused append writes nothing');
        assert.equal(await store.maxSeq(bob), 0);
      });
    });

    describe('idempotent send', () => {
      it('answers a retry with the original message and seq, writing nothing', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const first = direct(alice, bob, 'once');
        const a = await store.appendMessage(first);
        const b = await store.appendMessage({ ...first, msgId: newId(), sentAtMs: nextMs() });
        assert.equal(a.duplicate, false);
        assert.equal(b.duplicate, true);
        assert.equal(b.message.msgId, a.message.msgId);
        assert.equal(b.senderSeq, a.senderSeq);
        assert.equal(b.seqs.size, 0);
        assert.equal(b.message.convSeq, a.message.convSeq);
        assertBytes(b.message.content, bytes('once'));
        assert.equal((await store.sync(bob, 0, 10)).items.length, 1);
        assert.equal(await store.maxSeq(alice), a.senderSeq);
        assert.equal((await store.history(first.convId, 0, 10)).items.length, 1);
        const other = await store.appendMessage(direct(bob, alice, 'same clientMsgId, other sender', { clientMsgId: first.clientMsgId }));
        assert.equal(other.duplicate, false, 'dedup is per sender');
      });

      it('refuses a reused clientMsgId with other content or recipient (IDEMPOTENCY_CONFLICT), writing nothing', async () => {
        const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
        const first = direct(alice, bob, 'first');
        const a = await store.appendMessage(first);
        const reuse = (over: Partial<AppendInput>) => store.appendMessage({ ...first, msgId: newId(), sentAtMs: nextMs(), ...over });
        await rejectsWithCode(reuse({ content: bytes('second') }), Code.IDEMPOTENCY_CONFLICT, IdempotencyConflictError);
        await rejectsWithCode(reuse({ contentType: 'application/json' }), Code.IDEMPOTENCY_CONFLICT);
        await rejectsWithCode(reuse({ to: carol, convId: peerConvId(alice, carol), recipients: [alice, carol] }), Code.IDEMPOTENCY_CONFLICT);
        const retry = await reuse({});
        assert.equal(retry.duplicate, true, 'the same content is still a retry');
        assert.equal(retry.message.msgId, a.message.msgId);
        assert.equal(retry.senderSeq, a.senderSeq);
        assert.equal(await store.maxSeq(alice), a.senderSeq);
        assert.deepEqual((await store.sync(bob, 0, 10)).items.map((m) => Buffer.from(m.content).toString()), ['first']);
        assert.equal(await store.maxSeq(carol), 0);
      });

      it('turns 10 concurrent sends with one clientMsgId into exactly one message', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const clientMsgId = newId();
        const results = await Promise.all(Array.from({ length: 10 }, () =>
          store.appendMessage(direct(alice, bob, 'try', { clientMsgId }))));
        assert.equal(results.filter((r) => !r.duplicate).length, 1);
        assert.equal(new Set(results.map((r) => r.message.msgId)).size, 1);
        assert.equal(new Set(results.map((r) => r.senderSeq)).size, 1);
        assert.equal((await store.sync(bob, 0, 100)).items.length, 1);
        assert.equal(await store.maxSeq(alice), results[0].senderSeq);
      });

      it('accepts one of 10 concurrent sends of different content with one clientMsgId and refuses the rest', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const clientMsgId = newId();
        const settled = await Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
          store.appendMessage(direct(alice, bob, `try${i}`, { clientMsgId }))));
        const won = settled.filter((r): r is PromiseFulfilledResult<AppendResult> => r.status === 'fulfilled');
        assert.equal(won.length, 1, 'exactly one accepted');
        assert.equal(won[0].value.duplicate, false);
        for (const r of settled) {
          if (r.status === 'rejected') assert.equal((r.reason as { code?: number }).code, Code.IDEMPOTENCY_CONFLICT, String(r.reason));
        }
        const inbox = (await store.sync(bob, 0, 100)).items;
        assert.equal(inbox.length, 1);
        assertBytes(inbox[0].content, won[0].value.message.content);
      });

      it('accepts the same clientMsgId as new once the window has passed', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const t0 = nextMs();
        clock += 10_000;
        const first = direct(alice, bob, 'v1', { sentAtMs: t0, dedupWindowMs: 1000 });
        const a = await store.appendMessage(first);
        const late = await store.appendMessage({ ...first, msgId: newId(), sentAtMs: t0 + 999 });
        assert.equal(late.duplicate, true, 'inside the window');
        const expired = await store.appendMessage({ ...first, msgId: newId(), content: bytes('v2'), sentAtMs: t0 + 1000 });
        assert.equal(expired.duplicate, false, 'the window is [sentAtMs, sentAtMs + dedupWindowMs)');
        assert.notEqual(expired.message.msgId, a.message.msgId);
        assert.equal(expired.senderSeq, a.senderSeq + 1);
        const retry = await store.appendMessage({ ...first, msgId: newId(), content: bytes('v2'), sentAtMs: t0 + 1500 });
        assert.equal(retry.duplicate, true, 'the new message opened a new window');
        assert.equal(retry.message.msgId, expired.message.msgId);
        assertBytes(retry.message.content, bytes('v2'));
        assert.equal((await store.sync(bob, 0, 10)).items.length, 2);
      });
    });

    describe('groups', () => {
      it('creates, reads, adds, removes and transfers ownership', async () => {
        const [o, a, b, c, d] = [uid('o'), uid('a'), uid('b'), uid('c'), uid('d')];
        const info = group(o, [a, o, b, a], 'team');
        const created = await store.createGroup(info, MAX_MEMBERS);
        assert.deepEqual(created.members, [o, a, b], 'owner first, duplicates dropped');
        assert.equal(created.owner, o);
        const read = await store.getGroup(info.groupId);
        assert.deepEqual(read, { groupId: info.groupId, name: 'team', owner: o, members: [o, a, b], createdAtMs: info.createdAtMs });
        const added = await store.addMembers(info.groupId, [b, d, c, d], MAX_MEMBERS);
        assert.deepEqual(added.members, [o, a, b, d, c], 'existing skipped, new appended in join order');
        const removed = await store.removeMembers(info.groupId, [a, uid('stranger')]);
        assert.deepEqual(removed.members, [o, b, d, c]);
        assert.equal(removed.owner, o);
        const handed = await store.removeMembers(info.groupId, [o], d);
        assert.deepEqual(handed.members, [b, d, c]);
        assert.equal(handed.owner, d);
        const rejoined = await store.addMembers(info.groupId, [a], MAX_MEMBERS);
        assert.deepEqual(rejoined.members, [b, d, c, a], 'a rejoining member goes to the end');
        assert.deepEqual(await store.getGroup(info.groupId), rejoined);
        assert.equal(await store.getGroup(uid('nogroup')), undefined);
      });

      it('refuses a group above the member cap and writes nothing', async () => {
        const owner = uid('o');
        const members = Array.from({ length: 100 }, (_, i) => uid(`m${i}`));
        const tooBig = group(owner, members);
        await rejectsWithCode(store.createGroup(tooBig, MAX_MEMBERS), Code.GROUP_FULL, GroupFullError);
        assert.equal(await store.getGroup(tooBig.groupId), undefined);
        const full = group(owner, members.slice(0, 99));
        assert.equal((await store.createGroup(full, MAX_MEMBERS)).members.length, 100);
      });

      it('refuses addMembers that would exceed the cap and adds nothing', async () => {
        const owner = uid('o');
        const g = group(owner, Array.from({ length: 97 }, (_, i) => uid(`m${i}`)));
        await store.createGroup(g, MAX_MEMBERS);
        const extra = [uid('x1'), uid('x2'), uid('x3'), uid('x4')];
        await rejectsWithCode(store.addMembers(g.groupId, extra, MAX_MEMBERS), Code.GROUP_FULL, GroupFullError);
        assert.equal((await store.getGroup(g.groupId))!.members.length, 98);
        const withExisting = await store.addMembers(g.groupId, [owner, ...extra.slice(0, 2)], MAX_MEMBERS);
        assert.equal(withExisting.members.length, 100, 'existing members do not count twice');
      });

      it('never exceeds the cap when adds race for the last slots', async () => {
        const g = group(uid('o'), Array.from({ length: 96 }, (_, i) => uid(`m${i}`)));
        await store.createGroup(g, MAX_MEMBERS);
        const racers = Array.from({ length: 10 }, (_, i) => uid(`r${i}`));
        const outcomes = await Promise.allSettled(racers.map((r) => store.addMembers(g.groupId, [r], MAX_MEMBERS)));
        for (const o of outcomes) {
          if (o.status === 'rejected') assert.equal((o.reason as { code?: number }).code, Code.GROUP_FULL);
        }
        const members = (await store.getGroup(g.groupId))!.members;
        assert.equal(members.length, 100);
        const winners = racers.filter((_, i) => outcomes[i].status === 'fulfilled');
        assert.equal(winners.length, 3);
        assert.deepEqual(members.slice(97).sort(), [...winners].sort());
      });

      it('reports GROUP_NOT_FOUND for unknown groups', async () => {
        const missing = uid('nogroup');
        await rejectsWithCode(store.addMembers(missing, [uid('a')], MAX_MEMBERS), Code.GROUP_NOT_FOUND, GroupNotFoundError);
        await rejectsWithCode(store.removeMembers(missing, [uid('a')]), Code.GROUP_NOT_FOUND, GroupNotFoundError);
        assert.equal(await store.getGroup(missing), undefined);
      });
    });

    describe('read cursors and unread', () => {
      it('never moves a cursor back and does not count own messages', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const conv = peerConvId(alice, bob);
        const sent: AppendResult[] = [];
        for (let i = 0; i < 3; i++) sent.push(await store.appendMessage(direct(alice, bob, `a${i}`)));
        const reply = await store.appendMessage(direct(bob, alice, 'reply'));
        const b0 = run([...sent.map((r) => r.seqs.get(bob)), reply.senderSeq], 'bob') - 1;
        const a4 = reply.seqs.get(alice)!;
        assert.deepEqual(await store.unread(bob, [conv]), [{ convId: conv, count: 3, readSeq: 0, lastSeq: b0 + 4 }]);
        assert.deepEqual(await store.unread(alice, [conv]), [{ convId: conv, count: 1, readSeq: 0, lastSeq: a4 }]);
        assert.deepEqual(await store.setReadCursor(bob, conv, b0 + 2), { convId: conv, count: 1, readSeq: b0 + 2, lastSeq: b0 + 4 });
        assert.deepEqual(await store.setReadCursor(bob, conv, b0 + 1), { convId: conv, count: 1, readSeq: b0 + 2, lastSeq: b0 + 4 });
        assert.deepEqual(await store.setReadCursor(bob, conv, b0 + 4), { convId: conv, count: 0, readSeq: b0 + 4, lastSeq: b0 + 4 });
        await store.appendMessage(direct(alice, bob, 'more'));
        assert.deepEqual(await store.unread(bob, [conv]), [{ convId: conv, count: 1, readSeq: b0 + 4, lastSeq: b0 + 5 }]);
        const unknown = `p:${uid('x')}:${uid('y')}`;
        assert.deepEqual(await store.unread(bob, [unknown]), [{ convId: unknown, count: 0, readSeq: 0, lastSeq: 0 }]);
      });

      it('lists only conversations with unread messages when no convIds are given', async () => {
        const [me, a, b, c] = [uid('me'), uid('a'), uid('b'), uid('c')];
        const g = await store.createGroup(group(c, [me, a]), MAX_MEMBERS);
        await store.appendMessage(direct(a, me, 'unread from a'));
        await store.appendMessage(direct(a, me, 'unread from a again'));
        const fromB = await store.appendMessage(direct(b, me, 'read from b'));
        await store.appendMessage(direct(me, c, 'only my own'));
        await store.appendMessage(toGroup(c, g.groupId, [c, me, a], 'group unread'));
        await store.setReadCursor(me, peerConvId(me, b), fromB.seqs.get(me)!);
        const list = await store.unread(me);
        const byConv = Object.fromEntries(list.map((u) => [u.convId, u.count]));
        assert.deepEqual(byConv, { [peerConvId(me, a)]: 2, [groupConvId(g.groupId)]: 1 });
        for (const u of list) assert.ok(u.lastSeq > u.readSeq);
        assert.deepEqual(await store.unread(uid('nobody')), []);
      });
    });

    describe('lifecycle', () => {
      it('commits appends still in flight when closed, and closes idempotently', async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const pending = store.appendMessage(direct(alice, bob, 'in flight'));
        await store.close();
        const res = await pending;
        run([res.senderSeq], 'alice');
        await store.close();
        if (options.reopen) {
          store = await options.reopen(store);
          assert.equal((await store.sync(bob, 0, 10)).items[0]?.msgId, res.message.msgId);
        }
      });

      if (options.reopen) {
        const reopen = options.reopen;
        it('keeps messages, seqs, groups and cursors across reopen', async () => {
          const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
          const first = direct(alice, bob, 'before');
          const r1 = await store.appendMessage(first);
          const r2 = await store.appendMessage(direct(bob, alice, 'reply'));
          const g = await store.createGroup(group(alice, [bob, carol], 'kept'), MAX_MEMBERS);
          await store.removeMembers(g.groupId, [carol]);
          await store.setReadCursor(alice, first.convId, r1.senderSeq);
          const groupBefore = await store.getGroup(g.groupId);

          store = await reopen(store);

          const page = await store.sync(bob, 0, 10);
          assert.deepEqual(page.items.map((e) => e.seq), [r1.seqs.get(bob), r2.senderSeq]);
          assertBytes(page.items[0].content, bytes('before'));
          assert.equal(await store.maxSeq(alice), r2.seqs.get(alice));
          assert.deepEqual(await store.getGroup(g.groupId), groupBefore);
          assert.deepEqual(await store.unread(alice, [first.convId]),
            [{ convId: first.convId, count: 1, readSeq: r1.senderSeq, lastSeq: r2.seqs.get(alice) }]);
          const retry = await store.appendMessage({ ...first, msgId: newId(), sentAtMs: nextMs() });
          assert.equal(retry.duplicate, true, 'dedup records survive too');
          assert.equal(retry.senderSeq, r1.senderSeq);
          const next = await store.appendMessage(direct(alice, bob, 'after'));
          // After a reopen the next seq is above every earlier one; a store may skip (a new owner).
          assert.ok(next.senderSeq > r2.seqs.get(alice)!);
          assert.ok(next.seqs.get(bob)! > r2.senderSeq);
          assert.ok(next.message.convSeq > r2.message.convSeq);
          if (options.seqsFromOne) assert.deepEqual([next.senderSeq, next.seqs.get(bob), next.message.convSeq], [3, 3, 3]);
          const added = await store.addMembers(g.groupId, [carol], MAX_MEMBERS);
          assert.deepEqual(added.members, [alice, bob, carol]);
        });
      }
    });
  });
}
