/**
 * The chaos bench's table (one line per fault) and its section in RELIABILITY.md: date, command,
 * load average, the table, and a "why" line for every non-zero cell (the fault's known cause
 * where there is one, and the first findings as evidence). Pure except writeReliability.
 */
import * as fs from 'node:fs';
import type { FaultRow, ProblemKind } from './chaos-check';

/** The cells that must be zero, with the problem kind that explains each. */
const CELLS: ReadonlyArray<{ cell: keyof FaultRow & string; label: string; kind: ProblemKind }> = [
  { cell: 'failed', label: 'failed', kind: 'failed' },
  { cell: 'lost', label: 'lost', kind: 'lost' },
  { cell: 'duplicated', label: 'duplicated', kind: 'duplicated' },
  { cell: 'appMissed', label: 'app-missed', kind: 'app-missed' },
  { cell: 'survivorsDropped', label: 'survivors dropped', kind: 'dropped' },
];

/** Known causes per fault and cell, written next to the findings that show them. */
export type KnownCauses = Readonly<Record<string, Partial<Record<ProblemKind, string>>>>;

export interface ChaosReport {
  dateIso: string;
  command: string;
  /** os.loadavg() at the start and the end of the run. */
  loadAvgStart: readonly number[];
  loadAvgEnd: readonly number[];
  setup: string;
  rows: readonly FaultRow[];
  unexpected: number;
  unexpectedExamples?: string[];
  durationS: number;
}

const MARK_START = '<!-- chaos:table:start -->';
const MARK_END = '<!-- chaos:table:end -->';
/** Findings quoted per non-zero cell. */
const EVIDENCE_PER_CELL = 2;

export function recoveryText(row: FaultRow, isBaseline: boolean): string {
  if (isBaseline) return '—';
  return row.recoveryMs === undefined ? 'not recovered' : `${(row.recoveryMs / 1000).toFixed(1)} s`;
}

export function renderTable(rows: readonly FaultRow[]): string {
  const head = '| fault | sends acked | failed | lost | duplicated | app-missed | survivors dropped | recovery |';
  const lines = [head, '|---|--:|--:|--:|--:|--:|--:|--:|'];
  rows.forEach((r, i) => {
    lines.push(`| ${r.fault} | ${r.acked} | ${r.failed} | ${r.lost} | ${r.duplicated} | ${r.appMissed} | ${r.survivorsDropped} | ${recoveryText(r, i === 0)} |`);
  });
  return lines.join('\n');
}

/** One line per non-zero cell (and per fault that did not recover). */
export function whyLines(rows: readonly FaultRow[], causes: KnownCauses): string[] {
  const out: string[] = [];
  rows.forEach((r, i) => {
    for (const { cell, label, kind } of CELLS) {
      const n = r[cell] as number;
      if (n === 0) continue;
      const cause = causes[r.fault]?.[kind] ?? 'cause not analysed yet';
      const evidence = r.problems.filter((p) => p.kind === kind).slice(0, EVIDENCE_PER_CELL).map((p) => p.detail);
      out.push(`- **${r.fault}, ${label} ${n}**: ${cause}. Seen: ${evidence.join('; ')}`);
    }
    if (i > 0 && r.recoveryMs === undefined) out.push(`- **${r.fault}, not recovered**: the system did not serve again within the deadline.`);
  });
  return out;
}

export function renderSection(rep: ChaosReport, causes: KnownCauses): string {
  const la = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(' ');
  const why = whyLines(rep.rows, causes);
  return [
    MARK_START,
    `Run ${rep.dateIso}, \`${rep.command}\`, ${rep.durationS.toFixed(0)} s. ${rep.setup}`,
    `Load average (1/5/15 min) ${la(rep.loadAvgStart)} at the start, ${la(rep.loadAvgEnd)} at the end (2 cores, shared with other sessions).`,
    '',
    renderTable(rep.rows),
    '',
    why.length > 0 ? 'Why each non-zero cell:' : 'Every cell that must be zero is zero.',
    ...why,
    ...(rep.unexpected > 0 ? [`- ${rep.unexpected} inbox entries or app events matched no send of this run, e.g. ${(rep.unexpectedExamples ?? []).join('; ')}.`] : []),
    MARK_END,
  ].join('\n');
}

/** Replaces the section between the markers, or appends it (creating the file from `preamble`). */
export function writeReliability(file: string, section: string, preamble: string): void {
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : preamble;
  const a = old.indexOf(MARK_START);
  const b = old.indexOf(MARK_END);
  const next = a >= 0 && b > a
    ? old.slice(0, a) + section + old.slice(b + MARK_END.length)
    : `${old.trimEnd()}\n\n${section}\n`;
  fs.writeFileSync(file, next);
}
