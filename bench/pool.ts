/**
 * The load-generator processes of a run: forked from dist/bench/worker.js, each given its share
 * of the users, driven by commands over IPC. close() is idempotent and bounded.
 */
import { fork } from 'node:child_process';
import * as path from 'node:path';
import type { Command } from './ipc';
import { RpcChannel } from './ipc';
import { stopProcess } from './servers';

const WORKER = path.join(__dirname, 'worker.js');

export class WorkerPool {
  private closing: Promise<void> | undefined;

  private constructor(readonly workers: RpcChannel[]) {}

  /** cpuProfDir: also profile the load generators (their cost is part of the picture on a shared box). */
  static start(count: number, cpuProfDir?: string): WorkerPool {
    const workers: RpcChannel[] = [];
    for (let i = 0; i < count; i++) {
      // More heap than the default: a worker's receipt books grow with every delivery it checks.
      const execArgv = ['--max-old-space-size=4096'];
      if (cpuProfDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=loadgen-${i + 1}.cpuprofile`);
      const child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
      workers.push(new RpcChannel(child, `loadgen-${i + 1}`));
    }
    return new WorkerPool(workers);
  }

  get pids(): number[] {
    return this.workers.map((w) => w.child.pid!);
  }

  get size(): number {
    return this.workers.length;
  }

  /** The same command (or one per worker) to every worker; resolves with their replies in order. */
  all<T>(cmd: Command | ((worker: number) => Command)): Promise<T[]> {
    return Promise.all(this.workers.map((w, i) => w.call<T>(typeof cmd === 'function' ? cmd(i) : cmd)));
  }

  close(): Promise<void> {
    this.closing ??= Promise.all(this.workers.map(async (w) => {
      // Disconnecting the IPC channel is the worker's signal to close its sockets and exit
      // (cleanly, so a --cpu-prof profile gets written); a worker that hangs is killed.
      const exited = new Promise<boolean>((resolve) => {
        if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve(true);
        const timer = setTimeout(() => resolve(false), 10_000);
        w.child.once('exit', () => { clearTimeout(timer); resolve(true); });
      });
      if (w.child.connected) w.child.disconnect();
      if (!(await exited)) await stopProcess(w.child, 5000);
    })).then(() => undefined);
    return this.closing;
  }
}
