/**
 * One load phase: tell every worker to send (closed loop or at a rate), collect their counters
 * once a second (one progress line each), drop the warm-up, and sum up the measured window.
 */
import type { Histogram as HistogramT } from './histogram';
import { Histogram, toMs } from './histogram';
import type { LoadCmd, TickStats } from './ipc';
import type { WorkerPool } from './pool';
import type { ProcTracker } from './proc-stats';
import { round2 } from './proc-stats';
import { cpuUsPer, type PerSecond, type PhaseResult } from './results';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PhaseSpec {
  name: string;
  index: number;
  mode: 'max' | 'rate';
  /** Total sends/s (mode rate). */
  rate?: number;
  window: number;
  syncEvery: number;
  durationMs: number;
  warmupMs: number;
}

export interface PhaseDeps {
  pool: WorkerPool;
  tracker: ProcTracker;
  /** Senders held by each worker, to split a rate. */
  sendersPerWorker: number[];
  progress: (line: string) => void;
  stopTimeoutMs: number;
}


class Totals {
  sent = 0;
  acked = 0;
  deliveries = 0;
  selfPushes = 0;
  skipped = 0;
  syncs = 0;
  errors: Record<string, number> = {};
  closes: Record<string, number> = {};
  readonly ackUs = new Histogram();
  readonly e2eUs = new Histogram();
  readonly syncUs = new Histogram();

  add(t: TickStats | Totals): void {
    this.sent += t.sent;
    this.acked += t.acked;
    this.deliveries += t.deliveries;
    this.selfPushes += t.selfPushes;
    this.skipped += t.skipped;
    this.syncs += t.syncs;
    for (const [k, v] of Object.entries(t.errors)) this.errors[k] = (this.errors[k] ?? 0) + v;
    for (const [k, v] of Object.entries(t.closes)) this.closes[k] = (this.closes[k] ?? 0) + v;
    this.ackUs.add(t.ackUs);
    this.e2eUs.add(t.e2eUs);
    this.syncUs.add(t.syncUs);
  }

  get errorCount(): number {
    return Object.values(this.errors).reduce((a, b) => a + b, 0);
  }
}

const n0 = (v: number) => Math.round(v).toLocaleString('en-US');
const ms = (h: HistogramT, q: number) => (h.quantile(q) / 1000).toFixed(2);

export async function runPhase(spec: PhaseSpec, deps: PhaseDeps): Promise<PhaseResult> {
  const { pool, tracker } = deps;
  const totalSenders = deps.sendersPerWorker.reduce((a, b) => a + b, 0) || 1;
  tracker.sample();
  await pool.all((i): LoadCmd => ({
    t: 'load', phase: spec.index, mode: spec.mode, window: spec.window, syncEvery: spec.syncEvery,
    ratePerSec: spec.mode === 'rate' ? ((spec.rate ?? 0) * deps.sendersPerWorker[i]) / totalSenders : 0,
  }));
  const t0 = Date.now();
  let measuring = spec.warmupMs <= 0;
  if (measuring) tracker.resetWindow();
  let measuredStart = t0;
  let measuredEnd = t0;
  const totals = new Totals();
  const perSecond: PerSecond[] = [];
  for (let k = 1; ; k++) {
    await sleep(Math.max(0, t0 + k * 1000 - Date.now()));
    const ticks = await pool.all<TickStats>({ t: 'tick' });
    const now = Date.now();
    const sec = new Totals();
    for (const t of ticks) sec.add(t);
    const s = tracker.sample();
    const cpu: Record<string, number> = {};
    for (const [role, v] of Object.entries(s.byRole)) cpu[role] = v.cpuPct;
    const ours = Object.values(cpu).reduce((a, b) => a + b, 0);
    perSecond.push({
      t: round2((now - t0) / 1000), sent: sec.sent, acked: sec.acked, deliveries: sec.deliveries,
      e2eP50Ms: Number(ms(sec.e2eUs, 0.5)), e2eP99Ms: Number(ms(sec.e2eUs, 0.99)), errors: sec.errorCount, cpu,
      otherCpuPct: round2(Math.max(0, s.machineBusyPct - ours)),
    });
    if (measuring) {
      totals.add(sec);
      measuredEnd = now;
    }
    const cpuText = Object.entries(cpu).map(([r, v]) => `${r} ${Math.round(v)}%`).join(' ');
    deps.progress(`[${spec.name}${measuring ? '' : ' warm-up'}] ${((now - t0) / 1000).toFixed(0).padStart(3)}s  sent ${n0(sec.sent)}/s  ` +
      `acked ${n0(sec.acked)}/s  delivered ${n0(sec.deliveries)}/s  e2e p50 ${ms(sec.e2eUs, 0.5)} p99 ${ms(sec.e2eUs, 0.99)} ms  ` +
      `err ${sec.errorCount}${sec.skipped ? `  skipped ${n0(sec.skipped)}` : ''}  | cpu ${cpuText}  others ${Math.round(Math.max(0, s.machineBusyPct - ours))}%`);
    if (!measuring && now - t0 >= spec.warmupMs) {
      measuring = true;
      measuredStart = measuredEnd = now;
      tracker.resetWindow();
    }
    if (now - t0 >= spec.warmupMs + spec.durationMs) break;
  }
  const procs = tracker.summary();
  const stopped = await pool.all<{ outstanding: number }>({ t: 'stop', timeoutMs: deps.stopTimeoutMs });
  const windowS = Math.max(0.001, (measuredEnd - measuredStart) / 1000);
  const per = (v: number) => round2(v / windowS);
  return {
    name: spec.name, mode: spec.mode, targetSendsPerS: spec.rate === undefined ? undefined : Math.round(spec.rate),
    windowS: round2(windowS),
    sendsPerS: per(totals.sent), acceptedPerS: per(totals.acked), deliveriesPerS: per(totals.deliveries),
    selfPushesPerS: per(totals.selfPushes), skippedPerS: per(totals.skipped),
    errors: totals.errors,
    ackMs: toMs(totals.ackUs.percentiles()), e2eMs: toMs(totals.e2eUs.percentiles()),
    syncMs: totals.syncs ? toMs(totals.syncUs.percentiles()) : undefined,
    processes: procs.processes, machineBusyPct: procs.machineBusyPct,
    otherCpuPct: round2(Math.max(0, procs.machineBusyPct - procs.processes.reduce((a, p) => a + p.cpuPct, 0))),
    outstandingAtStop: stopped.reduce((a, r) => a + r.outstanding, 0),
    cpuUsPerSend: cpuUsPer(procs.processes, totals.acked),
    perSecond,
  };
}

/** Waits until the pushes received stop changing for quietMs (bounded by maxMs); returns the total. */
export async function waitQuiet(pool: WorkerPool, quietMs: number, maxMs: number, enough = Infinity): Promise<number> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const got = (await pool.all<{ received: number }>({ t: 'received' })).reduce((a, r) => a + r.received, 0);
    if (got !== last) {
      last = got;
      since = Date.now();
    }
    if (got >= enough || Date.now() - since >= quietMs || Date.now() >= deadline) return got;
    await sleep(100);
  }
}
