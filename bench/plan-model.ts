/**
 * The capacity planner's arithmetic, pure: per-operation CPU costs fitted from bench results,
 * then nodes per layer for a target load on bigger boxes.
 *
 * Model. Each layer's CPU is  a·sends/s + b·pushes/s (+ h·pings/s on the gateway), in CPU-µs per
 * operation, fitted by least squares over the measured phases (process CPU from /proc, so it is
 * the work done, not wall time, and does not depend on how busy the shared box was). Memory-bound
 * layers (gateway: connections, router: sessions) also need RAM ÷ bytes per connection. A 2-core
 * measurement scales to a C-core box as C × efficiency cores of the same speed (Node runs one
 * process per core; efficiency covers the kernel, NIC interrupts, GC and imperfect balance), and
 * each box is planned to run at `utilisation` of that, keeping headroom for peaks and failover.
 */
import { STEADY_WARMUP_MS } from './options';
import { STORE_DESIGN, type BenchResult } from './results';


export const LAYERS = ['gateway', 'logic', 'router', 'nats', 'cassandra'] as const;
export type Layer = (typeof LAYERS)[number];

export interface CostModel {
  /** CPU-µs per accepted send and per push (a delivery to one device). */
  usPerSend: number;
  usPerPush: number;
  /** Gateway only: CPU-µs per heartbeat ping. */
  usPerPing?: number;
  /** Gateway: RSS per connection; router: RSS per session (bytes). */
  bytesPerConn?: number;
  /** Where the figures come from (result ids) or "assumed: ...". */
  source: string;
  points: number;
}

export type Measured = Record<Layer, CostModel>;

export interface PlanInput {
  online: number;
  sendQps: number;
  /** Fraction of sends that go to groups. */
  groupShare: number;
  /** Members per group, sender included. */
  avgGroupSize: number;
  coresPerBox: number;
  ramGbPerBox: number;
  /** Cores of a box that do useful work (see the header). */
  efficiency: number;
  /** Planned busy fraction of each box. */
  utilisation: number;
  /** Share of a box's RAM for connection state (the rest: runtime, buffers, OS). */
  ramUsable: number;
  heartbeatIntervalS: number;
  /** Cassandra writes every row this many times. The bench's single node runs with 1. */
  replication: number;
  /** Kernel memory per idle TCP socket, outside the process RSS the bench measures. */
  kernelBytesPerConn: number;
}

export const PLAN_DEFAULTS: Omit<PlanInput, 'online' | 'sendQps'> = {
  groupShare: 0, avgGroupSize: 30, coresPerBox: 32, ramGbPerBox: 32, efficiency: 0.7, utilisation: 0.6,
  ramUsable: 0.75, heartbeatIntervalS: 30, replication: 3, kernelBytesPerConn: 1024,
};

/** Minimum nodes per layer for availability, whatever the load. */
export const MIN_NODES: Record<Layer, number> = { gateway: 2, logic: 2, router: 2, nats: 3, cassandra: 3 };

/** The seed plan the issue compares against: 32-core / 32 GB boxes. */
export const SEED_PLAN = {
  boxes: { access: 10, push: 5, im: 10 },
  box: { cores: 32, ramGb: 32 },
  connectionsPerAccessBox: 1_000_000,
  bytesPerConnection: 8 * 1024,
  note: '10 access + 5 push + 10 IM boxes of 32 cores / 32 GB; 1M connections per access box at 8 KB each',
} as const;

export interface Load {
  sendsPerS: number;
  /**
   * Deliveries to the other members' devices, one device each. The sending connection is not
   * pushed its own send (docs/protocol.md, "Ordering and sync"), as in the bench runs the costs are
   * fitted from: the sender's own inbox row is part of a send's cost there.
   */
  pushesPerS: number;
  pingsPerS: number;
}

export function loadOf(i: PlanInput): Load {
  const pushesPerSend = (1 - i.groupShare) * 1 + i.groupShare * (i.avgGroupSize - 1);
  return { sendsPerS: i.sendQps, pushesPerS: i.sendQps * pushesPerSend, pingsPerS: i.online / i.heartbeatIntervalS };
}

export interface LayerPlan {
  layer: Layer;
  /** CPU cores needed at 100 % (same speed as the measured box). */
  cpuCores: number;
  nodesForCpu: number;
  nodesForMemory: number;
  nodes: number;
  /** What one box carries at the planned utilisation. */
  perNode: { sendsPerS: number; pushesPerS: number; connections?: number };
  cost: CostModel;
  boundBy: 'cpu' | 'memory' | 'minimum';
}

export interface Plan {
  input: PlanInput;
  load: Load;
  layers: LayerPlan[];
  seed: typeof SEED_PLAN & { comparison: Record<string, { seed: number; planned: number; layers: Layer[] }> };
  assumptions: string[];
}

export function planCapacity(input: PlanInput, m: Measured): Plan {
  const load = loadOf(input);
  const usableCores = input.coresPerBox * input.efficiency * input.utilisation;
  const ramBytes = input.ramGbPerBox * 1024 ** 3 * input.ramUsable;
  const layers: LayerPlan[] = LAYERS.map((layer) => {
    const c = m[layer];
    const writeFactor = layer === 'cassandra' ? input.replication : 1;
    const usPerSecond = writeFactor * (c.usPerSend * load.sendsPerS + c.usPerPush * load.pushesPerS)
      + (c.usPerPing ?? 0) * (layer === 'gateway' ? load.pingsPerS : 0);
    const cpuCores = usPerSecond / 1e6;
    const nodesForCpu = Math.ceil(cpuCores / usableCores);
    let nodesForMemory = 0;
    let connections: number | undefined;
    if ((layer === 'gateway' || layer === 'router') && c.bytesPerConn) {
      const perConn = c.bytesPerConn + (layer === 'gateway' ? input.kernelBytesPerConn : 0);
      connections = Math.floor(ramBytes / perConn);
      nodesForMemory = Math.ceil(input.online / connections);
    }
    const nodes = Math.max(nodesForCpu, nodesForMemory, MIN_NODES[layer]);
    const boundBy: LayerPlan['boundBy'] = nodes === MIN_NODES[layer] && MIN_NODES[layer] > Math.max(nodesForCpu, nodesForMemory)
      ? 'minimum' : nodesForMemory > nodesForCpu ? 'memory' : 'cpu';
    // Per node at the planned utilisation: the share of the load each of `nodes` boxes carries is
    // load / nodes; its capacity is what the CPU budget allows for the same mix.
    const mixUs = writeFactor * (c.usPerSend + c.usPerPush * (load.pushesPerS / Math.max(1, load.sendsPerS)));
    const sendsCap = mixUs > 0 ? (usableCores * 1e6) / mixUs : Infinity;
    return {
      layer, cpuCores: round(cpuCores, 2), nodesForCpu, nodesForMemory, nodes, boundBy, cost: c,
      perNode: {
        sendsPerS: Math.round(sendsCap), pushesPerS: Math.round(sendsCap * (load.pushesPerS / Math.max(1, load.sendsPerS))),
        connections,
      },
    };
  });
  const planned = (ls: Layer[]) => ls.reduce((a, l) => a + layers.find((x) => x.layer === l)!.nodes, 0);
  const seed = {
    ...SEED_PLAN,
    comparison: {
      access: { seed: SEED_PLAN.boxes.access, planned: planned(['gateway']), layers: ['gateway'] as Layer[] },
      push: { seed: SEED_PLAN.boxes.push, planned: planned(['router', 'nats']), layers: ['router', 'nats'] as Layer[] },
      im: { seed: SEED_PLAN.boxes.im, planned: planned(['logic']), layers: ['logic'] as Layer[] },
      database: { seed: 0, planned: planned(['cassandra']), layers: ['cassandra'] as Layer[] },
    },
  };
  const assumptions = [
    `CPU scales linearly per core: a ${input.coresPerBox}-core box = ${input.coresPerBox} × ${input.efficiency} efficiency = ${round(input.coresPerBox * input.efficiency, 1)} measured-box cores, planned at ${Math.round(input.utilisation * 100)} % busy (${round(usableCores, 1)} cores of work per box)`,
    'costs are CPU-µs per operation fitted from process CPU (/proc) in the bench runs: layer CPU = a × sends/s + b × pushes/s (+ c × pings/s on the gateway); runs that lost over 1 % of deliveries and phases with over 1 % errors are left out',
    `logic and Cassandra: from runs warmed up for at least ${STEADY_WARMUP_MS / 1000} s when there are any (the store's write-behind and the compaction it causes fall inside their window; see each source)`,
    `pushes per send = (1 − ${input.groupShare}) × 1 + ${input.groupShare} × (${input.avgGroupSize} − 1) (every other member online, one device each; the sending connection is not pushed its own send, as in the bench runs)`,
    `heartbeats: ${input.online.toLocaleString('en-US')} connections / ${input.heartbeatIntervalS} s = ${Math.round(load.pingsPerS).toLocaleString('en-US')} pings/s on the gateways`,
    `memory: ${Math.round(input.ramUsable * 100)} % of ${input.ramGbPerBox} GB per box for connection state; gateway bytes per connection = measured RSS + ${input.kernelBytesPerConn} B kernel socket memory`,
    `Cassandra: CPU measured on one node at replication 1, multiplied by replication ${input.replication}`,
    `minimum nodes for availability: ${LAYERS.map((l) => `${l} ${MIN_NODES[l]}`).join(', ')}`,
    'seed mapping: access = gateway; push = router + NATS; IM = logic; the seed plan has no database boxes',
  ];
  return { input, load, layers, seed, assumptions };
}

// ------------------------------------------------------------------ fitting measurements

export interface CostPoint { sendsPerS: number; pushesPerS: number; cpuPct: number }

/**
 * Least squares for cpu = a·sends + b·pushes with a, b >= 0 (µs per op). When the points cannot
 * separate the two (one mix only, e.g. only 1:1 runs), both get the same cost per operation.
 */
export function fitCosts(points: CostPoint[]): { usPerSend: number; usPerPush: number } {
  const pts = points.filter((p) => p.sendsPerS + p.pushesPerS > 0 && p.cpuPct >= 0);
  if (pts.length === 0) return { usPerSend: 0, usPerPush: 0 };
  const us = (p: CostPoint) => (p.cpuPct / 100) * 1e6; // CPU-µs per second
  let ss = 0, sp = 0, pp = 0, sy = 0, py = 0;
  for (const p of pts) {
    ss += p.sendsPerS * p.sendsPerS;
    sp += p.sendsPerS * p.pushesPerS;
    pp += p.pushesPerS * p.pushesPerS;
    sy += p.sendsPerS * us(p);
    py += p.pushesPerS * us(p);
  }
  const det = ss * pp - sp * sp;
  // Ill-conditioned when every point has (nearly) the same pushes-per-send mix.
  if (det > 1e-6 * ss * pp) {
    const a = (sy * pp - py * sp) / det;
    const b = (py * ss - sy * sp) / det;
    if (a >= 0 && b >= 0) return { usPerSend: round(a, 3), usPerPush: round(b, 3) };
  }
  const totalUs = pts.reduce((acc, p) => acc + us(p), 0);
  const totalOps = pts.reduce((acc, p) => acc + p.sendsPerS + p.pushesPerS, 0);
  const perOp = totalOps > 0 ? totalUs / totalOps : 0;
  return { usPerSend: round(perOp, 3), usPerPush: round(perOp, 3) };
}

/** Runs that lost more than this share of their deliveries, and phases with more errors than this share of sends, are not fitted. */
export const MAX_LOSS_SHARE = 0.01;
export const MAX_ERROR_SHARE = 0.01;

/** Used when no result measured a layer; each says so in its source. */
export const ASSUMED: Measured = {
  gateway: { usPerSend: 20, usPerPush: 10, usPerPing: 10, bytesPerConn: 8 * 1024, source: 'assumed: no distributed run measured the gateway (seed: 8 KB per connection)', points: 0 },
  logic: { usPerSend: 60, usPerPush: 10, source: 'assumed: no distributed run measured logic', points: 0 },
  router: { usPerSend: 2, usPerPush: 2, bytesPerConn: 300, source: 'assumed: no distributed run measured the router', points: 0 },
  nats: { usPerSend: 2, usPerPush: 2, source: 'assumed: no run measured nats-server', points: 0 },
  cassandra: { usPerSend: 100, usPerPush: 50, source: 'assumed: no run measured Cassandra', points: 0 },
};

/**
 * Per-layer costs from results: distributed runs only (embedded runs every layer in one process).
 * Logic and Cassandra use runs with the database when there are any; the gateway, router and NATS
 * do the same work with or without it. Idle runs give bytes per connection and ping cost.
 */
export function measureFromResults(results: BenchResult[]): Measured {
  // Plaintext clients only: TLS runs (--tls) are compared beside them in BENCHMARKS.md, not fitted.
  const dist = results.filter((r) => r.target.kind === 'distributed' && !r.tls);
  // Runs of an earlier store design (one LWT per timeline round before 2026-12-05; a partition
  // write per row before the owner log of 2026-12-06) say nothing
  // about logic's or Cassandra's cost today: they are used only when no run of this design exists.
  const allWithDb = dist.filter((r) => !r.target.noDb);
  const current = allWithDb.filter((r) => r.target.description.includes(STORE_DESIGN));
  const designRuns = current.length > 0 ? current : allWithDb;
  // Any deployment runs several logic processes, and then most sends touch keys (journal,
  // history, inboxes) that other processes own and are forwarded to them: a run with one logic
  // process serves every key locally and measures a cheaper path than production takes
  // (BENCHMARKS.md, "One logic process is not the deployed path"). Runs with two or more are used
  // for logic and Cassandra whenever there are any.
  const forwarded = designRuns.filter((r) => (r.target.logics ?? 1) >= 2);
  // A run's Cassandra work includes writing the rows it logged to their tables `writeBehindMs`
  // later (10 s by default) and compacting them: a window that starts with the store (1 s warm-up)
  // leaves most of that out. A 100-member group run measured 11.6 µs of Cassandra CPU per
  // delivery over 10 s after 1 s, and 28-42 µs over 30 s after 15 s, where compaction took about
  // half of a core (BENCHMARKS.md, "Steady state"). Runs warmed up past the write-behind are used
  // for logic and Cassandra whenever there are any.
  const steady = (runs: BenchResult[]) => runs.filter((r) => Number(r.options.warmupMs ?? 0) >= STEADY_WARMUP_MS);
  const out: Measured = { ...ASSUMED };
  const fitLayer = (layer: Layer, runs: BenchResult[]): CostModel | undefined => {
    const points: CostPoint[] = [];
    const ids = new Set<string>();
    for (const r of runs) {
      // A run that lost pushes did not do the work its sends asked for: its costs per push are wrong.
      if (r.check && r.check.expected > 0 && r.check.lost > MAX_LOSS_SHARE * r.check.expected) continue;
      for (const p of r.phases) {
        if (p.acceptedPerS <= 0) continue;
        // An overloaded phase (timeouts, refusals) spends CPU on failing, not on messages.
        const errors = Object.values(p.errors).reduce((a, b) => a + b, 0) / Math.max(1e-9, p.windowS);
        if (errors > MAX_ERROR_SHARE * p.sendsPerS) continue;
        const procs = p.processes.filter((x) => x.role === layer);
        if (procs.length === 0) continue;
        points.push({ sendsPerS: p.acceptedPerS, pushesPerS: p.deliveriesPerS + p.selfPushesPerS, cpuPct: procs.reduce((a, x) => a + x.cpuPct, 0) });
        ids.add(r.id);
      }
    }
    if (points.length === 0) return undefined;
    return { ...fitCosts(points), source: [...ids].join(', '), points: points.length };
  };
  for (const layer of LAYERS) {
    const preferDb = layer === 'logic' || layer === 'cassandra';
    // Steady-state runs first, then any; within each, several logic processes before one.
    let fitted: CostModel | undefined;
    let note = '';
    for (const [runs, state] of preferDb ? [[steady(designRuns), 'steady state'], [designRuns, '']] as const : []) {
      const fromForwarded = fitLayer(layer, runs.filter((r) => forwarded.includes(r)));
      const fromLocal = fromForwarded ? undefined : fitLayer(layer, runs);
      fitted = fromForwarded ?? fromLocal;
      if (!fitted) continue;
      const when = state ? `${state} (warm-up >= ${STEADY_WARMUP_MS / 1000} s: deferred table writes and compaction in the window), ` : '';
      note = fromForwarded ? `${when}runs with 2+ logic processes (sends forwarded to their keys' owners): `
        : `${when}runs with one logic process (every key local: a lower bound for a deployment of several): `;
      break;
    }
    if (!fitted && layer !== 'cassandra') fitted = fitLayer(layer, dist);
    if (fitted) out[layer] = { ...ASSUMED[layer], ...fitted, source: note + fitted.source, bytesPerConn: ASSUMED[layer].bytesPerConn };
  }
  // Memory per connection and heartbeat cost from the newest idle run with separate processes.
  const idle = dist.find((r) => r.idle && r.idle.connections > 0 && !r.options.heapSnapshot);
  if (idle?.idle) {
    const i = idle.idle;
    out.gateway = { ...out.gateway, bytesPerConn: Math.max(1, i.gatewayRssPerConnBytes), source: `${out.gateway.source}; memory: ${idle.id}` };
    if (i.routerRssPerConnBytes !== undefined) {
      out.router = { ...out.router, bytesPerConn: Math.max(1, i.routerRssPerConnBytes), source: `${out.router.source}; memory: ${idle.id}` };
    }
    const hb = Number(idle.options.heartbeatIntervalMs ?? 30_000) / 1000;
    const pingsPerS = i.connections / hb;
    if (pingsPerS > 0) out.gateway.usPerPing = round(((i.gatewayCpuPctWhileIdle / 100) * 1e6) / pingsPerS, 3);
  } else {
    out.gateway = { ...out.gateway, source: `${out.gateway.source}; bytes per connection and ping cost assumed (no distributed idle run)` };
    out.router = { ...out.router, source: `${out.router.source}; bytes per session assumed (no distributed idle run)` };
  }
  return out;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
