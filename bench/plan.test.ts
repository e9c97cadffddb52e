import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ASSUMED, fitCosts, loadOf, Measured, measureFromResults, PLAN_DEFAULTS, planCapacity } from './plan-model';
import { planMain } from './plan';
import { latestResults } from './report';
import { STORE_DESIGN, storeDesign, type BenchResult, type PhaseResult } from './results';

const input = { ...PLAN_DEFAULTS, online: 10_000_000, sendQps: 100_000, groupShare: 0.5, avgGroupSize: 30 };

function phase(sends: number, deliveries: number, self: number, cpu: Record<string, number>): PhaseResult {
  return {
    name: 'max', mode: 'max', windowS: 10, sendsPerS: sends, acceptedPerS: sends, deliveriesPerS: deliveries, selfPushesPerS: self,
    skippedPerS: 0, errors: {}, ackMs: {} as never, e2eMs: {} as never, machineBusyPct: 0, perSecond: [],
    processes: Object.entries(cpu).map(([role, cpuPct], pid) => ({ role, pid, cpuPct, cpuS: 0, rssMb: 0, peakRssMb: 0 })),
  };
}

function result(id: string, phases: PhaseResult[], extra: Partial<BenchResult> = {}): BenchResult {
  return {
    schema: 'im-bench/1', id, startedAt: '', scenario: 'one-to-one', label: '',
    target: { kind: 'distributed', noDb: false, description: '', notes: [], gateways: 1, logics: 1 },
    options: { heartbeatIntervalMs: 30_000 }, machine: {} as never,
    environment: { loadBefore: [0, 0, 0], loadAfter: [0, 0, 0], topBefore: [], topAfter: [] },
    phases, goals: [], ...extra,
  };
}

describe('capacity planner arithmetic', () => {
  it('derives the load: pushes per send from the group share (the sending connection is not pushed), pings from the heartbeat', () => {
    const load = loadOf(input);
    assert.equal(load.sendsPerS, 100_000);
    // A 1:1 send reaches the peer; a group send the other 29 members (docs/protocol.md: the sending
    // connection gets its SendResp, not a push, and the bench's fitted pushes count the same way).
    assert.equal(load.pushesPerS, 100_000 * (0.5 * 1 + 0.5 * 29));
    assert.equal(Math.round(load.pingsPerS), Math.round(10_000_000 / 30));
  });

  it('separates the cost of a send from the cost of a push when the runs have different mixes', () => {
    // cpu µs/s = 30 per send + 5 per push
    const pts = [[10_000, 20_000], [2_000, 100_000], [5_000, 40_000]].map(([s, p]) => ({ sendsPerS: s, pushesPerS: p, cpuPct: ((30 * s + 5 * p) / 1e6) * 100 }));
    assert.deepEqual(fitCosts(pts), { usPerSend: 30, usPerPush: 5 });
  });

  it('falls back to one cost per operation when every run has the same mix', () => {
    const pts = [{ sendsPerS: 10_000, pushesPerS: 20_000, cpuPct: 60 }, { sendsPerS: 5000, pushesPerS: 10_000, cpuPct: 30 }];
    assert.deepEqual(fitCosts(pts), { usPerSend: 20, usPerPush: 20 });
  });

  it('sizes each layer by CPU, by memory or by its availability minimum', () => {
    const m: Measured = {
      ...ASSUMED,
      gateway: { usPerSend: 20, usPerPush: 10, usPerPing: 6, bytesPerConn: 2048, source: 't', points: 1 },
      logic: { usPerSend: 100, usPerPush: 5, source: 't', points: 1 },
    };
    const plan = planCapacity(input, m);
    const gw = plan.layers.find((l) => l.layer === 'gateway')!;
    const usableCores = 32 * 0.7 * 0.6;
    // gateway CPU: 100k × 20 + 1.5M × 10 + 333,333 × 6 µs/s = 19 cores
    assert.equal(gw.cpuCores, 19);
    assert.equal(gw.nodesForCpu, Math.ceil(19 / usableCores));
    // memory: 32 GiB × 0.75 / (2048 + 1024 kernel) bytes per connection
    const perBox = Math.floor((32 * 1024 ** 3 * 0.75) / 3072);
    assert.equal(gw.perNode.connections, perBox);
    assert.equal(gw.nodesForMemory, Math.ceil(10_000_000 / perBox));
    assert.equal(gw.nodes, Math.max(gw.nodesForCpu, gw.nodesForMemory, 2));
    const logic = plan.layers.find((l) => l.layer === 'logic')!;
    assert.equal(logic.cpuCores, 17.5); // 100k × 100 + 1.5M × 5
    assert.equal(logic.nodes, Math.ceil(17.5 / usableCores));
    assert.equal(logic.boundBy, 'cpu');
    const cass = plan.layers.find((l) => l.layer === 'cassandra')!;
    assert.equal(cass.cpuCores, (3 * (100 * 100_000 + 50 * 1_500_000)) / 1e6, 'replication multiplies the writes');
    assert.equal(plan.seed.comparison.access.planned, gw.nodes);
  });

  it('reads costs per layer from distributed results, memory from the idle run', () => {
    const results = [
      result('r1', [phase(10_000, 10_000, 10_000, { gateway: 50, logic: 80, router: 5, nats: 4, cassandra: 120 })]),
      result('r2', [phase(2_000, 98_000, 2_000, { gateway: 110, logic: 60, router: 20, nats: 15, cassandra: 140 })], { scenario: 'group' }),
      result('r3', [], {
        scenario: 'idle',
        idle: { connections: 30_000, failed: 0, closedDuringHold: {}, holdS: 30, gatewayRssPerConnBytes: 2500, gatewayHeapPerConnBytes: 900, gatewayExternalPerConnBytes: 0, routerRssPerConnBytes: 400, gatewayCpuPctWhileIdle: 1, processes: [] },
      }),
      result('r4', [phase(50_000, 50_000, 50_000, { embedded: 190 })], { target: { kind: 'embedded', noDb: false, description: '', notes: [], gateways: 1, logics: 1 } }),
      // Lost most of its pushes: the work it was asked for was not done, so it must not count.
      result('r5', [phase(1_000, 900, 100, { gateway: 5, logic: 90, router: 1, nats: 1, cassandra: 50 })], {
        check: { expected: 100_000, delivered: 10_000, lost: 90_000, lostPushes: 90_000, lostMessages: 0, duplicated: 0, unexpected: 0, unknownDelivered: 0, samples: [], syncFailures: 0 },
      }),
    ];
    const m = measureFromResults(results);
    // gateway: 0.5 core = 10k sends + 20k pushes; 1.1 cores = 2k sends + 100k pushes
    const want = fitCosts([{ sendsPerS: 10_000, pushesPerS: 20_000, cpuPct: 50 }, { sendsPerS: 2_000, pushesPerS: 100_000, cpuPct: 110 }]);
    assert.equal(m.gateway.usPerSend, want.usPerSend);
    assert.equal(m.gateway.usPerPush, want.usPerPush);
    assert.equal(m.gateway.bytesPerConn, 2500);
    assert.equal(m.router.bytesPerConn, 400);
    assert.equal(m.gateway.usPerPing, (0.01 * 1e6) / (30_000 / 30));
    assert.match(m.cassandra.source, /r1, r2/);
    assert.doesNotMatch(m.logic.source, /r4/, 'embedded runs do not count');
    assert.doesNotMatch(m.logic.source, /r5/, 'runs that lost deliveries do not count');
  });

  it('fits logic and Cassandra from runs with several logic processes when there are any (forwarded sends)', () => {
    const two = { target: { kind: 'distributed', noDb: false, description: '', notes: [], gateways: 1, logics: 2 } };
    const one = result('one', [phase(10_000, 10_000, 10_000, { gateway: 50, logic: 80, router: 5, nats: 4, cassandra: 60 })]);
    const local = measureFromResults([one]);
    assert.match(local.logic.source, /^runs with one logic process \(every key local: a lower bound/);
    assert.match(local.cassandra.source, /: one$/);
    const m = measureFromResults([
      one,
      result('two', [phase(4_000, 4_000, 4_000, { gateway: 25, logic: 150, router: 3, nats: 3, cassandra: 100 })], two),
      result('twoGroups', [phase(400, 40_000, 400, { gateway: 30, logic: 90, router: 4, nats: 4, cassandra: 60 })], { ...two, scenario: 'group' }),
    ]);
    const want = fitCosts([{ sendsPerS: 4_000, pushesPerS: 8_000, cpuPct: 150 }, { sendsPerS: 400, pushesPerS: 40_400, cpuPct: 90 }]);
    assert.equal(m.logic.usPerSend, want.usPerSend);
    assert.equal(m.logic.usPerPush, want.usPerPush);
    assert.match(m.logic.source, /^runs with 2\+ logic processes/);
    assert.doesNotMatch(m.logic.source, /\bone\b/, 'the one-logic run is not used once runs with several exist');
    assert.doesNotMatch(m.cassandra.source, /\bone\b/);
    assert.match(m.gateway.source, /\bone\b/, 'the other layers do the same work either way: every run counts');
    // Runs with several logic processes whose phases all failed too often: the one-logic runs, said so.
    const failing = phase(4_000, 4_000, 4_000, { gateway: 25, logic: 150, router: 3, nats: 3, cassandra: 100 });
    failing.errors = { TIMEOUT: 4_000 };
    const fallback = measureFromResults([one, result('twoFailing', [failing], two)]);
    assert.match(fallback.logic.source, /^runs with one logic process .*: one$/);
    assert.match(fallback.cassandra.source, /: one$/);
  });

  it('fits logic and Cassandra from runs of the current store design, which names the keyspace\'s inbox row layout', () => {
    const on = (layout: number) => ({ target: { kind: 'distributed', noDb: false, description: `distributed (Cassandra, ${storeDesign(layout)})`, notes: [], gateways: 1, logics: 1 } });
    assert.equal(storeDesign(9), STORE_DESIGN);
    assert.ok(!storeDesign(7).includes(STORE_DESIGN) && !storeDesign(undefined).includes(STORE_DESIGN));
    const v7 = result('v7', [phase(4_000, 4_000, 4_000, { gateway: 25, logic: 150, router: 3, nats: 3, cassandra: 100 })], on(7));
    const v9 = result('v9', [phase(4_000, 4_000, 4_000, { gateway: 25, logic: 120, router: 3, nats: 3, cassandra: 80 })], on(9));
    const m = measureFromResults([v7, v9]);
    assert.match(m.cassandra.source, /: v9$/);
    assert.match(m.logic.source, /: v9$/);
    assert.match(measureFromResults([v7]).cassandra.source, /: v7$/, 'no run of the current design: the others, rather than none');
  });

  it('fits logic and Cassandra from steady-state runs (warmed up past the write-behind) when there are any', () => {
    const two = { target: { kind: 'distributed', noDb: false, description: '', notes: [], gateways: 1, logics: 2 } };
    const warm = (extra: Partial<BenchResult>) => ({ ...extra, options: { heartbeatIntervalMs: 30_000, warmupMs: 15_000 } });
    const short = result('short', [phase(4_000, 4_000, 4_000, { gateway: 25, logic: 150, router: 3, nats: 3, cassandra: 100 })], two);
    const shortGroups = result('shortGroups', [phase(400, 40_000, 400, { gateway: 30, logic: 90, router: 4, nats: 4, cassandra: 60 })], { ...two, scenario: 'group' });
    const steady = result('steady', [phase(4_000, 4_000, 4_000, { gateway: 25, logic: 160, router: 3, nats: 3, cassandra: 130 })], warm(two));
    const steadyGroups = result('steadyGroups', [phase(250, 25_000, 250, { gateway: 20, logic: 55, router: 2, nats: 4, cassandra: 100 })], warm({ ...two, scenario: 'group' }));
    const m = measureFromResults([short, shortGroups, steady, steadyGroups]);
    const want = fitCosts([{ sendsPerS: 4_000, pushesPerS: 8_000, cpuPct: 130 }, { sendsPerS: 250, pushesPerS: 25_250, cpuPct: 100 }]);
    assert.equal(m.cassandra.usPerSend, want.usPerSend);
    assert.equal(m.cassandra.usPerPush, want.usPerPush);
    assert.match(m.cassandra.source, /^steady state \(warm-up >= 10 s.*runs with 2\+ logic processes.*: steady, steadyGroups$/);
    assert.match(m.logic.source, /: steady, steadyGroups$/);
    assert.match(m.gateway.source, /short/, 'the other layers: every run counts');
    // Steady state comes first even from one logic process (the source says it is a lower bound).
    const oneSteady = result('oneSteady', [phase(5_000, 5_000, 5_000, { gateway: 25, logic: 70, router: 3, nats: 3, cassandra: 60 })], warm({}));
    assert.match(measureFromResults([short, oneSteady]).cassandra.source, /^steady state .*runs with one logic process .*: oneSteady$/);
    // No steady-state run: the short ones, as before.
    assert.match(measureFromResults([short, shortGroups]).cassandra.source, /^runs with 2\+ logic processes.*: short, shortGroups$/);
  });

  it('keeps the newest run of each process layout: runs with two logic processes do not hide runs with one', () => {
    const two = { target: { kind: 'distributed', noDb: false, description: '', notes: [], gateways: 1, logics: 2 } };
    // Newest first, as readResults returns them.
    const kept = latestResults([result('c', [], two), result('b', []), result('a', [])]).map((r) => r.id);
    assert.deepEqual(kept.sort(), ['b', 'c']);
  });

  it('planMain prints a table and JSON, and rejects bad input with exit code 2', async () => {
    const io = () => {
      const o = { out: '', err: '' };
      return { o, io: { stdout: (t: string) => { o.out += t; }, stderr: (t: string) => { o.err += t; } } };
    };
    const a = io();
    assert.equal(await planMain(['--online', '10000000', '--send-qps', '100000', '--results', '/nonexistent'], a.io), 0);
    assert.match(a.o.out, /gateway\s+\d+/);
    assert.match(a.o.out, /seed plan/);
    const b = io();
    assert.equal(await planMain(['--online', '1000', '--send-qps', '10', '--json', '--results', '/nonexistent'], b.io), 0);
    assert.equal(JSON.parse(b.o.out).layers.length, 5);
    const c = io();
    assert.equal(await planMain(['--send-qps', '10'], c.io), 2);
    assert.match(c.o.err, /--online is required/);
  });
});

describe('im plan in the Docker image', () => {
  it('loads no test code (the image deletes dist/test): the CLI and the planner, required in a fresh process', () => {
    const dist = path.resolve(__dirname, '..');
    const res = spawnSync(process.execPath, ['-e', `
      require(${JSON.stringify(path.join(dist, 'bench', 'plan.js'))});
      const testDir = ${JSON.stringify(path.join(dist, 'test') + path.sep)};
      process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((f) => f.startsWith(testDir) || /\.test\.js$/.test(f))));
    `], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), [], 'test modules the planner loads');
  });
});
