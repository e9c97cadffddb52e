/**
 * Plain (non-conditional) writes of one event-loop tick, grouped by PARTITION: the rows of one
 * partition go as one unlogged single-partition batch (one mutation), every partition as its own
 * request, all concurrently. Measured on this box (docs/sequencer.md, "Cost"): Cassandra spends
 * ~170-200 µs of CPU per partition mutation whether it comes alone or inside a multi-partition
 * batch, and 12.5 µs per row inside a single-partition batch; multi-partition batches only add
 * latency (their mutations queue behind each other at the coordinator). So rows are grouped by
 * partition and nothing else.
 *
 * The owner serializes every timeline (docs/sequencer.md), so a caller issues a timeline's next
 * rows only after the previous write() resolved. Each write() resolves when every request holding
 * its rows is acknowledged.
 */
import type { Client } from 'cassandra-driver';
import { Gate, toStoreError } from './cassandra-util';

export interface Row {
  query: string;
  params: unknown[];
  /** The serialized partition key (routingKey()), for grouping by replica. */
  routingKey: Buffer;
  /** Approximate size, for the batch byte bound. */
  bytes: number;
}

export interface WriterOptions {
  client: Client;
  gate: Gate;
  /** Rows per batch at most. */
  maxRows: number;
  /** Bytes per batch at most (one row always fits): keep under batch_size_fail_threshold. */
  maxBytes: number;
  /**
   * A fixed write timestamp (µs) for every row of a batch, or none (the rows' own USING TIMESTAMP
   * or the driver's). Called once per batch, just before it is sent.
   */
  timestamp?: () => number;
  /** Called just before a batch is sent; throwing fails the batch's writes without sending. */
  beforeSend?: () => void;
  /** Client-side timeout of one batch. */
  timeoutMs: () => number;
  what: string;
}

interface Waiter {
  /** Throws when the rows must no longer be sent (their writer lost the right to write them). */
  check?: () => void;
  remaining: number;
  failed: unknown;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Queued {
  row: Row;
  waiter: Waiter;
}

/** The partition key as the driver hashes it: one component raw, several in composite form. */
export function routingKey(...parts: (string | number)[]): Buffer {
  const enc = parts.map((p) => {
    if (typeof p === 'string') return Buffer.from(p, 'utf8');
    const b = Buffer.alloc(4);
    b.writeInt32BE(p);
    return b;
  });
  if (enc.length === 1) return enc[0];
  const out: Buffer[] = [];
  for (const b of enc) {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    out.push(len, b, Buffer.alloc(1));
  }
  return Buffer.concat(out);
}

const tables = new Map<string, string>();
/** The table a write statement changes (rows of two tables never share a partition). */
function tableOf(query: string): string {
  let t = tables.get(query);
  if (t === undefined) {
    t = /^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([\w.]+)/i.exec(query)?.[1] ?? query;
    tables.set(query, t);
  }
  return t;
}

export class RowWriter {
  private queue: Queued[] = [];
  private scheduled = false;

  constructor(private readonly o: WriterOptions) {}

  /**
   * Writes rows (in whatever batches the tick makes); resolves when all are acknowledged. `check`
   * runs again just before each batch holding these rows is sent; if it throws, that batch is
   * not sent and every write with rows in it fails.
   */
  write(rows: Row[], check?: () => void): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { check, remaining: rows.length, failed: undefined, resolve, reject };
      for (const row of rows) this.queue.push({ row, waiter });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const items = this.queue;
    this.queue = [];
    const groups = new Map<string, Queued[]>();
    for (const q of items) {
      const where = `${tableOf(q.row.query)}\0${q.row.routingKey.toString('latin1')}`;
      const g = groups.get(where);
      if (g) g.push(q);
      else groups.set(where, [q]);
    }
    for (const g of groups.values()) {
      for (let i = 0; i < g.length;) {
        let bytes = 0;
        let j = i;
        while (j < g.length && j - i < this.o.maxRows && (j === i || bytes + g[j].row.bytes <= this.o.maxBytes)) {
          bytes += g[j].row.bytes;
          j++;
        }
        void this.send(g.slice(i, j));
        i = j;
      }
    }
  }

  private async send(batch: Queued[]): Promise<void> {
    let error: unknown;
    try {
      await this.o.gate.run(async () => {
        this.o.beforeSend?.();
        for (const q of batch) q.waiter.check?.();
        const ts = this.o.timestamp?.();
        const queries = batch.map((q) => ({ query: q.row.query, params: q.row.params }));
        const options = { prepare: true, readTimeout: this.o.timeoutMs(), ...(ts !== undefined && { timestamp: ts }) };
        if (queries.length === 1) await this.o.client.execute(queries[0].query, queries[0].params, options);
        else await this.o.client.batch(queries, { ...options, logged: false });
      });
    } catch (err) {
      error = toStoreError(err, this.o.what);
    }
    for (const q of batch) {
      const w = q.waiter;
      if (error !== undefined && w.failed === undefined) w.failed = error;
      if (--w.remaining === 0) {
        if (w.failed !== undefined) w.reject(w.failed);
        else w.resolve();
      }
    }
  }
}
