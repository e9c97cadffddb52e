/**
 * The bounded gateway fuzz run (test/fuzz/run.ts) against a real embedded process: random and
 * mutated frames, split and merged reads, edge lengths, slowloris connections. The process must
 * never exit, its RSS must stay within a bound and come back near its baseline once the fuzz
 * sockets close, every cut of an Auth + Ping exchange must still be answered, and two SDK clients
 * chatting throughout must lose nothing. The seed is printed; IM_FUZZ_SEED=<seed> replays a run.
 */
import * as assert from 'node:assert/strict';
import { randomSeed } from './fuzz/prng';
import { DEFAULT_FUZZ_OPTIONS, formatReport, runFuzz } from './fuzz/run';

const MIB = 1024 * 1024;
/** Frames in the CI run: about 15 s on a busy 2-core machine. `npm run fuzz` runs a million. */
const FRAMES = 30_000;
/** Above the baseline: the fuzz connections' sockets and buffers at their peak. */
const PEAK_MARGIN_BYTES = 128 * MIB;
/** Above the baseline once every fuzz socket closed (V8 and malloc keep some of what they grew). */
const SETTLE_MARGIN_BYTES = 48 * MIB;

describe('gateway fuzz: a real embedded process under random, mutated, split and oversized frames', function () {
  this.timeout(120_000);

  it('never exits, keeps RSS bounded and back near baseline after, answers every cut, and a bystander loses nothing', async () => {
    const seed = process.env.IM_FUZZ_SEED ? Number(process.env.IM_FUZZ_SEED) : randomSeed();
    process.stdout.write(`      fuzz seed ${seed} (replay: IM_FUZZ_SEED=${seed})\n`);
    const r = await runFuzz({ ...DEFAULT_FUZZ_OPTIONS, frames: FRAMES, seed, settleMarginBytes: SETTLE_MARGIN_BYTES, log: () => undefined });
    const report = `seed ${seed}\n${formatReport(r).join('\n')}`;
    assert.equal(r.exited, undefined, report);
    assert.equal(r.hangs, 0, report);
    assert.deepEqual(r.splitFailures, [], report);
    assert.deepEqual(r.bystanders.problems, [], report);
    assert.ok(r.bystanders.acked > 0, `the bystanders never chatted\n${report}`);
    assert.ok(r.rss.peakBytes < r.rss.baselineBytes + PEAK_MARGIN_BYTES, `peak RSS over the bound\n${report}`);
    assert.ok(r.rss.settled, `RSS did not come back within ${SETTLE_MARGIN_BYTES / MIB} MiB of the baseline\n${report}`);
    // The run reached the paths it is meant to: replies, protocol errors, oversized lengths.
    const seen = new Set(r.replies.map(([k]) => k));
    for (const k of ['ok', 'error 1000', 'error 1001', 'disconnect 3005']) assert.ok(seen.has(k), `no "${k}" in the run\n${report}`);
  });
});
