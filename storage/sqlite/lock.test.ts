import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../common/config';
import { SqliteStore } from './store';

describe('SQLite store: one writing process per file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-sqlite-lock-'));
  const file = path.join(dir, 'im.sqlite');
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses a second open of a file that is open, naming IM_DATA_DIR; opens it again once closed', async () => {
    const first = SqliteStore.open({ path: file });
    assert.throws(() => SqliteStore.open({ path: file }), (err: unknown) =>
      err instanceof ConfigError && err.field === 'IM_DATA_DIR' && /in use by process/.test(err.message));
    await first.close();
    const again = SqliteStore.open({ path: file });
    await again.close();
  });

  it('takes over a lock left by a process that is gone (kill -9)', async () => {
    // A pid that existed and has exited: a child that ran to completion.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    assert.ok(gone);
    fs.writeFileSync(`${file}.writer-lock`, `${gone}\n`);
    const store = SqliteStore.open({ path: file });
    assert.equal(fs.readFileSync(`${file}.writer-lock`, 'utf8').trim(), String(process.pid));
    await store.close();
    assert.equal(fs.existsSync(`${file}.writer-lock`), false);
  });
});
