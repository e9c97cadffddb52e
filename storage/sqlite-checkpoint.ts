/**
 * WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside the commit that
 * crosses the threshold, copying up to thousands of pages and fsyncing on the caller's thread:
 * with the store on the event loop that stalled every connection for tens of ms. The store turns
 * it off (`wal_autocheckpoint = 0`) and this worker checkpoints every `intervalMs` instead.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';

export interface CheckpointStats {
  /** Checkpoints finished, and the WAL frames the last one saw and copied. */
  runs: number;
  walFrames: number;
  checkpointed: number;
  errors: number;
}

export class Checkpointer {
  readonly stats: CheckpointStats = { runs: 0, walFrames: 0, checkpointed: 0, errors: 0 };
  private readonly worker: Worker;
  private stopped: Promise<void> | undefined;
  private waiters: (() => void)[] = [];

  constructor(file: string, intervalMs: number) {
    this.worker = new Worker(path.join(__dirname, 'sqlite-checkpoint-worker.js'), { workerData: { path: file, intervalMs } });
    // A background helper: it must not keep a process alive that has nothing else to do.
    this.worker.unref();
    this.worker.on('message', (m: { log?: number; checkpointed?: number; error?: string }) => {
      if (m.error !== undefined) this.stats.errors++;
      else {
        this.stats.runs++;
        this.stats.walFrames = m.log ?? 0;
        this.stats.checkpointed = m.checkpointed ?? 0;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.worker.on('error', () => { this.stats.errors++; });
  }

  /** Resolves after the next checkpoint attempt (asks for one now). For tests and tools. */
  runNow(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.worker.postMessage('now');
    });
  }

  /** Stops the worker and closes its connection. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= new Promise<void>((resolve) => {
      this.worker.once('exit', () => resolve());
      this.worker.postMessage('stop');
    });
    return this.stopped;
  }
}
