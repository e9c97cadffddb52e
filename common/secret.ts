/**
 * The operator's token keys: IM_AUTH_SECRET (or the secret created once in the data dir, embedded
 * mode), IM_AUTH_KEYS for rotation, and the aud/iss checks — read the same way by the gateway,
 * embedded mode and the `im` CLI.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, Settings } from './config';
import type { SignOptions, TokenAuth } from './jwt';

export const SECRET_FILE = 'auth.secret';

/** HS256 keys shorter than this are refused (a short HMAC key can be guessed offline from one token). */
export const MIN_SECRET_LENGTH = 16;

function checkLength(setting: string, secret: string): string {
  if (secret.length < MIN_SECRET_LENGTH) throw new ConfigError(setting, `secret shorter than ${MIN_SECRET_LENGTH} characters`);
  return secret;
}

/** IM_AUTH_KEYS: `kid:secret,kid:secret` (a secret holds no comma; the kid no colon). */
function parseKeys(s: Settings): Map<string, string> {
  const keys = new Map<string, string>();
  for (const entry of s.list('IM_AUTH_KEYS', [])) {
    const colon = entry.indexOf(':');
    if (colon <= 0) throw new ConfigError('IM_AUTH_KEYS', 'expected kid:secret,kid:secret');
    const kid = entry.slice(0, colon);
    if (keys.has(kid)) throw new ConfigError('IM_AUTH_KEYS', `kid "${kid}" given twice`);
    keys.set(kid, checkLength('IM_AUTH_KEYS', entry.slice(colon + 1)));
  }
  return keys;
}

/**
 * IM_AUTH_SECRET (the key of tokens without kid), IM_AUTH_KEYS (keys by kid), IM_AUTH_AUDIENCE and
 * IM_AUTH_ISSUER. Requires nothing: the gateway requires a key, embedded mode falls back to the
 * data dir's secret.
 */
export function loadTokenAuth(s: Settings): TokenAuth {
  const secret = s.raw('IM_AUTH_SECRET', 'auth-secret');
  return {
    secret: secret === undefined ? undefined : checkLength('IM_AUTH_SECRET', secret),
    keys: parseKeys(s),
    audience: s.raw('IM_AUTH_AUDIENCE'),
    issuer: s.raw('IM_AUTH_ISSUER'),
  };
}

/**
 * How to sign (the `im` CLI, tests): with IM_AUTH_SIGNING_KID, that key of IM_AUTH_KEYS and its
 * kid in the header; without it, `defaultSecret()` and no kid. aud/iss as configured.
 */
export function loadSigningKey(s: Settings, defaultSecret: () => string): { secret: string; opts: SignOptions } {
  const auth = loadTokenAuth(s);
  const kid = s.raw('IM_AUTH_SIGNING_KID');
  const opts = { kid, audience: auth.audience, issuer: auth.issuer };
  if (kid === undefined) return { secret: auth.secret ?? defaultSecret(), opts };
  const secret = auth.keys?.get(kid);
  if (secret === undefined) throw new ConfigError('IM_AUTH_SIGNING_KID', `"${kid}" is not a kid in IM_AUTH_KEYS`);
  return { secret, opts };
}

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
  if (s.length < MIN_SECRET_LENGTH) throw new Error(`${file}: secret shorter than ${MIN_SECRET_LENGTH} characters`);
  return s;
}
