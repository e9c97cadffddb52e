/**
 * `im plan`: nodes per layer for a target load, from the latest bench results. The `im` CLI
 * calls planMain(argv, io) with the arguments after `plan`; it prints a table (or JSON with
 * --json) and returns the exit code (0, 1 error, 2 usage).
 *
 *   im plan --online 10000000 --send-qps 100000 [--group-share 0.5 --avg-group-size 30]
 *           [--cores 32 --ram-gb 32 --efficiency 0.7 --utilisation 0.6 --heartbeat 30s
 *            --replication 3 --kernel-bytes-per-conn 1024 --results DIR --json]
 */
import { parseDurationMs } from '../common/config';
import { DEFAULT_RESULTS_DIR } from './options';
import { measureFromResults, Plan, PLAN_DEFAULTS, PlanInput, planCapacity } from './plan-model';
import { latestResults } from './report';
import { readResults } from './results';

export interface PlanIo {
  /** Receives whole lines, each ending in "\n". */
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const PLAN_USAGE = `usage: im plan --online N --send-qps N [--group-share 0..1] [--avg-group-size N]
               [--cores 32] [--ram-gb 32] [--efficiency 0.7] [--utilisation 0.6] [--ram-usable 0.75]
               [--heartbeat 30s] [--replication 3] [--kernel-bytes-per-conn 1024]
               [--results DIR] [--json]
  Reads the bench results (default bench/results) and prints the nodes needed per layer.
`;

class PlanUsageError extends Error {}

const NUMERIC: Record<string, { key: keyof PlanInput; min: number; max: number }> = {
  online: { key: 'online', min: 1, max: 1e12 },
  'send-qps': { key: 'sendQps', min: 0, max: 1e12 },
  'group-share': { key: 'groupShare', min: 0, max: 1 },
  'avg-group-size': { key: 'avgGroupSize', min: 2, max: 100_000 },
  cores: { key: 'coresPerBox', min: 1, max: 4096 },
  'ram-gb': { key: 'ramGbPerBox', min: 1, max: 1e6 },
  efficiency: { key: 'efficiency', min: 0.01, max: 1 },
  utilisation: { key: 'utilisation', min: 0.01, max: 1 },
  'ram-usable': { key: 'ramUsable', min: 0.01, max: 1 },
  replication: { key: 'replication', min: 1, max: 10 },
  'kernel-bytes-per-conn': { key: 'kernelBytesPerConn', min: 0, max: 1e6 },
};

export function parsePlanArgs(argv: readonly string[]): { input: PlanInput; resultsDir: string; json: boolean } {
  const input: Partial<PlanInput> = { ...PLAN_DEFAULTS };
  let resultsDir = DEFAULT_RESULTS_DIR;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new PlanUsageError(`unexpected argument "${a}"`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (name === 'json') {
      json = true;
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new PlanUsageError(`option --${name} needs a value`);
    if (name === 'results') {
      resultsDir = value;
    } else if (name === 'heartbeat') {
      const ms = /^\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : parseDurationMs(value);
      if (!ms || ms < 1000) throw new PlanUsageError(`--heartbeat must be a duration of at least 1s, got "${value}"`);
      input.heartbeatIntervalS = ms / 1000;
    } else if (NUMERIC[name]) {
      const spec = NUMERIC[name];
      const n = Number(value.replace(/_/g, ''));
      if (!Number.isFinite(n) || n < spec.min || n > spec.max) throw new PlanUsageError(`--${name} must be a number in ${spec.min}..${spec.max}, got "${value}"`);
      (input as Record<string, number>)[spec.key] = n;
    } else {
      throw new PlanUsageError(`unknown option --${name}`);
    }
  }
  if (input.online === undefined) throw new PlanUsageError('--online is required');
  if (input.sendQps === undefined) throw new PlanUsageError('--send-qps is required');
  return { input: input as PlanInput, resultsDir, json };
}

const n0 = (v: number) => Math.round(v).toLocaleString('en-US');

export function renderPlan(plan: Plan): string {
  const i = plan.input;
  const out: string[] = [];
  out.push(`Capacity plan: ${n0(i.online)} online, ${n0(i.sendQps)} sends/s (group share ${i.groupShare}, avg group ${i.avgGroupSize})`);
  out.push(`load: ${n0(plan.load.sendsPerS)} sends/s, ${n0(plan.load.pushesPerS)} pushes/s, ${n0(plan.load.pingsPerS)} pings/s; boxes of ${i.coresPerBox} cores / ${i.ramGbPerBox} GB`, '');
  const rows = [['layer', 'nodes', 'bound by', 'CPU cores @100%', 'per node: sends/s', 'pushes/s', 'connections', 'µs/send', 'µs/push', 'B/conn']];
  for (const l of plan.layers) {
    rows.push([
      l.layer, String(l.nodes), l.boundBy, String(l.cpuCores), n0(l.perNode.sendsPerS), n0(l.perNode.pushesPerS),
      l.perNode.connections !== undefined ? n0(l.perNode.connections) : '—', String(l.cost.usPerSend), String(l.cost.usPerPush),
      l.cost.bytesPerConn !== undefined ? n0(l.cost.bytesPerConn) : '—',
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const [k, r] of rows.entries()) {
    out.push(r.map((cell, c) => (c === 0 || c === 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
    if (k === 0) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  out.push('', `seed plan: ${plan.seed.note}`);
  for (const [name, c] of Object.entries(plan.seed.comparison)) {
    out.push(`  ${name.padEnd(8)} seed ${String(c.seed).padStart(3)}  planned ${String(c.planned).padStart(4)}  (${c.layers.join(' + ')})`);
  }
  out.push('', 'sources:');
  for (const l of plan.layers) out.push(`  ${l.layer}: ${l.cost.source}${l.cost.points ? ` (${l.cost.points} phases)` : ''}`);
  out.push('', 'assumptions:');
  for (const a of plan.assumptions) out.push(`  - ${a}`);
  return out.join('\n') + '\n';
}

export async function planMain(argv: readonly string[], io: PlanIo): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stderr(PLAN_USAGE);
    return 2;
  }
  let parsed;
  try {
    parsed = parsePlanArgs(argv);
  } catch (err) {
    if (err instanceof PlanUsageError) {
      io.stderr(`im plan: ${err.message}\n${PLAN_USAGE}`);
      return 2;
    }
    throw err;
  }
  try {
    // The newest run of each scenario and target: older runs may predate server changes.
    const results = latestResults(readResults(parsed.resultsDir));
    if (results.length === 0) io.stderr(`im plan: no bench results in ${parsed.resultsDir}; every figure below is an assumption\n`);
    const plan = planCapacity(parsed.input, measureFromResults(results));
    if (parsed.json) io.stdout(JSON.stringify(plan, null, 2) + '\n');
    else io.stdout(renderPlan(plan));
    return 0;
  } catch (err) {
    io.stderr(`im plan: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

