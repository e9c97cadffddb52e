/**
 * `npm run bench -- report`: the latest result of each (scenario, target) in bench/results,
 * rendered as the tables between the markers in BENCHMARKS.md (the prose around them is kept).
 */
import * as fs from 'node:fs';
import { BenchResult, cpuByRole, GATEWAY_ROLES, gatewayUsPerSend, readResults, runTag } from './results';

export const TABLE_START = '<!-- bench:table:start -->';
export const TABLE_END = '<!-- bench:table:end -->';

const n0 = (v: number) => Math.round(v).toLocaleString('en-US');

/** More than one process per layer, as the report's target column shows it ("" for one each). */
function layoutTag(r: BenchResult): string {
  const parts = [[r.target.gateways ?? 1, 'gateways'], [r.target.logics ?? 1, 'logics']].filter(([n]) => Number(n) > 1);
  return parts.map(([n, what]) => `, ${n} ${what}`).join('');
}

/**
 * Newest result per kind of run: scenario, target, processes per layer, TLS and its key or not,
 * sweep or not, group sizes, heap snapshots or not (they distort RSS), and label (a profiled run
 * does not replace an unprofiled one).
 */
export function latestResults(all: BenchResult[]): BenchResult[] {
  const seen = new Map<string, BenchResult>();
  for (const r of all) {
    const sizes = r.scenario === 'group' ? `:${(r.options.groupSizes as number[] | undefined)?.join(',')}` : '';
    // Runs with more processes per layer are another system: the newest of one does not hide the other's.
    const layout = `:${r.target.gateways ?? 1}g${r.target.logics ?? 1}l`;
    const key = `${r.scenario}:${runTag(r)}${layout}:${r.phases.length > 1 ? 'sweep' : 'one'}${sizes}` +
      `:${r.options.heapSnapshot ? 'heap' : ''}:${r.label}`;
    if (!seen.has(key)) seen.set(key, r); // readResults sorts newest first
  }
  return [...seen.values()].sort((a, b) => a.scenario.localeCompare(b.scenario) || a.id.localeCompare(b.id));
}

export function renderTables(results: BenchResult[]): string {
  const lines: string[] = [];
  const msg = results.filter((r) => r.phases.length > 0 && r.scenario !== 'idle');
  if (msg.length) {
    lines.push('| scenario | target | users | phase | accepted sends/s | delivered/s | × echo | e2e p50 / p99 / max ms | ack p99 ms | lost / dup | CPU % (of one core) | gateway CPU µs / send | others CPU % | run |');
    lines.push('|---|---|---:|---|---:|---:|---:|---|---:|---|---|---:|---:|---|');
    for (const r of msg) {
      for (const p of r.phases) {
        const cpu = cpuByRole(p.processes).map(([k, v]) => `${k} ${n0(v)}`).join(', ');
        const check = r.check ? `${r.check.lost} / ${r.check.duplicated}` : '—';
        const groups = (r.scenario === 'group' ? ` (groups ${(r.options.groupSizes as number[]).join(',')})` : '') + (r.label ? ` [${r.label}]` : '');
        lines.push(`| ${r.scenario}${groups} | ${runTag(r)}${layoutTag(r)} | ${n0(Number(r.options.users))} | ${p.name} | ${n0(p.acceptedPerS)} | ` +
          `${n0(p.deliveriesPerS)} | ${p.ratio ? p.ratio.deliveriesToEcho.toFixed(3) : '—'} | ${p.e2eMs.p50} / ${p.e2eMs.p99} / ${p.e2eMs.max} | ${p.ackMs.p99} | ` +
          `${check} | ${cpu} | ${gatewayUsPerSend(p)?.toFixed(1) ?? '—'} | ${p.otherCpuPct ?? '—'} | [${r.id}](bench/results/${r.id}.md) |`);
      }
    }
    lines.push('');
  }
  const ceilings = results.filter((r) => r.ceiling && r.ceiling.kind === 'echo');
  if (ceilings.length) {
    lines.push('Raw ceiling measured in the same runs (Node length-prefixed TCP echo, one frame in flight per connection):', '');
    for (const r of ceilings) {
      const c = r.ceiling!;
      lines.push(`- ${r.scenario} ${runTag(r)}: ${n0(c.perS)} round trips/s over ${c.connections} connections, ${c.frameBytes}-byte frames, rtt p50 ${c.rttMs.p50} ms / p99 ${c.rttMs.p99} ms`);
    }
    lines.push('');
  }
  for (const r of results.filter((x) => x.connectStorm)) {
    const s = r.connectStorm!;
    lines.push(`Connect storm (${runTag(r)}): ${n0(s.connections)} connections (TCP + Auth) at **${n0(s.perS)}/s**` +
      `${s.ratioToEcho !== undefined ? ` (${s.ratioToEcho.toFixed(3)} × raw TCP connect + round trip at ${n0(r.ceiling?.perS ?? 0)}/s)` : ''}, ` +
      `p50 ${s.setupMs.p50} ms, p99 ${s.setupMs.p99} ms; failed ${s.failed}. [${r.id}](bench/results/${r.id}.md)`, '');
  }
  for (const r of results.filter((x) => x.idle && !x.options.heapSnapshot)) {
    const i = r.idle!;
    lines.push(`Idle (${runTag(r)}, ${r.target.gateways} gateway process(es)): ${n0(i.connections)} authenticated connections; ` +
      `gateway **${n0(i.gatewayRssPerConnBytes)} B RSS** / ${n0(i.gatewayHeapPerConnBytes)} B heap per connection` +
      `${i.ratioToRawSocket !== undefined ? ` (${i.ratioToRawSocket.toFixed(2)} × a raw Node socket at ${n0(r.ceiling?.rssPerConnBytes ?? 0)} B)` : ''}` +
      `${i.routerRssPerConnBytes !== undefined ? `; router ${n0(i.routerRssPerConnBytes)} B per connection` : ''}. [${r.id}](bench/results/${r.id}.md)`, '');
  }
  for (const r of results.filter((x) => x.handshake?.length)) {
    const phases = r.handshake!.map((h) => `${h.name} **${n0(h.perS)}/s** (${n0(h.perGatewayCoreS ?? 0)} per gateway core, ` +
      `gateway ${GATEWAY_ROLES.map((g) => h.cpuUsPerSetup[g]).find((v) => v !== undefined) ?? '—'} CPU-µs each, ${n0(h.resumed)} of ${n0(h.setups)} resumed, failed ${h.failed})`);
    lines.push(`Handshakes (${runTag(r)}, connect + ${r.tls ? 'TLS + ' : ''}Auth + close, ${r.options.concurrency} at once): ${phases.join('; ')}. [${r.id}](bench/results/${r.id}.md)`, '');
  }
  const goals = results.flatMap((r) => r.goals.filter((g) => g.met !== null || g.value !== null).map((g) => ({ r, g })));
  if (goals.length) {
    lines.push('| goal | target | measured | met | run |', '|---|---|---:|---|---|');
    for (const { r, g } of goals) {
      if (g.name === 'lost deliveries' || g.name === 'duplicated deliveries') continue;
      lines.push(`| ${g.name} | ${g.goal} | ${g.value === null ? '—' : `${g.value.toLocaleString('en-US')} ${g.unit}`} | ${g.met === null ? 'n/a' : g.met ? 'yes' : '**no**'}${g.note ? ` — ${g.note}` : ''} | ${r.id} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/** Replaces the text between the markers; returns false when the file has no markers. */
export function writeReport(benchmarksFile: string, resultsDir: string): boolean {
  const tables = renderTables(latestResults(readResults(resultsDir)));
  const text = fs.readFileSync(benchmarksFile, 'utf8');
  const a = text.indexOf(TABLE_START);
  const b = text.indexOf(TABLE_END);
  if (a < 0 || b < a) return false;
  fs.writeFileSync(benchmarksFile, `${text.slice(0, a + TABLE_START.length)}\n${tables}\n${text.slice(b)}`);
  return true;
}
