/**
 * The result of one bench run: its JSON shape (bench/results/<id>.json, read back by the report
 * and the capacity planner), the goals it is compared against, and its Markdown summary.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LossSummary } from './checker';
import type { Percentiles } from './histogram';
import type { MachineInfo, ProcessSummary, TopProcess } from './proc-stats';

export const RESULT_SCHEMA = 'im-bench/1';

export interface PerSecond {
  t: number;
  sent: number;
  acked: number;
  deliveries: number;
  e2eP50Ms: number;
  e2eP99Ms: number;
  errors: number;
  /** % of one core per role. */
  cpu: Record<string, number>;
  /** Machine CPU used by processes the bench does not know (other people's work on a shared box). */
  otherCpuPct?: number;
}

export interface PhaseResult {
  name: string;
  mode: 'max' | 'rate';
  targetSendsPerS?: number;
  windowS: number;
  sendsPerS: number;
  acceptedPerS: number;
  /** Pushes to recipients other than the sender. */
  deliveriesPerS: number;
  /** Pushes of a sender's own messages to its own device (the server copies every send to the sender's devices). */
  selfPushesPerS: number;
  skippedPerS: number;
  errors: Record<string, number>;
  ackMs: Percentiles;
  e2eMs: Percentiles;
  syncMs?: Percentiles;
  processes: ProcessSummary[];
  machineBusyPct: number;
  /** Machine CPU (% of one core) used by processes the bench neither started nor sampled. */
  otherCpuPct?: number;
  /** Sends still without a reply when the phase stopped (after waiting for them). */
  outstandingAtStop?: number;
  /** This phase against the raw echo ceiling. */
  ratio?: { deliveriesToEcho: number; p50ToEcho: number; p99ToEcho: number };
  /** CPU-µs per accepted send by role over the measured window (compare runs with and without --tls at one --rate). */
  cpuUsPerSend?: Record<string, number>;
  perSecond: PerSecond[];
}

export interface Ceiling {
  kind: 'echo' | 'echo-connect' | 'echo-idle';
  connections: number;
  frameBytes: number;
  /** echo: round trips/s; echo-connect: connections (+1 round trip) per s. */
  perS: number;
  rttMs: Percentiles;
  /** echo-idle: a plain Node TCP server's memory per idle socket. */
  rssPerConnBytes?: number;
  heapPerConnBytes?: number;
}

export interface IdleResult {
  connections: number;
  failed: number;
  closedDuringHold: Record<string, number>;
  holdS: number;
  /** Gateway processes: (after - before) / connections, after a full GC. */
  gatewayRssPerConnBytes: number;
  gatewayHeapPerConnBytes: number;
  gatewayExternalPerConnBytes: number;
  /** Router process (distributed): session table cost per connection. */
  routerRssPerConnBytes?: number;
  gatewayCpuPctWhileIdle: number;
  ratioToRawSocket?: number;
  processes: ProcessSummary[];
  /** --heap-snapshot: heap growth per connection by (type, constructor) in the first gateway. */
  heapPerConn?: Array<{ what: string; countPerConn: number; bytesPerConn: number }>;
}

export interface ConnectResultSummary {
  connections: number;
  failed: number;
  errors: Record<string, number>;
  perS: number;
  setupMs: Percentiles;
  ratioToEcho?: number;
  processes?: ProcessSummary[];
}

/** --tls: how the clients' connections were secured, to compare with a run without. */
export interface TlsInfo {
  /** ec | rsa (a certificate the bench made), or "deployment" (--target URL). */
  keyType: string;
  /** ECDSA P-256, RSA-2048, or the deployment's. */
  key: string;
  /** What the first connection negotiated. */
  protocol?: string;
  cipher?: string;
}

/** One phase of the handshake scenario: connect (+ TLS handshake) + Auth + close, in a loop. */
export interface HandshakePhase {
  /** plaintext, full (every TLS handshake a full one) or resumed (each lane offers its last session). */
  name: 'plaintext' | 'full' | 'resumed';
  windowS: number;
  /** Set-ups that reached AuthOk in the window, and per second. */
  setups: number;
  perS: number;
  /** Of the set-ups, TLS sessions the server resumed. */
  resumed: number;
  failed: number;
  errors: Record<string, number>;
  setupMs: Percentiles;
  /** CPU-µs per set-up by role (gateway or embedded, router, logic, loadgen, ...). */
  cpuUsPerSetup: Record<string, number>;
  /** Set-ups per second one core of gateway would do: 1e6 / gateway (or embedded) CPU-µs per set-up. */
  perGatewayCoreS: number | null;
  processes: ProcessSummary[];
  machineBusyPct: number;
}

export interface Goal {
  name: string;
  goal: string;
  value: number | null;
  unit: string;
  met: boolean | null;
  note?: string;
}

export interface ProfileSummary {
  process: string;
  totalMs: number;
  top: Array<{ fn: string; where: string; selfMs: number; selfPct: number }>;
}

export interface BenchResult {
  schema: typeof RESULT_SCHEMA;
  id: string;
  startedAt: string;
  scenario: string;
  label: string;
  target: { kind: string; noDb: boolean; description: string; notes: string[]; gateways: number; logics: number };
  options: Record<string, unknown>;
  machine: MachineInfo;
  /** What else ran: the box is shared, so read the figures with this in mind. */
  environment: {
    loadBefore: [number, number, number];
    loadAfter: [number, number, number];
    topBefore: TopProcess[];
    topAfter: TopProcess[];
  };
  ceiling?: Ceiling;
  setup?: ConnectResultSummary;
  phases: PhaseResult[];
  check?: LossSummary & { samples: string[]; syncFailures: number };
  idle?: IdleResult;
  connectStorm?: ConnectResultSummary;
  /** Absent: clients over plain TCP. */
  tls?: TlsInfo;
  handshake?: HandshakePhase[];
  profiles?: ProfileSummary[];
  goals: Goal[];
}

/**
 * Names the distributed store's design in run descriptions: im plan fits only runs of the current
 * one. Since 2026-12-07 12:30 UTC that includes the inbox row layout of the bench keyspace (a
 * keyspace created before schema version 9 keeps version 7's, storage/cassandra/rows.ts).
 */
export const STORE_DESIGN = 'owner log, inbox rows v9';

/** The store design a distributed run on Cassandra measured, from its keyspace's inbox row layout. */
export function storeDesign(inboxLayout: number | undefined): string {
  return inboxLayout === 9 ? STORE_DESIGN : `owner log, inbox rows v${inboxLayout ?? '?'}`;
}

export function resultId(startedAt: Date, scenario: string, target: string): string {
  const ts = startedAt.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${ts}-${scenario}-${target}`;
}

export function targetTag(kind: string, noDb: boolean): string {
  return kind === 'distributed' ? (noDb ? 'distributed-nodb' : 'distributed') : kind;
}

/** The target tag, plus "+tls-<key>" for a run whose clients used TLS. */
export function runTag(r: Pick<BenchResult, 'target' | 'tls'>): string {
  return targetTag(r.target.kind, r.target.noDb) + (r.tls ? `+tls-${r.tls.keyType}` : '');
}

/** The roles whose CPU a client connection's set-up and frames cost at the edge ('server': --pids, which should then name the gateways). */
export const GATEWAY_ROLES = ['gateway', 'embedded', 'server'];

/** CPU-µs per operation by role over a window in which `count` operations happened. */
export function cpuUsPer(processes: ProcessSummary[], count: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (count <= 0) return out;
  for (const p of processes) out[p.role] = (out[p.role] ?? 0) + p.cpuS;
  for (const k of Object.keys(out)) out[k] = Math.round((out[k] * 1e8) / count) / 100;
  return out;
}

/**
 * CPU-µs per operation by role and thread group (ProcessSummary.threadsCpuS), largest first. Left
 * out: roles without thread figures, and those whose main thread did nothing (not an event-loop
 * process: NATS and Cassandra run on their own threads, all 'other').
 */
export function threadUsPer(processes: ProcessSummary[], count: number): Array<[string, Array<[string, number]>]> {
  const byRole = new Map<string, Record<string, number>>();
  if (count <= 0) return [];
  for (const p of processes) {
    if (!p.threadsCpuS) continue;
    const acc = byRole.get(p.role) ?? {};
    for (const [k, v] of Object.entries(p.threadsCpuS)) acc[k] = (acc[k] ?? 0) + v;
    byRole.set(p.role, acc);
  }
  return [...byRole].filter(([, acc]) => (acc.main ?? 0) > 0).map(([role, acc]) => [role, Object.entries(acc)
    .map(([k, v]): [string, number] => [k, Math.round((v * 1e8) / count) / 100])
    .sort((a, b) => b[1] - a[1])]);
}

/**
 * Gateway (embedded: whole process) CPU-µs per accepted send in a phase, from its processes' CPU
 * seconds (so results older than cpuUsPerSend have it too).
 */
export function gatewayUsPerSend(p: PhaseResult): number | undefined {
  const accepted = p.acceptedPerS * p.windowS;
  const cpuS = p.processes.filter((x) => GATEWAY_ROLES.includes(x.role)).reduce((a, x) => a + x.cpuS, 0);
  return accepted > 0 && cpuS > 0 ? (cpuS * 1e6) / accepted : undefined;
}

function tlsLine(t: TlsInfo | undefined): string {
  if (!t) return 'Clients over plain TCP.';
  return `Clients over TLS: ${t.key} certificate${t.protocol ? `, ${t.protocol} ${t.cipher ?? ''}`.trimEnd() : ''}` +
    `${t.keyType === 'deployment' ? '' : '; the gateways took TLS only'}.`;
}

/** Reads every result in dir (newest first by id, which starts with the timestamp). */
export function readResults(dir: string): BenchResult[] {
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const out: BenchResult[] = [];
  for (const f of files) {
    try {
      const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as BenchResult;
      if (r.schema === RESULT_SCHEMA) out.push(r);
    } catch {
      // not a result file
    }
  }
  return out.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
}

const fmt = (v: number, digits = 0) => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export function renderMarkdown(r: BenchResult): string {
  const lines: string[] = [];
  lines.push(`# ${r.scenario} on ${r.target.description}${r.tls ? `, TLS (${r.tls.key})` : ''}`, '');
  lines.push(`Run \`${r.id}\`${r.label ? ` (${r.label})` : ''}, ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memTotalMb} MB, Node ${r.machine.node}. ${tlsLine(r.tls)}`);
  lines.push(`Load average before ${r.environment.loadBefore.join(' ')}, after ${r.environment.loadAfter.join(' ')}.`, '');
  if (r.ceiling) {
    const c = r.ceiling;
    if (c.kind === 'echo-idle') {
      lines.push(`Raw ceiling: a plain Node TCP server holding ${fmt(c.connections)} idle sockets uses ${fmt(c.rssPerConnBytes ?? 0)} B RSS / ${fmt(c.heapPerConnBytes ?? 0)} B heap per socket.`, '');
    } else {
      const what = c.kind === 'echo' ? 'round trips/s (one frame in flight per connection)' : 'connections/s (TCP connect + one round trip)';
      lines.push(`Raw ceiling (Node length-prefixed TCP echo, ${fmt(c.connections)} connections, ${c.frameBytes}-byte frames): ${fmt(c.perS)} ${what}, rtt p50 ${c.rttMs.p50} ms, p99 ${c.rttMs.p99} ms.`, '');
    }
  }
  if (r.phases.length) {
    lines.push('| phase | sends/s | accepted/s | delivered/s | ratio to echo | ack p50 / p99 ms | e2e p50 / p95 / p99 / max ms | errors | CPU % by role | other processes CPU % |');
    lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---|---:|');
    for (const p of r.phases) {
      const errs = Object.values(p.errors).reduce((a, b) => a + b, 0);
      const cpu = cpuByRole(p.processes).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
      lines.push(`| ${p.name} | ${fmt(p.sendsPerS)} | ${fmt(p.acceptedPerS)} | ${fmt(p.deliveriesPerS)} | ${p.ratio ? fmt(p.ratio.deliveriesToEcho, 3) : '—'} | ` +
        `${p.ackMs.p50} / ${p.ackMs.p99} | ${p.e2eMs.p50} / ${p.e2eMs.p95} / ${p.e2eMs.p99} / ${p.e2eMs.max} | ${errs} | ${cpu} | ${p.otherCpuPct ?? '—'} |`);
    }
    lines.push('');
    const costed = r.phases.filter((x) => x.cpuUsPerSend);
    for (const p of costed) {
      lines.push(`CPU per accepted send, ${p.name}: ${Object.entries(p.cpuUsPerSend!).map(([k, v]) => `${k} ${fmt(v, 1)} µs`).join(', ')}.`);
      const threads = threadUsPer(p.processes, p.acceptedPerS * p.windowS);
      if (threads.length) lines.push(`By thread, µs per accepted send, ${p.name}: ${threads.map(([role, t]) => `${role} ${t.map(([k, v]) => `${k} ${fmt(v, 1)}`).join(' / ')}`).join('; ')}.`);
    }
    if (costed.length) lines.push('');
  }
  if (r.handshake?.length) {
    lines.push('| phase | set-ups/s | resumed | failed | connect+auth p50 / p99 ms | CPU µs per set-up by role | set-ups/s per gateway core |');
    lines.push('|---|---:|---:|---:|---:|---|---:|');
    for (const h of r.handshake) {
      lines.push(`| ${h.name} | ${fmt(h.perS)} | ${fmt(h.resumed)} of ${fmt(h.setups)} | ${h.failed} | ${h.setupMs.p50} / ${h.setupMs.p99} | ` +
        `${Object.entries(h.cpuUsPerSetup).map(([k, v]) => `${k} ${fmt(v, 1)}`).join(', ')} | ${h.perGatewayCoreS === null ? '—' : fmt(h.perGatewayCoreS)} |`);
    }
    lines.push('', 'A set-up is TCP connect, the TLS handshake (when on), Auth → AuthOk, and close; per gateway core = 1e6 ÷ gateway (embedded: whole process) CPU-µs per set-up.', '');
  }
  if (r.check) {
    const c = r.check;
    lines.push(`Check: expected ${fmt(c.expected)} deliveries, delivered ${fmt(c.delivered)}; **lost ${c.lost}** (lost pushes ${c.lostPushes}, lost messages ${c.lostMessages}), ` +
      `**duplicated ${c.duplicated}**, unexpected ${c.unexpected}, sends with unknown outcome delivered ${c.unknownDelivered}.`, '');
  }
  if (r.setup) lines.push(`Connection setup: ${fmt(r.setup.connections)} in ${fmt(r.setup.perS)}/s, p50 ${r.setup.setupMs.p50} ms, p99 ${r.setup.setupMs.p99} ms, failed ${r.setup.failed}.`, '');
  if (r.connectStorm) {
    const s = r.connectStorm;
    lines.push(`Connect storm: ${fmt(s.connections)} connections at ${fmt(s.perS)}/s (${s.ratioToEcho !== undefined ? `${fmt(s.ratioToEcho, 3)} of raw TCP` : 'no ceiling'}), ` +
      `connect+auth p50 ${s.setupMs.p50} ms, p99 ${s.setupMs.p99} ms, max ${s.setupMs.max} ms; failed ${s.failed}.`, '');
  }
  if (r.idle) {
    const i = r.idle;
    lines.push(`Idle: ${fmt(i.connections)} authenticated connections held ${i.holdS} s; gateway ${fmt(i.gatewayRssPerConnBytes)} B RSS, ` +
      `${fmt(i.gatewayHeapPerConnBytes)} B heap, ${fmt(i.gatewayExternalPerConnBytes)} B external per connection` +
      (i.routerRssPerConnBytes !== undefined ? `; router ${fmt(i.routerRssPerConnBytes)} B RSS per connection` : '') +
      (i.ratioToRawSocket !== undefined ? `; ${fmt(i.ratioToRawSocket, 2)}× a raw Node socket` : '') +
      `; gateway CPU while idle ${i.gatewayCpuPctWhileIdle} %; closed during hold: ${JSON.stringify(i.closedDuringHold)}.`, '');
    lines.push(`Processes while holding: ${i.processes.map((p) => `${p.role} ${p.cpuPct} % CPU, ${p.rssMb} MB`).join('; ')}.`, '');
    if (i.heapPerConn?.length) {
      lines.push('Heap growth per connection in the first gateway (V8 heap snapshots; writing them inflates RSS, so read RSS from a run without --heap-snapshot):', '',
        '| what | objects per conn | bytes per conn |', '|---|---:|---:|');
      for (const h of i.heapPerConn) lines.push(`| \`${h.what}\` | ${h.countPerConn} | ${h.bytesPerConn} |`);
      lines.push('');
    }
  }
  if (r.goals.length) {
    lines.push('| goal | target | measured | met |', '|---|---|---:|---|');
    for (const g of r.goals) lines.push(`| ${g.name} | ${g.goal} | ${g.value === null ? '—' : `${fmt(g.value, g.unit === 'ms' ? 2 : 0)} ${g.unit}`} | ${g.met === null ? 'n/a' : g.met ? 'yes' : '**no**'}${g.note ? ` (${g.note})` : ''} |`);
    lines.push('');
  }
  if (r.profiles?.length) {
    for (const p of r.profiles) {
      lines.push(`CPU profile of ${p.process} (${fmt(p.totalMs)} ms sampled), top self time:`, '');
      for (const f of p.top.slice(0, 12)) lines.push(`- ${f.selfPct.toFixed(1)} % ${f.fn} (${f.where})`);
      lines.push('');
    }
  }
  lines.push('What else ran (top CPU before the run):', '');
  for (const t of r.environment.topBefore.slice(0, 5)) lines.push(`- ${t.cpuPct} % pid ${t.pid}: ${t.cmd}`);
  lines.push('', ...r.target.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}

export function cpuByRole(processes: ProcessSummary[]): Array<[string, number]> {
  const m = new Map<string, number>();
  for (const p of processes) m.set(p.role, (m.get(p.role) ?? 0) + p.cpuPct);
  return [...m].sort((a, b) => b[1] - a[1]);
}

export function writeResult(dir: string, r: BenchResult, svg?: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const files = [path.join(dir, `${r.id}.json`), path.join(dir, `${r.id}.md`)];
  fs.writeFileSync(files[0], JSON.stringify(r, null, 1) + '\n');
  fs.writeFileSync(files[1], renderMarkdown(r));
  if (svg) {
    files.push(path.join(dir, `${r.id}.svg`));
    fs.writeFileSync(files[2], svg);
  }
  return files;
}
