/**
 * Collects calls that arrive in the same event-loop tick and hands them to `run` as one batch
 * (for the SQLite store: one transaction, so one WAL commit for many messages). Each caller
 * still gets its own result or error. The queue is bounded: past maxPending a call is refused
 * with OverloadedError rather than buffered without limit.
 */
import { OverloadedError, UnavailableError } from '../common/errors';

export type Settled<R> = { ok: true; value: R } | { ok: false; error: unknown };

export interface TickBatcherOptions<I, R> {
  /** Calls waiting to run; one more is refused with OverloadedError. */
  maxPending: number;
  /** Items handed to one `run`; the rest run on the next turn so I/O can interleave. */
  maxBatch: number;
  /** Runs one batch synchronously; returns one outcome per item, in order. */
  run: (items: I[]) => Settled<R>[];
  /** What closed-batcher rejections say. */
  name: string;
}

interface Pending<I, R> {
  item: I;
  resolve: (value: R) => void;
  reject: (error: unknown) => void;
}

export class TickBatcher<I, R> {
  private queue: Pending<I, R>[] = [];
  private scheduled = false;
  private closed = false;

  constructor(private readonly options: TickBatcherOptions<I, R>) {}

  get pending(): number {
    return this.queue.length;
  }

  submit(item: I): Promise<R> {
    if (this.closed) return Promise.reject(new UnavailableError(`${this.options.name} is closed`));
    if (this.queue.length >= this.options.maxPending) {
      return Promise.reject(new OverloadedError(`${this.options.name}: ${this.queue.length} calls already queued`));
    }
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Refuses new calls and runs everything already queued, synchronously. Idempotent. */
  close(): void {
    this.closed = true;
    while (this.queue.length > 0) this.runOne();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.runOne();
      if (this.queue.length > 0) this.schedule();
    });
  }

  private runOne(): void {
    const batch = this.queue.splice(0, this.options.maxBatch);
    if (batch.length === 0) return;
    let outcomes: Settled<R>[];
    try {
      outcomes = this.options.run(batch.map((p) => p.item));
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const o = outcomes[i];
      if (o === undefined) p.reject(new Error(`${this.options.name}: no outcome for item ${i}`));
      else if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  }
}
