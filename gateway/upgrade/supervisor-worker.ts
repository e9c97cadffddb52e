/**
 * The supervisor's handle on one worker process: fork, the IPC messages it sends (typed, waited
 * for by type), and a bounded stop. Client sockets only pass through here; see supervisor.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type * as net from 'node:net';
import type { Logger } from '../../common/log';
import { isMsg, type AdoptMsg, type FromWorkerMsg, type StatusReplyMsg, type ToWorkerMsg } from './handoff-protocol';

export interface WorkerSpawnOptions {
  script: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  generation: number;
  successor: boolean;
  logger: Logger;
  /** An `adopt` message from this worker, with its socket; called in the same tick it arrived. */
  onAdopt: (from: WorkerProcess, msg: AdoptMsg, socket: net.Socket | undefined) => void;
  onExit: (w: WorkerProcess, code: number | null, signal: NodeJS.Signals | null) => void;
}

export interface WorkerExit { code: number | null; signal: NodeJS.Signals | null }

export class WorkerProcess {
  readonly generation: number;
  readonly successor: boolean;
  readonly child: ChildProcess;
  readonly startedAtMs = Date.now();
  /** Resolves on the worker's `ready`; rejects if it exits first. */
  readonly ready: Promise<void>;
  readonly exited: Promise<WorkerExit>;
  isReady = false;
  hasExited = false;
  private readonly waiters = new Set<{ t: string; id?: number; resolve: (m: FromWorkerMsg) => void; reject: (e: Error) => void }>();
  private statusSeq = 0;

  constructor(o: WorkerSpawnOptions) {
    this.generation = o.generation;
    this.successor = o.successor;
    this.child = fork(o.script, [...o.args], { env: o.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.hasExited = true;
        for (const w of [...this.waiters]) w.reject(new Error(`worker ${this.pid} exited (${signal ?? code})`));
        this.waiters.clear();
        o.onExit(this, code, signal);
        resolve({ code, signal });
      });
    });
    // A channel write to a dying worker fails here rather than crashing the supervisor.
    this.child.on('error', (err) => o.logger.warn('worker channel error', { pid: this.pid, err }));
    this.child.on('message', (msg: unknown, handle: unknown) => {
      // Synchronous: a socket must be passed on (or stopped) before this tick ends.
      if (isMsg<AdoptMsg>(msg, 'adopt')) {
        o.onAdopt(this, msg, handle as net.Socket | undefined);
        return;
      }
      if (typeof msg !== 'object' || msg === null) return;
      const m = msg as FromWorkerMsg;
      for (const w of [...this.waiters]) {
        if (w.t === m.t && (m.t !== 'status' || w.id === m.id)) {
          this.waiters.delete(w);
          w.resolve(m);
        }
      }
    });
    this.ready = this.next('ready', Number.POSITIVE_INFINITY).then(() => { this.isReady = true; });
    this.ready.catch(() => undefined);
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Writes a message (and a socket) to the worker; rejects if the channel is gone. */
  send(msg: ToWorkerMsg, socket?: net.Socket): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.child.connected) { reject(new Error(`worker ${this.pid} is not connected`)); return; }
      this.child.send(msg, socket, {}, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** The next message of type `t` (register before sending what provokes it). */
  next<T extends FromWorkerMsg>(t: T['t'], timeoutMs: number, id?: number): Promise<T> {
    if (this.hasExited) return Promise.reject(new Error(`worker ${this.pid} has exited`));
    return new Promise<T>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => { this.waiters.delete(w); reject(new Error(`no ${t} from worker ${this.pid} within ${timeoutMs}ms`)); }, timeoutMs)
        : undefined;
      const w = {
        t, id,
        resolve: (m: FromWorkerMsg) => { if (timer) clearTimeout(timer); resolve(m as T); },
        reject: (e: Error) => { if (timer) clearTimeout(timer); reject(e); },
      };
      this.waiters.add(w);
    });
  }

  /** Sends `msg` and waits for the reply of type `t`. */
  async request<T extends FromWorkerMsg>(msg: ToWorkerMsg, t: T['t'], timeoutMs: number, id?: number): Promise<T> {
    const reply = this.next<T>(t, timeoutMs, id);
    reply.catch(() => undefined);
    await this.send(msg);
    return reply;
  }

  status(limit: number, timeoutMs: number): Promise<StatusReplyMsg> {
    const id = ++this.statusSeq;
    return this.request<StatusReplyMsg>({ t: 'status', id, limit }, 'status', timeoutMs, id);
  }

  /** Waits up to `graceMs` for the worker to exit (after `signal`, if given), then kills it. */
  async stopWithin(graceMs: number, signal?: NodeJS.Signals): Promise<WorkerExit> {
    if (this.hasExited) return this.exited;
    if (signal) this.child.kill(signal);
    const timer = setTimeout(() => { if (!this.hasExited) this.child.kill('SIGKILL'); }, graceMs);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}
