/**
 * One bench run, start to end: record what else is running, start the system under test and the
 * load generators, measure the raw ceiling, run the scenario, check for lost and duplicated
 * deliveries, stop everything (always), and assemble the result.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HeapCensus, heapCensus, heapDiff } from './heap-diff';
import { emptyLoss, mergeLoss } from './checker';
import { evaluateGoals } from './goals';
import type { ConnectResult, EchoResult, HandshakesResult, TlsSeen, VerifyResult } from './ipc';
import { BenchOptions, MAX_SOCKETS_PER_PROCESS, REPO_ROOT } from './options';
import { runPhase, waitQuiet } from './phase';
import { WorkerPool } from './pool';
import { loadAverage, machineInfo, ProcTracker, topProcesses } from './proc-stats';
import { summarizeProfileDir } from './profile';
import { BenchResult, cpuUsPer, GATEWAY_ROLES, resultId, RESULT_SCHEMA, targetTag } from './results';
import type { Ceiling, ConnectResultSummary, HandshakePhase, IdleResult, PhaseResult } from './results';
import { BenchPki, makeBenchPki, TLS_KEY_DESCRIPTION } from './tls-pki';
import { ServerProc, startEchoServer, startTarget, Target } from './servers';
import { buildTopology, fanoutOf, isSender, Topology, TopologySpec, usersOfWorker } from './topology';
import { Histogram, toMs } from './histogram';
import { sendFrame, stampContent } from './stamp';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunIo {
  /** Progress and notices, one line at a time. */
  log: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

interface Ctx {
  o: BenchOptions;
  result: BenchResult;
  io: RunIo;
  topo: Topology;
  target: Target;
  pool: WorkerPool;
  tracker: ProcTracker;
  userPrefix: string;
}

/** Longest a worker waits for outstanding replies when a phase stops (the gateway's call timeout is 10 s). */
const STOP_TIMEOUT_MS = 15_000;
/** The ceiling runs this long at most: it only has to be steady, not long. */
const CEILING_MS = 5000;
/** Echo connections at most (one frame in flight each). */
const CEILING_MAX_CONNECTIONS = 2000;

export function topologySpec(o: BenchOptions): TopologySpec {
  return { users: o.users, peerShare: o.peerShare, groupShare: o.groupShare, groupSizes: o.groupSizes };
}

export async function runBench(o: BenchOptions, io: RunIo): Promise<BenchResult> {
  const startedAt = new Date();
  const tlsTag = o.tls ? (o.target === 'url' ? '-tls' : `-tls-${o.tlsKey}`) : '';
  const id = resultId(startedAt, o.scenario, targetTag(o.target, o.noDb) + tlsTag);
  const runId = randomBytes(3).toString('hex');
  const userPrefix = `b${runId}u`;
  const loadBefore = loadAverage();
  const topBefore = await topProcesses(1000);
  io.log(`bench ${id}: load average ${loadBefore.join(' ')}; busiest now: ${topBefore.slice(0, 3).map((t) => `${t.cpuPct}% ${t.cmd.slice(0, 50)}`).join(' | ')}`);
  const profDir = o.cpuProf ? path.join(REPO_ROOT, '.run', 'bench-profiles', id) : undefined;
  const tracker = new ProcTracker();
  const topo = buildTopology(topologySpec(o));
  let target: Target | undefined;
  let pool: WorkerPool | undefined;
  let pki: BenchPki | undefined;
  const result: BenchResult = {
    schema: RESULT_SCHEMA, id, startedAt: startedAt.toISOString(), scenario: o.scenario, label: o.label,
    target: { kind: o.target, noDb: o.noDb, description: '', notes: [], gateways: o.gateways, logics: o.logics },
    options: { ...o, outDir: undefined },
    machine: machineInfo(),
    environment: { loadBefore, loadAfter: loadBefore, topBefore, topAfter: [] },
    phases: [], goals: [],
  };
  try {
    let clientTls: { ca?: string } | undefined;
    if (o.tls) {
      pki = o.target === 'url' ? undefined : makeBenchPki(o.tlsKey);
      clientTls = { ca: pki?.caPem ?? (o.tlsCa ? readCa(o.tlsCa) : undefined) };
      result.tls = pki ? { keyType: pki.keyType, key: TLS_KEY_DESCRIPTION[pki.keyType] } : { keyType: 'deployment', key: 'the deployment\'s' };
      io.log(`tls: clients over TLS, ${result.tls.key} certificate${pki ? ` (throwaway CA in ${pki.dir})` : ''}`);
    }
    target = await startTarget({
      kind: o.target, noDb: o.noDb, routerUrl: o.routerUrl, gateways: o.gateways, logics: o.logics,
      heartbeatIntervalMs: o.heartbeatIntervalMs, cassandraKeyspace: o.keyspace, cpuProfDir: profDir,
      runId, env: io.env, log: io.log, tls: o.tls, tlsFiles: pki,
    });
    result.target.description = target.description;
    result.target.notes = o.pids.length && target.kind === 'url'
      ? [`servers not started by the bench; sampled pids ${o.pids.join(', ')} (--pids) as role "server"`]
      : target.notes;
    if (o.tls) {
      result.target.notes.push(pki
        ? `TLS: a throwaway CA and server certificate (${result.tls!.key}) for 127.0.0.1 made with openssl at start; gateways with a TLS listener only (IM_GATEWAY_PLAINTEXT=false); the raw ceiling stays plain TCP`
        : `TLS: the deployment's tlsAddrs, trusting ${o.tlsCa ?? 'the system\'s roots'}`);
    }
    for (const s of target.servers) tracker.add(s.pid, s.role);
    for (const i of target.infra) tracker.add(i.pid, i.role);
    for (const pid of o.pids) tracker.add(pid, 'server');
    pool = WorkerPool.start(o.workers, profDir);
    for (const pid of pool.pids) tracker.add(pid, 'loadgen');
    const gateways = target.gateways;
    const secret = target.secret;
    await pool.all((i) => ({
      t: 'init', worker: i, userPrefix, spec: topologySpec(o), users: usersOfWorker(o.users, i, o.workers),
      gateways, secret, contentBytes: o.contentBytes, tls: clientTls,
    }));
    const ctx: Ctx = { o, result, io, topo, target, pool, tracker, userPrefix };
    if (o.scenario === 'idle') await idleFlow(ctx, result);
    else if (o.scenario === 'connect-storm') await stormFlow(ctx, result);
    else if (o.scenario === 'handshake') await handshakeFlow(ctx, result);
    else await messagingFlow(ctx, result);
  } finally {
    await pool?.close();
    await target?.stop();
    if (pki) fs.rmSync(pki.dir, { recursive: true, force: true });
  }
  if (profDir) result.profiles = summarizeProfileDir(profDir);
  result.environment.loadAfter = loadAverage();
  result.environment.topAfter = await topProcesses(1000);
  result.goals = evaluateGoals(result);
  return result;
}

// ---------------------------------------------------------------- shared steps

function readCa(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`--tls-ca: cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Puts what the first TLS connection negotiated into the result. */
function noteTls(ctx: Ctx, seen: Array<TlsSeen | undefined>): void {
  const t = seen.find((x) => x);
  if (ctx.result.tls && t && !ctx.result.tls.protocol) Object.assign(ctx.result.tls, t);
}

function splitCount(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

async function withEcho<T>(ctx: Ctx, fn: (echo: ServerProc, port: number) => Promise<T>): Promise<T> {
  const { proc, port } = await startEchoServer(ctx.io.log);
  ctx.tracker.add(proc.pid, 'echo');
  try {
    return await fn(proc, port);
  } finally {
    ctx.tracker.remove(proc.pid);
    proc.child.kill('SIGTERM');
  }
}

function sumEcho(results: EchoResult[]): { count: number; failed: number; hist: Histogram; elapsedMs: number } {
  const hist = new Histogram();
  for (const r of results) hist.add(r.rttUs);
  return {
    count: results.reduce((a, r) => a + r.count, 0), failed: results.reduce((a, r) => a + r.failed, 0),
    hist, elapsedMs: Math.max(1, ...results.map((r) => r.elapsedMs)),
  };
}

async function connectAll(ctx: Ctx, closeAfter: boolean): Promise<ConnectResultSummary> {
  const { o, pool } = ctx;
  const res = await pool.all<ConnectResult>({
    t: 'connect', concurrency: Math.max(1, Math.ceil(o.concurrency / o.workers)), timeoutMs: 30_000, closeAfter,
  });
  const hist = new Histogram();
  const errors: Record<string, number> = {};
  for (const r of res) {
    hist.add(r.setupUs);
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  noteTls(ctx, res.map((r) => r.tls));
  const connected = res.reduce((a, r) => a + r.connected, 0);
  const elapsedS = Math.max(1, ...res.map((r) => r.elapsedMs)) / 1000;
  return {
    connections: connected, failed: res.reduce((a, r) => a + r.failed, 0), errors,
    perS: Math.round(connected / elapsedS), setupMs: toMs(hist.percentiles()),
  };
}

// ---------------------------------------------------------------- one-to-one, group, mixed

async function messagingFlow(ctx: Ctx, result: BenchResult): Promise<void> {
  const { o, io, topo, pool } = ctx;
  const senders = Array.from({ length: o.users }, (_, u) => u).filter((u) => isSender(topo, u));
  const sendersPerWorker = Array.from({ length: o.workers }, (_, i) => usersOfWorker(o.users, i, o.workers).filter((u) => isSender(topo, u)).length);
  const frameBytes = sendFrame(1, { to: `${ctx.userPrefix}${o.users}` }, '100000', stampContent(o.contentBytes, 0, 0)).length;

  let ceiling: Ceiling | undefined;
  if (o.ceiling) {
    const connections = Math.min(CEILING_MAX_CONNECTIONS, Math.max(1, senders.length * o.window));
    io.log(`ceiling: raw TCP echo, ${connections} connections, ${frameBytes}-byte frames, ${Math.min(CEILING_MS, o.durationMs) / 1000} s`);
    ceiling = await withEcho(ctx, async (_echo, port) => {
      const res = sumEcho(await pool.all<EchoResult>((i) => ({
        t: 'echo', target: { host: '127.0.0.1', port }, connections: splitCount(connections, o.workers, i),
        durationMs: Math.min(CEILING_MS, o.durationMs), frameBytes,
      })));
      return { kind: 'echo', connections, frameBytes, perS: Math.round(res.count / (res.elapsedMs / 1000)), rttMs: toMs(res.hist.percentiles()) };
    });
    io.log(`ceiling: ${ceiling.perS.toLocaleString('en-US')} round trips/s, p50 ${ceiling.rttMs.p50} ms, p99 ${ceiling.rttMs.p99} ms`);
    result.ceiling = ceiling;
  }

  io.log(`connecting ${o.users} users to ${ctx.target.gateways.length} gateway(s)...`);
  result.setup = await connectAll(ctx, false);
  io.log(`connected ${result.setup.connections} (failed ${result.setup.failed}) at ${result.setup.perS}/s`);
  if (result.setup.failed > 0) throw new Error(`${result.setup.failed} connections failed: ${JSON.stringify(result.setup.errors)}`);
  if (topo.groups.length > 0) {
    const ids = (await pool.all<Array<[number, string]>>({ t: 'createGroups' })).flat();
    await pool.all({ t: 'groupIds', ids });
    io.log(`created ${ids.length} groups (sizes ${o.groupSizes.join(',')})`);
  }
  // Gateways register sessions with the router in batches: let the last ones land.
  await sleep(1000);

  const deps = { pool, tracker: ctx.tracker, sendersPerWorker, progress: o.quiet ? () => {} : io.log, stopTimeoutMs: STOP_TIMEOUT_MS };
  const base = { window: o.window, syncEvery: o.syncEvery, durationMs: o.durationMs, warmupMs: o.warmupMs };
  const first = await runPhase({
    ...base, index: 0, name: o.rate === 'max' ? 'max' : `rate ${o.rate}`, mode: o.rate === 'max' ? 'max' : 'rate',
    rate: o.rate === 'max' ? undefined : o.rate, window: o.rate === 'max' ? o.window : o.window,
  }, deps);
  result.phases.push(first);
  for (const [k, pct] of (o.sweep ?? []).entries()) {
    await waitQuiet(pool, 500, 5000);
    const rate = (first.acceptedPerS * pct) / 100;
    // Rate phases cap in-flight sends per user; the closed-loop window would be too tight a cap.
    result.phases.push(await runPhase({ ...base, index: k + 1, name: `${pct}%`, mode: 'rate', rate, window: Math.max(32, o.window) }, deps));
  }
  for (const p of result.phases) if (ceiling) p.ratio = ratioToEcho(p, ceiling);

  // ---- check: wait for stragglers, then compare what arrived with what was accepted.
  const statuses = (await pool.all<Array<[number, Uint8Array]>>({ t: 'statuses' })).flat();
  let expectedPushes = 0;
  for (const [user, bytes] of statuses) {
    let accepted = 0;
    for (let i = 1; i < bytes.length; i++) if (bytes[i] === 1) accepted++;
    expectedPushes += accepted * fanoutOf(topo, user);
  }
  const got = await waitQuiet(pool, 2000, o.drainMs, expectedPushes);
  io.log(`check: ${got.toLocaleString('en-US')} pushes received of ${expectedPushes.toLocaleString('en-US')} expected; verifying (sync where missing)...`);
  const verified = await pool.all<VerifyResult>({ t: 'verify', statuses, syncTimeoutMs: 30_000 });
  let loss = emptyLoss();
  for (const v of verified) loss = mergeLoss(loss, v.loss);
  result.check = {
    ...loss, samples: verified.flatMap((v) => v.samples).slice(0, 10),
    syncFailures: verified.reduce((a, v) => a + v.syncFailures, 0),
  };
  io.log(`check: lost ${loss.lost} (pushes ${loss.lostPushes}, messages ${loss.lostMessages}), duplicated ${loss.duplicated}, unexpected ${loss.unexpected}`);
}

function ratioToEcho(p: PhaseResult, c: Ceiling): PhaseResult['ratio'] {
  const r = (a: number, b: number) => (b > 0 ? Math.round((1000 * a) / b) / 1000 : 0);
  return { deliveriesToEcho: r(p.deliveriesPerS, c.perS), p50ToEcho: r(p.e2eMs.p50, c.rttMs.p50), p99ToEcho: r(p.e2eMs.p99, c.rttMs.p99) };
}

// ---------------------------------------------------------------- connect-storm

async function stormFlow(ctx: Ctx, result: BenchResult): Promise<void> {
  const { o, io, pool, tracker } = ctx;
  const authFrameBytes = 120; // an Auth frame with a JWT is about this size
  if (o.ceiling) {
    io.log(`ceiling: raw TCP connect + one echo round trip, ${o.users} times, ${o.concurrency} at once`);
    result.ceiling = await withEcho(ctx, async (_echo, port) => {
      const res = sumEcho(await pool.all<EchoResult>((i) => ({
        t: 'echoConnect', target: { host: '127.0.0.1', port }, count: splitCount(o.users, o.workers, i),
        concurrency: Math.max(1, Math.ceil(o.concurrency / o.workers)), frameBytes: authFrameBytes,
      })));
      return { kind: 'echo-connect', connections: res.count, frameBytes: authFrameBytes, perS: Math.round(res.count / (res.elapsedMs / 1000)), rttMs: toMs(res.hist.percentiles()) };
    });
    io.log(`ceiling: ${result.ceiling.perS.toLocaleString('en-US')} connections/s, p50 ${result.ceiling.rttMs.p50} ms, p99 ${result.ceiling.rttMs.p99} ms`);
  }
  io.log(`connect storm: ${o.users} connections (TCP + Auth), ${o.concurrency} at once`);
  tracker.resetWindow();
  const storm = await connectAll(ctx, true);
  tracker.sample();
  storm.processes = tracker.summary().processes;
  if (result.ceiling) storm.ratioToEcho = Math.round((1000 * storm.perS) / result.ceiling.perS) / 1000;
  result.connectStorm = storm;
  io.log(`connect storm: ${storm.connections} at ${storm.perS}/s, p50 ${storm.setupMs.p50} ms, p99 ${storm.setupMs.p99} ms, failed ${storm.failed}`);
}

// ---------------------------------------------------------------- handshake

/**
 * Set-ups per second and server CPU per set-up: connect (+ TLS handshake) + Auth + close in a
 * loop, --concurrency at once, for --duration after a --warmup. With --tls two phases: every
 * handshake full, then each lane offering its previous session (TLS ticket resumption); without,
 * one plaintext phase (the baseline to subtract).
 */
async function handshakeFlow(ctx: Ctx, result: BenchResult): Promise<void> {
  const { o, io, pool, tracker } = ctx;
  const names: Array<HandshakePhase['name']> = o.tls ? ['full', 'resumed'] : ['plaintext'];
  const concurrency = Math.max(1, Math.ceil(o.concurrency / o.workers));
  result.handshake = [];
  for (const name of names) {
    const run = (durationMs: number) => pool.all<HandshakesResult>({ t: 'handshakes', durationMs, concurrency, timeoutMs: 30_000, resume: name === 'resumed' });
    if (o.warmupMs > 0) await run(o.warmupMs);
    io.log(`handshake ${name}: connect${o.tls ? ' + TLS' : ''} + Auth + close for ${o.durationMs / 1000} s, ${o.concurrency} at once`);
    tracker.resetWindow();
    const res = await run(o.durationMs);
    tracker.sample();
    const procs = tracker.summary();
    noteTls(ctx, res.map((r) => r.tls));
    const hist = new Histogram();
    const errors: Record<string, number> = {};
    for (const r of res) {
      hist.add(r.setupUs);
      for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
    }
    const setups = res.reduce((a, r) => a + r.count, 0);
    const failure = res.find((r) => r.firstError)?.firstError;
    if (setups === 0) throw new Error(`handshake ${name}: no set-up succeeded${failure ? `; the first failure: ${failure}` : ''}`);
    const cpuUsPerSetup = cpuUsPer(procs.processes, setups);
    const gatewayUs = Math.round(100 * GATEWAY_ROLES.reduce((a, role) => a + (cpuUsPerSetup[role] ?? 0), 0)) / 100;
    const phase: HandshakePhase = {
      name, windowS: procs.windowS, setups,
      perS: Math.round(setups / (Math.max(1, ...res.map((r) => r.elapsedMs)) / 1000)),
      resumed: res.reduce((a, r) => a + r.resumed, 0), failed: res.reduce((a, r) => a + r.failed, 0), errors,
      setupMs: toMs(hist.percentiles()), cpuUsPerSetup,
      perGatewayCoreS: gatewayUs > 0 ? Math.round(1e6 / gatewayUs) : null,
      processes: procs.processes, machineBusyPct: procs.machineBusyPct,
    };
    result.handshake.push(phase);
    io.log(`handshake ${name}: ${phase.setups} set-ups at ${phase.perS}/s (${phase.resumed} resumed, ${phase.failed} failed), ` +
      `gateway ${gatewayUs} CPU-µs each → ${phase.perGatewayCoreS ?? '?'} per gateway core per s; p50 ${phase.setupMs.p50} ms, p99 ${phase.setupMs.p99} ms`);
  }
}

// ---------------------------------------------------------------- idle

async function memOf(servers: ServerProc[]): Promise<{ rss: number; heap: number; external: number }> {
  const out = { rss: 0, heap: 0, external: 0 };
  for (const s of servers) {
    const m = await s.probe(true);
    if (!m) continue;
    out.rss += m.rss;
    out.heap += m.heapUsed;
    out.external += m.external;
  }
  return out;
}

async function idleFlow(ctx: Ctx, result: BenchResult): Promise<void> {
  const { o, io, pool, tracker, target } = ctx;
  const gateways = target.servers.filter((s) => s.role === 'gateway' || s.role === 'embedded');
  const routers = target.servers.filter((s) => s.role === 'router');
  if (gateways.length === 0) io.log('idle: the gateways were not started by the bench; per-connection memory needs --target embedded|distributed');

  if (o.ceiling) {
    // One echo process: it holds at most what one process may (the open-file limit).
    const sockets = Math.min(o.users, MAX_SOCKETS_PER_PROCESS);
    io.log(`ceiling: a plain Node TCP server holding ${sockets} idle sockets`);
    result.ceiling = await withEcho(ctx, async (echo, port) => {
      const before = await echo.probe(true);
      const held = await pool.all<EchoResult>((i) => ({ t: 'echoHold', target: { host: '127.0.0.1', port }, count: splitCount(sockets, o.workers, i), concurrency: 200 }));
      await sleep(1000);
      const after = await echo.probe(true);
      await pool.all({ t: 'echoRelease' });
      const n = Math.max(1, held.reduce((a, r) => a + r.count, 0));
      return {
        kind: 'echo-idle', connections: n, frameBytes: 0, perS: 0, rttMs: toMs(new Histogram().percentiles()),
        rssPerConnBytes: before && after ? Math.round((after.rss - before.rss) / n) : undefined,
        heapPerConnBytes: before && after ? Math.round((after.heapUsed - before.heapUsed) / n) : undefined,
      };
    });
    io.log(`ceiling: ${result.ceiling.rssPerConnBytes} B RSS, ${result.ceiling.heapPerConnBytes} B heap per raw socket`);
  }

  const gwBefore = await memOf(gateways);
  const routerBefore = await memOf(routers);
  // Heap snapshots are big: they go under .run/ and are deleted once counted.
  const snapDir = path.join(REPO_ROOT, '.run', 'bench-heap', `${ctx.userPrefix}`);
  const snapGw = o.heapSnapshot ? gateways[0] : undefined;
  let census: HeapCensus | undefined;
  if (snapGw) {
    fs.mkdirSync(snapDir, { recursive: true });
    const file = path.join(snapDir, 'before.heapsnapshot');
    if (await snapGw.heapSnapshot(file)) census = heapCensus(file);
  }
  io.log(`connecting ${o.users} users to ${target.gateways.length} gateway(s) from ${o.workers} load generator(s)...`);
  result.setup = await connectAll(ctx, false);
  io.log(`connected ${result.setup.connections} (failed ${result.setup.failed}) at ${result.setup.perS}/s`);
  await pool.all({ t: 'tick' }); // clears counters from the connect phase
  tracker.resetWindow();
  const closes: Record<string, number> = {};
  const t0 = Date.now();
  for (let k = 1; Date.now() - t0 < o.durationMs; k++) {
    await sleep(Math.max(0, t0 + k * 1000 - Date.now()));
    const ticks = await pool.all<{ closes: Record<string, number> }>({ t: 'tick' });
    for (const t of ticks) for (const [c, v] of Object.entries(t.closes)) closes[c] = (closes[c] ?? 0) + v;
    const s = tracker.sample();
    if (!o.quiet) {
      const gw = s.byRole.gateway ?? s.byRole.embedded;
      io.log(`[idle] ${k}s  held ${result.setup.connections - Object.values(closes).reduce((a, b) => a + b, 0)}  ` +
        `gateway cpu ${gw ? Math.round(gw.cpuPct) : '?'}% rss ${gw ? Math.round(gw.rssMb) : '?'} MB  machine ${Math.round(s.machineBusyPct)}%`);
    }
  }
  const procs = tracker.summary();
  const gwAfter = await memOf(gateways);
  const routerAfter = await memOf(routers);
  let heapPerConn: IdleResult['heapPerConn'];
  if (snapGw && census) {
    const file = path.join(snapDir, 'after.heapsnapshot');
    // Users go to gateways round-robin: the first holds every G-th.
    const onFirst = Math.ceil(result.setup.connections / gateways.length);
    if (await snapGw.heapSnapshot(file)) heapPerConn = heapDiff(census, heapCensus(file), onFirst);
    fs.rmSync(snapDir, { recursive: true, force: true });
  }
  const n = Math.max(1, result.setup.connections);
  const idle: IdleResult = {
    connections: result.setup.connections, failed: result.setup.failed, closedDuringHold: closes,
    holdS: Math.round((Date.now() - t0) / 1000),
    gatewayRssPerConnBytes: Math.round((gwAfter.rss - gwBefore.rss) / n),
    gatewayHeapPerConnBytes: Math.round((gwAfter.heap - gwBefore.heap) / n),
    gatewayExternalPerConnBytes: Math.round((gwAfter.external - gwBefore.external) / n),
    routerRssPerConnBytes: routers.length ? Math.round((routerAfter.rss - routerBefore.rss) / n) : undefined,
    processes: procs.processes,
    heapPerConn,
    gatewayCpuPctWhileIdle: Math.round(procs.processes.filter((p) => p.role === 'gateway' || p.role === 'embedded').reduce((a, p) => a + p.cpuPct, 0) * 10) / 10,
  };
  if (result.ceiling?.rssPerConnBytes) idle.ratioToRawSocket = Math.round((100 * idle.gatewayRssPerConnBytes) / result.ceiling.rssPerConnBytes) / 100;
  result.idle = idle;
  io.log(`idle: gateway ${idle.gatewayRssPerConnBytes} B RSS, ${idle.gatewayHeapPerConnBytes} B heap per connection`);
}
