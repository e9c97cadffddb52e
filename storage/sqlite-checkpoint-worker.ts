/**
 * Worker thread body of storage/sqlite-checkpoint.ts: its own connection to the store's file,
 * running PASSIVE WAL checkpoints. PASSIVE never waits for the writer or readers, so the store's
 * connection is never blocked by it; the copy into the database file and its fsync happen here
 * instead of on the event loop.
 *
 * Under steady writes a PASSIVE checkpoint never catches up with the log's end, and SQLite only
 * restarts the log from its beginning once one has: the file would grow without bound. So once
 * the log passes restartFrames and the backlog is small, the worker asks the store for a quiet
 * window (the store holds appends back between transactions; its event loop keeps running),
 * finishes the copy in it, and the store's next commit starts the log over.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface Data { path: string; intervalMs: number; restartFrames: number }
type Result = { log: number; checkpointed: number; quiet?: boolean };

const { path, intervalMs, restartFrames } = workerData as Data;
const db = new Database(path, { timeout: 0 });
db.pragma('busy_timeout = 0');
let timer: NodeJS.Timeout | undefined;
let stopped = false;

function checkpoint(): Result | undefined {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    return { log: r.log, checkpointed: r.checkpointed };
  } catch (err) {
    // SQLITE_BUSY or a transient I/O error: the next round tries again; the log only grows meanwhile.
    parentPort!.postMessage({ error: String(err) });
    return undefined;
  }
}

function round(): void {
  timer = undefined;
  if (stopped) return;
  const r = checkpoint();
  if (r) parentPort!.postMessage(r);
  const backlog = r ? r.log - r.checkpointed : 0;
  if (r && r.log >= restartFrames && backlog <= restartFrames / 4) {
    parentPort!.postMessage({ want: 'quiet' });
    return; // the next round starts after the quiet one
  }
  // Behind: go again soon rather than let the backlog grow for another interval.
  timer = setTimeout(round, backlog > restartFrames / 4 ? Math.min(intervalMs, 20) : intervalMs);
}

parentPort!.on('message', (m: string) => {
  if (m === 'quiet') {
    const r = checkpoint();
    parentPort!.postMessage({ ...(r ?? { log: 0, checkpointed: 0 }), quiet: true });
    if (!stopped) timer = setTimeout(round, intervalMs);
  } else if (m === 'now') {
    const r = checkpoint();
    if (r) parentPort!.postMessage(r);
  } else if (m === 'stop') {
    stopped = true;
    clearTimeout(timer);
    db.close();
    parentPort!.close();
  }
});
timer = setTimeout(round, intervalMs);
