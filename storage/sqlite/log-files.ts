/**
 * The message log's files: segments beside the database, `<db>-log.<first lsn, 16 digits>`,
 * written front to back and never rewritten. A new segment starts at every open and once the
 * current one passes segmentBytes; a segment is deleted once every record in it is indexed
 * (storage/sqlite/log-indexer.ts), so under steady load the log holds about one index interval of
 * messages plus one segment.
 *
 * A write is one writev(2) on the event loop: an append to the page cache, under 0.5 ms nearly
 * always here. Through libuv's thread pool the same writes waited up to 105 ms for a pool thread
 * to get a CPU on a busy 2-core box, and the p99 of send->deliver at half the max rate was 22-132 ms
 * against 13.5-28.5 ms (BENCHMARKS.md, "The embedded store acknowledges from a message log"). A
 * write that returned is in the kernel's page cache: a kill -9 of the process loses nothing
 * written, as with SQLite's WAL at synchronous = NORMAL; a power loss can lose the last writes
 * (no fsync per write).
 */
import fs from 'node:fs';
import path from 'node:path';
import { decodeRecords, type LogRecord } from './log-record';

export interface LogSink {
  /** Appends bufs (records firstLsn..lastLsn) to the log in one write; `done` once they are in the page cache (or failed), maybe at once. */
  write(bufs: Buffer[], firstLsn: number, lastLsn: number, done: (err: Error | null) => void): void;
  /** Records up to lsn are in the tables: segments holding only those are deleted. */
  indexed(lsn: number): void;
  /** Closes the open segment; `indexedAll`: every record is in the tables, so it goes too. */
  close(indexedAll: boolean): void;
  /** Bytes written since open. */
  readonly bytesWritten: number;
}

const SEGMENT = /^(.*)-log\.(\d{16})$/;

export function segmentPath(dbPath: string, firstLsn: number): string {
  return `${dbPath}-log.${String(firstLsn).padStart(16, '0')}`;
}

/** The database's log segments, oldest first. */
export function listSegments(dbPath: string): { file: string; firstLsn: number }[] {
  const dir = path.dirname(dbPath);
  const base = path.basename(dbPath);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .map((name) => SEGMENT.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === base)
    .map((m) => ({ file: path.join(dir, m[0]), firstLsn: Number(m[2]) }))
    .sort((a, b) => a.firstLsn - b.firstLsn);
}

export interface ReplayResult {
  /** Records found after the indexed lsn, and written into the tables. */
  replayed: number;
  /** Segments whose tail was torn (a write a crash cut short): the records before it were kept. */
  tornSegments: number;
  /** The lsn the next record takes. */
  nextLsn: number;
}

/**
 * At open, before anything is served: indexes every record the log holds after indexedLsn (what
 * a crash left unindexed), in chunks of maxBatch records, then deletes every segment. Records go
 * in lsn order; one at or below the lsn already reached is skipped.
 */
export function replayLog(dbPath: string, indexedLsn: number, write: (records: LogRecord[]) => void, maxBatch: number): ReplayResult {
  const segments = listSegments(dbPath);
  let next = indexedLsn + 1;
  let replayed = 0;
  let tornSegments = 0;
  for (const s of segments) {
    const buf = fs.readFileSync(s.file);
    const { records, validEnd } = decodeRecords(buf);
    if (validEnd < buf.length) tornSegments++;
    let run: LogRecord[] = [];
    for (const r of records) {
      // At or below the indexed lsn: already in the tables. Past a gap (a damaged segment lost
      // records) the sequence goes on from this one.
      if (r.lsn < next) continue;
      run.push(r);
      next = r.lsn + 1;
      if (run.length >= maxBatch) {
        write(run);
        replayed += run.length;
        run = [];
      }
    }
    if (run.length > 0) {
      write(run);
      replayed += run.length;
    }
  }
  for (const s of segments) fs.rmSync(s.file, { force: true });
  return { replayed, tornSegments, nextLsn: Math.max(next, indexedLsn + 1) };
}

/** The log of a file-backed store. */
export class FileSink implements LogSink {
  private fd: number;
  private size = 0;
  private file: string;
  private lastLsn = 0;
  /** Closed segments and the last lsn in each, oldest first. */
  private readonly closed: { file: string; lastLsn: number }[] = [];
  bytesWritten = 0;

  constructor(private readonly dbPath: string, firstLsn: number, private readonly segmentBytes: number) {
    this.file = segmentPath(dbPath, firstLsn);
    this.fd = fs.openSync(this.file, 'w');
  }

  write(bufs: Buffer[], firstLsn: number, lastLsn: number, done: (err: Error | null) => void): void {
    if (this.size >= this.segmentBytes) this.rotate(firstLsn);
    let len = 0;
    for (const b of bufs) len += b.length;
    let err: Error | null = null;
    try {
      const n = fs.writevSync(this.fd, bufs, this.size);
      if (n !== len) err = Object.assign(new Error(`message log: short write (${n} of ${len} bytes)`), { code: 'EIO' });
    } catch (e) {
      err = e as Error;
    }
    if (err) {
      // The file keeps only whole writes: a partial one is cut off, so the next write follows the last good one.
      try {
        fs.ftruncateSync(this.fd, this.size);
      } catch {
        // A disk that failed the write may fail this too; replay stops at the torn record.
      }
      done(err);
      return;
    }
    this.size += len;
    this.bytesWritten += len;
    this.lastLsn = lastLsn;
    done(null);
  }

  indexed(lsn: number): void {
    while (this.closed.length > 0 && this.closed[0].lastLsn <= lsn) {
      fs.rm(this.closed.shift()!.file, { force: true }, () => undefined);
    }
  }

  close(indexedAll: boolean): void {
    fs.closeSync(this.fd);
    if (indexedAll) {
      for (const s of this.closed.splice(0)) fs.rmSync(s.file, { force: true });
      fs.rmSync(this.file, { force: true });
    }
  }

  private rotate(firstLsn: number): void {
    fs.closeSync(this.fd);
    this.closed.push({ file: this.file, lastLsn: this.lastLsn });
    this.file = segmentPath(this.dbPath, firstLsn);
    this.fd = fs.openSync(this.file, 'w');
    this.size = 0;
  }
}

/** A ':memory:' store's log: nothing outlives the process, so a write is done at once. */
export class MemorySink implements LogSink {
  bytesWritten = 0;
  write(bufs: Buffer[], _firstLsn: number, _lastLsn: number, done: (err: Error | null) => void): void {
    for (const b of bufs) this.bytesWritten += b.length;
    done(null);
  }
  indexed(): void {}
  close(): void {}
}
