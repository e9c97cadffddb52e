/**
 * The gateway fuzz run, shared by the bounded test (test/fuzz.test.ts) and the long run
 * (`npm run fuzz`): a real embedded system as its own process, many concurrent connections
 * sending fuzz frames (test/fuzz/frames.ts), a sweep that cuts one exchange at every offset,
 * slowloris connections holding a partial frame of the maximum length, and two SDK clients
 * chatting throughout. It reports what an operator would check: the process never exited, its
 * RSS (VmRSS) before, at peak (VmHWM) and after the fuzz sockets closed, and the bystanders' result.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { sampleProc } from '../../bench/proc-stats';
import { signToken } from '../../common/jwt';
import { DEFAULT_MAX_FRAME_BYTES, LENGTH_BYTES } from '../../proto/codec';
import { encode, frameBytes, Op } from '../../proto/wire';
import { tempDir } from '../harness';
import { freePort } from '../infra';
import { ServiceProc } from '../procs';
import { BystanderResult, Bystanders } from './bystander';
import { cutWrites, FrameContext, fuzzFrame, WRITE_PATTERNS } from './frames';
import { fuzzConnection, replyKey, Tally } from './fuzz-conn';
import { Prng } from './prng';
import { eventually } from '../wait';

const LOOPBACK = '127.0.0.1';
const MIB = 1024 * 1024;

export interface FuzzOptions {
  /** Fuzz frames to send in all (each connection sends 1..maxFramesPerConn of them). */
  frames: number;
  /** Fuzz connections open at once. */
  concurrency: number;
  seed: number;
  /** Connections that declare a frame of the maximum length, send part of it one byte per write, and wait. */
  slowloris: number;
  slowlorisBytes: number;
  maxFramesPerConn: number;
  /** After the fuzz sockets closed, how far above the baseline RSS must come back to (and how long it may take). */
  settleMarginBytes: number;
  settleTimeoutMs: number;
  log: (line: string) => void;
}

export const DEFAULT_FUZZ_OPTIONS: Omit<FuzzOptions, 'seed' | 'log'> = {
  frames: 20_000, concurrency: 32, slowloris: 20, slowlorisBytes: 2048, maxFramesPerConn: 100,
  settleMarginBytes: 64 * MIB, settleTimeoutMs: 30_000,
};

export interface FuzzReport {
  seed: number;
  framesSent: number;
  bytesSent: number;
  connections: number;
  refused: number;
  /** Connections the gateway did not close within the bound after the client's FIN. */
  hangs: number;
  /** Replies by code, most frequent first. */
  replies: Array<[string, number]>;
  /** Cuts of the Auth + Ping exchange whose AuthOk or Pong did not come back. */
  splitFailures: string[];
  splitCuts: number;
  rss: { baselineBytes: number; slowlorisBytes: number; peakBytes: number; afterBytes: number; settled: boolean };
  /** Set when the gateway process exited before the run ended. */
  exited?: string;
  bystanders: BystanderResult;
  durationMs: number;
  loadAverage: number[];
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const startedAt = Date.now();
  const dataDir = tempDir('im-fuzz-');
  const secret = randomBytes(16).toString('hex');
  const [gatewayPort, routerPort] = await Promise.all([freePort(), freePort()]);
  const proc = await ServiceProc.spawn('embedded', 'embedded', {
    IM_DATA_DIR: dataDir, IM_AUTH_SECRET: secret, IM_LOGIC_PORT: '0', IM_HTTP_ADDR: `${LOOPBACK}:0`, IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off',
    IM_GATEWAY_ADDR: `${LOOPBACK}:${gatewayPort}`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:${routerPort}`,
    // Past the per-connection flood limit, so frames reach the parsers rather than the rate limiter.
    IM_RATE_LIMIT: '1000000', IM_RATE_BURST: '1000000', IM_LOG_LEVEL: 'error',
  });
  const rss = () => sampleProc(proc.child.pid!)?.rssBytes ?? 0;
  const bystanders = new Bystanders(`http://${LOOPBACK}:${routerPort}`, secret, randomBytes(3).toString('hex'));
  const held: net.Socket[] = [];
  try {
    await bystanders.start();
    const baselineBytes = rss();
    o.log(`fuzz: seed ${o.seed}, gateway pid ${proc.child.pid}, baseline RSS ${mib(baselineBytes)}`);
    const tally = new Tally();
    const rng = new Prng(o.seed);
    const token = (uid: string) => signToken(secret, uid, 3600);
    const conn = { host: LOOPBACK, port: gatewayPort, tally, closeTimeoutMs: 15_000 };

    held.push(...await Promise.all(Array.from({ length: o.slowloris }, (_, i) => slowloris(LOOPBACK, gatewayPort, token(`fuzz-slow-${i}`), o.slowlorisBytes))));
    const slowlorisBytes = rss();
    o.log(`fuzz: ${o.slowloris} slowloris connections holding ${o.slowlorisBytes} bytes each, sent one per write: RSS ${mib(slowlorisBytes)}`);
    const split = await splitSweep({ ...conn, token: token('fuzz-split') }, o.concurrency);
    o.log(`fuzz: ${split.cuts} cuts of Auth + Ping, ${split.failures.length} failed`);

    let planned = 0;
    let nextReport = 0;
    const worker = async () => {
      while (planned < o.frames && proc.running) {
        const r = rng.fork(); // taken in order: the same seed gives the same connections
        const ctx: FrameContext = { rng: r, maxFrameBytes: DEFAULT_MAX_FRAME_BYTES, peerUid: `fuzz-${r.int(50)}` };
        const n = Math.min(o.frames - planned, 1 + r.int(o.maxFramesPerConn));
        planned += n;
        const frames = Array.from({ length: n }, () => fuzzFrame(ctx));
        if (r.chance(0.8)) frames.unshift(frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token: token(`fuzz-${r.int(50)}`), deviceId: `fz${r.int(4)}` }) }));
        await fuzzConnection({ ...conn, frames: n, writes: cutWrites(r, frames, r.pick(WRITE_PATTERNS)) });
        if (tally.framesSent >= nextReport) {
          o.log(`fuzz: ${tally.framesSent} frames, ${tally.connections} connections, RSS ${mib(rss())}`);
          nextReport += Math.max(10_000, Math.ceil(o.frames / 10));
        }
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    for (const s of held.splice(0)) s.destroy();

    // RSS comes back once the sockets' buffers are freed and the heap shrinks; the bystanders
    // keep chatting meanwhile (their allocations are what lets the collector run).
    let afterBytes = rss();
    await eventually(() => {
      afterBytes = rss();
      return afterBytes <= baselineBytes + o.settleMarginBytes || !proc.running;
    }, 'RSS to settle', o.settleTimeoutMs).catch(() => undefined); // the report says by how much it did not
    const peakBytes = sampleProc(proc.child.pid!)?.hwmBytes ?? 0;
    const exited = proc.running ? undefined : `gateway exited: ${proc.log.slice(-2000)}`;
    const bystanderResult = await bystanders.stop();
    return {
      seed: o.seed, framesSent: tally.framesSent, bytesSent: tally.bytesSent, connections: tally.connections,
      refused: tally.refused, hangs: tally.hangs, replies: tally.sortedReplies(),
      splitFailures: split.failures, splitCuts: split.cuts,
      rss: { baselineBytes, slowlorisBytes, peakBytes, afterBytes, settled: afterBytes <= baselineBytes + o.settleMarginBytes },
      exited, bystanders: bystanderResult, durationMs: Date.now() - startedAt, loadAverage: os.loadavg(),
    };
  } finally {
    for (const s of held) s.destroy();
    await bystanders.stop(1000).catch(() => undefined);
    await proc.stop('SIGTERM', 10_000);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * An authenticated connection holding `bytes` of a frame that declares the maximum length, sent
 * one byte per write (per TCP segment: no delay, and a turn of the event loop between writes).
 */
async function slowloris(host: string, port: number, token: string, bytes: number): Promise<net.Socket> {
  const s = net.connect({ host, port });
  s.setNoDelay(true);
  s.on('error', () => undefined);
  s.resume();
  await new Promise<void>((resolve) => s.once('connect', () => resolve()));
  const prefix = Buffer.alloc(LENGTH_BYTES);
  prefix.writeUInt32BE(DEFAULT_MAX_FRAME_BYTES, 0);
  s.write(Buffer.concat([frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token, deviceId: 'slow' }) }), prefix]));
  const one = Buffer.from([0x2a]);
  for (let i = 0; i < bytes && !s.destroyed; i++) {
    s.write(one);
    await new Promise((r) => setImmediate(r));
  }
  return s;
}

/**
 * Auth + Ping written in two writes cut at every offset: each cut still gets AuthOk and Pong. Each
 * cut logs in as its own device: cuts run `concurrency` at a time, and a newer login of the same
 * device replaces the older session (KICKED, docs/protocol.md "One session per device"), which
 * would lose the Pong of a cut whose Auth came whole in its first write.
 */
async function splitSweep(c: { host: string; port: number; tally: Tally; closeTimeoutMs: number; token: string }, concurrency: number): Promise<{ cuts: number; failures: string[] }> {
  const ping = frameBytes({ op: Op.PING, requestId: 2, body: encode('Ping', {}) });
  // The device id of every cut has the same length, so cut n falls at the same byte in each.
  const exchange = (cut: number) => Buffer.concat([
    frameBytes({ op: Op.AUTH, requestId: 1, body: encode('Auth', { token: c.token, deviceId: `split-${cut.toString().padStart(4, '0')}` }) }),
    ping,
  ]);
  const failures: string[] = [];
  const cuts = Array.from({ length: exchange(0).length - 1 }, (_, i) => i + 1);
  const one = async (cut: number) => {
    const bytes = exchange(cut);
    const ok = new Set<number>();
    const other: string[] = [];
    await fuzzConnection({
      ...c, frames: 2, writes: [bytes.subarray(0, cut), bytes.subarray(cut)],
      onFrame: (f) => {
        if (!f.error && (f.op === Op.AUTH || f.op === Op.PING)) ok.add(f.op);
        else other.push(replyKey(f));
      },
    });
    if (ok.size !== 2) failures.push(`cut at ${cut}: got ${[...ok].join(',') || 'nothing'}${other.length > 0 ? ` and ${other.join(', ')}` : ''}`);
  };
  for (let i = 0; i < cuts.length; i += concurrency) await Promise.all(cuts.slice(i, i + concurrency).map(one));
  return { cuts: cuts.length, failures };
}

export const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/** The report as the lines `npm run fuzz` prints. */
export function formatReport(r: FuzzReport): string[] {
  return [
    `seed ${r.seed}: ${r.framesSent} frames (${mib(r.bytesSent)}) over ${r.connections} connections in ${(r.durationMs / 1000).toFixed(1)} s` +
      `, load average ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
    `replies by code: ${r.replies.map(([k, n]) => `${k}: ${n}`).join(', ')}`,
    `refused at connect: ${r.refused}; hung after FIN: ${r.hangs}; split cuts: ${r.splitCuts}, failed: ${r.splitFailures.length}`,
    `gateway RSS: baseline ${mib(r.rss.baselineBytes)}, with slowloris ${mib(r.rss.slowlorisBytes)}, peak ${mib(r.rss.peakBytes)}, after ${mib(r.rss.afterBytes)}${r.rss.settled ? '' : ' (did not settle)'}`,
    `gateway process: ${r.exited ?? 'never exited'}`,
    `bystanders: ${r.bystanders.acked} acknowledged, ${r.bystanders.failed} failed sends, ${r.bystanders.problems.length === 0 ? 'nothing lost, duplicated or reordered' : r.bystanders.problems.join('; ')}`,
  ];
}
