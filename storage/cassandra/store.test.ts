/**
 * The Cassandra store against a real node (cassandra/start.sh). Skipped loudly when none is
 * reachable; a failure instead with IM_REQUIRE_INFRA=1. Each run uses its own keyspaces and
 * drops them afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client, errors as driverErrors, types } from 'cassandra-driver';
import { ConfigError } from '../../common/config';
import { InProcessBus } from '../../bus/bus';
import { Code } from '../../common/errors';
import { newId, peerConvId } from '../../common/ids';
import { CASSANDRA_CONTACT, dropKeyspace, needs } from '../../test/infra';
import { waitFor } from '../../test/exactly-once';
import { CassandraStore, migrate, type CassandraStoreOptions } from './store';
import { asOlderRelease, countRequests, direct, killHard, statementsInFlight, testStoreOptions, uid } from './store.test-support';
import { PeerTimeoutError } from './peers';
import { shardOf } from './shards';
import { preferredOwner } from './balance';
import { MIGRATIONS, readSettings } from './schema';
import { storeContract } from '../contract.test-support';
import { sendDigest } from '../send-digest';
import type { AppendInput, AppendResult, Store, StoredMessage } from '../store';
import { LogOrderError, loggedOrQueued, type OwnerLog } from './log';
import { decodeBody } from './log-body';
import type { OwnedTimeline } from './timeline';
import { num } from './util';
import { tableOf } from './writer';

const runId = randomBytes(4).toString('hex');
const MAIN_KS = `im_test_${runId}`;
const TINY_KS = `im_test_${runId}_tiny`;
const BALANCE_KS = `im_test_${runId}_balance`;
const keyspaces = [MAIN_KS, TINY_KS, BALANCE_KS];

/** No shard handovers unless a test asks: several assert that no owner changed (gap-free seqs). */
function base(keyspace: string, over: Partial<CassandraStoreOptions> = {}): CassandraStoreOptions {
  return testStoreOptions(keyspace, over);
}

/** Bucket sizes small enough that a test crosses many partitions. */
const tiny = (over: Partial<CassandraStoreOptions> = {}) => base(TINY_KS, { inboxBucketSize: 4, historyBucketSize: 3, ...over });

let clock = Date.now();

describe('CassandraStore (real Cassandra)', function () {
  this.timeout(60_000);
  let admin: Client;

  before(async function () {
    await needs(this, 'cassandra');
    admin = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1' });
    await admin.connect();
    // Create both keyspaces once, so each test's open() only checks the recorded migrations.
    await (await CassandraStore.open(base(MAIN_KS))).close();
    await (await CassandraStore.open(tiny())).close();
  });

  after(async () => {
    if (!admin) return;
    for (const ks of keyspaces) await admin.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
    await admin.shutdown();
  });

  storeContract('cassandra', () => CassandraStore.open(base(MAIN_KS)), {
    reopen: async (store) => {
      await store.close();
      return CassandraStore.open(base(MAIN_KS));
    },
  });

  // The same contract with 4 seqs per inbox partition and 3 per history partition: paging,
  // seq allocation and unread counts all cross partition boundaries many times.
  storeContract('cassandra, tiny buckets', () => CassandraStore.open(tiny()));

  describe('schema', () => {
    it('re-applies nothing on a second migrate and keeps the bucket sizes it was created with', async () => {
      assert.deepEqual(await migrate(admin, TINY_KS, { inboxBucketSize: 999 }), []);
      assert.deepEqual(await readSettings(admin, TINY_KS), { inboxBucketSize: 4, historyBucketSize: 3, shardCount: 1024, journalSinceMs: 0, inboxLayout: 9 });
      const rs = await admin.execute(`SELECT version FROM ${TINY_KS}.schema_migrations`);
      assert.deepEqual(rs.rows.map((r) => r.version as number).sort((x, y) => x - y), MIGRATIONS.map((m) => m.version));
    });
  });

  describe('two processes (two stores) over one keyspace', () => {
    let a: Store;
    let b: Store;
    beforeEach(async () => {
      // Two stores reach each other over a bus, as two logic processes do over NATS.
      const bus = new InProcessBus();
      [a, b] = await Promise.all([CassandraStore.open(tiny({ bus })), CassandraStore.open(tiny({ bus }))]);
    });
    afterEach(async () => {
      await Promise.all([a.close(), b.close()]);
    });

    it('gives concurrent appends from both one strictly increasing seq per user and conv, gap-free within an owner', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const others = Array.from({ length: 10 }, (_, i) => uid(`s${i}`));
      const inputs: AppendInput[] = [];
      for (let i = 0; i < 30; i++) inputs.push(direct(alice, bob, `ab${i}`));
      for (let i = 0; i < 30; i++) inputs.push(direct(others[i % others.length], bob, `x${i}`));
      // Interleaved across both stores, all at once.
      const results = await Promise.all(inputs.map((input, i) => (i % 2 ? a : b).appendMessage(input)));

      // One owner per timeline and no change of owner during the test: consecutive seqs (they
      // start above the bound of earlier epochs when an earlier test's store owned the shard).
      const run = (n: number, from: number) => Array.from({ length: n }, (_, i) => from + i);
      const bobSeqs = results.map((r) => r.seqs.get(bob)!).sort((x, y) => x - y);
      assert.deepEqual(bobSeqs, run(60, bobSeqs[0]), 'unique and gap-free');
      const aliceSeqs = results.slice(0, 30).map((r) => r.senderSeq).sort((x, y) => x - y);
      assert.deepEqual(aliceSeqs, run(30, aliceSeqs[0]));
      const convSeqs = results.slice(0, 30).map((r) => r.message.convSeq).sort((x, y) => x - y);
      assert.deepEqual(convSeqs, run(30, convSeqs[0]));

      // Both stores read the same timeline, each seq holding the message it was acked with.
      const bySeq = new Map(results.map((r) => [r.seqs.get(bob)!, r.message.msgId]));
      for (const s of [a, b]) {
        const page = await s.sync(bob, 0, 100);
        assert.equal(page.hasMore, false);
        assert.deepEqual(page.items.map((e) => e.seq), bobSeqs);
        for (const e of page.items) assert.equal(e.msgId, bySeq.get(e.seq));
        assert.equal(await s.maxSeq(bob), bobSeqs[59]);
        const hist = await s.history(peerConvId(alice, bob), 0, 100);
        assert.deepEqual(hist.items.map((m) => m.convSeq), [...convSeqs].reverse());
      }
    });

    it('turns duplicate retries racing through both stores into exactly one message', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const clientMsgId = newId();
      const tries = Array.from({ length: 12 }, () => direct(alice, bob, 'try', { clientMsgId }));
      const results = await Promise.all(tries.map((t, i) => (i % 2 ? a : b).appendMessage(t)));
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      assert.equal(new Set(results.map((r) => r.message.msgId)).size, 1);
      assert.equal(new Set(results.map((r) => r.senderSeq)).size, 1);
      assert.equal((await a.sync(bob, 0, 10)).items.length, 1);
      assert.equal((await b.history(peerConvId(alice, bob), 0, 10)).items.length, 1);
    });

    it('accepts one of different contents racing with one clientMsgId through both stores, refusing the rest', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const clientMsgId = newId();
      const tries = Array.from({ length: 12 }, (_, i) => direct(alice, bob, `try${i}`, { clientMsgId }));
      const settled = await Promise.allSettled(tries.map((t, i) => (i % 2 ? a : b).appendMessage(t)));
      const won = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      assert.equal(won.length, 1, 'exactly one accepted');
      for (const r of settled) {
        if (r.status === 'rejected') assert.equal((r.reason as { code?: number }).code, Code.IDEMPOTENCY_CONFLICT, String(r.reason));
      }
      const inbox = (await a.sync(bob, 0, 10)).items;
      assert.deepEqual(inbox.map((m) => m.msgId), [won[0].message.msgId]);
    });

    it('never exceeds the member cap when adds race through both stores', async () => {
      const owner = uid('o');
      const g = { groupId: uid('grp'), name: 'race', owner, members: Array.from({ length: 16 }, (_, i) => uid(`m${i}`)), createdAtMs: ++clock };
      await a.createGroup(g, 20);
      const racers = Array.from({ length: 10 }, (_, i) => uid(`r${i}`));
      const outcomes = await Promise.allSettled(racers.map((r, i) => (i % 2 ? a : b).addMembers(g.groupId, [r], 20)));
      for (const o of outcomes) if (o.status === 'rejected') assert.equal((o.reason as { code?: number }).code, Code.GROUP_FULL);
      const winners = racers.filter((_, i) => outcomes[i].status === 'fulfilled');
      assert.equal(winners.length, 3);
      const members = (await b.getGroup(g.groupId))!.members;
      assert.equal(members.length, 20);
      assert.deepEqual(members.slice(17).sort(), [...winners].sort());
    });
  });

  describe('a call that waited on another owner', () => {
    it('keeps the shard this process took meanwhile: no second epoch over rows not yet written behind', async () => {
      // Rows wait a minute before they reach their tables: a second epoch's fences would shadow them.
      const s = await CassandraStore.open(tiny({ leaseMs: 1000, writeBehindMs: 60_000 }));
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const inner = s as unknown as {
          shards: { of(k: string): number; mine(n: number): { epoch: number } | undefined; resolve(n: number): Promise<unknown>; remote: Map<number, { owner: string; untilMs: number }> };
          peers: { call: (...args: unknown[]) => Promise<unknown> };
        };
        const shard = inner.shards.of(alice);
        const first = await s.appendMessage(direct(alice, bob, 'before'));
        const epoch = inner.shards.mine(shard)!.epoch;
        // This process now believes another owns alice's shard; the call to it takes long, and
        // meanwhile another call here takes the shard back (here: the same shard, as it was).
        inner.shards.remote.set(shard, { owner: 'vm-0-gone', untilMs: Date.now() + 100 });
        const owned = inner.shards.mine(shard)!;
        (inner.shards as unknown as { owned: Map<number, unknown> }).owned.delete(shard);
        const call = inner.peers.call;
        inner.peers.call = async () => {
          (inner.shards as unknown as { owned: Map<number, unknown> }).owned.set(shard, owned);
          throw new PeerTimeoutError('vm-0-gone did not answer');
        };
        try {
          await s.appendMessage(direct(alice, bob, 'after'));
        } finally {
          inner.peers.call = call;
        }
        assert.equal(inner.shards.mine(shard)?.epoch, epoch, 'still the same epoch: the shard was not taken again');
        const inbox = (await s.sync(bob, 0, 10)).items.map((m) => new TextDecoder().decode(m.content));
        assert.deepEqual(inbox, ['before', 'after']);
        assert.equal((await s.sync(bob, 0, 10)).items[0].msgId, first.message.msgId);
      } finally {
        await s.close();
      }
    });
  });

  describe('a bound advance whose answer is lost', () => {
    it('keeps the shard at the bound our own advance wrote: same epoch, seqs in order, nothing lost', async () => {
      const s = await CassandraStore.open(tiny({ leaseMs: 2000, writeBehindMs: 60_000, seqStep: 2 }));
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const inner = s as unknown as { client: Client; shards: { of(k: string): number; mine(n: number): { epoch: number; bound: number } | undefined } };
        const acked = [await s.appendMessage(direct(alice, bob, 'm0'))];
        const epochs = new Map([alice, bob, peerConvId(alice, bob)].map((k) => [inner.shards.of(k), inner.shards.mine(inner.shards.of(k))?.epoch]));
        // The next advance of any shard applies, and its answer is replaced by Cassandra's CAS timeout.
        const execute = inner.client.execute.bind(inner.client);
        let lost = 0;
        let lostShard = -1;
        inner.client.execute = (async (query: string, params?: unknown, options?: unknown) => {
          const rs = await execute(query, params as never, options as never);
          if (lost === 0 && /SET bound = \? WHERE shard = \? IF owner/.test(query)) {
            lost++;
            lostShard = (params as number[])[1];
            const err = new driverErrors.ResponseError(types.responseErrorCodes.writeTimeout, 'CAS operation timed out');
            (err as unknown as { writeType: string }).writeType = 'CAS';
            throw err;
          }
          return rs;
        }) as Client['execute'];
        try {
          for (let i = 1; i < 8; i++) {
            for (;;) {
              try {
                acked.push(await s.appendMessage(direct(alice, bob, `m${i}`)));
                break;
              } catch (err) {
                // The send whose advance timed out fails retryably; a retry goes through.
                assert.ok((err as { retryable?: boolean }).retryable, String(err));
              }
            }
          }
        } finally {
          inner.client.execute = execute;
        }
        assert.equal(lost, 1, 'one advance answer was lost');
        assert.ok(epochs.has(lostShard), `the advance was of a shard of this send (${lostShard})`);
        assert.equal(inner.shards.mine(lostShard)?.epoch, epochs.get(lostShard), 'the shard kept its epoch');
        const inbox = (await s.sync(bob, 0, 20)).items;
        assert.deepEqual(inbox.map((m) => m.msgId), acked.map((r) => r.message.msgId));
        assert.deepEqual(inbox.map((m) => m.seq), acked.map((r) => r.seqs.get(bob)));
      } finally {
        await s.close();
      }
    });
  });

  describe('owner log (docs/sequencer.md)', () => {
    it('an owner that dies with rows only in its log: the next owner replays them, so every acknowledged message reads back at its seq, in history and unread', async () => {
      // Rows wait a minute before they are written to their tables: all of them are only logged.
      const dead = await CassandraStore.open(tiny({ leaseMs: 1000, writeBehindMs: 60_000 }));
      const [alice, bob] = [uid('alice'), uid('bob')];
      const acked = [];
      for (let i = 0; i < 10; i++) acked.push(await dead.appendMessage(direct(alice, bob, `m${i}`)));
      const bobSeqs = acked.map((r) => r.seqs.get(bob)!);
      // The buckets bob's seqs fall in (inboxBucketSize 4): his shard may have had owners before
      // in this keyspace, and a new epoch starts above their bound, so seqs need not start at 1.
      const buckets = [...new Set(bobSeqs.map((q) => Math.floor(q / 4)))];
      const rowsOf = async (user: string) => (await Promise.all(buckets.map((b) =>
        admin.execute(`SELECT seq FROM ${TINY_KS}.inbox WHERE uid = ? AND bucket = ?`, [user, b], { prepare: true })))).flatMap((rs) => rs.rows);
      assert.deepEqual(await rowsOf(bob), [], 'acknowledged while only in the owner log');
      await killHard(dead);

      const next = await CassandraStore.open(tiny({ leaseMs: 1000 }));
      try {
        const inbox = (await next.sync(bob, 0, 100)).items;
        assert.deepEqual(inbox.map((m) => [m.seq, m.msgId]), acked.map((r, i) => [bobSeqs[i], r.message.msgId]));
        assert.equal((await rowsOf(bob)).length, 10, 'replayed into the inbox table');
        const history = (await next.history(peerConvId(alice, bob), 0, 100)).items;
        assert.deepEqual(history.map((m) => m.msgId).reverse(), acked.map((r) => r.message.msgId));
        assert.deepEqual((await next.unread(bob)).map((u) => u.count), [10]);
        // The dead owner's journal came back too: a retry is answered with the original.
        const retry = await next.appendMessage({ ...direct(alice, bob, 'm9'), clientMsgId: acked[9].message.clientMsgId, msgId: newId(), sentAtMs: acked[9].message.sentAtMs, content: acked[9].message.content });
        assert.equal(retry.message.msgId, acked[9].message.msgId);
        assert.equal(retry.duplicate, true);
      } finally {
        await next.close();
      }
    });
  });

  describe('one round per send (docs/sequencer.md)', () => {
    // Default bucket sizes: a send then rarely starts a bucket (a bucket is listed in its own write first).
    /** The log rows this store wrote so far: position -> the tables its rows go to. */
    async function logged(store: CassandraStore): Promise<Map<number, string[]>> {
      const rs = await admin.execute(`SELECT pos, body FROM ${MAIN_KS}.store_log WHERE process = ? AND part = 0`, [store.processId], { prepare: true });
      return new Map(rs.rows.map((r) => [num(r.pos)!, decodeBody(r.body as Buffer).map((row) => tableOf(row.query).split('.').pop()!)]));
    }

    it('logs a send\'s journal, history and inbox rows in one log write when this process owns all of them', async () => {
      const store = await CassandraStore.open(base(MAIN_KS, { writeBehindMs: 60_000 }));
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        // The first send lists each timeline's first bucket (its own writes, before the rows).
        await store.appendMessage(direct(alice, bob, 'first'));
        const before = await logged(store);
        const res = await store.appendMessage(direct(alice, bob, 'second'));
        const after = await logged(store);
        const added = [...after.keys()].filter((pos) => !before.has(pos));
        assert.equal(added.length, 1, `one log write for the send, got ${added.length}`);
        assert.deepEqual(after.get(added[0])!.sort(), ['history', 'inbox', 'inbox', 'journal']);
        assert.deepEqual((await store.sync(bob, 0, 10)).items.map((m) => m.msgId).slice(-1), [res.message.msgId]);
      } finally {
        await store.close();
      }
    });

    it('never logs rows queued after rows that failed to be logged, and the timeline reissues the seq they had', async () => {
      const store = await CassandraStore.open(base(MAIN_KS, { writeBehindMs: 60_000 }));
      try {
        const inner = store as unknown as { log: OwnerLog; inbox: OwnedTimeline<StoredMessage> };
        const [alice, bob] = [uid('alice'), uid('bob')];
        const warm = await store.appendMessage(direct(alice, bob, 'warm'));
        const bobSeq = warm.seqs.get(bob)!;
        const before = await logged(store);
        // An earlier write whose rows are refused (as a lost shard's check refuses them).
        const failed = inner.log.enqueue([{ query: `INSERT INTO ${MAIN_KS}.journal (from_uid, client_msg_id, body) VALUES (?, ?, ?)`,
          params: [alice, 'x', Buffer.alloc(1)], routingKey: Buffer.from(alice), bytes: 10, key: alice, shard: 0, epoch: 0 }], () => { throw new Error('refused'); });
        await assert.rejects(failed.done, /refused/);
        assert.equal(failed.state, 'failed');
        const entry = { ...warm.message, msgId: newId() };
        await assert.rejects(inner.inbox.append(bob, entry, Date.now(), { after: failed }), LogOrderError);
        assert.deepEqual([...(await logged(store)).keys()], [...before.keys()], 'nothing logged');
        // The lane started over from what is logged: the next append takes the seq the refused one had.
        const next = await store.appendMessage(direct(alice, bob, 'next'));
        assert.equal(next.seqs.get(bob), bobSeq + 1);
        assert.deepEqual((await store.sync(bob, bobSeq - 1, 10)).items.map((m) => m.seq), [bobSeq, bobSeq + 1]);
      } finally {
        await store.close();
      }
    });

    it('logs rows queued after rows of the same round with them', async () => {
      const store = await CassandraStore.open(base(MAIN_KS, { writeBehindMs: 60_000 }));
      try {
        const inner = store as unknown as { log: OwnerLog };
        const before = await logged(store);
        const row = (id: string) => ({ query: `INSERT INTO ${MAIN_KS}.journal (from_uid, client_msg_id, body) VALUES (?, ?, ?)`,
          params: [id, 'x', Buffer.alloc(1)], routingKey: Buffer.from(id), bytes: 10, key: id, shard: 0, epoch: 0 });
        const first = inner.log.enqueue([row(uid('a'))]);
        const second = inner.log.enqueue([row(uid('b'))], () => loggedOrQueued(first, 'test'));
        await Promise.all([first.done, second.done]);
        assert.deepEqual([first.state, second.state], ['logged', 'logged']);
        const added = [...(await logged(store)).entries()].filter(([pos]) => !before.has(pos));
        assert.deepEqual(added.map(([, tables]) => tables), [['journal', 'journal']]);
      } finally {
        await store.close();
      }
    });
  });

  describe('a send over two owners (docs/sequencer.md, One round per send)', () => {
    let a: CassandraStore;
    let b: CassandraStore;
    beforeEach(async () => {
      const bus = new InProcessBus();
      [a, b] = await Promise.all([CassandraStore.open(base(MAIN_KS, { bus, writeBehindMs: 60_000 })), CassandraStore.open(base(MAIN_KS, { bus, writeBehindMs: 60_000 }))]);
      // Each lists both as live: a free shard goes to its preferred process.
      await Promise.all([a.rebalance(), b.rebalance()]);
    });
    afterEach(async () => {
      await Promise.all([a.close(), b.close()]);
    });

    /** The log rows a store wrote so far: position -> the tables its rows go to. */
    async function logged(store: CassandraStore): Promise<Map<number, string[]>> {
      const rs = await admin.execute(`SELECT pos, body FROM ${MAIN_KS}.store_log WHERE process = ? AND part = 0`, [store.processId], { prepare: true });
      return new Map(rs.rows.map((r) => [num(r.pos)!, decodeBody(r.body as Buffer).map((row) => tableOf(row.query).split('.').pop()!).sort()]));
    }
    const added = (before: Map<number, string[]>, after: Map<number, string[]>) =>
      [...after.entries()].filter(([pos]) => !before.has(pos)).map(([, tables]) => tables);

    /** Two users whose sender's shard, conversation's shard and recipient's shard go to these stores. */
    function pair(from: CassandraStore, conv: CassandraStore, to: CassandraStore): [string, string] {
      const live = [a.processId, b.processId];
      const goes = (key: string, s: CassandraStore) => preferredOwner(live, shardOf(key, 1024)) === s.processId;
      for (;;) {
        const [x, y] = [uid('x'), uid('y')];
        if (goes(x, from) && goes(peerConvId(x, y), conv) && goes(y, to)) return [x, y];
      }
    }

    it('is forwarded once to its journal\'s owner, which logs the journal, the history and its inbox in one write; the other owner logs its inbox in one', async () => {
      const [alice, bob] = pair(a, a, b);
      // The first send takes the shards and lists each timeline's first bucket.
      await b.appendMessage(direct(alice, bob, 'first'));
      const [beforeA, beforeB] = [await logged(a), await logged(b)];
      const res = await b.appendMessage(direct(alice, bob, 'second'));
      assert.deepEqual(added(beforeA, await logged(a)), [['history', 'inbox', 'journal']]);
      assert.deepEqual(added(beforeB, await logged(b)), [['inbox']], 'b coordinated nothing: it only logged bob\'s inbox row');
      for (const s of [a, b]) {
        assert.deepEqual((await s.sync(bob, 0, 10)).items.map((m) => [m.msgId, m.seq]).slice(-1), [[res.message.msgId, res.seqs.get(bob)]]);
        assert.deepEqual((await s.sync(alice, 0, 10)).items.map((m) => [m.msgId, m.seq]).slice(-1), [[res.message.msgId, res.senderSeq]]);
      }
    });

    it('sends the history\'s part to its owner as one call: the history and the inbox it owns go in one write there', async () => {
      const [alice, bob] = pair(a, b, b);
      await a.appendMessage(direct(alice, bob, 'first'));
      const [beforeA, beforeB] = [await logged(a), await logged(b)];
      const res = await a.appendMessage(direct(alice, bob, 'second'));
      assert.deepEqual(added(beforeB, await logged(b)), [['history', 'inbox']]);
      assert.deepEqual(added(beforeA, await logged(a)), [['journal'], ['inbox']], 'the journal, then (once the history is logged) alice\'s inbox');
      const hist = await b.history(peerConvId(alice, bob), 0, 1);
      assert.deepEqual(hist.items.map((m) => [m.msgId, m.convSeq]), [[res.message.msgId, res.message.convSeq]]);
    });

    it('does not take back a shard it surrendered while stopping: a send still running then is refused UNAVAILABLE, the shard row unchanged', async () => {
      const [alice, bob] = pair(a, a, a);
      await a.appendMessage(direct(alice, bob, 'first'));
      const shard = shardOf(alice, 1024);
      const row = async () => (await admin.execute(`SELECT owner, epoch FROM ${MAIN_KS}.shard_owners WHERE shard = ?`, [shard], { prepare: true })).first();
      const before = await row();
      // What close() does before its forwarded calls finish: a. surrenders its shards (released later).
      (a as unknown as { shards: { surrender(): unknown } }).shards.surrender();
      await assert.rejects(a.appendMessage(direct(alice, bob, 'during the stop')), (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE);
      const after = await row();
      assert.deepEqual([after?.owner, num(after?.epoch)], [before?.owner, num(before?.epoch)], 'not taken again');
    });

    it('goes key by key with a process of the release before (no forwarded send, no parts), exactly once and in order', async () => {
      asOlderRelease(b);
      const users = Array.from({ length: 8 }, (_, i) => uid(`u${i}`));
      const inputs = users.flatMap((from, i) => Array.from({ length: 6 }, (_, n) => direct(from, users[(i + 1 + n) % users.length], `m${n}`)));
      const results = await Promise.all(inputs.map((input, i) => (i % 2 ? a : b).appendMessage(input)));
      // Retries through the other store answer with the original.
      const again = await Promise.all(inputs.map((input, i) => (i % 2 ? b : a).appendMessage(input)));
      assert.ok(again.every((r, i) => r.duplicate && r.message.msgId === results[i].message.msgId && r.senderSeq === results[i].senderSeq));
      for (const u of users) {
        const want = results.flatMap((r) => (r.seqs.has(u) ? [[r.seqs.get(u)!, r.message.msgId] as const] : [])).sort((x, y) => x[0] - y[0]);
        const got = (await a.sync(u, 0, 100)).items.filter((e) => want.some(([, id]) => id === e.msgId)).map((e) => [e.seq, e.msgId] as const);
        assert.deepEqual(got, want, `${u}: every message once, at the seq it was acknowledged with`);
      }
    });
  });

  describe('a send over two owners when one of them dies (docs/sequencer.md, Routing between stores)', () => {
    /** Two stores with a 1.5 s lease; `pick` chooses users whose keys go to the one that dies. */
    async function withDeadOwner(place: (live: CassandraStore, dead: CassandraStore) => [string, string]): Promise<void> {
      const bus = new InProcessBus();
      const o = { bus, leaseMs: 1500, clockSkewMs: 100, writeBehindMs: 60_000 };
      const [live, dead] = await Promise.all([CassandraStore.open(base(MAIN_KS, o)), CassandraStore.open(base(MAIN_KS, o))]);
      try {
        await Promise.all([live.rebalance(), dead.rebalance()]);
        const [alice, bob] = place(live, dead);
        const before = await live.appendMessage(direct(alice, bob, 'before'));
        await killHard(dead);
        const after = await live.appendMessage(direct(alice, bob, 'after'));
        assert.equal(after.duplicate, false);
        // Both read back once, at the seqs they were acknowledged with (the dead owner's log replayed).
        for (const [u, key] of [[alice, 'senderSeq'], [bob, bob]] as const) {
          const seqOf = (r: typeof before) => (key === 'senderSeq' ? r.senderSeq : r.seqs.get(bob)!);
          const items = (await live.sync(u, 0, 10)).items.map((m) => [m.seq, m.msgId]);
          assert.deepEqual(items, [[seqOf(before), before.message.msgId], [seqOf(after), after.message.msgId]], u);
        }
        const hist = (await live.history(peerConvId(alice, bob), 0, 10)).items.map((m) => m.msgId).reverse();
        assert.deepEqual(hist, [before.message.msgId, after.message.msgId]);
      } finally {
        await live.close();
      }
    }
    const placer = (from: 'live' | 'dead', conv: 'live' | 'dead', to: 'live' | 'dead') => (live: CassandraStore, dead: CassandraStore): [string, string] => {
      const who = { live, dead };
      const ids = [live.processId, dead.processId];
      const goes = (key: string, s: CassandraStore) => preferredOwner(ids, shardOf(key, 1024)) === s.processId;
      for (;;) {
        const [x, y] = [uid('x'), uid('y')];
        if (goes(x, who[from]) && goes(peerConvId(x, y), who[conv]) && goes(y, who[to])) return [x, y];
      }
    };

    it('a part whose owner died goes key by key: its keys are taken once the lease is over, the message stored once', async () => {
      await withDeadOwner(placer('live', 'live', 'dead'));
    });

    it('a send whose journal owner died is not given up while the lease holds, then runs here once the shard is taken', async () => {
      await withDeadOwner(placer('dead', 'live', 'live'));
    });
  });

  describe('a reader\'s flush (docs/sequencer.md, Owner log)', () => {
    it('waits for the key\'s rows logged before it asked, not for a key that keeps taking rows to have none', async () => {
      // One batch written behind at a time (maxInFlight / 8), so the test can hold the next one.
      const store = await CassandraStore.open(base(MAIN_KS, { writeBehindMs: 60_000, maxInFlight: 8 }));
      let release!: () => void;
      const held = new Promise<void>((r) => { release = r; });
      try {
        const log = (store as unknown as { log: OwnerLog }).log;
        const behind = (log as unknown as { behind: { run(fn: () => Promise<unknown>): Promise<unknown> } }).behind;
        const key = uid('busy');
        const row = (cmid: string) => ({ query: `INSERT INTO ${MAIN_KS}.journal (from_uid, client_msg_id, body) VALUES (?, ?, ?)`,
          params: [key, cmid, Buffer.alloc(1)], routingKey: Buffer.from(key), bytes: 10, key, shard: 0, epoch: 0 });
        await log.write([row('before')]);
        let flushed = false;
        const flush = log.flushKey(key).then(() => { flushed = true; });
        // The row logged before the flush is being written; whatever comes next waits behind this.
        const holding = behind.run(() => held);
        await log.write([row('after')]);
        await waitFor('the flush of the rows logged before it', 10_000, () => flushed);
        assert.equal(log.pendingFor(key), true, 'the later row is still waiting to be written');
        const rs = await admin.execute(`SELECT client_msg_id FROM ${MAIN_KS}.journal WHERE from_uid = ?`, [key], { prepare: true });
        assert.deepEqual(rs.rows.map((r) => r.client_msg_id), ['before']);
        release();
        await holding;
        await flush;
      } finally {
        release();
        await store.close();
      }
    });
  });

  describe('orphaned logs', () => {
    it('a dead process\'s log is written to the tables and deleted once its lease is over, though no key of it is used again', async () => {
      // Dies before its first write-behind window and before it ever wrote a log mark.
      const dead = await CassandraStore.open(tiny({ leaseMs: 1000, writeBehindMs: 60_000 }));
      const [alice, bob] = [uid('alice'), uid('bob')];
      const seqs: number[] = [];
      for (let i = 0; i < 3; i++) seqs.push((await dead.appendMessage(direct(alice, bob, `m${i}`))).seqs.get(bob)!);
      // Where bob's rows go (inboxBucketSize 4; his shard may have had owners before: seqs need not start at 1).
      const buckets = [...new Set(seqs.map((q) => Math.floor(q / 4)))];
      const inboxRows = async () => (await Promise.all(buckets.map((b) =>
        admin.execute(`SELECT seq FROM ${TINY_KS}.inbox WHERE uid = ? AND bucket = ?`, [bob, b], { prepare: true })))).flatMap((rs) => rs.rows);
      const logged = async () => (await admin.execute(`SELECT process FROM ${TINY_KS}.log_marks WHERE process = ?`, [dead.processId], { prepare: true })).rows.length
        + (await admin.execute(`SELECT pos FROM ${TINY_KS}.store_log WHERE process = ? AND part = 0`, [dead.processId], { prepare: true })).rows.length;
      assert.deepEqual(await inboxRows(), [], 'only in the owner log');
      assert.ok(await logged() > 1, 'the log is listed in log_marks and holds the rows');
      await killHard(dead);
      // Nothing here reads or writes bob: the next store's sweep finds the dead process's log.
      const next = await CassandraStore.open(tiny({ leaseMs: 1000 }));
      try {
        await waitFor('the dead process\'s rows in the inbox table', 20_000, async () => (await inboxRows()).length === 3);
        await waitFor('its log and its mark deleted', 20_000, async () => (await logged()) === 0);
        assert.deepEqual((await next.sync(bob, 0, 10)).items.map((m) => m.seq), seqs);
      } finally {
        await next.close();
      }
    });
  });

  describe('orphaned logs (previous release)', () => {
    it('a log written before the layout was recorded (JSON body, 1,000 positions per partition) is replayed from its mark', async () => {
      const process = `old-release-${randomBytes(4).toString('hex')}`;
      const carol = uid('carol');
      const row = (seq: number) => [0, 1, 1, 1_000 + seq, Buffer.from(carol).toString('base64'), 40, [carol, 0, seq, `m${seq}`]];
      const body = JSON.stringify({ q: [`INSERT INTO ${TINY_KS}.inbox (uid, bucket, seq, msg_id) VALUES (?, ?, ?, ?)`], b: [], r: [row(1), row(2)] });
      // Positions 150 and 151 sit in partition 0 of that layout (in partition 1 of today's).
      for (const pos of [150, 151]) {
        await admin.execute(`INSERT INTO ${TINY_KS}.store_log (process, part, pos, body) VALUES (?, 0, ?, ?)`,
          [process, pos, Buffer.from(pos === 150 ? body : JSON.stringify({ q: [], b: [], r: [] }))], { prepare: true });
      }
      await admin.execute(`INSERT INTO ${TINY_KS}.log_marks (process, flushed) VALUES (?, 120)`, [process], { prepare: true });
      const store = await CassandraStore.open(tiny({ leaseMs: 1000 }));
      try {
        await waitFor('the old log replayed', 20_000, async () =>
          (await admin.execute(`SELECT seq FROM ${TINY_KS}.inbox WHERE uid = ? AND bucket = 0`, [carol], { prepare: true })).rows.length === 2);
        await waitFor('the old log deleted', 20_000, async () =>
          (await admin.execute(`SELECT pos FROM ${TINY_KS}.store_log WHERE process = ? AND part = 0`, [process], { prepare: true })).rows.length === 0);
      } finally {
        await store.close();
      }
    });
  });

  describe('statements in flight (maxInFlight)', () => {
    it('keeps a cold start\'s first touches of many keys and shards within maxInFlight, and stores every send', async () => {
      // A fresh keyspace: each send's first touch takes its shard (an LWT), reads its keys' heads, tails and
      // journal, and fences. Unbounded, 200 at once put over a thousand statements on the connection, and at
      // the driver's 2,048 the lease's renewal was refused and it lapsed (BENCHMARKS.md, "A cold start of two
      // logic processes"). The lease's renewals and the balancer's look at the leases are not gated: a few more.
      const ks = `im_test_${randomBytes(4).toString('hex')}_inflight`;
      const limit = 8;
      const store = await CassandraStore.open(testStoreOptions(ks, { maxInFlight: limit }));
      try {
        let most = 0;
        const sample = setInterval(() => { most = Math.max(most, statementsInFlight(store)); }, 1);
        const sends = Array.from({ length: 200 }, (_, i) => direct(uid(`cold${i}`), uid(`peer${i}`), `m${i}`));
        const results = await Promise.all(sends.map((m) => store.appendMessage(m)));
        clearInterval(sample);
        assert.deepEqual(results.map((r) => r.message.msgId), sends.map((m) => m.msgId));
        assert.ok(most > 0, 'sampled the driver while it worked');
        assert.ok(most <= limit + 3, `at most ${limit} statements of the store in flight, and a few of the lease: saw ${most}`);
        for (const m of sends.slice(0, 5)) {
          assert.deepEqual((await store.sync(m.to, 0, 10)).items.map((x) => x.msgId), [m.msgId]);
        }
      } finally {
        await store.close();
        await dropKeyspace(ks);
      }
    });
  });

  describe('send admission (shedAfterMs)', () => {
    it('refuses new sends OVERLOADED, storing nothing of them, while every send waits longer than shedAfterMs, and admits them again once the queue is gone', async () => {
      // One statement in flight and 200 cold sends at once: a standing queue far longer than 50 ms.
      const ks = `im_test_${randomBytes(4).toString('hex')}_shed`;
      const store = await CassandraStore.open(testStoreOptions(ks, { maxInFlight: 1, shedAfterMs: 50 }));
      try {
        const queued = Array.from({ length: 200 }, (_, i) => direct(uid(`q${i}`), uid(`r${i}`), `m${i}`));
        let finished = 0;
        const all = Promise.all(queued.map((m) => store.appendMessage(m).then((r) => { finished++; return r; })));
        // The rule looks at whole intervals, and a log round completes many sends at once: the
        // refusals start at the first interval boundary after slow completions, so new sends are
        // tried until one is refused (those admitted before join the queue and must be stored too).
        const admitted: { input: AppendInput; stored: Promise<AppendResult> }[] = [];
        let late: AppendInput | undefined;
        await waitFor('a new send refused while the queue stands', 60_000, async () => {
          assert.ok(finished < queued.length, 'the queue was gone before any send was refused');
          const input = direct(uid('late'), uid('peer'), 'late');
          const stored = store.appendMessage(input);
          // A refusal is answered at once; an admitted send waits in the queue.
          const outcome = await Promise.race([
            stored.then(() => 'stored', (e: unknown) => ((e as { code?: number }).code === Code.OVERLOADED ? 'refused' : e)),
            new Promise((r) => setImmediate(() => r('queued'))),
          ]);
          if (outcome === 'refused') {
            late = input;
            return true;
          }
          if (outcome !== 'queued' && outcome !== 'stored') throw outcome;
          admitted.push({ input, stored });
          return false;
        });
        assert.ok(store.sendsShed >= 1);
        assert.deepEqual((await all).map((r) => r.message.msgId), queued.map((m) => m.msgId), 'every admitted send stored');
        for (const a of admitted) assert.equal((await a.stored).message.msgId, a.input.msgId, 'a send admitted before the refusals stored');
        assert.equal((await store.sync(late!.to, 0, 10)).items.length, 0, 'the refused send stored nothing');
        // The queue is gone: quick sends close an interval under the target and sends are admitted again.
        await waitFor('admitted again', 30_000, async () => {
          try {
            await store.appendMessage(direct(uid('again'), uid('peer'), 'again'));
            return true;
          } catch (e) {
            if ((e as { code?: number }).code !== Code.OVERLOADED) throw e;
            return false;
          }
        });
      } finally {
        await store.close();
        await dropKeyspace(ks);
      }
    });
  });

  describe('owner log bound', () => {
    it('refuses appends with OVERLOADED while the tables are more than maxUnflushedBytes behind the log, and takes them again once they catch up', async () => {
      const store = await CassandraStore.open(tiny({ writeBehindMs: 60_000, maxUnflushedBytes: 3000 }));
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        let refused: unknown;
        for (let i = 0; i < 50 && refused === undefined; i++) {
          await store.appendMessage(direct(alice, bob, `m${i}`)).catch((err: unknown) => { refused = err; });
        }
        assert.equal((refused as { code?: number } | undefined)?.code, Code.OVERLOADED, String(refused));
        // The refusal started writing the backlog to the tables: appends are taken again.
        const after = direct(alice, bob, 'after');
        await waitFor('an append taken again', 10_000, () => store.appendMessage(after).then(() => true, () => false));
        assert.ok((await store.sync(bob, 0, 100)).items.some((m) => m.clientMsgId === after.clientMsgId));
      } finally {
        await store.close();
      }
    });
  });

  describe('send journal memory', () => {
    it('answers a retry as a duplicate after its record left memory while its journal row was still only in the log', async () => {
      // Two records in memory at most, rows written behind a minute later: the third send's
      // record is forgotten while its journal row is not yet in the table (the first sends' rows
      // went with the first touch of alice's inbox, which flushes her key). Fails without the
      // flush before the journal's table read.
      const store = await CassandraStore.open(tiny({ writeBehindMs: 60_000, maxCachedHeads: 2 }));
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const sends = Array.from({ length: 6 }, (_, i) => direct(alice, bob, `m${i}`));
        const acked = [];
        for (const s of sends) acked.push(await store.appendMessage(s));
        const retry = await store.appendMessage({ ...sends[2], msgId: newId() });
        assert.equal(retry.duplicate, true);
        assert.equal(retry.message.msgId, acked[2].message.msgId);
        assert.equal(retry.senderSeq, acked[2].senderSeq);
        assert.deepEqual((await store.sync(bob, 0, 10)).items.map((m) => m.msgId), acked.map((a) => a.message.msgId));
      } finally {
        await store.close();
      }
    });
  });

  describe('a send whose first attempt died part way', () => {
    it('re-drives a journal entry left without its appends: the retry stores the message once, under the original msgId', async () => {
      const store = await CassandraStore.open(tiny());
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const input = direct(alice, bob, 'after a crash');
        const original = newId();
        // What an owner that died right after journaling leaves behind (it wrote nothing else).
        await admin.execute(`INSERT INTO ${TINY_KS}.journal (from_uid, client_msg_id, msg_id, expires_at_ms, claimed_at_ms, digest) VALUES (?, ?, ?, ?, ?, ?)`,
          [alice, input.clientMsgId, original, input.sentAtMs + 60_000, Date.now() - 1000, sendDigest(input)], { prepare: true });
        const res = await store.appendMessage(input);
        assert.equal(res.message.msgId, original);
        assert.equal(res.duplicate, true);
        const retry = await store.appendMessage({ ...input, msgId: newId() });
        assert.equal(retry.message.msgId, original);
        assert.equal(retry.senderSeq, res.senderSeq);
        assert.deepEqual((await store.sync(bob, 0, 10)).items.map((m) => m.msgId), [original]);
        assert.deepEqual((await store.sync(alice, 0, 10)).items.map((m) => m.msgId), [original]);
      } finally {
        await store.close();
      }
    });

    it('answers a repeated append of one msgId with its first seq, also after more than 32 later appends and a new owner', async () => {
      let store = await CassandraStore.open(tiny());
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const first = await store.appendMessage(direct(alice, bob, 'first'));
        type Timeline = { append(key: string, e: unknown, since?: number, order?: unknown): Promise<number> };
        const inner = store as unknown as { serve(op: string, args: unknown): Promise<number>; inbox: Timeline; historyLog: Timeline };
        const serve = inner.serve.bind(store);
        // Every append a send makes says when it was journaled, fresh sends included: that is what
        // lets an owner check the tail instead of appending a repeated call twice.
        const seen: unknown[] = [];
        for (const t of [inner.inbox, inner.historyLog]) {
          const append = t.append.bind(t);
          t.append = (key, e, since, order) => { seen.push(since); return append(key, e, since, order); };
        }
        await store.appendMessage(direct(alice, bob, 'fresh'));
        assert.equal(seen.length, 3);
        for (const since of seen) assert.equal(typeof since, 'number');
        // What a coordinator whose forwarded call timed out sends again, seconds later: the same
        // append, journaled before it; in between bob's inbox took 40 other messages.
        const again = { t: 'i', key: bob, e: { ...first.message }, s: Date.now() - 1000 };
        for (let i = 0; i < 40; i++) await store.appendMessage(direct(uid('x'), bob, `other ${i}`));
        assert.equal(await serve('append', again), first.seqs.get(bob), 'from memory');
        // A new owner remembers only the newest 32 rows: it finds the message in the tail.
        await store.close();
        store = await CassandraStore.open(tiny());
        // Through onOwner, which takes bob's shard (handed back by the first store) before serving.
        const owner = store as unknown as { onOwner(key: string, op: string, args: unknown): Promise<number> };
        assert.equal(await owner.onOwner(bob, 'append', again), first.seqs.get(bob), 'from the tail');
        assert.equal(await owner.onOwner(bob, 'append', { ...again, s: Date.now() - 200_000 }), first.seqs.get(bob), 'journaled long ago');
        const inbox = (await store.sync(bob, 0, 100)).items;
        assert.equal(inbox.filter((m) => m.msgId === first.message.msgId).length, 1);
      } finally {
        await store.close();
      }
    });

    it('re-drives a send whose appends half landed: the inbox that has it keeps its seq, the other gets it once', async () => {
      const store = await CassandraStore.open(tiny());
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const first = await store.appendMessage(direct(alice, bob, 'before'));
        const input = direct(alice, bob, 'half');
        const res = await store.appendMessage(input);
        // As if the journal's completion never happened: the retry finds an incomplete entry.
        await admin.execute(`UPDATE ${TINY_KS}.journal SET conv_id = null, conv_seq = null, sender_seq = null WHERE from_uid = ? AND client_msg_id = ?`,
          [alice, input.clientMsgId], { prepare: true });
        await store.close();
        const again = await CassandraStore.open(tiny());
        try {
          const retry = await again.appendMessage({ ...input, msgId: newId() });
          assert.equal(retry.message.msgId, res.message.msgId);
          assert.equal(retry.senderSeq, res.senderSeq);
          assert.deepEqual((await again.sync(bob, 0, 10)).items.map((m) => m.msgId), [first.message.msgId, res.message.msgId]);
        } finally {
          await again.close();
        }
      } finally {
        await store.close();
      }
    });
  });
});

describe('CassandraStore shard balance (real Cassandra)', function () {
  this.timeout(120_000);
  let admin: Client;
  const stores: CassandraStore[] = [];
  // 16 shards, a 1.5 s lease (a balance round every 500 ms), handovers on.
  const opts = (bus: InProcessBus, ks = BALANCE_KS) => base(ks, { bus, shardCount: 16, leaseMs: 1500, clockSkewMs: 100, maxShardMoves: 4 });

  before(async function () {
    await needs(this, 'cassandra');
    admin = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1' });
    await admin.connect();
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    for (const ks of [BALANCE_KS, `${BALANCE_KS}_heads`]) await admin?.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
    await admin?.shutdown();
  });

  it('moves shards to a process that joins, under load, without losing, repeating or reordering a seq', async () => {
    // Each handover hands the heads of the keys it loaded to the next owner (handoff.ts).
    const { adopted } = await joinUnderLoad(BALANCE_KS, {});
    assert.ok(adopted > 0, 'heads handed off at the handovers');
  });

  it('does the same while keys leave memory all the time, and after the joiner leaves again (heads used, never those of an earlier epoch)', async () => {
    // Four keys of each kind in full, rows written behind within 200 ms (a key with rows pending
    // stays). The first process takes back the shards the second wrote to in between: a head it
    // kept from before would hand out seqs the second already gave.
    const heads = await joinUnderLoad(`${BALANCE_KS}_heads`, { maxCachedHeads: 4, writeBehindMs: 200 }, true);
    assert.ok(heads.taken > 0, 'sends started from heads');
    assert.ok(heads.adopted > 0, 'heads handed off at the handovers and when the joiner left');
  });

  it('takes the free shards a process is preferred for before any send, and leaves a dead owner\'s to their first send', async () => {
    const ks = `${BALANCE_KS}_free`;
    const bus = new InProcessBus();
    let b: CassandraStore | undefined;
    try {
      // A cold start: nothing sent, yet the balance rounds take all 16 shards (no row yet).
      const a = await CassandraStore.open(opts(bus, ks));
      const counted = countRequests(a);
      await waitFor('all shards taken with no send', 30_000, () => a.ownedShards === 16);
      // One read of each shard's row before its take, not one more in the take, and a plain one
      // (no Paxos round: the take's condition catches a stale answer).
      const reads = counted.queries.flatMap((q, i) => (/FROM \S+\.shard_owners WHERE shard/.test(q) ? [counted.options[i]] : []));
      assert.equal(reads.length, 16);
      assert.ok(reads.every((o) => o?.consistency === undefined), 'plain reads');
      counted.restore();
      // A process that joins gets its share: handed over by the first, and taken once released.
      b = await CassandraStore.open(opts(bus, ks));
      const joined = b;
      await waitFor('shards spread over both', 60_000, () => joined.ownedShards > 0 && a.ownedShards + joined.ownedShards === 16 && a.ownedShards < 16);
      // The first dies: its shards have an owner (dead), so the survivor takes none of them ahead;
      // a first send takes what it needs (after the lease), replaying the dead owner's log.
      const bOwned = b.ownedShards;
      const dead = a.processId;
      await killHard(a);
      await waitFor('the dead lease over', 30_000, async () =>
        (await admin.execute(`SELECT until_ms FROM ${ks}.logic_leases WHERE process = ?`, [dead])).rows.every((r) => num(r.until_ms)! < Date.now() - 200));
      await b.rebalance();
      await b.rebalance();
      await b.rebalance();
      assert.equal(b.ownedShards, bOwned, 'no shard of the dead owner taken ahead');
      const [x, y] = [uid('x'), uid('y')];
      await b.appendMessage(direct(x, y, 'after'));
      assert.equal((await b.sync(y, 0, 10)).items.length, 1);
    } finally {
      await b?.close();
      await admin.execute(`DROP KEYSPACE IF EXISTS ${ks}`);
    }
  });

  async function joinUnderLoad(ks: string, over: Partial<CassandraStoreOptions>, thenLeave = false): Promise<{ taken: number; adopted: number }> {
    const owners = async (): Promise<Map<number, string>> => {
      const rs = await admin.execute(`SELECT shard, owner FROM ${ks}.shard_owners`);
      return new Map(rs.rows.filter((r) => r.owner).map((r) => [r.shard as number, r.owner as string]));
    };
    const bus = new InProcessBus();
    const a = await CassandraStore.open({ ...opts(bus), keyspace: ks, ...over });
    stores.push(a);
    const users = Array.from({ length: 48 }, (_, i) => uid(`u${i}`));
    const results: { input: AppendInput; res: Awaited<ReturnType<Store['appendMessage']>>; retried: boolean; round: number }[] = [];
    const failures: unknown[] = [];
    let n = 0;
    const sendSome = async (via: () => Store) => {
      const round = n;
      await Promise.all(users.map(async (from, i) => {
        const input = direct(from, users[(i + 1 + (n % (users.length - 1))) % users.length], `m${n}`); // never to itself
        // A send refused as UNAVAILABLE (a shard changing hands) or TIMEOUT (a slow write on a
        // busy machine) is retried with the same clientMsgId, as a client does.
        for (let attempt = 1; ; attempt++) {
          try {
            results.push({ input, res: await via().appendMessage(input), retried: attempt > 1, round });
            return;
          } catch (err) {
            const code = (err as { code?: number }).code;
            if (attempt >= 5 || (code !== Code.UNAVAILABLE && code !== Code.TIMEOUT)) { failures.push(err); return; }
          }
        }
      }));
      n++;
    };
    await sendSome(() => a);
    const before = await owners();
    assert.ok([...before.values()].every((o) => o === a.processId), 'one process: it owns every shard it touched');
    assert.ok(before.size >= 12, `48 users and their conversations touch most of 16 shards, got ${before.size}`);

    const b = await CassandraStore.open({ ...opts(bus), keyspace: ks, ...over });
    stores.push(b);
    let stop = false;
    const load = (async () => {
      let k = 0;
      while (!stop) await sendSome(() => (k++ % 2 ? a : b));
    })();
    try {
      await waitFor('every owned shard with its preferred process', 90_000, async () => {
        const now = await owners();
        const live = [a.processId, b.processId];
        return now.size >= before.size && [...now].every(([s, o]) => o === preferredOwner(live, s))
          && [...now.values()].includes(b.processId);
      });
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(failures, []);
    assert.ok(a.ownedShards > 0 && b.ownedShards > 0, `both own shards (${a.ownedShards}, ${b.ownedShards})`);
    // Each shard moved once (epoch 2), or a few times when a forwarded call timed out and its
    // caller took the shard: never handed back and forth (a call for a shard in handover sent
    // round between the two until the old owner took it back: epochs of 4 to 45 here before).
    const epochs = (await admin.execute(`SELECT epoch FROM ${ks}.shard_owners`)).rows.map((r) => num(r.epoch) ?? 0);
    assert.ok(Math.max(...epochs) <= 4, `shard epochs ${JSON.stringify(epochs)}`);
    if (thenLeave) {
      await b.close();
      for (let i = 0; i < 4; i++) await sendSome(() => a);
      assert.deepEqual(failures, []);
    }

    // Every acknowledged message once in each recipient's inbox at the seq it was acked with, in
    // increasing order, and once in its conversation's history.
    const acked = new Map<string, Map<number, string>>();
    // Rounds run one after another: a message acknowledged in a later round has a higher seq in
    // every inbox than those of earlier rounds (a reader that synced past them would miss it).
    const byRound = [...results].sort((x, y) => x.round - y.round);
    const highest = new Map<string, { round: number; seq: number; before: number }>();
    for (const { res, round } of byRound) {
      for (const [u, seq] of res.seqs) {
        const h = highest.get(u) ?? { round, seq: 0, before: 0 };
        if (h.round !== round) Object.assign(h, { round, before: h.seq });
        assert.ok(seq > h.before, `${u}#${seq} acked in round ${round} after #${h.before} in an earlier one`);
        h.seq = Math.max(h.seq, seq);
        highest.set(u, h);
      }
    }
    for (const { input, res, retried } of results) {
      for (const [u, seq] of res.seqs) {
        const m = acked.get(u) ?? new Map<number, string>();
        assert.ok(!m.has(seq), `${u}#${seq} acked twice`);
        m.set(seq, res.message.msgId);
        acked.set(u, m);
      }
      // A retry after a failed attempt may find that attempt's journal entry and finish it.
      if (!retried) assert.equal(res.duplicate, false, input.clientMsgId);
    }
    for (const u of users) {
      const items = [];
      for (let after = 0; ;) {
        const page = await a.sync(u, after, 1000);
        items.push(...page.items);
        if (!page.hasMore) break;
        after = page.items[page.items.length - 1].seq;
      }
      const seqs = items.map((e) => e.seq);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), `${u}: increasing`);
      assert.equal(new Set(items.map((e) => e.msgId)).size, items.length, `${u}: no message twice`);
      assert.deepEqual(new Map(items.map((e) => [e.seq, e.msgId])), acked.get(u), `${u}: exactly the acked messages at their seqs`);
    }
    // Closed here, not only after the suite: the next test's balance has the keyspace's node to itself.
    await Promise.all([a.close(), b.close()]);
    return { taken: a.keyHeadsUsed + b.keyHeadsUsed, adopted: a.keyHeadsAdopted + b.keyHeadsAdopted };
  }
});

describe('CassandraStore options', () => {
  it('refuses bad options naming the field, before connecting', async () => {
    await assert.rejects(CassandraStore.open({ contactPoints: [] }), (e: unknown) => e instanceof ConfigError && e.field === 'contactPoints');
    await assert.rejects(CassandraStore.open({ contactPoints: ['127.0.0.1'], keyspace: 'Bad-Name' }), (e: unknown) => e instanceof ConfigError && e.field === 'keyspace');
    await assert.rejects(CassandraStore.open({ contactPoints: ['127.0.0.1'], consistency: 'ALL' as never }), (e: unknown) => e instanceof ConfigError && e.field === 'consistency');
    await assert.rejects(CassandraStore.open({ contactPoints: ['127.0.0.1'], inboxBucketSize: 1 }), (e: unknown) => e instanceof ConfigError && e.field === 'inboxBucketSize');
  });
});
