/**
 * Worker thread body of storage/sqlite/checkpoint.ts: its own connection to the store's file,
 * running PASSIVE WAL checkpoints. PASSIVE never waits for the writer or readers, so the store's
 * connection is never blocked by it; the copy into the database file and its fsync happen here
 * instead of on the event loop.
 *
 * Under steady writes a PASSIVE checkpoint never catches up with the log's end, and SQLite only
 * restarts the log from its beginning once one has: the file would grow without bound. So once
 * the log passes restartFrames, the worker first runs checkpoints back to back until the backlog
 * stops shrinking (each copies only what arrived during the one before, and leaves it fsynced),
 * then asks the store for a quiet window (the store posts no more writes and waits until its
 * writer thread answered those in flight; its event loop keeps running), finishes the copy of
 * those last pages in it, and the writer's next commit starts the log over. Every append waits while the window lasts, so it should copy what
 * arrived since a round that just ended, not up to a quarter of the log (tens of ms of copying
 * and fsync, several times a second at half the max rate: the p95 and p99 of send->deliver);
 * and with a long log (walRestartFrames) windows are rare.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

interface Data { path: string; intervalMs: number; restartFrames: number }
type Result = { log: number; checkpointed: number; quiet?: boolean; copiedNow?: number };

const { path, intervalMs, restartFrames } = workerData as Data;
const db = new Database(path, { timeout: 0 });
db.pragma('busy_timeout = 0');
let timer: NodeJS.Timeout | undefined;
let stopped = false;
/** A backlog this small (about a ms of copying) is copied in a quiet window without waiting for it to shrink further. */
const SMALL_BACKLOG = 64;
/** The largest backlog a quiet window is asked for with, when rounds no longer shrink it (4 MiB). */
const MAX_QUIET_BACKLOG = 1024;
/** The backlog the previous catch-up round left (Infinity: not catching up). */
let lastBacklog = Infinity;
/** The log's length and the frames of it copied at the latest checkpoint, to tell what each one copied. */
let lastLog = 0;
let copied = 0;

function checkpoint(): Result | undefined {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    // A shorter log than last time started over: all of its frames are new.
    const before = r.log >= lastLog ? copied : 0;
    lastLog = r.log;
    copied = r.checkpointed;
    return { log: r.log, checkpointed: r.checkpointed, copiedNow: r.checkpointed - before };
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
  if (r && r.log >= restartFrames) {
    // A restart is due: the window is asked for once the backlog is small, or no longer shrinking
    // (writes arrive as fast as a round copies them) and at most MAX_QUIET_BACKLOG.
    const settled = backlog <= SMALL_BACKLOG || (backlog >= lastBacklog && backlog <= MAX_QUIET_BACKLOG);
    if (settled) {
      lastBacklog = Infinity;
      parentPort!.postMessage({ want: 'quiet' });
      return; // the next round starts after the quiet one
    }
    lastBacklog = backlog;
    // Catching up: straight on, so the next round only has what arrived during this one.
    timer = setTimeout(round, backlog > MAX_QUIET_BACKLOG ? Math.min(intervalMs, 20) : 0);
    return;
  }
  lastBacklog = Infinity;
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
