/**
 * The targets for this 2-core box, checked against a result. Reported, never asserted:
 * a missed goal is a finding for BENCHMARKS.md, not a failed run.
 */
import type { BenchResult, Goal, PhaseResult } from './results';
import { targetTag } from './results';

/** 1:1 delivered msgs/s at the maximum rate, by target. */
export const ONE_TO_ONE_GOALS: Record<string, number> = { embedded: 40_000, 'distributed-nodb': 30_000, distributed: 10_000 };
export const GROUP_100_DELIVERIES_GOAL = 300_000;
export const P99_AT_HALF_MAX_MS = 10;
export const IDLE_BYTES_PER_CONN_GOAL = 3 * 1024;

function maxPhase(r: BenchResult): PhaseResult | undefined {
  return r.phases.find((p) => p.mode === 'max') ?? r.phases[0];
}

function halfPhase(r: BenchResult): PhaseResult | undefined {
  const max = maxPhase(r);
  if (!max) return undefined;
  // The rate phase whose target is closest to half the max accepted rate.
  const rate = r.phases.filter((p) => p.mode === 'rate' && p.targetSendsPerS);
  let best: PhaseResult | undefined;
  for (const p of rate) {
    const d = Math.abs((p.targetSendsPerS ?? 0) / max.acceptedPerS - 0.5);
    if (d < 0.05 && (!best || d < Math.abs((best.targetSendsPerS ?? 0) / max.acceptedPerS - 0.5))) best = p;
  }
  return best;
}

export function evaluateGoals(r: BenchResult): Goal[] {
  const goals: Goal[] = [];
  const tag = targetTag(r.target.kind, r.target.noDb);
  const max = maxPhase(r);
  if (r.scenario === 'one-to-one' && max) {
    const goal = ONE_TO_ONE_GOALS[tag];
    goals.push({
      name: `1:1 delivered msgs/s (${tag})`, goal: goal ? `>= ${goal.toLocaleString('en-US')}` : 'none for this target',
      value: Math.round(max.deliveriesPerS), unit: 'msgs/s', met: goal ? max.deliveriesPerS >= goal : null,
    });
  }
  if ((r.scenario === 'one-to-one' || r.scenario === 'group' || r.scenario === 'mixed') && max) {
    const half = halfPhase(r);
    goals.push({
      name: 'p99 send→deliver at half the max rate', goal: `<= ${P99_AT_HALF_MAX_MS} ms`,
      value: half ? half.e2eMs.p99 : null, unit: 'ms', met: half ? half.e2eMs.p99 <= P99_AT_HALF_MAX_MS : null,
      note: half ? `phase ${half.name}` : 'run with --sweep for the half-rate phase',
    });
  }
  if (r.scenario === 'group' && max) {
    const sizes = (r.options.groupSizes as number[] | undefined) ?? [];
    const all100 = sizes.length > 0 && sizes.every((s) => s === 100);
    goals.push({
      name: '100-member group deliveries/s', goal: `>= ${GROUP_100_DELIVERIES_GOAL.toLocaleString('en-US')}`,
      value: Math.round(max.deliveriesPerS), unit: 'deliveries/s', met: all100 ? max.deliveriesPerS >= GROUP_100_DELIVERIES_GOAL : null,
      note: all100 ? undefined : `groups of ${sizes.join(',')}: the goal is for --group-sizes 100`,
    });
  }
  if (r.scenario === 'idle' && r.idle && r.options.heapSnapshot) {
    goals.push({
      name: 'gateway RSS per idle authenticated connection', goal: `<= ${IDLE_BYTES_PER_CONN_GOAL} B`, value: null, unit: 'B', met: null,
      note: 'not measured: heap snapshots inflate RSS (run without --heap-snapshot)',
    });
  } else if (r.scenario === 'idle' && r.idle) {
    goals.push({
      name: 'gateway RSS per idle authenticated connection', goal: `<= ${IDLE_BYTES_PER_CONN_GOAL} B`,
      value: Math.round(r.idle.gatewayRssPerConnBytes), unit: 'B', met: r.idle.gatewayRssPerConnBytes <= IDLE_BYTES_PER_CONN_GOAL,
      note: r.target.kind === 'embedded' ? 'embedded: the one process also holds the router table' : undefined,
    });
  }
  if (r.check) {
    goals.push({ name: 'lost deliveries', goal: '0', value: r.check.lost, unit: '', met: r.check.lost === 0,
      note: `${r.check.lostPushes} lost pushes (in the inbox), ${r.check.lostMessages} lost messages` });
    goals.push({ name: 'duplicated deliveries', goal: '0', value: r.check.duplicated, unit: '', met: r.check.duplicated === 0 });
  }
  return goals;
}
