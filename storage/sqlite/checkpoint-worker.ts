/**
 * Worker thread body of storage/sqlite/checkpoint.ts: its own connection to the store's file,
 * running PASSIVE WAL checkpoints every intervalMs. PASSIVE never waits for the writer or readers,
 * so no write is held by it; the copy into the database file and its fsync happen here, off the
 * event loop and off the writer thread.
 *
 * Once the log passes restartFrames it runs checkpoints back to back, each copying only what
 * arrived during the one before, until CatchUp (checkpoint.ts) says to hand over: what arrives
 * per round is small, stopped shrinking, or 8 rounds went by. It then tells the writer thread
 * (RESTART_DUE on the port the store gave it) and runs no round until the writer answers: the
 * writer's own checkpoint copies the rest and its next commit starts the log over.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CatchUp, RESTART_DONE, RESTART_DUE } from './checkpoint';
import { nameThisThread } from '../../common/thread-name';

nameThisThread('sqlite-ckpt');

interface Data { path: string; intervalMs: number; restartFrames: number }
type Result = { log: number; checkpointed: number };

const { path, intervalMs, restartFrames } = workerData as Data;
const db = new Database(path, { timeout: 0 });
db.pragma('busy_timeout = 0');
let timer: NodeJS.Timeout | undefined;
let stopped = false;
let writer: MessagePort | undefined;
const catchUp = new CatchUp(restartFrames);
/** How long rounds wait for the writer's RESTART_DONE at most. */
const WRITER_ANSWER_BOUND_MS = 5000;

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
  const next = catchUp.after(r, writer !== undefined);
  if (next === 'hand-over') {
    writer!.postMessage(RESTART_DUE);
    // No round of ours until the writer has copied the rest (RESTART_DONE): the writer gets to
    // it between two batches, which under load can take longer than an interval, and a round of
    // ours then would hold the checkpoint lock and make its checkpoint fail (SQLITE_BUSY). Past
    // the bound (a writer that died or never answers) the rounds go on.
    timer = setTimeout(round, Math.max(intervalMs, WRITER_ANSWER_BOUND_MS));
  } else {
    // Catching up: straight on, so the next round only has what arrived during this one.
    timer = setTimeout(round, next === 'again' ? 0 : intervalMs);
  }
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
  writer.on('message', (w: unknown) => {
    if (w !== RESTART_DONE || stopped) return;
    clearTimeout(timer);
    timer = setTimeout(round, intervalMs);
  });
});
timer = setTimeout(round, intervalMs);
