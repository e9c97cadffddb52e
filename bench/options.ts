/**
 * `npm run bench -- <scenario> [options]`: the options, their defaults per scenario, and the
 * usage text. A pure function of argv and env; a bad value is a UsageError naming the option.
 */
import * as path from 'node:path';
import { parseDurationMs } from '../common/config';
import { parseCommandLine, UsageError, type ParsedArgs } from '../common/args';

/** The Cassandra store's default writeBehindMs: a warm-up at least this long puts a run's deferred table writes inside its window. */
export const STEADY_WARMUP_MS = 10_000;
/** The default warm-up of a distributed run on Cassandra: the write-behind and its first compactions under way. */
export const CASSANDRA_WARMUP_MS = 15_000;

/**
 * Key types of the bench's TLS certificates (--tls-key); bench/tls-pki.ts makes them. Defined
 * here, not there: `im plan` loads this module, and tls-pki loads test code the image leaves out.
 */
export const TLS_KEY_TYPES = ['ec', 'rsa'] as const;
export type TlsKeyType = (typeof TLS_KEY_TYPES)[number];

export const SCENARIOS = ['one-to-one', 'group', 'connect-storm', 'idle', 'mixed', 'handshake'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export { UsageError };

export interface BenchOptions {
  scenario: Scenario;
  target: 'embedded' | 'distributed' | 'url';
  routerUrl?: string;
  noDb: boolean;
  durationMs: number;
  warmupMs: number;
  users: number;
  /** Total sends/s over all users, or 'max' (closed loop, `window` sends in flight per user). */
  rate: number | 'max';
  window: number;
  contentBytes: number;
  workers: number;
  gateways: number;
  logics: number;
  groupSizes: number[];
  /** Mixed scenario: shares of users in pairs and in groups (the rest idle). */
  peerShare: number;
  groupShare: number;
  /** One SYNC per this many sends (mixed: 20, others 0). */
  syncEvery: number;
  /** After a max phase, rate phases at these percentages of the max accepted sends/s. */
  sweep: number[] | undefined;
  concurrency: number;
  heartbeatIntervalMs: number;
  /** Longest wait for stragglers after the load stops. */
  drainMs: number;
  ceiling: boolean;
  cpuProf: boolean;
  /** idle: heap snapshots of the first gateway before and after, diffed per connection. */
  heapSnapshot: boolean;
  outDir: string;
  quiet: boolean;
  write: boolean;
  /** --target URL: server pids to sample (CPU, RSS). */
  pids: number[];
  keyspace: string;
  label: string;
  /** Clients over TLS: the bench's gateways get a throwaway certificate and TLS only. */
  tls: boolean;
  tlsKey: TlsKeyType;
  /** --target URL with --tls: PEM file of the CA to trust (default: the system's roots). */
  tlsCa?: string;
}

export const USAGE = `usage: npm run bench -- <scenario> [options]
       npm run bench -- report            rewrite the table in BENCHMARKS.md from bench/results
       npm run bench -- profile <file.cpuprofile> [--top N]
       npm run bench -- store-cost [--store sqlite|cassandra] [--recipients 2] [--users 1000] [--messages 20000; 100000 on cassandra] [--batch 100]
                          [--warmup-messages N] [--max-cached-keys N] [--max-key-heads N (cassandra)]   --users 50000 --warmup-messages 50000: sparse traffic
                          [--restart handoff|cold (cassandra)]   a clean stop after the warm-up, another store counts: heads handed off, or deleted
                          [--rate max|half|N --duration 60 --interval 60]   paced: cost per interval as the database grows
       npm run bench -- chaos --target distributed [--users 40] [--rate 100] [--no-write]
                          kill -9 each component in turn under load; exactly-once check; RELIABILITY.md
       npm run bench -- codec [--rounds 9] [--round-ms 100]   ns per protocol encode/decode (best of rounds)

scenarios:
  one-to-one      N users in fixed pairs, each sends to its peer
  group           N users in groups of mixed sizes (--group-sizes), each sends to its group
  connect-storm   N connections set up (TCP + Auth) as fast as --concurrency allows
  idle            hold N authenticated connections with heartbeats; memory per connection
  mixed           pairs + groups + idle users, with a SYNC every --sync-every sends
  handshake       connect + Auth + close in a loop for --duration, --concurrency at once: set-ups/s and
                  server CPU per set-up; with --tls a phase of full TLS handshakes, then one resuming sessions

options:
  --target embedded|distributed|<router url>   system under test (default embedded)
  --no-db             distributed with logic on SQLite in tmpfs instead of Cassandra
  --duration 10s      measured time per phase (bare numbers are seconds)
  --warmup 1s         excluded from the figures at the start of each phase (distributed on
                      Cassandra: 15s, past the store's 10 s write-behind, so the window holds it)
  --users N           users = connections (default per scenario)
  --rate max|N        total sends/s (default max: closed loop, --window sends in flight per user)
  --window N          sends in flight per user (default 1 for max, 32 as the cap for a rate)
  --size BYTES        message content size (default 100)
  --sweep [25,50,75,100]  after a max phase, rate phases at these % of the max (chart: SVG)
  --group-sizes 100,50,20,10,5   group sizes used in turn (owner included; 2..100)
  --workers N         load-generator processes (default 1; idle: one per 15000 connections)
  --gateways N --logics N   distributed: processes per layer (default 1; idle: one gateway per 15000)
  --concurrency N     connection attempts in flight (default 200)
  --heartbeat 30s     heartbeat interval of the servers the bench starts
  --drain 10s         longest wait for straggling pushes after the load stops
  --sync-every N      one SYNC per N sends (mixed default 20)
  --no-ceiling        skip the raw TCP echo ceiling
  --cpu-prof          V8 CPU profile of every server process; top self-time functions in the result
  --heap-snapshot     idle: heap snapshots of the first gateway before/after, growth per connection by type
  --pids P1,P2        --target URL: server pids to sample for CPU and RSS
  --keyspace K        Cassandra keyspace (default im_bench)
  --out DIR           results directory (default bench/results)
  --no-write          print the result, write no files (tests)
  --quiet             no per-second progress lines
  --label TEXT        free text stored with the result
  --tls               clients over TLS: the gateways the bench starts get a throwaway CA + certificate
                      and a TLS listener only (IM_GATEWAY_PLAINTEXT=false); --target URL: its tlsAddrs
  --tls-key ec|rsa    the certificate's key: ECDSA P-256 (default) or RSA-2048
  --tls-ca FILE       --target URL --tls: PEM CA to trust (default the system's roots)
env: IM_AUTH_SECRET (--target URL), IM_NATS_URL, IM_CASSANDRA_CONTACT_POINTS.
     A running NATS at IM_NATS_URL: its IM_NATS_USER/IM_NATS_PASSWORD, IM_NATS_NKEY_SEED_FILE and
     IM_NATS_TLS_CA go to every service. None running: a private nats-server with per-role credentials.
`;

const DEFAULT_USERS: Record<Scenario, number> = {
  'one-to-one': 1000, group: 1000, 'connect-storm': 5000, idle: 10_000, mixed: 2000, handshake: 1000,
};

/** bench/results in the repository (this file runs from dist/bench/). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const DEFAULT_RESULTS_DIR = path.join(REPO_ROOT, 'bench', 'results');

/** Sockets per process kept well under this machine's ~20k open-file limit. */
export const MAX_SOCKETS_PER_PROCESS = 15_000;

const BOOLEAN_FLAGS = new Set(['no-db', 'no-ceiling', 'cpu-prof', 'heap-snapshot', 'quiet', 'no-write', 'sweep', 'tls']);
const VALUE_FLAGS = new Set([
  'target', 'duration', 'warmup', 'users', 'rate', 'window', 'size', 'workers', 'gateways', 'logics',
  'group-sizes', 'concurrency', 'heartbeat', 'drain', 'sync-every', 'pids', 'keyspace', 'out', 'label',
  'peer-share', 'group-share', 'tls-key', 'tls-ca',
]);

/** Parses `--name value`, `--name=value` and the boolean flags; --sweep takes an optional list. */
export function parseFlags(argv: readonly string[], valueFlags: ReadonlySet<string> = VALUE_FLAGS): ParsedArgs {
  return parseCommandLine(argv, {
    values: [...valueFlags].filter((name) => !BOOLEAN_FLAGS.has(name)),
    optional: { names: BOOLEAN_FLAGS, takesNext: (name, next) => name === 'sweep' && /^[\d,]+$/.test(next) },
  });
}

function int(flags: Map<string, string>, name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = flags.get(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}, got "${v}"`);
  return n;
}

function share(flags: Map<string, string>, name: string, def: number): number {
  const v = flags.get(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--${name} must be a number in 0..1, got "${v}"`);
  return n;
}

function duration(flags: Map<string, string>, name: string, def: number): number {
  const v = flags.get(name);
  if (v === undefined) return def;
  const ms = /^\d+(\.\d+)?$/.test(v) ? Number(v) * 1000 : parseDurationMs(v);
  if (ms === undefined || !Number.isFinite(ms)) throw new UsageError(`--${name} must be a duration like 10s or 500ms, got "${v}"`);
  return ms;
}

function intList(v: string, name: string, min: number, max: number): number[] {
  const out = v.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < min || n > max)) {
    throw new UsageError(`--${name} must be a comma-separated list of integers in ${min}..${max}, got "${v}"`);
  }
  return out;
}

export function parseBenchOptions(argv: readonly string[], cwd = process.cwd()): BenchOptions {
  const { positionals, flags } = parseFlags(argv);
  if (positionals.length !== 1) throw new UsageError('give exactly one scenario');
  const scenario = positionals[0] as Scenario;
  if (!SCENARIOS.includes(scenario)) throw new UsageError(`unknown scenario "${positionals[0]}" (one of ${SCENARIOS.join(', ')})`);
  const bool = (name: string) => flags.has(name) && flags.get(name) !== 'false';

  const t = flags.get('target') ?? 'embedded';
  let target: BenchOptions['target'];
  let routerUrl: string | undefined;
  if (t === 'embedded' || t === 'distributed') target = t;
  else if (/^https?:\/\/./.test(t)) {
    target = 'url';
    routerUrl = t;
  } else throw new UsageError(`--target must be embedded, distributed or an http(s) route API URL, got "${t}"`);
  const noDb = bool('no-db');
  if (noDb && target !== 'distributed') throw new UsageError('--no-db applies to --target distributed only');
  // The SQLite store takes one writing process (storage/sqlite/lock.ts).
  if (noDb && int(flags, 'logics', 1, 1, 16) > 1) throw new UsageError('--no-db runs logic on SQLite, which takes one logic process: drop --logics');

  const users = int(flags, 'users', DEFAULT_USERS[scenario], scenario === 'one-to-one' ? 2 : 1);
  const perProcess = Math.ceil(users / MAX_SOCKETS_PER_PROCESS);
  const rateFlag = flags.get('rate') ?? 'max';
  let rate: number | 'max';
  if (rateFlag === 'max') rate = 'max';
  else {
    rate = Number(rateFlag);
    if (!Number.isFinite(rate) || rate <= 0) throw new UsageError(`--rate must be "max" or a positive number, got "${rateFlag}"`);
  }
  const sweepFlag = flags.get('sweep');
  const sweep = sweepFlag === undefined || sweepFlag === 'false' ? undefined
    : sweepFlag === 'true' ? [25, 50, 75, 100] : intList(sweepFlag, 'sweep', 1, 1000);
  if (sweep && rate !== 'max') throw new UsageError('--sweep starts from a max phase: leave --rate at max');
  if (sweep && (scenario === 'idle' || scenario === 'connect-storm' || scenario === 'handshake')) throw new UsageError(`--sweep does not apply to ${scenario}`);

  const workers = int(flags, 'workers', scenario === 'idle' ? perProcess : 1, 1, 64);
  if (Math.ceil(users / workers) > MAX_SOCKETS_PER_PROCESS) {
    throw new UsageError(`${users} users over ${workers} workers is more than ${MAX_SOCKETS_PER_PROCESS} sockets per process; add --workers`);
  }
  const gateways = int(flags, 'gateways', scenario === 'idle' ? perProcess : 1, 1, 64);
  // connect-storm and handshake close each connection once it is set up.
  const holds = scenario !== 'connect-storm' && scenario !== 'handshake';
  if (target === 'embedded' && users > MAX_SOCKETS_PER_PROCESS && holds) {
    throw new UsageError(`embedded mode is one process (at most ~${MAX_SOCKETS_PER_PROCESS} connections here); use --target distributed --gateways N`);
  }
  if (target === 'distributed' && Math.ceil(users / gateways) > MAX_SOCKETS_PER_PROCESS && holds) {
    throw new UsageError(`more than ${MAX_SOCKETS_PER_PROCESS} connections per gateway: add --gateways`);
  }

  const tls = bool('tls');
  const tlsKey = (flags.get('tls-key') ?? 'ec') as TlsKeyType;
  if (!TLS_KEY_TYPES.includes(tlsKey)) throw new UsageError(`--tls-key must be ${TLS_KEY_TYPES.join(' or ')}, got "${tlsKey}"`);
  for (const name of ['tls-key', 'tls-ca']) if (flags.has(name) && !tls) throw new UsageError(`--${name} needs --tls`);
  if (flags.has('tls-key') && target === 'url') throw new UsageError('--tls-key applies to the servers the bench starts; --target URL uses the deployment\'s certificate');
  if (flags.has('tls-ca') && target !== 'url') throw new UsageError('--tls-ca applies to --target URL only (the bench makes its own CA for the servers it starts)');

  const pidsFlag = flags.get('pids');
  return {
    scenario, target, routerUrl, noDb,
    durationMs: duration(flags, 'duration', 10_000),
    // On Cassandra a run's rows reach their tables (and compaction) writeBehindMs after they are
    // logged: a window that starts with the store leaves that work out (BENCHMARKS.md, "Steady state").
    warmupMs: duration(flags, 'warmup', target === 'distributed' && !noDb ? CASSANDRA_WARMUP_MS : 1000),
    users, rate,
    window: int(flags, 'window', rate === 'max' ? 1 : 32, 1, 1000),
    contentBytes: int(flags, 'size', 100, 9, 16_384),
    workers, gateways,
    logics: int(flags, 'logics', 1, 1, 16),
    groupSizes: intList(flags.get('group-sizes') ?? '100,50,20,10,5', 'group-sizes', 2, 100),
    peerShare: share(flags, 'peer-share', scenario === 'mixed' ? 0.5 : scenario === 'one-to-one' ? 1 : 0),
    groupShare: share(flags, 'group-share', scenario === 'mixed' ? 0.3 : scenario === 'group' ? 1 : 0),
    syncEvery: int(flags, 'sync-every', scenario === 'mixed' ? 20 : 0, 0),
    sweep,
    concurrency: int(flags, 'concurrency', 200, 1, 10_000),
    heartbeatIntervalMs: duration(flags, 'heartbeat', 30_000),
    drainMs: duration(flags, 'drain', 10_000),
    ceiling: !bool('no-ceiling'),
    cpuProf: bool('cpu-prof'),
    heapSnapshot: bool('heap-snapshot'),
    outDir: flags.has('out') ? path.resolve(cwd, flags.get('out')!) : DEFAULT_RESULTS_DIR,
    quiet: bool('quiet'),
    write: !bool('no-write'),
    pids: pidsFlag ? intList(pidsFlag, 'pids', 1, 2 ** 31) : [],
    keyspace: flags.get('keyspace') ?? 'im_bench',
    label: flags.get('label') ?? '',
    tls, tlsKey,
    tlsCa: flags.has('tls-ca') ? path.resolve(cwd, flags.get('tls-ca')!) : undefined,
  };
}

export interface ChaosCliOptions {
  users: number;
  /** Total sends/s over all users. */
  ratePerS: number;
  write: boolean;
}

const CHAOS_FLAGS = new Set(['target', 'users', 'rate', 'no-write']);

/** `chaos --target distributed [--users 40] [--rate 100] [--no-write]` (argv after "chaos"). */
export function parseChaosOptions(argv: readonly string[]): ChaosCliOptions {
  const { positionals, flags } = parseFlags(argv, CHAOS_FLAGS);
  if (positionals.length > 0) throw new UsageError(`chaos takes no positional arguments, got "${positionals[0]}"`);
  for (const name of flags.keys()) if (!CHAOS_FLAGS.has(name)) throw new UsageError(`option --${name} does not apply to chaos`);
  if (flags.get('target') !== 'distributed') throw new UsageError('chaos needs --target distributed (it kills and restarts the services it starts)');
  const rate = Number(flags.get('rate') ?? 100);
  if (!Number.isFinite(rate) || rate <= 0 || rate > 10_000) throw new UsageError(`--rate must be a number of sends/s in (0, 10000], got "${flags.get('rate')}"`);
  return {
    // At least two groups' worth of users, so that pairs and groups both exist.
    users: int(flags, 'users', 40, 20, 2000),
    ratePerS: rate,
    write: !(flags.has('no-write') && flags.get('no-write') !== 'false'),
  };
}
