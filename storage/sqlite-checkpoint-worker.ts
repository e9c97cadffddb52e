/**
 * Worker thread body of storage/sqlite-checkpoint.ts: its own connection to the store's file,
 * running PASSIVE WAL checkpoints on a timer. PASSIVE never waits for the writer or readers, so
 * the store's connection is never blocked by it; the copy into the database file and its fsync
 * happen on this thread instead of on the event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface Data { path: string; intervalMs: number }

const { path, intervalMs } = workerData as Data;
const db = new Database(path, { timeout: 0 });
db.pragma('busy_timeout = 0');
const run = () => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    parentPort!.postMessage({ log: r.log, checkpointed: r.checkpointed });
  } catch (err) {
    // SQLITE_BUSY or a transient I/O error: the next tick tries again; the WAL only grows meanwhile.
    parentPort!.postMessage({ error: String(err) });
  }
};
const timer = setInterval(run, intervalMs);
parentPort!.on('message', (m: string) => {
  if (m === 'now') run();
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort!.close();
});
