/**
 * `npm run fuzz -- --frames 1000000 [--concurrency N] [--seed N] [--slowloris N] [--slowloris-bytes N]`: the long fuzz
 * run against a real embedded gateway process (test/fuzz/run.ts). Prints frames sent,
 * connections, replies by code, RSS before/peak/after and the bystanders' result.
 * Exit codes: 0 clean, 1 a finding (exit, hang, unsettled RSS, lost message, failed cut), 2 usage.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_FUZZ_OPTIONS, formatReport, runFuzz } from './run';
import { randomSeed } from './prng';

const USAGE = 'usage: npm run fuzz -- [--frames N] [--concurrency N] [--seed N] [--slowloris N] [--slowloris-bytes N] [--max-frames-per-conn N]\n';

function positiveInt(name: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  let options;
  try {
    const { values } = parseArgs({
      args: argv, strict: true,
      options: {
        frames: { type: 'string' }, concurrency: { type: 'string' }, seed: { type: 'string' },
        slowloris: { type: 'string' }, 'slowloris-bytes': { type: 'string' }, 'max-frames-per-conn': { type: 'string' }, help: { type: 'boolean' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const d = DEFAULT_FUZZ_OPTIONS;
    options = {
      ...d,
      frames: positiveInt('frames', values.frames, d.frames),
      concurrency: positiveInt('concurrency', values.concurrency, d.concurrency),
      seed: positiveInt('seed', values.seed, randomSeed(), 0),
      slowloris: positiveInt('slowloris', values.slowloris, d.slowloris, 0),
      slowlorisBytes: positiveInt('slowloris-bytes', values['slowloris-bytes'], d.slowlorisBytes, 0),
      maxFramesPerConn: positiveInt('max-frames-per-conn', values['max-frames-per-conn'], d.maxFramesPerConn),
      log: (line: string) => process.stdout.write(`${line}\n`),
    };
  } catch (err) {
    process.stderr.write(`fuzz: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const report = await runFuzz(options);
  for (const line of formatReport(report)) process.stdout.write(`${line}\n`);
  const clean = !report.exited && report.hangs === 0 && report.rss.settled && report.splitFailures.length === 0 && report.bystanders.problems.length === 0;
  return clean ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  process.stderr.write(`fuzz: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
