/**
 * The event loop's side of the SQLite writer (storage/sqlite/writer.ts): collects the writes of
 * a tick, posts them as one batch, and settles each call when the writer answers, that is after
 * the transaction that wrote it committed (a read on the loop's connection right after sees it).
 * Appends are not among them: they are acknowledged by the message log
 * (storage/sqlite/message-log.ts), which posts its written records here to be indexed.
 *
 * The batch is one postMessage: the ops are plain objects (structured clone: strings and
 * numbers), and every op's bytes (the log records to index) are copied once into one ArrayBuffer
 * that is transferred, not cloned. Cloning them would cost more: a Uint8Array is cloned with its
 * whole backing ArrayBuffer, and the records are a view into the log's larger slab, while
 * transferring that would detach memory the log still reads.
 *
 * Bounded: ops queued or in flight beyond maxPending are refused with OVERLOADED (retryable).
 * The writer thread failing (it exited, or threw) fails every op in flight with UNAVAILABLE
 * (retryable; each may or may not have committed) and a new thread is started over the same file
 * for the ops still queued (SQLite rolls back the dead thread's open transaction); onRestart lets
 * the store post again what the dead one lost. After MAX_RESTARTS failures within
 * RESTART_WINDOW_MS the writer stays down and every write fails with UNAVAILABLE until the
 * process is restarted.
 */
import path from 'node:path';
import { Worker, type TransferListItem } from 'node:worker_threads';
import { OverloadedError, UnavailableError } from '../../common/errors';
import { errorOf, type WriteBatch, type WriteOp, type WriteReply, type WriterStats } from './writer';

export const MAX_RESTARTS = 3;
export const RESTART_WINDOW_MS = 60_000;
/**
 * Batches posted and not yet answered, at most. The writer always has the next one waiting, and
 * while it is busy a tick's writes wait on the loop and go in one larger batch (one commit for
 * more messages). As many content buffers are kept for reuse, so a steady stream allocates none.
 */
export const MAX_BATCHES_IN_FLIGHT = 4;

/** One running writer: a thread, or the engine on the loop for ':memory:'. */
export interface WriterLink {
  post(batch: WriteBatch): void;
  /** Writes queued summaries, closes the writer's connection and ends it. */
  close(): Promise<void>;
  /** Referenced while answers are awaited, so a process waiting on a write does not exit. */
  ref(): void;
  unref(): void;
}

export interface LinkEvents {
  reply: (reply: WriteReply) => void;
  /** The writer is gone without being asked to close. */
  failed: (err: unknown) => void;
}

/** Starts the writer thread (storage/sqlite/writer-worker.ts) with its workerData. */
export function workerLink(workerData: unknown, on: LinkEvents, transferList: TransferListItem[] = []): WriterLink {
  const worker = new Worker(path.join(__dirname, 'writer-worker.js'), { workerData, transferList });
  worker.unref();
  let closing = false;
  let exited = false;
  let error: unknown;
  worker.on('message', on.reply);
  worker.on('error', (err) => { error = err; });
  worker.on('exit', (code) => {
    exited = true;
    if (!closing) on.failed(error ?? new Error(`writer thread exited with code ${code}`));
  });
  return {
    post: (batch) => worker.postMessage(batch, [batch.contents]),
    close: () => new Promise<void>((resolve) => {
      closing = true;
      if (exited) return resolve();
      worker.ref();
      worker.once('exit', () => resolve());
      worker.postMessage('close');
    }),
    ref: () => worker.ref(),
    unref: () => worker.unref(),
  };
}

/** A writer on the loop: `handle` runs a batch (a turn later, as a thread would answer). */
export function inThreadLink(handle: (batch: WriteBatch) => WriteReply, flushAll: () => void, on: LinkEvents): WriterLink {
  let dead = false;
  return {
    post: (batch) => setImmediate(() => {
      if (dead) return;
      let reply: WriteReply;
      try {
        reply = handle(batch);
      } catch (err) {
        dead = true;
        on.failed(err);
        return;
      }
      on.reply(reply);
    }),
    close: async () => {
      try {
        if (!dead) flushAll();
      } catch {
        // A ':memory:' store's tables go with it: nothing to keep for a replay.
      }
      dead = true;
    },
    ref: () => undefined,
    unref: () => undefined,
  };
}

interface Pending {
  op: WriteOp;
  content?: Uint8Array;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

export interface WriterClientOptions {
  /** What rejections say. */
  name: string;
  /** Ops queued or in flight beyond which submit refuses with OverloadedError. */
  maxPending: number;
  /** Ops posted in one batch at most, and bytes of content; the rest go on the next turn. */
  maxBatch: number;
  maxBatchBytes: number;
  start: (on: LinkEvents) => WriterLink;
  /** Every answer's writer counters. */
  onStats: (stats: WriterStats) => void;
  /** A new writer thread started after one failed (ops it never answered are failed; the store posts again what it must). */
  onRestart?: () => void;
}

export class WriterClient {
  private queue: Pending[] = [];
  private readonly inflight = new Map<number, Pending[]>();
  private inflightOps = 0;
  private nextId = 1;
  private scheduled = false;
  private closed = false;
  /** Set when the writer is down for good: every call fails with it. */
  private down: Error | undefined;
  private idleWaiters: (() => void)[] = [];
  private readonly failures: number[] = [];
  /** Content buffers handed back by the writer, for reuse. */
  private readonly spare: ArrayBuffer[] = [];
  private link: WriterLink;
  restarts = 0;
  /** The most content bytes one post copied (in one turn of the loop). */
  largestPostBytes = 0;

  constructor(private readonly options: WriterClientOptions) {
    this.link = this.startLink();
  }

  /** Ops waiting for the writer or in flight. */
  get pending(): number {
    return this.queue.length + this.inflightOps;
  }

  /** Why writes fail for good, if they do. */
  get failure(): Error | undefined {
    return this.down;
  }

  /** Queues op; resolves with its outcome once committed. `bounded: false` for the store's own housekeeping. */
  submit<T>(op: WriteOp, content?: Uint8Array, bounded = true): Promise<T> {
    if (this.down) return Promise.reject(this.down);
    if (this.closed) return Promise.reject(new UnavailableError(`${this.options.name} is closed`));
    if (bounded && this.pending >= this.options.maxPending) {
      return Promise.reject(new OverloadedError(`${this.options.name}: ${this.pending} writes already queued`));
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ op, content, resolve: resolve as (v: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Refuses new calls, commits everything queued, then closes the writer. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.queue.length > 0 && !this.down) this.postOne();
    await this.whenIdle();
    await this.link.close();
  }

  private whenIdle(): Promise<void> {
    if (this.inflightOps === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private startLink(): WriterLink {
    return this.options.start({ reply: (r) => this.onReply(r), failed: (err) => this.onFailed(err) });
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      // Past the window an answer schedules the next post.
      if (this.down || this.inflight.size >= MAX_BATCHES_IN_FLIGHT) return;
      this.postOne();
      this.schedule();
    });
  }

  private postOne(): void {
    // Up to maxBatch ops and maxBatchBytes of contents (at least one op): copying the contents
    // is this turn's cost, so it is bounded like the rest.
    let n = 0;
    let total = 0;
    for (; n < this.queue.length && n < this.options.maxBatch; n++) {
      const len = this.queue[n].content?.byteLength ?? 0;
      if (n > 0 && total + len > this.options.maxBatchBytes) break;
      total += len;
    }
    const batch = this.queue.splice(0, n);
    if (batch.length === 0) return;
    if (total > this.largestPostBytes) this.largestPostBytes = total;
    const contents = this.takeBuffer(total);
    const bytes = new Uint8Array(contents);
    let off = 0;
    for (const p of batch) {
      if (!p.content || p.op.k !== 'index') continue;
      bytes.set(p.content, off);
      p.op.contentOff = off;
      p.op.contentLen = p.content.byteLength;
      off += p.content.byteLength;
    }
    const id = this.nextId++;
    if (this.inflightOps === 0) this.link.ref();
    this.inflight.set(id, batch);
    this.inflightOps += batch.length;
    this.link.post({ id, ops: batch.map((p) => p.op), contents });
  }

  /**
   * A buffer of at least `size` bytes that no one else holds: one the writer handed back, or a
   * new one (not zero-filled: the batch writes what it reads). Reuse spares each batch the page
   * faults of fresh memory, most of the cost of copying large contents.
   */
  private takeBuffer(size: number): ArrayBuffer {
    const capacity = this.options.maxBatchBytes;
    if (size > capacity) return Buffer.allocUnsafeSlow(size).buffer;
    return this.spare.pop() ?? Buffer.allocUnsafeSlow(capacity).buffer;
  }

  private onReply(reply: WriteReply): void {
    if (reply.contents.byteLength === this.options.maxBatchBytes && this.spare.length < MAX_BATCHES_IN_FLIGHT) this.spare.push(reply.contents);
    const batch = this.inflight.get(reply.id);
    if (!batch) return;
    this.inflight.delete(reply.id);
    this.inflightOps -= batch.length;
    this.options.onStats(reply.stats);
    batch.forEach((p, i) => {
      const o = reply.outcomes[i];
      if (o?.ok) p.resolve(o.value);
      else p.reject(o ? errorOf(o.code, o.message) : new UnavailableError(`${this.options.name}: the writer answered no outcome`));
    });
    this.settled();
    this.schedule();
  }

  private settled(): void {
    if (this.inflightOps > 0) return;
    this.link.unref();
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private onFailed(err: unknown): void {
    const error = new UnavailableError(`${this.options.name}: the writer thread failed (${String(err)}); ` +
      'a write in flight may or may not have committed', { cause: err });
    for (const batch of this.inflight.values()) for (const p of batch) p.reject(error);
    this.inflight.clear();
    this.inflightOps = 0;
    const now = Date.now();
    while (this.failures.length > 0 && now - this.failures[0] > RESTART_WINDOW_MS) this.failures.shift();
    this.failures.push(now);
    if (this.closed || this.failures.length > MAX_RESTARTS) {
      this.down = error;
      for (const p of this.queue.splice(0)) p.reject(error);
    } else {
      // Ops not yet posted never reached the dead writer: the new one runs them.
      this.restarts++;
      this.link = this.startLink();
      this.options.onRestart?.();
      this.schedule();
    }
    this.settled();
  }
}
