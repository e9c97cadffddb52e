/**
 * `npm run bench -- <scenario> [options]` (see bench/options.ts for the options), plus
 * `report` (BENCHMARKS.md tables from bench/results) and `profile <file>` (top self time of a
 * V8 CPU profile), `chaos` (kill -9 under load, bench/chaos.ts). Exit codes: 0 done, 1 the run
 * failed, 2 usage, 3 the run lost or duplicated deliveries (chaos: or dropped a survivor).
 */
import * as path from 'node:path';
import { chaosMain } from './chaos';
import { DEFAULT_RESULTS_DIR, parseBenchOptions, parseChaosOptions, REPO_ROOT, UsageError, USAGE } from './options';
import { renderProfile, summarizeProfileFile } from './profile';
import { writeReport } from './report';
import { costDrift, costTrend } from './cost-trend';
import { renderMarkdown, writeResult } from './results';
import { runBench } from './run';
import { storeCost } from './store-cost';
import { codecBench, renderCodecBench } from './codec-bench';
import { sweepSvg } from './svg';

/** Runs an option parser; a UsageError is printed with the usage text and yields undefined. */
function parseOrUsage<T>(parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
    return undefined;
  }
}

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
  if (cmd === 'chaos') {
    const chaos = parseOrUsage(() => parseChaosOptions(rest));
    if (!chaos) return 2;
    return chaosMain({
      ...chaos, file: path.join(REPO_ROOT, 'RELIABILITY.md'), command: `npm run bench -- chaos ${rest.join(' ')}`,
      repoRoot: REPO_ROOT, log: out,
    });
  }
  if (cmd === 'store-cost') return withUsage(async () => out(JSON.stringify(await storeCost(rest, process.env, out))));
  if (cmd === 'codec') return withUsage(async () => out(renderCodecBench(codecBench(rest))));
  const options = parseOrUsage(() => parseBenchOptions(argv));
  if (!options) return 2;
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

/** Runs a sub-command whose only expected failure is a bad option: exit 2 with the message. */
async function withUsage(run: () => Promise<unknown>): Promise<number> {
  try {
    await run();
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

if (require.main === module) {
  benchMain(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}

