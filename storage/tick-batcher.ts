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
  /**
   * Runs one batch synchronously; returns one outcome per item it ran, in order. Items past the
   * last outcome (a batch that ran out of its time budget) go back to the head of the queue.
   */
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
  private held = false;

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

  /** Runs no batch until resume(); calls keep queueing (bounded by maxPending as always). */
  hold(): void {
    this.held = true;
  }

  resume(): void {
    this.held = false;
    if (this.queue.length > 0) this.schedule();
  }

  /** Refuses new calls and runs everything already queued, synchronously, held or not. Idempotent. */
  close(): void {
    this.closed = true;
    while (this.queue.length > 0) this.runOne();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.held) return;
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
    if (outcomes.length === 0 && batch.length > 0) {
      for (const p of batch) p.reject(new Error(`${this.options.name}: a batch ran no item`));
      return;
    }
    this.queue.unshift(...batch.slice(outcomes.length));
    batch.slice(0, outcomes.length).forEach((p, i) => {
      const o = outcomes[i];
      if (o.ok) p.resolve(o.value);
      else p.reject(o.error);
    });
  }
}
