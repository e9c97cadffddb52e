/** The operator's token-signing secret: given, or created once in the data dir (embedded mode). */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const SECRET_FILE = 'auth.secret';

/** Reads dataDir/auth.secret, creating it (mode 0600) with 32 random bytes when missing. */
export function loadOrCreateSecret(dataDir: string): string {
  const file = path.join(dataDir, SECRET_FILE);
  try {
    return readSecret(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString('hex');
  try {
    fs.writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return readSecret(file);
}

/** Reads dataDir/auth.secret; throws ENOENT when the server has not created it yet. */
export function readSecretFromDataDir(dataDir: string): string {
  return readSecret(path.join(dataDir, SECRET_FILE));
}

function readSecret(file: string): string {
  const s = fs.readFileSync(file, 'utf8').trim();
  if (s.length < 16) throw new Error(`${file}: secret shorter than 16 characters`);
  return s;
}
