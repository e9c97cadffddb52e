/**
 * The orphan sweep (orphans.ts) racing the other writers of a dead process's rows, against a real
 * Cassandra node and real stores sharing a keyspace (docs/sequencer.md, "The orphan sweep racing
 * ..."). The races are steered with the sweep's pause hook, not with timing: a sweep is held
 * after one of its steps while another process takes over a shard of the same dead log, writes
 * newer rows, or a zombie's late log row lands; then it finishes, and every acknowledged row must
 * be there exactly once at its acknowledged seq, with nothing newer overwritten.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from 'cassandra-driver';
import { InProcessBus } from '../../bus/bus';
import { Code, UnavailableError } from '../../common/errors';
import { newId, peerConvId } from '../../common/ids';
import { CASSANDRA_CONTACT, needs } from '../../test/infra';
import { waitFor } from '../../test/exactly-once';
import type { AppendResult } from '../store';
import { direct, killHard, orphansOf, serveHere, testStoreOptions, uid } from './store.test-support';
import { encodeBody } from './log-body';
import { shardOf } from './shards';
import { CassandraStore, type CassandraStoreOptions } from './store';
import { routingKey } from './writer';

const KS = `im_test_${randomBytes(4).toString('hex')}_orphans`;
const BUCKET = 8;

/** A 1 s lease; no handovers (the owners in these tests change only by takeover). */
function opts(over: Partial<CassandraStoreOptions> = {}): CassandraStoreOptions {
  return testStoreOptions(KS, { inboxBucketSize: BUCKET, historyBucketSize: BUCKET, leaseMs: 1000, clockSkewMs: 100, ...over });
}

function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => { open = r; });
  return { promise, open };
}

describe('orphan sweep races (real Cassandra)', function () {
  this.timeout(60_000);
  let admin: Client;
  const open: CassandraStore[] = [];
  /** Held sweeps, let go after each test (one that failed while holding one included): close() waits for them. */
  const held: (() => void)[] = [];

  before(async function () {
    await needs(this, 'cassandra');
    admin = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1' });
    await admin.connect();
    await (await CassandraStore.open(opts())).close();
  });
  afterEach(async () => {
    for (const release of held.splice(0)) release();
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  after(async () => {
    if (!admin) return;
    await admin.execute(`DROP KEYSPACE IF EXISTS ${KS}`);
    await admin.shutdown();
  });

  const q = (cql: string, params: unknown[]) => admin.execute(cql, params, { prepare: true });

  /** Whether the process's log (its mark, or any row of its first partitions) is still there. */
  async function logLeft(process: string): Promise<boolean> {
    if ((await q(`SELECT process FROM ${KS}.log_marks WHERE process = ?`, [process])).rows.length > 0) return true;
    for (const part of [0, 1]) {
      if ((await q(`SELECT pos FROM ${KS}.store_log WHERE process = ? AND part = ?`, [process, part])).rows.length > 0) return true;
    }
    return false;
  }

  /**
   * A process that acknowledged messages alice -> bob with every row only in its log (the tables
   * are written a minute behind), then two live stores on one bus, each with its sweep held at
   * `step` of the dead log; then the process dies. Resolves once one of them holds its sweep
   * there: that one is `sweeper`, the other `taker`.
   */
  async function deadLogHeldAt(step: 'due' | 'read' | 'written') {
    const dead = await CassandraStore.open(opts({ writeBehindMs: 60_000 }));
    const [alice, bob] = [uid('alice'), uid('bob')];
    const acked: AppendResult[] = [];
    // At least 4, and the next seq of bob still in the bucket of his last one (a zombie's late
    // row there is in a listed bucket, as a real one is: buckets are listed before their rows).
    do acked.push(await dead.appendMessage(direct(alice, bob, `m${acked.length}`)));
    while (acked.length < 4 || (acked[acked.length - 1].seqs.get(bob)! + 1) % BUCKET === 0);
    const bobSeqs = acked.map((r) => r.seqs.get(bob)!);
    const inboxRows = async (seqs: number[]) => (await Promise.all([...new Set(seqs.map((s) => Math.floor(s / BUCKET)))].map((b) =>
      q(`SELECT seq, msg_id FROM ${KS}.inbox WHERE uid = ? AND bucket = ?`, [bob, b])))).flatMap((rs) => rs.rows);
    assert.deepEqual(await inboxRows(bobSeqs), [], 'acknowledged while only in the owner log');

    const bus = new InProcessBus();
    const live = await Promise.all([CassandraStore.open(opts({ bus })), CassandraStore.open(opts({ bus }))]);
    open.push(...live);
    const release = latch();
    held.push(release.open);
    let sweeper: CassandraStore | undefined;
    const deadId = dead.processId;
    for (const s of live) {
      orphansOf(s).pause = async (process, at) => {
        if (process !== deadId || at !== step) return;
        sweeper = s;
        await release.promise;
      };
    }
    // The dead process's clock when it stopped: every write it sent is stamped at most this.
    const lastTs = Date.now() * 1000;
    const { rows: [owned] } = await q(`SELECT owner, epoch FROM ${KS}.shard_owners WHERE shard = ?`, [shardOf(bob, 1024)]);
    assert.equal(owned.owner, deadId);
    await killHard(dead);
    await waitFor(`a sweep of the dead log held at '${step}'`, 20_000, () => sweeper !== undefined);
    const taker = live.find((s) => s !== sweeper)!;
    return { deadId, deadEpoch: Number(owned.epoch), lastTs, alice, bob, acked, bobSeqs, inboxRows, sweeper: sweeper!, taker, release: release.open };
  }

  /** Bob's whole inbox as [seq, msgId], read through a store. */
  async function inboxOf(store: CassandraStore, bob: string): Promise<[number, string][]> {
    const out: [number, string][] = [];
    for (let after = 0; ;) {
      const page = await store.sync(bob, after, 100);
      out.push(...page.items.map((e): [number, string] => [e.seq, e.msgId]));
      if (!page.hasMore) return out;
      after = page.items[page.items.length - 1].seq;
    }
  }

  for (const step of ['read', 'written'] as const) {
    it(`a sweep held after it ${step === 'read' ? 'read the dead log (its replay lands after the new owner\'s writes)' : 'wrote the rows (it deletes the log after the takeover replayed it)'}: every acknowledged message once at its seq, the new owner's rows intact`, async () => {
      const d = await deadLogHeldAt(step);
      const { alice, bob, taker } = d;
      // Another live process takes bob's shard over while the sweep is held: it replays the same log.
      await serveHere(taker, 'flush', { key: bob });
      const { rows: [row] } = await q(`SELECT owner, epoch FROM ${KS}.shard_owners WHERE shard = ?`, [shardOf(bob, 1024)]);
      assert.equal(row.owner, taker.processId, 'the taker owns bob\'s shard');
      assert.equal(Number(row.epoch), d.deadEpoch + 1);
      // The new owner writes newer rows in the same partitions the sweep writes: bob's unread
      // index for the conversation with alice (user_convs, conv_unread), his bucket list.
      const carol = uid('carol');
      const newer = [
        await taker.appendMessage(direct(alice, bob, 'after 1')),
        await taker.appendMessage(direct(carol, bob, 'after 2')),
        await taker.appendMessage(direct(alice, bob, 'after 3')),
      ];
      // A retry of an acknowledged send is answered with the original (the journal came back).
      const first = d.acked[1].message;
      const retry = await taker.appendMessage(direct(alice, bob, 'm1', { clientMsgId: first.clientMsgId, sentAtMs: first.sentAtMs, content: first.content }));
      assert.equal(retry.message.msgId, first.msgId);
      assert.equal(retry.duplicate, true);
      const expected: [number, string][] = [...d.acked, ...newer].map((r) => [r.seqs.get(bob)!, r.message.msgId]);
      assert.deepEqual(await inboxOf(taker, bob), expected, 'before the sweep goes on');
      assert.ok(await logLeft(d.deadId), 'the dead log is still there while the sweep is held');

      d.release();
      await waitFor('the dead log and its mark deleted', 20_000, async () => !(await logLeft(d.deadId)));

      for (const s of [taker, d.sweeper]) assert.deepEqual(await inboxOf(s, bob), expected);
      // Straight from the table: no row besides these, each message once.
      const rows = await d.inboxRows(expected.map(([s]) => s));
      assert.deepEqual(rows.map((r) => [Number(r.seq), r.msg_id]).sort((x, y) => Number(x[0]) - Number(y[0])), expected);
      const history = (await taker.history(peerConvId(alice, bob), 0, 100)).items.map((m) => m.msgId).reverse();
      assert.deepEqual(history, [...d.acked, newer[0], newer[2]].map((r) => r.message.msgId));
      // The dead owner's unread index rows came back at their (older) timestamps: the newest seq wins.
      const { rows: [convs] } = await q(`SELECT last_seq, last_incoming_seq FROM ${KS}.user_convs WHERE uid = ? AND conv_id = ?`, [bob, peerConvId(alice, bob)]);
      assert.equal(Number(convs.last_incoming_seq), newer[2].seqs.get(bob));
      assert.equal(Number(convs.last_seq), newer[2].seqs.get(bob));
      const unread = new Map((await taker.unread(bob)).map((u) => [u.convId, u.count]));
      assert.deepEqual(unread, new Map([[peerConvId(alice, bob), d.acked.length + 2], [peerConvId(carol, bob), 1]]));
    });
  }

  it('a zombie\'s late log row (its acknowledgement never counted) that lands after the takeover read the log: the sweep writes it, and the new owner\'s fence shadows it', async () => {
    // The sweep is held before it reads the log, so it reads after the takeover did.
    const d = await deadLogHeldAt('due');
    const { alice, bob, taker } = d;
    await serveHere(taker, 'flush', { key: bob });
    // First touch of bob by the new owner: it reads his tail and fences the rest of the old epoch.
    const newer = await taker.appendMessage(direct(alice, bob, 'after'));
    // What a paused owner sent before its lease ended and Cassandra stored only now: a log row
    // after its last one, with bob's next seq of the old epoch, stamped with the old owner's clock.
    const lateSeq = d.bobSeqs[d.bobSeqs.length - 1] + 1;
    const { rows: [last] } = await q(`SELECT max(pos) AS pos FROM ${KS}.store_log WHERE process = ? AND part = 0`, [d.deadId]);
    const pos = Number(last.pos) + 1;
    const lateId = `late-${newId()}`;
    const body = encodeBody([{
      query: `INSERT INTO ${KS}.inbox (uid, bucket, seq, msg_id) VALUES (?, ?, ?, ?)`, params: [bob, Math.floor(lateSeq / BUCKET), lateSeq, lateId],
      routingKey: routingKey(bob, Math.floor(lateSeq / BUCKET)), bytes: 64, shard: shardOf(bob, 1024), epoch: d.deadEpoch, ts: d.lastTs,
    }]);
    assert.ok(pos < 100, 'in the first log partition');
    await admin.execute(`INSERT INTO ${KS}.store_log (process, part, pos, body) VALUES (?, 0, ?, ?) USING TIMESTAMP ?`,
      [d.deadId, pos, body, d.lastTs], { prepare: true });

    d.release();
    await waitFor('the dead log and its mark deleted', 20_000, async () => !(await logLeft(d.deadId)));

    const expected: [number, string][] = [...d.acked, newer].map((r) => [r.seqs.get(bob)!, r.message.msgId]);
    for (const s of [taker, d.sweeper]) assert.deepEqual(await inboxOf(s, bob), expected);
    const rows = await d.inboxRows([lateSeq]);
    assert.ok(!rows.some((r) => r.msg_id === lateId), 'the late row is shadowed by the fence');
  });

  it('a run of failed rounds longer than a log partition (a lease too short to send them) leaves no empty partition: the rows acknowledged after it are replayed', async () => {
    const dead = await CassandraStore.open(opts({ writeBehindMs: 60_000 }));
    const [alice, bob] = [uid('alice'), uid('bob')];
    const acked = [await dead.appendMessage(direct(alice, bob, 'before'))];
    // What a late lease renewal does to every round for a while: the log write is not sent (the
    // lease has less than a write timeout left). Enough failed rounds for a whole log partition (100 positions).
    const lease = (dead as unknown as { lease: { check(need: number, what: string): void } }).lease;
    const check = lease.check.bind(lease);
    lease.check = (need, what) => {
      if (what === 'owner write') throw new UnavailableError('lease too short (test)');
      check(need, what);
    };
    for (let i = 0; i < 250; i++) {
      await assert.rejects(dead.appendMessage(direct(alice, bob, `refused ${i}`)), (e: unknown) => (e as { code?: number }).code === Code.UNAVAILABLE);
    }
    lease.check = check;
    for (let i = 0; i < 3; i++) acked.push(await dead.appendMessage(direct(alice, bob, `after ${i}`)));
    const deadId = dead.processId;
    await killHard(dead);

    open.push(await CassandraStore.open(opts()));
    await waitFor('the dead log swept', 20_000, async () => !(await logLeft(deadId)));
    assert.deepEqual(await inboxOf(open[0], bob), acked.map((r) => [r.seqs.get(bob)!, r.message.msgId]));
  });

  it('writes each epoch of a dead log at its own timestamps: a row of an epoch handed over since does not come back over the next owner\'s write', async () => {
    // A log as a process leaves it that owned alice's shard in epoch 1, handed it over (its rows
    // were written), and took it back in epoch 3, dying with both in its log (the mark behind
    // both). In between, epoch 2's owner re-opened one of alice's journal rows (its window over).
    const process = `gone-${randomBytes(4).toString('hex')}`;
    const alice = uid('alice');
    const shard = shardOf(alice, 1024);
    const journal = `INSERT INTO ${KS}.journal (from_uid, client_msg_id, msg_id) VALUES (?, ?, ?)`;
    const t1 = (Date.now() - 60_000) * 1000;
    const row = (cmid: string, msgId: string, epoch: number, ts: number) => encodeBody([{
      query: journal, params: [alice, cmid, msgId], routingKey: routingKey(alice), bytes: 64, shard, epoch, ts,
    }]);
    await q(`INSERT INTO ${KS}.store_log (process, part, pos, body) VALUES (?, 0, ?, ?)`, [process, 1, row('c1', 'epoch-1', 1, t1)]);
    await q(`INSERT INTO ${KS}.store_log (process, part, pos, body) VALUES (?, 0, ?, ?)`, [process, 2, row('c2', 'epoch-3', 3, t1 + 20_000_000)]);
    await q(`INSERT INTO ${KS}.journal (from_uid, client_msg_id, msg_id) VALUES (?, ?, ?) USING TIMESTAMP ?`, [alice, 'c1', 'epoch-2', t1 + 10_000_000]);
    await q(`INSERT INTO ${KS}.log_marks (process, flushed, part_rows) VALUES (?, 0, 100)`, [process]);

    open.push(await CassandraStore.open(opts()));
    await waitFor('the dead log swept', 20_000, async () => !(await logLeft(process)));
    const msgIdOf = async (cmid: string) => (await q(`SELECT msg_id FROM ${KS}.journal WHERE from_uid = ? AND client_msg_id = ?`, [alice, cmid])).rows[0]?.msg_id;
    assert.equal(await msgIdOf('c2'), 'epoch-3', 'replayed');
    assert.equal(await msgIdOf('c1'), 'epoch-2', 'the newer write of epoch 2 kept');
  });
});
