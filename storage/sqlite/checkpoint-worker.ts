/**
 * Worker thread body of storage/sqlite/checkpoint.ts: its own connection to the store's file,
 * running PASSIVE WAL checkpoints every intervalMs. PASSIVE never waits for the writer or readers,
 * so no write is held by it; the copy into the database file and its fsync happen here, off the
 * event loop and off the writer thread.
 *
 * Once the log passes restartFrames it runs checkpoints back to back until the backlog (frames
 * not yet copied) is small, or stops shrinking (writes arrive as fast as a round copies them) at
 * a bound, and then tells the writer thread (RESTART_DUE on the port the store gave it): the
 * writer's own checkpoint copies the rest and its next commit starts the log over. Each round
 * copies only what arrived during the one before, so what the writer copies (and the writes
 * queued behind it wait for) is a few ms of writes, not the whole log.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { RESTART_DUE } from './checkpoint';

interface Data { path: string; intervalMs: number; restartFrames: number }
type Result = { log: number; checkpointed: number };

const { path, intervalMs, restartFrames } = workerData as Data;
const db = new Database(path, { timeout: 0 });
db.pragma('busy_timeout = 0');
let timer: NodeJS.Timeout | undefined;
let stopped = false;
let writer: MessagePort | undefined;
// A round's backlog is the frames that arrived since the round before (plus any it could not
// copy): a round copies every frame that was in the log when it started, so what it leaves
// behind (nearly always nothing) does not say what the writer would have to copy if it went now.
/** Arrivals this few (a few ms of copying and fsync) are handed to the writer without waiting for them to shrink further. */
const SMALL_BACKLOG = 128;
/** The most arrivals handed to the writer when rounds no longer shrink them (4 MiB). */
const MAX_HANDED_BACKLOG = 1024;
/** The log's length at the previous round, and the arrivals the previous catch-up round measured (Infinity: not catching up). */
let lastLog = 0;
let lastBacklog = Infinity;

function checkpoint(): Result | undefined {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
    return { log: r.log, checkpointed: r.checkpointed };
  } catch (err) {
    // SQLITE_BUSY (the writer's own checkpoint) or a transient I/O error: the next round tries again.
    parentPort!.postMessage({ error: String(err) });
    return undefined;
  }
}

function round(): void {
  timer = undefined;
  if (stopped) return;
  const r = checkpoint();
  if (r) parentPort!.postMessage(r);
  // Frames the log gained since the previous round (a shorter log started over: all of it is new),
  // plus any this round could not copy (a reader still on an older snapshot).
  const arrived = r ? (r.log >= lastLog ? r.log - lastLog : r.log) : Infinity;
  if (r) lastLog = r.log;
  const backlog = r ? arrived + (r.log - r.checkpointed) : Infinity;
  if (r && r.log >= restartFrames && writer) {
    const settled = backlog <= SMALL_BACKLOG || (backlog >= lastBacklog && backlog <= MAX_HANDED_BACKLOG);
    if (settled) {
      lastBacklog = Infinity;
      writer.postMessage(RESTART_DUE);
      // The writer checkpoints now; a round of ours meanwhile would only make it wait (SQLITE_BUSY).
      timer = setTimeout(round, intervalMs);
      return;
    }
    lastBacklog = backlog;
    // Catching up: straight on, so the next round only has what arrived during this one.
    timer = setTimeout(round, 0);
    return;
  }
  lastBacklog = Infinity;
  timer = setTimeout(round, intervalMs);
}

parentPort!.on('message', (m: 'stop' | { writerPort: MessagePort }) => {
  if (m === 'stop') {
    stopped = true;
    clearTimeout(timer);
    writer?.close();
    db.close();
    parentPort!.close();
    return;
  }
  // A new writer thread (the first, or one started after the previous failed).
  writer?.close();
  writer = m.writerPort;
});
timer = setTimeout(round, intervalMs);
