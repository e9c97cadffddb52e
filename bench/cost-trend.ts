/**
 * Server CPU per accepted send, window by window, from a phase's per-second samples: the check
 * of issue 10 that cost stays flat as the database grows (run at half the max rate for 10
 * minutes; the last minute within 15 % of the first). Load-generator CPU is left out.
 */
import { round2 } from './proc-stats';
import type { PerSecond } from './results';

export interface CostWindow {
  fromS: number;
  toS: number;
  acked: number;
  /** Server CPU (every role but the load generator) per accepted send, µs. */
  cpuUsPerSend: number;
}

// Roles bench/run.ts gives the processes it samples that are not the system under test.
const NOT_SERVER_ROLES = new Set(['loadgen', 'echo']);

/** Windows of windowS seconds (the last one may be shorter; one shorter than half a window is dropped). */
export function costTrend(perSecond: readonly PerSecond[], windowS = 60): CostWindow[] {
  const out: CostWindow[] = [];
  for (let i = 0; i < perSecond.length; i += windowS) {
    const slice = perSecond.slice(i, i + windowS);
    if (slice.length < windowS / 2 && out.length > 0) break;
    let acked = 0;
    let cpuCoreS = 0;
    for (const s of slice) {
      acked += s.acked;
      for (const [role, pct] of Object.entries(s.cpu)) if (!NOT_SERVER_ROLES.has(role)) cpuCoreS += pct / 100;
    }
    out.push({ fromS: slice[0].t - 1, toS: slice[slice.length - 1].t, acked, cpuUsPerSend: acked ? round2((cpuCoreS * 1e6) / acked) : 0 });
  }
  return out;
}

/** The last window's cost over the first's (1.15 = 15 % dearer), or undefined with fewer than two windows. */
export function costDrift(trend: readonly CostWindow[]): number | undefined {
  if (trend.length < 2 || trend[0].cpuUsPerSend === 0) return undefined;
  return round2(trend[trend.length - 1].cpuUsPerSend / trend[0].cpuUsPerSend);
}
