/**
 * `npm run bench -- store-cost`: what the store alone costs per message, in this process, with
 * no network in between — the floor under the send path. Appends messages with `--recipients`
 * inbox writes each (2 = a 1:1 message: sender and peer; 100 = a full group) and reports CPU-µs
 * per message and per recipient: this process's CPU, plus the Cassandra server's when it runs on
 * this box. It also reports the longest event-loop block seen (perf_hooks), and for SQLite the
 * B-tree entries written per message, a count that does not depend on the machine's load.
 *
 * Closed loop by default: `--messages` messages, `--batch` in flight at a time. With `--rate N`
 * (appends/s) or `--rate half` (half of a 5 s closed-loop maximum measured first) it runs open
 * loop for `--duration` and reports each `--interval` on its own, so cost that grows with the
 * database shows up as a rising line (issue 10: the last minute within 15 % of the first).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client } from 'cassandra-driver';
import { newId } from '../common/ids';
import { openStore } from '../storage/open';
import { SqliteStore, type AppendStats } from '../storage/sqlite/store';
import type { CassandraStore } from '../storage/cassandra/store';
import { DEFAULT_MAX_CACHED_KEYS, DEFAULT_MAX_KEY_HEADS } from '../storage/cassandra/heads';
import type { Store } from '../storage/store';
import { LoopWatch } from './loop-watch';
import { parseFlags, UsageError } from './options';
import { pidListeningOn, round2, sampleProc } from './proc-stats';
import { setTimeout as sleep } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

export interface StoreCostInterval {
  /** End of the interval, seconds since the paced run started. */
  atS: number;
  messages: number;
  /** Appends due that were not made because maxInFlight were outstanding (the store fell behind). */
  skipped: number;
  cpuUsPerMessage: number;
  eventLoopMaxMs: number;
  /** SQLite: WAL pages written per append (counted by the checkpoints, so it lags by up to one). */
  walPagesPerMessage?: number;
}

export interface StoreCostResult {
  store: string;
  recipients: number;
  /** Distinct users the messages go between (and half as many conversations): how many messages each inbox gets. */
  users: number;
  /** Appended first and not counted. */
  warmupMessages: number;
  messages: number;
  cpuUsPerMessage: number;
  cpuUsPerRecipient: number;
  wallUsPerMessage: number;
  /** The longest the event loop was held (monitorEventLoopDelay max), over the whole run. */
  eventLoopMaxMs: number;
  /**
   * The store process's V8 heap still in use after a full collection at the end, everything
   * written (MiB): what the store keeps of its keys (docs/sequencer.md, "Keys out of memory").
   */
  heapUsedMiB: number;
  /** Cassandra: heads of keys out of memory the store kept when the count ended. */
  keyHeads?: number;
  /**
   * Cassandra, `--restart`: the store stopped cleanly after the warm-up and another opened on the
   * keyspace for the count, with the heads handed off (`handoff`) or those deleted first (`cold`:
   * every key read at its first touch, as before docs/sequencer.md "Heads handed off"); how long
   * the clean stop took (ms) and how many heads the new store adopted.
   */
  restart?: 'handoff' | 'cold';
  restartCloseMs?: number;
  keyHeadsAdopted?: number;
  /** SQLite: rows written per message by table, and B-tree entries (rows + index entries). */
  rowsPerMessage?: Record<string, number>;
  btreeEntriesPerMessage?: number;
  /** SQLite: the longest index and summary transactions on the writer (wall ms; load on the machine inflates them). */
  longestIndexBatchMs?: number;
  longestSummaryBatchMs?: number;
  /** SQLite: share of index transactions over 50 ms and of summary transactions over 5 ms (on the writer; acks never wait for either). */
  indexBatchesOver50MsPct?: number;
  summaryBatchesOver5MsPct?: number;
  /** SQLite: bytes of message log written per message. */
  logBytesPerMessage?: number;
  /** SQLite: WAL frames the last checkpoint saw (the log's length), checkpoints run, and times the log started over. */
  walFrames?: number;
  checkpoints?: number;
  walRestarts?: number;
  /** SQLite: the writer's checkpoints before a restart: the longest (ms: writes waited behind it), and the share over 5 ms. */
  longestWriterCheckpointMs?: number;
  writerCheckpointsOver5MsPct?: number;
  /** Paced runs: the rate and one line per interval. */
  rate?: number;
  intervals?: StoreCostInterval[];
  /** Cassandra's own CPU, when its server runs on this machine. */
  serverCpuUsPerMessage?: number;
}

/** Secondary indexes per table (storage/sqlite/schema-v4.ts): each row written costs 1 + this. */
const SQLITE_INDEXES: Record<keyof AppendStats['rowsWritten'], number> = { messages: 1, inbox: 0, userConvs: 0, unreadMarks: 0 };

const FLAGS = new Set(['store', 'recipients', 'users', 'warmup-messages', 'max-cached-keys', 'max-key-heads', 'messages', 'batch', 'keyspace', 'rate', 'duration', 'interval', 'write-behind-ms', 'restart']);

export async function storeCost(
  argv: readonly string[], env: NodeJS.ProcessEnv = process.env, progress: (line: string) => void = () => undefined,
): Promise<StoreCostResult> {
  const { flags, positionals } = parseFlags(argv, FLAGS);
  if (positionals.length) throw new UsageError(`store-cost takes no positional arguments, got "${positionals[0]}"`);
  const kind = flags.get('store') ?? 'sqlite';
  if (kind !== 'sqlite' && kind !== 'cassandra') throw new UsageError('--store must be sqlite or cassandra');
  const num = (name: string, def: number, max: number, min = 1) => {
    const v = Number(flags.get(name) ?? def);
    if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
    return v;
  };
  const recipients = num('recipients', 2, 100);
  // Message n goes from user n mod users to the next recipients − 1 users, in conversation
  // n mod (users / 2). 1,000 users (the bench's) give each inbox a message per 500 appends; a
  // million give it one or two in all, as most users get in a write-behind window in production.
  const users = num('users', 1000, 100_000_000);
  if (users < recipients) throw new UsageError(`--users must be at least --recipients (${recipients})`);
  const conversations = Math.max(1, Math.floor(users / 2));
  // Cassandra's cost includes the write-behind and the compaction after it: 20,000 messages left
  // that mostly out and read 427-474 µs per 1:1 message where 100,000 read 124-168 (BENCHMARKS.md).
  const messages = num('messages', kind === 'cassandra' ? 100_000 : 20_000, 10_000_000);
  const batch = num('batch', 100, 10_000);
  // Appended before the measured ones, not counted: --warmup-messages = --users gives every inbox
  // and conversation its first message (and the store its first touch of each key) beforehand.
  const warmup = flags.has('warmup-messages') ? num('warmup-messages', 0, 100_000_000) : 0;
  for (const f of ['max-cached-keys', 'max-key-heads', 'restart']) if (flags.has(f) && kind !== 'cassandra') throw new UsageError(`--${f} applies to --store cassandra only`);
  const restart = flags.get('restart');
  if (restart !== undefined && restart !== 'handoff' && restart !== 'cold') throw new UsageError('--restart must be handoff or cold');
  const rateFlag = flags.get('rate') ?? 'max';
  if (rateFlag !== 'max' && rateFlag !== 'half' && !(Number.isInteger(Number(rateFlag)) && Number(rateFlag) > 0)) {
    throw new UsageError('--rate must be max, half or a positive integer (appends/s)');
  }
  const writeBehindMs = num('write-behind-ms', 10_000, 60_000);
  const durationS = num('duration', 60, 86_400);
  const intervalS = num('interval', 60, 86_400);

  let dir: string | undefined;
  let serverPid: number | undefined;
  let store: Store;
  const contact = env.IM_CASSANDRA_CONTACT_POINTS ?? '127.0.0.1:9042';
  const localDataCenter = env.IM_CASSANDRA_DC ?? 'datacenter1';
  const keyspace = flags.get('keyspace') ?? 'im_bench';
  const openCassandra = () => openStore({
    kind: 'cassandra', contactPoints: contact.split(','), localDataCenter,
    keyspace, consistency: 'ONE', replication: 1, leaseMs: 10_000, writeBehindMs,
    maxKeyHeads: num('max-key-heads', DEFAULT_MAX_KEY_HEADS, 100_000_000, 0),
    maxKeyStates: num('max-cached-keys', DEFAULT_MAX_CACHED_KEYS, 10_000_000),
    // The store's cost per message, not its admission: a warm-up's batches may wait seconds.
    shedAfterMs: 0,
  });
  if (kind === 'sqlite') {
    dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'im-bench-store-'));
    store = await openStore({ kind: 'sqlite', dataDir: dir });
  } else {
    store = await openCassandra();
    serverPid = pidListeningOn(Number(contact.split(',')[0].split(':')[1] ?? 9042));
  }
  const run = `s${newId().slice(-8)}`;
  let k = 0;
  const appendNext = () => {
    const n = k++;
    const from = `${run}u${n % users}`;
    const rcpt = recipients === 1 ? [from] : [from, ...Array.from({ length: recipients - 1 }, (_, i) => `${run}u${(n + 1 + i) % users}`)];
    return store.appendMessage({
      msgId: newId(), convId: `g:${run}-${n % conversations}`, from, to: '', groupId: `${run}-${n % conversations}`, clientMsgId: `c${n}`,
      contentType: 'text/plain', content: Buffer.alloc(100, 0x61), sentAtMs: Date.now(), recipients: [...new Set(rcpt)],
      dedupWindowMs: 86_400_000,
    });
  };
  const closedLoop = async (until: () => boolean) => {
    while (!until()) {
      const inflight: Promise<unknown>[] = [];
      for (let j = 0; j < batch && !until(); j++) inflight.push(appendNext());
      await Promise.all(inflight);
    }
  };

  const loop = new LoopWatch();
  try {
    if (warmup > 0) {
      await closedLoop(() => k >= warmup);
      // Their writes behind (Cassandra) or indexing (SQLite) done too: none of their cost is counted.
      if (kind === 'cassandra') await (store as CassandraStore).writeBehindNow();
      else await (store as SqliteStore).indexNow();
      progress(`store-cost: ${warmup} warm-up messages appended and written`);
    }
    let restartCloseMs: number | undefined;
    if (restart) {
      // A clean stop (its shards released, their heads handed off) and another store taking over,
      // as in a rolling restart; `cold` deletes the handed-off heads first.
      const t = Date.now();
      await store.close();
      restartCloseMs = Date.now() - t;
      if (restart === 'cold') {
        const admin = new Client({ contactPoints: contact.split(','), localDataCenter });
        try {
          await admin.execute(`TRUNCATE ${keyspace}.shard_heads`);
        } finally {
          await admin.shutdown();
        }
      }
      store = await openCassandra();
      progress(`store-cost: restarted (${restart}); the clean stop took ${restartCloseMs} ms`);
    }
    let rate: number | undefined;
    if (rateFlag === 'half') {
      const t = Date.now();
      const k0 = k;
      await closedLoop(() => Date.now() - t >= 5000);
      // The SQLite store acknowledges from its message log and indexes behind: what it sustains is
      // what it accepted over the time until that is indexed too, not the acks alone.
      if (kind === 'sqlite') await (store as SqliteStore).indexNow();
      rate = Math.max(1, Math.round((k - k0) / ((Date.now() - t) / 1000) / 2));
      progress(`store-cost: closed-loop max ${rate * 2}/s; pacing at ${rate}/s for ${durationS}s`);
    } else if (rateFlag !== 'max') rate = Number(rateFlag);

    const stats0 = kind === 'sqlite' ? (store as SqliteStore).appendStats().rowsWritten : undefined;
    const server0 = serverPid ? sampleProc(serverPid) : undefined;
    const cpu0 = process.cpuUsage();
    const k0 = k;
    const t0 = process.hrtime.bigint();
    loop.restart();
    let intervals: StoreCostInterval[] | undefined;
    if (rate === undefined) await closedLoop(() => k - k0 >= messages);
    else {
      const framesWritten = kind === 'sqlite' ? () => (store as SqliteStore).appendStats().checkpoints?.framesWritten ?? 0 : undefined;
      intervals = await paced(rate, durationS, intervalS, batch, appendNext, loop, progress, framesWritten);
    }
    const count = k - k0;
    const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
    // Cassandra writes rows behind (docs/sequencer.md, "Owner log"): everything logged is written
    // before the count ends (close() alone gives up on a backlog after a lease), so the cost counted
    // is every write these messages caused.
    let keyHeads: number | undefined;
    let keyHeadsAdopted: number | undefined;
    if (kind === 'cassandra') {
      keyHeads = (store as CassandraStore).keyHeads;
      keyHeadsAdopted = (store as CassandraStore).keyHeadsAdopted;
      await (store as CassandraStore).writeBehindNow();
      await store.close();
    }
    const cpu = process.cpuUsage(cpu0);
    const server1 = serverPid ? sampleProc(serverPid) : undefined;
    const cpuUs = (cpu.user + cpu.system) / count;
    const result: StoreCostResult = {
      store: kind, recipients, users, warmupMessages: warmup, messages: count,
      cpuUsPerMessage: round2(cpuUs), cpuUsPerRecipient: round2(cpuUs / recipients), wallUsPerMessage: round2(wallUs / count),
      eventLoopMaxMs: loop.maxMsSinceStart(), heapUsedMiB: 0, keyHeads, ...(restart && { restart, restartCloseMs, keyHeadsAdopted }), rate, intervals,
      serverCpuUsPerMessage: server0 && server1 ? round2(((server1.cpuS - server0.cpuS) * 1e6) / count) : undefined,
    };
    if (stats0) {
      // Summaries are written behind: count them once everything queued is written.
      await store.unread(`${run}u0`);
      const st = (store as SqliteStore).appendStats();
      const rows = st.rowsWritten;
      result.longestIndexBatchMs = round2(st.longestIndexBatchMs);
      result.longestSummaryBatchMs = round2(st.longestSummaryBatchMs);
      result.indexBatchesOver50MsPct = round2((100 * st.indexBatchesOver50Ms) / Math.max(1, st.batches));
      result.logBytesPerMessage = round2(st.logBytes / count);
      result.summaryBatchesOver5MsPct = round2((100 * st.summaryBatchesOver5Ms) / Math.max(1, st.summaryBatches));
      result.walFrames = st.checkpoints?.walFrames;
      result.checkpoints = st.checkpoints?.runs;
      result.walRestarts = st.checkpoints?.restarts;
      result.longestWriterCheckpointMs = st.checkpoints && round2(st.checkpoints.writerLongestMs);
      result.writerCheckpointsOver5MsPct = st.checkpoints && round2((100 * st.checkpoints.writerOver5Ms) / Math.max(1, st.checkpoints.writerRuns));
      const per = Object.fromEntries((Object.keys(rows) as (keyof typeof rows)[]).map((t) => [t, round2((rows[t] - stats0[t]) / count)]));
      result.rowsPerMessage = per;
      result.btreeEntriesPerMessage = round2((Object.keys(per) as (keyof typeof rows)[]).reduce((a, t) => a + per[t] * (1 + SQLITE_INDEXES[t]), 0));
    }
    // Last, outside every count: the collection takes a while on a large heap.
    result.heapUsedMiB = liveHeapMiB();
    return result;
  } finally {
    loop.stop();
    await store.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Open loop at `rate` appends/s for durationS, at most `maxInFlight` outstanding; one line per interval. */
async function paced(
  rate: number, durationS: number, intervalS: number, maxInFlight: number,
  appendNext: () => Promise<unknown>, loop: LoopWatch, progress: (line: string) => void, framesWritten?: () => number,
): Promise<StoreCostInterval[]> {
  const out: StoreCostInterval[] = [];
  const start = Date.now();
  let issued = 0;
  let skipped = 0;
  let inFlight = 0;
  let mark = { atMs: start, issued: 0, skipped: 0, frames: framesWritten?.() ?? 0, cpu: process.cpuUsage() };
  const tickMs = 10;
  for (let tick = 1; ; tick++) {
    await sleep(Math.max(0, start + tick * tickMs - Date.now()));
    const now = Date.now();
    const due = Math.min(Math.floor(((now - start) / 1000) * rate), Math.floor(durationS * rate));
    // A store that cannot keep up is not queued without bound: those sends are simply not made.
    while (issued + skipped < due && inFlight < maxInFlight) {
      issued++;
      inFlight++;
      void appendNext().finally(() => { inFlight--; });
    }
    skipped = due - issued;
    const ended = now - start >= durationS * 1000;
    if (now - mark.atMs >= intervalS * 1000 || ended) {
      while (inFlight > 0) await new Promise((r) => setImmediate(r));
      const cpu = process.cpuUsage(mark.cpu);
      const n = issued - mark.issued;
      const line: StoreCostInterval = {
        atS: round2((Date.now() - start) / 1000), messages: n, skipped: skipped - mark.skipped,
        cpuUsPerMessage: round2((cpu.user + cpu.system) / Math.max(1, n)), eventLoopMaxMs: loop.maxMsSinceReset(),
        walPagesPerMessage: framesWritten ? round2((framesWritten() - mark.frames) / Math.max(1, n)) : undefined,
      };
      out.push(line);
      progress(`store-cost: ${line.atS}s  ${n} appends (${line.skipped} skipped)  ${line.cpuUsPerMessage} µs CPU each  longest loop block ${line.eventLoopMaxMs} ms` +
        (line.walPagesPerMessage === undefined ? '' : `  ${line.walPagesPerMessage} WAL pages each`));
      loop.reset();
      mark = { atMs: Date.now(), issued, skipped, frames: framesWritten?.() ?? 0, cpu: process.cpuUsage() };
    }
    if (ended) return out;
  }
}

/** The V8 heap still in use after a full collection (MiB). */
function liveHeapMiB(): number {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
  return round2(process.memoryUsage().heapUsed / 2 ** 20);
}
