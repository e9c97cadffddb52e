/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, busiest first.
 * Idle time is left out of the percentages, so they say where the CPU went, not where it waited.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProfileSummary } from './results';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function summarizeProfile(profile: CpuProfile, processName: string, top = 15): ProfileSummary {
  const byNode = new Map<number, CpuProfileNode>();
  for (const n of profile.nodes) byNode.set(n.id, n);
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byNode.get(profile.samples[i]);
    // A sample's time is the delta to the next sample.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (!node || dt <= 0) continue;
    const fn = node.callFrame.functionName || '(anonymous)';
    if (fn === '(idle)') continue;
    const file = node.callFrame.url ? shortUrl(node.callFrame.url) : '';
    const key = `${fn}\u0000${file ? `${file}:${node.callFrame.lineNumber + 1}` : 'native'}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
    totalUs += dt;
  }
  const rows = [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, top).map(([key, us]) => {
    const [fn, where] = key.split('\u0000');
    return { fn, where, selfMs: Math.round(us / 100) / 10, selfPct: totalUs ? Math.round((1000 * us) / totalUs) / 10 : 0 };
  });
  return { process: processName, totalMs: Math.round(totalUs / 1000), top: rows };
}

/** node_modules/<pkg>/... or the path inside this repo, not the absolute path. */
function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const dist = u.lastIndexOf('/dist/');
  if (dist >= 0) return u.slice(dist + 1);
  return u.startsWith('node:') ? u : path.basename(u);
}

export function summarizeProfileFile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  return summarizeProfile(profile, path.basename(file, '.cpuprofile'), top);
}

/** Every .cpuprofile in dir, summarised. */
export function summarizeProfileDir(dir: string, top = 15): ProfileSummary[] {
  let files: string[] = [];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort();
  } catch {
    return [];
  }
  return files.map((f) => summarizeProfileFile(path.join(dir, f), top));
}

export function renderProfile(p: ProfileSummary): string {
  const lines = [`${p.process}: ${p.totalMs} ms of CPU sampled (idle excluded)`, '  self%   self ms  function (where)'];
  for (const r of p.top) lines.push(`  ${r.selfPct.toFixed(1).padStart(5)}  ${r.selfMs.toFixed(1).padStart(8)}  ${r.fn} (${r.where})`);
  return lines.join('\n') + '\n';
}
