/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the commit that
 * crosses the threshold, copying up to thousands of pages and fsyncing on the caller's thread:
 * with the store on the event loop that stalled every connection for tens of ms. The store turns
 * it off (`wal_autocheckpoint = 0`) and this worker (storage/sqlite/checkpoint-worker.ts)
 * checkpoints instead, asking for short quiet windows so the log can start over.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';

export interface CheckpointStats {
  /** Checkpoints finished; the WAL frames the last one saw and copied; quiet windows granted. */
  runs: number;
  /** WAL frames (pages) appended since open, as seen by the checkpoints: a load-independent cost. */
  framesWritten: number;
  walFrames: number;
  checkpointed: number;
  quietWindows: number;
  /** The most WAL frames one quiet window's checkpoint copied, and the longest window (ms; appends wait in it). */
  maxQuietFrames: number;
  longestQuietMs: number;
  errors: number;
}

export interface CheckpointerOptions {
  file: string;
  intervalMs: number;
  /** WAL length (frames of one page) past which a quiet window is asked for. */
  restartFrames: number;
  /** Longest quiet window: writes resume after it even if the worker has not answered. */
  maxQuietMs: number;
  /** Holds writes back until `resume` is called; resolves once no write transaction is open. */
  hold: () => Promise<void>;
  resume: () => void;
}

export class Checkpointer {
  readonly stats: CheckpointStats = { runs: 0, framesWritten: 0, walFrames: 0, checkpointed: 0, quietWindows: 0, maxQuietFrames: 0, longestQuietMs: 0, errors: 0 };
  private readonly worker: Worker;
  private stopped: Promise<void> | undefined;
  private waiters: (() => void)[] = [];
  private quietTimer: NodeJS.Timeout | undefined;
  private quietSinceMs = 0;

  constructor(private readonly options: CheckpointerOptions) {
    this.worker = new Worker(path.join(__dirname, 'checkpoint-worker.js'), {
      workerData: { path: options.file, intervalMs: options.intervalMs, restartFrames: options.restartFrames },
    });
    // A background helper: it must not keep a process alive that has nothing else to do.
    this.worker.unref();
    this.worker.on('message', (m: { log?: number; checkpointed?: number; copiedNow?: number; error?: string; want?: string; quiet?: boolean }) => {
      if (m.want === 'quiet') return this.grantQuiet();
      if (m.quiet) {
        this.stats.maxQuietFrames = Math.max(this.stats.maxQuietFrames, m.copiedNow ?? 0);
        this.endQuiet();
      }
      if (m.error !== undefined) this.stats.errors++;
      else {
        this.stats.runs++;
        const log = m.log ?? 0;
        // A shorter log than last time means it restarted: everything in it is new.
        this.stats.framesWritten += log >= this.stats.walFrames ? log - this.stats.walFrames : log;
        this.stats.walFrames = log;
        this.stats.checkpointed = m.checkpointed ?? 0;
      }
      this.wake();
    });
    this.worker.on('error', () => { this.stats.errors++; });
    this.worker.on('exit', () => {
      this.endQuiet();
      this.wake();
    });
  }

  /** Resolves after the next checkpoint attempt (asks for one now). For tests and tools. */
  runNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // Referenced while someone waits on it, or an otherwise idle process would exit mid-await.
    this.worker.ref();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.worker.postMessage('now');
    });
  }

  /** Stops the worker and closes its connection. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.endQuiet();
      this.worker.ref();
      this.worker.once('exit', () => resolve());
      this.worker.postMessage('stop');
    });
    return this.stopped;
  }

  private grantQuiet(): void {
    if (this.stopped) return;
    this.stats.quietWindows++;
    this.quietSinceMs = performance.now();
    // The window (and its bound) starts now: the writer may still be finishing its transactions.
    this.quietTimer = setTimeout(() => this.endQuiet(), this.options.maxQuietMs);
    // Past the bound the writer resumes; the copy still runs, as a round the worker goes on from.
    void this.options.hold().then(() => this.worker.postMessage('quiet'));
  }

  private endQuiet(): void {
    if (this.quietTimer === undefined) return;
    clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    this.stats.longestQuietMs = Math.max(this.stats.longestQuietMs, performance.now() - this.quietSinceMs);
    this.options.resume();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    for (const w of this.waiters.splice(0)) w();
    if (!this.stopped) this.worker.unref();
  }
}
