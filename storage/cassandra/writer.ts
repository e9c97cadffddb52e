/**
 * A row as the owner writes it (log.ts logs it, then writes it to its table), the
 * driver's routing key of a partition, and the table a write statement changes.
 */

export interface Row {
  query: string;
  params: unknown[];
  /** The serialized partition key (routingKey()), for grouping by replica. */
  routingKey: Buffer;
  /** Approximate size, for the batch byte bound. */
  bytes: number;
}

/** A row as it is written to its table: at `ts` (the log row's), or at its query's own timestamp (undefined). */
export interface TableRow extends Row {
  ts: number | undefined;
}

/** Rows a list of rows being written implies in other tables (written with them, never logged). */
export type DeriveRows = (rows: readonly TableRow[]) => TableRow[];

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
export function tableOf(query: string): string {
  let t = tables.get(query);
  if (t === undefined) {
    t = /^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+([\w.]+)/i.exec(query)?.[1] ?? query;
    tables.set(query, t);
  }
  return t;
}
