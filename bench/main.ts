/**
 * `npm run bench -- <scenario> [options]` (see bench/options.ts for the options), plus
 * `report` (BENCHMARKS.md tables from bench/results) and `profile <file>` (top self time of a
 * V8 CPU profile). Exit codes: 0 done, 1 the run failed, 2 usage, 3 the run lost or duplicated
 * deliveries.
 */
import * as path from 'node:path';
import { DEFAULT_RESULTS_DIR, parseBenchOptions, REPO_ROOT, UsageError, USAGE } from './options';
import { renderProfile, summarizeProfileFile } from './profile';
import { writeReport } from './report';
import { costDrift, costTrend } from './cost-trend';
import { renderMarkdown, writeResult } from './results';
import { runBench } from './run';
import { storeCost } from './store-cost';
import { sweepSvg } from './svg';

export async function benchMain(argv: readonly string[]): Promise<number> {
  const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stderr.write(USAGE);
    return 2;
  }
  if (cmd === 'report') {
    const file = path.join(REPO_ROOT, 'BENCHMARKS.md');
    if (!writeReport(file, DEFAULT_RESULTS_DIR)) {
      process.stderr.write(`bench: ${file} has no <!-- bench:table:start --> / <!-- bench:table:end --> markers\n`);
      return 1;
    }
    out(`bench: rewrote the tables in ${file}`);
    return 0;
  }
  if (cmd === 'profile') {
    const top = rest.indexOf('--top') >= 0 ? Number(rest[rest.indexOf('--top') + 1]) : 20;
    const file = rest.find((a) => a.endsWith('.cpuprofile'));
    if (!file) {
      process.stderr.write('usage: npm run bench -- profile <file.cpuprofile> [--top N]\n');
      return 2;
    }
    out(renderProfile(summarizeProfileFile(file, top)));
    return 0;
  }
  if (cmd === 'store-cost') {
    try {
      out(JSON.stringify(await storeCost(rest, process.env, out)));
    } catch (err) {
      if (err instanceof UsageError) {
        process.stderr.write(`bench: ${err.message}\n`);
        return 2;
      }
      throw err;
    }
    return 0;
  }
  let options;
  try {
    options = parseBenchOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  const result = await runBench(options, { log: out, env: process.env });
  out('');
  out(renderMarkdown(result));
  for (const p of result.phases) {
    // Long phases (issue 10's flat-cost run: --rate <half the max> --duration 10m): CPU per send by minute.
    if (p.perSecond.length < 120) continue;
    const trend = costTrend(p.perSecond);
    out(`${p.name}: server CPU per accepted send by minute: ${trend.map((w) => `${w.cpuUsPerSend} µs`).join(', ')}; ` +
      `last/first ${costDrift(trend)}`);
  }
  if (options.write) {
    const rate = result.phases.filter((p) => p.perSecond.length > 0);
    const svg = rate.length > 1 ? sweepSvg(`${result.scenario}, ${result.target.description}`, rate.map((p) => ({
      label: p.name, deliveriesPerS: p.deliveriesPerS, p50Ms: p.e2eMs.p50, p99Ms: p.e2eMs.p99,
    }))) : undefined;
    for (const f of writeResult(options.outDir, result, svg)) out(`wrote ${path.relative(process.cwd(), f)}`);
  } else {
    out(JSON.stringify(result));
  }
  if (result.check && (result.check.lost > 0 || result.check.duplicated > 0)) {
    process.stderr.write(`bench: the run LOST ${result.check.lost} and DUPLICATED ${result.check.duplicated} deliveries\n`);
    return 3;
  }
  return 0;
}

if (require.main === module) {
  benchMain(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
