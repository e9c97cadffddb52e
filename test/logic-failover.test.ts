/**
 * Failover between logic processes under load, on the real service processes (router, two logic,
 * two gateways; NATS and a fresh Cassandra keyspace each), issue 9 item 6 a–c:
 *
 *   a. ownership moves on SIGTERM of one logic, then on kill -9 of the other (each started again);
 *   b. a logic stopped with SIGSTOP under load past its lease (until the other took its shards over), then SIGCONT;
 *   c. 20 senders fire 30 sends each at once, one logic killed -9 100 ms in and left dead.
 *
 * Each ends with the exactly-once check by sync of test/exactly-once.ts: every acked message once
 * in both inboxes, nothing stored twice, no app event twice, events in seq order, no app skipped
 * or missed an inbox entry. The logic processes get IM_CASSANDRA_LEASE_MS (the owned-sequencer
 * lease of docs/sequencer.md) so that a takeover happens within seconds; a store that does not
 * know the setting ignores it. The SDK retries sends (same client_msg_id) for a window longer than
 * any lease, so a send may take long but must not fail or be stored twice.
 */
import * as assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { Client } from 'cassandra-driver';
import { CASSANDRA_CONTACT, needs } from './infra';
import { needsNatsServerBinary, ProcCluster } from './procs';
import { App, Apps, checkExactlyOnce, clean, details, Ledger, Load, summary } from './exactly-once';
import { eventually } from './wait';

/** IM_CASSANDRA_LEASE_MS of the logic processes. */
const LEASE_MS = 3000;
const PAIRS = 20;
/** Load of test a and b: PAIRS senders together at this many sends per second. */
const SENDS_PER_SEC = 100;
/** SDK send retry window: longer than any lease (the old store's claim lease was 30 s). */
const SEND_RETRY_WINDOW_MS = 45_000;
/** How long the system may take to carry new sends again after a logic process goes away. */
const RECOVERY_MS = 5 * LEASE_MS;
/** How long the closing message may take to reach every app. */
const CLOSING_MS = 20_000;

/** Shards whose heads a clean release handed off (shard_heads rows; docs/sequencer.md "Heads handed off"). */
async function shardsHandedOff(keyspace: string): Promise<number> {
  const c = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1', keyspace });
  try {
    return (await c.execute('SELECT shard FROM shard_heads')).rows.length;
  } finally {
    await c.shutdown();
  }
}

/** Shards owned per live logic process (those with a lease), read from the keyspace. */
async function shardOwners(keyspace: string): Promise<Map<string, number>> {
  const c = new Client({ contactPoints: CASSANDRA_CONTACT.split(','), localDataCenter: 'datacenter1', keyspace });
  try {
    const live = new Set((await c.execute('SELECT process, until_ms FROM logic_leases')).rows
      .filter((r) => Number(r.until_ms) > Date.now()).map((r) => String(r.process)));
    const out = new Map<string, number>();
    for (const r of (await c.execute('SELECT owner FROM shard_owners')).rows) {
      const o = r.owner as string | null;
      if (o && live.has(o)) out.set(o, (out.get(o) ?? 0) + 1);
    }
    return out;
  } finally {
    await c.shutdown();
  }
}

describe('logic failover under load (service processes on NATS + Cassandra, issue 9 item 6 a-c)', function () {
  // Setup aside, each case takes 10-50 s.
  this.timeout(120_000);
  let cluster: ProcCluster | undefined;
  let apps: Apps | undefined;
  let ledger: Ledger;
  let load: Load | undefined;
  const report: string[] = [];

  before(async function () {
    await needs(this, 'cassandra');
    needsNatsServerBinary(this);
  });

  beforeEach(async function () {
    this.timeout(120_000);
    cluster = await ProcCluster.start({
      logics: 2, gateways: 2,
      logicEnv: { IM_CASSANDRA_LEASE_MS: String(LEASE_MS) },
      // Retries of one client come fast during a failover: the per-connection limit is not under test.
      gatewayEnv: { IM_RATE_LIMIT: '100000', IM_RATE_BURST: '100000' },
    });
    const c = cluster;
    await eventually(async () => (await c.route()).length === 2, 'both gateways in the route list', 10_000);
    const via = [await c.routeUrlPreferring(0), await c.routeUrlPreferring(1)];
    apps = new Apps({
      authSecret: c.authSecret, routeUrl: (i) => via[i % 2],
      client: {
        backoffBaseMs: 50, backoffMaxMs: 500, sendRetryWindowMs: SEND_RETRY_WINDOW_MS, sendMaxAttempts: 1000,
      },
    });
    ledger = new Ledger();
  });

  afterEach(async function () {
    await load?.stop();
    load = undefined;
    if (this.currentTest?.state === 'failed' && cluster) {
      for (const p of [cluster.router, ...cluster.logics, ...cluster.gateways]) process.stdout.write(`--- ${p.name}\n${p.log.slice(-3000)}\n`);
    }
    for (const p of cluster?.logics ?? []) p.signal('SIGCONT');
    await apps?.close();
    apps = undefined;
    await cluster?.stop();
    cluster = undefined;
  });

  after(() => {
    if (report.length) process.stdout.write(`${report.map((l) => `    ${l}`).join('\n')}\n`);
  });

  /** PAIRS sender -> receiver pairs and a control app, spread over both gateways. */
  async function connectPairs(): Promise<{ pairs: Array<[App, App]>; control: App }> {
    const pairs = await Promise.all(Array.from({ length: PAIRS }, async (_, i) =>
      [await apps!.connect(`s${i}`), await apps!.connect(`r${i}`)] as [App, App]));
    return { pairs, control: await apps!.connect('control') };
  }

  function startLoad(pairs: Array<[App, App]>): Load {
    load = new Load(ledger, pairs, { intervalMs: (PAIRS * 1000) / SENDS_PER_SEC, maxInFlightPerSender: 20 });
    load.start();
    return load;
  }

  /** Stops the load, waits for every send, runs the check, asserts it clean. */
  async function finish(title: string, control: App, facts: string[]): Promise<void> {
    await load?.stop();
    load = undefined;
    const settleFrom = Date.now();
    await ledger.settled(SEND_RETRY_WINDOW_MS + 15_000);
    facts.push(`last send settled ${Date.now() - settleFrom}ms after the load stopped`);
    const f = await checkExactlyOnce(apps!.all, control, ledger, CLOSING_MS);
    report.push(`[${title}] ${summary(f)}`, `  ${facts.join('; ')}`);
    assert.ok(clean(f), `${summary(f)}\n  ${details(f)}\n  (${facts.join('; ')})`);
  }

  it('a: SIGTERM of logic 0 then kill -9 of logic 1 under load (each restarted): 0 lost, 0 duplicated, no skips', async () => {
    const { pairs, control } = await connectPairs();
    const t0 = Date.now();
    startLoad(pairs);
    await ledger.waitAcked(200, t0, 20_000, 'before any failover');
    const facts: string[] = [];

    const termExit = await cluster!.logics[0].stop('SIGTERM');
    assert.equal(termExit.code, 0, `logic 0 exits 0 on SIGTERM: ${cluster!.logics[0].log.slice(-2000)}`);
    facts.push(`SIGTERM: logic 0 exited after ${termExit.atMs - t0}ms of load`);
    // Its clean stop handed the heads of its keys to the shards' next owner before releasing them.
    const handedOff = await shardsHandedOff(cluster!.keyspace);
    assert.ok(handedOff > 0, 'logic 0 handed off the heads of the shards it released');
    facts.push(`heads handed off for ${handedOff} shards`);
    await ledger.waitAcked(100, termExit.atMs, RECOVERY_MS, 'after logic 0 exited on SIGTERM');
    cluster!.logics[0] = await cluster!.spawnLogic(0);
    const back0 = Date.now();
    await ledger.waitAcked(100, back0, RECOVERY_MS, 'after logic 0 started again');

    const killExit = await cluster!.logics[1].stop('SIGKILL');
    assert.equal(killExit.signal, 'SIGKILL');
    const inFlightAtKill = ledger.inFlight();
    await ledger.waitAcked(100, killExit.atMs, RECOVERY_MS, 'after logic 1 was killed');
    facts.push(`kill -9 of logic 1 with ${inFlightAtKill} sends in flight; 100 new sends acked ${Date.now() - killExit.atMs}ms after it`);
    cluster!.logics[1] = await cluster!.spawnLogic(1);
    const back1 = Date.now();
    await ledger.waitAcked(100, back1, RECOVERY_MS, 'after logic 1 started again');
    // Logic 0 took every shard while logic 1 was down; the restarted logic 1 gets its share back
    // under the load (cassandra/balance.ts), rather than forwarding everything for good.
    let shares = '';
    await eventually(async () => {
      const owners = await shardOwners(cluster!.keyspace);
      shares = [...owners.values()].join(', ');
      return owners.size === 2;
    }, 'both logic processes owning shards again', RECOVERY_MS);
    facts.push(`shards per live logic process ${Date.now() - back1}ms after logic 1 came back: ${shares}`);
    await finish('a', control, facts);
  });

  it('b: logic 1 SIGSTOPped under load until logic 0 took its shards over, then SIGCONT: nothing out of order, nothing overwritten', async () => {
    const { pairs, control } = await connectPairs();
    const t0 = Date.now();
    startLoad(pairs);
    await ledger.waitAcked(200, t0, 20_000, 'before the pause');
    const paused = cluster!.logics[1];
    const ownedBy = (owners: Map<string, number>, pid: number | undefined) =>
      [...owners].find(([process]) => process.includes(`-${pid}-`))?.[1] ?? 0;
    const pid0 = cluster!.logics[0].child.pid;
    const before = ownedBy(await shardOwners(cluster!.keyspace), pid0);
    const stoppedAt = Date.now();
    paused.signal('SIGSTOP');
    // Frozen past its lease: resumed only once logic 0 has taken shards over from it, so that the
    // process waking up is a stale owner.
    await eventually(async () => {
      const owners = await shardOwners(cluster!.keyspace);
      return !ownedBy(owners, paused.child.pid) && ownedBy(owners, pid0) > before;
    }, 'logic 0 taking shards over from the paused logic 1', RECOVERY_MS);
    paused.signal('SIGCONT');
    const contAt = Date.now();
    const facts = [
      `paused ${contAt - stoppedAt}ms (lease ${LEASE_MS}ms)`,
      `sends started during the pause and acked before SIGCONT: ${ledger.sends.filter((s) => s.startedAtMs >= stoppedAt && s.ackedAtMs !== undefined && s.ackedAtMs < contAt).length}`
        + ` of ${ledger.sends.filter((s) => s.startedAtMs >= stoppedAt && s.startedAtMs < contAt).length}`,
    ];
    await ledger.waitAcked(200, contAt, RECOVERY_MS, 'after SIGCONT');
    facts.push(`logic 1 ${paused.running ? 'still running' : `exited (${paused.child.exitCode ?? paused.child.signalCode})`} after SIGCONT`);
    await finish('b', control, facts);
  });

  /**
   * PAIRS senders fire 30 sends each at once; logic 1 is killed -9 once `killAt` resolves and left
   * dead, so every retry must go through logic 0.
   */
  async function burstWithKill(title: string, killAt: () => Promise<void>): Promise<void> {
    const { pairs, control } = await connectPairs();
    const t0 = Date.now();
    const fired = pairs.flatMap(([from, to]) => Array.from({ length: 30 }, () => ledger.send(from, to)));
    await killAt();
    const ackedAtKill = ledger.acked().length;
    const killExit = await cluster!.logics[1].stop('SIGKILL');
    assert.equal(killExit.signal, 'SIGKILL');
    const facts = [`kill -9 at +${killExit.atMs - t0}ms with ${ackedAtKill} of ${fired.length} sends acked`];
    await Promise.all(fired);
    const acks = ledger.acked().map((s) => s.ackedAtMs! - s.startedAtMs).sort((x, y) => x - y);
    facts.push(`first ack at +${acks[0]}ms; ack time median ${acks[acks.length >> 1]}ms, max ${acks[acks.length - 1]}ms`);
    assert.equal(cluster!.logics[0].running, true, 'logic 0 kept running');
    await finish(title, control, facts);
    // Item 4: no retry waits more than one lease. A send caught by the kill waits for the dead
    // owner's shards (lease + 0.5 s skew, after a forwarded call's L/2 timeout) on top of its
    // own first attempt; the old store made it wait out a 30 s claim. Bounded here with slack
    // for a loaded 2-core box.
    assert.ok(acks[acks.length - 1] <= 4 * LEASE_MS, `slowest ack ${acks[acks.length - 1]} ms, over 4 leases (${4 * LEASE_MS} ms)`);
  }

  it('c: 20 senders fire 30 sends each, logic 1 killed -9 100 ms in and left dead: every send acked, 0 duplicates', async () => {
    // Deliberately 100 ms in, as the issue says.
    await burstWithKill('c', () => delay(100)); // the fault's timing, not a wait for anything
  });

  it('c (mid-write): as c, but logic 1 is killed -9 at the first ack, while sends are being written', async () => {
    // On a slow machine nothing is written yet 100 ms in; at the first ack the rest are mid-write.
    await burstWithKill('c mid-write', () => eventually(() => ledger.acked().length > 0, 'the first ack', 30_000).then(() => undefined));
  });
});
