/**
 * Where a process's heap goes per connection: two V8 heap snapshots (before and after opening N
 * connections), self size and count per (node type, constructor name), and the difference ÷ N.
 * Reads the .heapsnapshot format (flat `nodes` array described by `snapshot.meta.node_fields`).
 */
import * as fs from 'node:fs';

interface HeapSnapshotFile {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export type HeapCensus = Map<string, { count: number; bytes: number }>;

export function heapCensus(file: string): HeapCensus {
  const snap = JSON.parse(fs.readFileSync(file, 'utf8')) as HeapSnapshotFile;
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const iType = fields.indexOf('type');
  const iName = fields.indexOf('name');
  const iSize = fields.indexOf('self_size');
  const out: HeapCensus = new Map();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]];
    // Strings and code are named by their content; group them by type alone.
    const name = type === 'object' || type === 'closure' || type === 'native' ? snap.strings[snap.nodes[i + iName]] : '';
    const key = name ? `${type}:${name}` : `(${type})`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += snap.nodes[i + iSize];
    out.set(key, e);
  }
  return out;
}

export interface HeapDiffRow { what: string; countPerConn: number; bytesPerConn: number }

/** The biggest per-connection growths between two censuses. */
export function heapDiff(before: HeapCensus, after: HeapCensus, connections: number, top = 20): HeapDiffRow[] {
  const rows: HeapDiffRow[] = [];
  for (const [what, a] of after) {
    const b = before.get(what) ?? { count: 0, bytes: 0 };
    const bytes = (a.bytes - b.bytes) / connections;
    if (bytes <= 0) continue;
    rows.push({ what, countPerConn: Math.round(((a.count - b.count) / connections) * 100) / 100, bytesPerConn: Math.round(bytes) });
  }
  return rows.sort((x, y) => y.bytesPerConn - x.bytesPerConn).slice(0, top);
}
