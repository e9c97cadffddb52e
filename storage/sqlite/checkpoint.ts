/**
 * WAL checkpoints off the event loop, and a log that starts over without holding appends for long.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so the store
 * turns it off (`wal_autocheckpoint = 0`). A worker thread with its own connection
 * (storage/sqlite/checkpoint-worker.ts) copies the log into the database file instead, with
 * PASSIVE checkpoints that never wait for the writer or readers.
 *
 * The log must also start over now and then, or it grows without bound: SQLite restarts it at
 * the first write after a checkpoint that copied every frame in it (and while no reader reads an
 * older snapshot). A checkpoint on another connection never gets there under steady writes,
 * because frames arrive while it copies. So once the log passes restartFrames, the worker runs
 * checkpoints back to back until what is left to copy is small (each copies only what arrived
 * during the one before), then tells the writer thread, directly over a MessagePort: the writer
 * runs one PASSIVE checkpoint itself, between two of its batches (`RestartCheckpoint`). Nothing
 * can arrive during that one (the writer is the file's only writer), so it copies the rest, and the
 * writer's next commit starts the log over. Writes queued behind it wait only for that last copy.
 *
 * Before 2026-12-06 the store itself stopped posting writes for a "quiet window" while the worker
 * finished the copy: each window crossed the event loop four times and held every append for
 * 60-150 ms at half the max rate, about once a second: the p95 and p99 of send->deliver.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker, type MessagePort } from 'node:worker_threads';
import type Database from 'better-sqlite3';

export interface CheckpointStats {
  /** The worker's checkpoints, and those that failed (SQLITE_BUSY, I/O). */
  runs: number;
  errors: number;
  /** WAL frames (pages) appended since open, as seen by the checkpoints: a load-independent cost. */
  framesWritten: number;
  /** The log's length, and the frames of it copied, at the last checkpoint. */
  walFrames: number;
  checkpointed: number;
  /** Times the log started over. */
  restarts: number;
  /** The writer's own checkpoints before a restart: how many, the longest (ms; writes waited behind it), how many took over 5 ms. */
  writerRuns: number;
  writerLongestMs: number;
  writerOver5Ms: number;
  /** The writer's checkpoints that failed (SQLITE_BUSY, I/O): the log restarts at a later one. */
  writerErrors: number;
}

/** The worker's part of CheckpointStats. */
export type WorkerCheckpointStats = Pick<CheckpointStats, 'runs' | 'errors' | 'framesWritten' | 'walFrames' | 'checkpointed' | 'restarts'>;
/** The writer's part of CheckpointStats. */
export type WriterCheckpointStats = Pick<CheckpointStats, 'writerRuns' | 'writerLongestMs' | 'writerOver5Ms' | 'writerErrors'>;

/** The writer's part of CheckpointStats before its first checkpoint. */
export function emptyWriterCheckpointStats(): WriterCheckpointStats {
  return { writerRuns: 0, writerLongestMs: 0, writerOver5Ms: 0, writerErrors: 0 };
}

/** Frames appended between two looks at the log's length: a shorter log started over, so all of it is new. */
export function framesSince(previousLog: number, log: number): number {
  return log >= previousLog ? log - previousLog : log;
}

/** What the worker tells the writer: the log is due to start over, and the copy has caught up. */
export const RESTART_DUE = 'restart-due';
/** The writer's answer once its checkpoint ran (or failed): the worker's rounds go on. */
export const RESTART_DONE = 'restart-done';

/**
 * The worker's choice after each round, once the log is due to start over: copy again at once
 * ('again'), tell the writer to copy the rest ('hand-over'), or wait for the next interval.
 *
 * A round's backlog is the frames that arrived since the round before, plus any it could not
 * copy (a reader still on an older snapshot): a round copies every frame that was in the log when
 * it started, so what it leaves behind (nearly always nothing) does not say what the writer would
 * have to copy if it went now. The writer is told when that is small, when it stopped shrinking
 * near the smallest seen in this catch-up (writes arrive as fast as a round copies them: waiting
 * longer does not help), or after MAX_CATCH_UP_ROUNDS. On 2026-12-06 a first version waited for
 * the backlog to be under 1,024 frames; under 100-member groups (~90k frames a second here) it
 * never was, the log grew to 1.1M frames (4.5 GB) in a 15 s run, and appends slowed to under half
 * as it grew. A later version handed over whenever a backlog was not smaller than the one before:
 * one round held up by its fsync (30-50 ms, when rounds had come down to 2-3 ms) let 2,000-3,000
 * frames arrive, and the writer then copied them all while every append waited (18-54 ms at half
 * the 1:1 max rate: the p99 of send->deliver). A backlog more than twice the smallest is a spike,
 * not a plateau: the rounds go on.
 */
export class CatchUp {
  /** Arrivals this few (a few ms of copying and fsync) are handed over without waiting for them to shrink further. */
  static readonly SMALL_BACKLOG = 128;
  static readonly MAX_CATCH_UP_ROUNDS = 16;
  private lastLog = 0;
  /** The backlog of the previous catch-up round and the smallest of this catch-up (Infinity: not catching up), and catch-up rounds so far. */
  private lastBacklog = Infinity;
  private bestBacklog = Infinity;
  private rounds = 0;

  constructor(private readonly restartFrames: number) {}

  private reset(): void {
    this.lastBacklog = Infinity;
    this.bestBacklog = Infinity;
    this.rounds = 0;
  }

  /** After a round: `r` is its result (undefined if it failed); `canHandOver`: a writer listens. */
  after(r: { log: number; checkpointed: number } | undefined, canHandOver: boolean): 'again' | 'hand-over' | 'wait' {
    if (!r) return 'wait';
    const arrived = framesSince(this.lastLog, r.log);
    this.lastLog = r.log;
    const backlog = arrived + (r.log - r.checkpointed);
    if (r.log < this.restartFrames || !canHandOver) {
      this.reset();
      return 'wait';
    }
    this.rounds++;
    this.bestBacklog = Math.min(this.bestBacklog, backlog);
    const plateau = backlog >= this.lastBacklog && backlog <= 2 * this.bestBacklog;
    if (backlog <= CatchUp.SMALL_BACKLOG || plateau || this.rounds >= CatchUp.MAX_CATCH_UP_ROUNDS) {
      this.reset();
      return 'hand-over';
    }
    this.lastBacklog = backlog;
    return 'again';
  }
}

export interface CheckpointerOptions {
  file: string;
  intervalMs: number;
  /** WAL length (frames of one page) past which the log is made to start over. */
  restartFrames: number;
}

/** The event loop's handle on the checkpoint worker. */
export class Checkpointer {
  readonly stats: WorkerCheckpointStats = { runs: 0, errors: 0, framesWritten: 0, walFrames: 0, checkpointed: 0, restarts: 0 };
  private readonly worker: Worker;
  private stopped: Promise<void> | undefined;

  constructor(options: CheckpointerOptions) {
    this.worker = new Worker(path.join(__dirname, 'checkpoint-worker.js'), {
      workerData: { path: options.file, intervalMs: options.intervalMs, restartFrames: options.restartFrames },
    });
    // A background helper: it must not keep a process alive that has nothing else to do.
    this.worker.unref();
    this.worker.on('message', (m: { log: number; checkpointed: number } | { error: string }) => {
      if ('error' in m) {
        this.stats.errors++;
        return;
      }
      const s = this.stats;
      s.runs++;
      if (m.log < s.walFrames) s.restarts++;
      s.framesWritten += framesSince(s.walFrames, m.log);
      s.walFrames = m.log;
      s.checkpointed = m.checkpointed;
    });
    this.worker.on('error', () => { this.stats.errors++; });
  }

  /** The port a (new) writer thread listens on for RESTART_DUE; the previous writer's is dropped. */
  connectWriter(port: MessagePort): void {
    this.worker.postMessage({ writerPort: port }, [port]);
  }

  /** Stops the worker and closes its connection. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.worker.ref();
      this.worker.once('exit', () => resolve());
      this.worker.postMessage('stop');
    });
    return this.stopped;
  }
}

/** The writer's checkpoint before a restart, run between two of its batches when the worker says so. */
export class RestartCheckpoint {
  readonly stats = emptyWriterCheckpointStats();

  constructor(private readonly db: Database.Database) {}

  run(): void {
    const t0 = performance.now();
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // SQLITE_BUSY or I/O: the worker asks again after its next rounds.
      this.stats.writerErrors++;
      return;
    }
    const tookMs = performance.now() - t0;
    const s = this.stats;
    s.writerRuns++;
    s.writerLongestMs = Math.max(s.writerLongestMs, tookMs);
    if (tookMs > 5) s.writerOver5Ms++;
  }
}
