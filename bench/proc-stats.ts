/**
 * CPU and memory of processes from /proc (Linux): what each server process costs, and what else
 * was running on the machine while the bench measured (the box is shared).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { THREAD_NAME_PREFIX } from '../common/thread-name';

let clkTck: number | undefined;
/** Kernel clock ticks per second (the unit of utime/stime in /proc/<pid>/stat). */
export function clockTicksPerSec(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export interface ProcSample {
  pid: number;
  /** utime + stime, seconds. */
  cpuS: number;
  rssBytes: number;
  /** Peak RSS (VmHWM). */
  hwmBytes: number;
}

/** Undefined when the process is gone. */
export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const cpuS = statCpuS(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
    return { pid, cpuS, rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

function statCpuS(statText: string): number {
  // Fields after the parenthesised command name, which may itself contain spaces.
  const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / clockTicksPerSec(); // utime, stime (fields 14 and 15)
}

/**
 * CPU seconds of a process's threads by group: 'main' (the event loop's thread), each thread the
 * process named itself (common/thread-name.ts: the SQLite writer and checkpoint threads), and
 * 'other' (V8's GC and compiler helpers, libuv's pool). Threads that ended are not counted, so
 * compare two samples of threads that live through the window. Undefined when the process is gone.
 */
export function sampleThreads(pid: number): Record<string, number> | undefined {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  const out: Record<string, number> = {};
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const group = tid === String(pid) ? 'main' : comm.startsWith(THREAD_NAME_PREFIX) ? comm.slice(THREAD_NAME_PREFIX.length) : 'other';
      out[group] = (out[group] ?? 0) + statCpuS(stat);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** Busy and total jiffies of the whole machine (/proc/stat "cpu" line). */
export function machineTicks(): { busy: number; total: number } {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = os.loadavg();
  return [round2(a), round2(b), round2(c)];
}

export interface TopProcess { pid: number; cpuPct: number; rssMb: number; cmd: string }

function allPids(): number[] {
  try {
    return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  } catch {
    return [];
  }
}

export function commandLine(pid: number, maxChars = 120): string {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
    return raw.length > maxChars ? raw.slice(0, maxChars - 1) + '…' : raw;
  } catch {
    return '';
  }
}

/** The busiest processes over `windowMs` (two /proc snapshots), for the "what else ran" record. */
export async function topProcesses(windowMs = 1000, limit = 8): Promise<TopProcess[]> {
  const before = new Map<number, number>();
  for (const pid of allPids()) {
    const s = sampleProc(pid);
    if (s) before.set(pid, s.cpuS);
  }
  await sleep(windowMs);
  const out: TopProcess[] = [];
  for (const pid of allPids()) {
    const s = sampleProc(pid);
    if (!s) continue;
    const cpu = s.cpuS - (before.get(pid) ?? s.cpuS);
    out.push({ pid, cpuPct: round2((100 * cpu * 1000) / windowMs), rssMb: round2(s.rssBytes / 1048576), cmd: commandLine(pid) });
  }
  return out.sort((a, b) => b.cpuPct - a.cpuPct || b.rssMb - a.rssMb).slice(0, limit);
}

/**
 * The pid whose socket listens on 127.0.0.1/0.0.0.0:port (from /proc/net/tcp and the processes'
 * fd links), or undefined. Exact where a command-line match would also catch other people's servers.
 */
export function pidListeningOn(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A = LISTEN
      if (parseInt(f[1].split(':')[1], 16) === port) inodes.add(f[9]);
    }
  }
  if (inodes.size === 0) return undefined;
  for (const pid of allPids()) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1])) return pid;
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memTotalMb: number;
  node: string;
  platform: string;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length, cpuModel: cpus[0]?.model ?? 'unknown', memTotalMb: Math.round(os.totalmem() / 1048576),
    node: process.version, platform: `${os.platform()} ${os.arch()}`, kernel: os.release(),
  };
}

export function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/**
 * Follows a set of processes: CPU % between samples and over the whole window, RSS now and at
 * peak. Roles name what each pid is ("gateway", "logic", "loadgen", "nats"...).
 */
export class ProcTracker {
  private readonly procs = new Map<number, {
    role: string; first?: ProcSample; last?: ProcSample; prev?: ProcSample; peakRss: number;
    threadsFirst?: Record<string, number>; threadsLast?: Record<string, number>;
  }>();
  private machineFirst = machineTicks();
  private machinePrev = this.machineFirst;
  private startMs = Date.now();
  private prevMs = this.startMs;

  add(pid: number, role: string): void {
    if (this.procs.has(pid)) return;
    const s = sampleProc(pid);
    const t = sampleThreads(pid);
    this.procs.set(pid, { role, first: s, last: s, prev: s, peakRss: s?.rssBytes ?? 0, threadsFirst: t, threadsLast: t });
  }

  remove(pid: number): void {
    this.procs.delete(pid);
  }

  /** Restarts the whole-window accounting (e.g. when the measured phase begins). */
  resetWindow(): void {
    this.sample();
    this.startMs = this.prevMs;
    this.machineFirst = this.machinePrev;
    for (const p of this.procs.values()) {
      p.first = p.last;
      p.threadsFirst = p.threadsLast;
      p.peakRss = p.last?.rssBytes ?? 0;
    }
  }

  /** Samples every process; returns CPU % per role since the previous sample, and machine busy %. */
  sample(): { byRole: Record<string, { cpuPct: number; rssMb: number }>; machineBusyPct: number } {
    const now = Date.now();
    const dt = Math.max(1, now - this.prevMs) / 1000;
    const byRole: Record<string, { cpuPct: number; rssMb: number }> = {};
    for (const p of this.procs.values()) {
      const pid = p.last?.pid;
      if (pid === undefined) continue;
      const s = sampleProc(pid);
      if (!s) continue;
      const cpu = p.prev ? s.cpuS - p.prev.cpuS : 0;
      p.prev = s;
      p.last = s;
      p.threadsLast = sampleThreads(pid) ?? p.threadsLast;
      if (s.rssBytes > p.peakRss) p.peakRss = s.rssBytes;
      const r = (byRole[p.role] ??= { cpuPct: 0, rssMb: 0 });
      r.cpuPct = round2(r.cpuPct + (100 * cpu) / dt);
      r.rssMb = round2(r.rssMb + s.rssBytes / 1048576);
    }
    const m = machineTicks();
    const busy = m.total > this.machinePrev.total ? (100 * (m.busy - this.machinePrev.busy)) / (m.total - this.machinePrev.total) : 0;
    this.machinePrev = m;
    this.prevMs = now;
    return { byRole, machineBusyPct: round2(busy * os.cpus().length) };
  }

  /** Per process over the window since the last reset. CPU % of one core (200 = both of 2 cores). */
  summary(): { processes: ProcessSummary[]; machineBusyPct: number; windowS: number } {
    const windowS = Math.max(0.001, (this.prevMs - this.startMs) / 1000);
    const processes: ProcessSummary[] = [];
    for (const [pid, p] of this.procs) {
      if (!p.first || !p.last) continue;
      processes.push({
        role: p.role, pid, cpuPct: round2((100 * (p.last.cpuS - p.first.cpuS)) / windowS),
        cpuS: round2(p.last.cpuS - p.first.cpuS),
        rssMb: round2(p.last.rssBytes / 1048576), peakRssMb: round2(p.peakRss / 1048576),
        ...(p.threadsFirst && p.threadsLast && { threadsCpuS: threadsDelta(p.threadsFirst, p.threadsLast) }),
      });
    }
    const m = this.machinePrev;
    const busy = m.total > this.machineFirst.total ? (m.busy - this.machineFirst.busy) / (m.total - this.machineFirst.total) : 0;
    return { processes, machineBusyPct: round2(100 * busy * os.cpus().length), windowS: round2(windowS) };
  }
}

/** CPU seconds per thread group between two samples (a group that appeared counts from 0). */
function threadsDelta(first: Record<string, number>, last: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(last)) out[k] = round2(Math.max(0, v - (first[k] ?? 0)));
  return out;
}

export interface ProcessSummary {
  role: string;
  pid: number;
  /** Average over the window, % of one core. */
  cpuPct: number;
  cpuS: number;
  /** cpuS by thread group (sampleThreads); absent in results before 2026-12-06. */
  threadsCpuS?: Record<string, number>;
  rssMb: number;
  peakRssMb: number;
}
