/**
 * One writing process per SQLite file. The store keeps each inbox's and conversation's next seq
 * in memory (storage/sqlite/seqs.ts), so a second process appending to the same file would hand
 * out seqs the first already gave. A pid file beside the database makes the second open fail
 * with a clear error instead; a lock left behind by a process that is gone (kill -9) is taken
 * over. A recycled pid can make a stale lock look alive: the error names the pid and the file.
 * Open fails with ConfigError on IM_DATA_DIR, so a service main exits 2 naming it.
 */
import fs from 'node:fs';
import { ConfigError } from '../../common/config';

export class SqliteWriterLock {
  private constructor(private readonly file: string, private held: boolean) {}

  /** Takes the lock of the database at dbPath (none for ':memory:'). Throws ConfigError when held. */
  static acquire(dbPath: string): SqliteWriterLock {
    if (dbPath === ':memory:') return new SqliteWriterLock('', false);
    const file = `${dbPath}.writer-lock`;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
        return new SqliteWriterLock(file, true);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number.parseInt(readOr(file, ''), 10);
      if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
        throw new ConfigError('IM_DATA_DIR', `${dbPath} is in use by process ${holder} (${file}): the SQLite store takes one process; ` +
          'run one logic process on it, or use the Cassandra store');
      }
      fs.rmSync(file, { force: true }); // its process is gone: the lock is stale
    }
    throw new ConfigError('IM_DATA_DIR', `could not take ${file}: another process took it first`);
  }

  /** Gives the lock up (only if this process still holds it). Idempotent. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    if (readOr(this.file, '').trim() === String(process.pid)) fs.rmSync(this.file, { force: true });
  }
}

function readOr(file: string, fallback: string): string {
  try { return fs.readFileSync(file, 'utf8'); } catch { return fallback; }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
