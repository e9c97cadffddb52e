/**
 * The throwaway PKI of a `--tls` run: a CA and a server certificate for 127.0.0.1 / localhost
 * signed by it, both ECDSA P-256 (`--tls-key ec`) or both RSA-2048 (`--tls-key rsa`), made with
 * the openssl CLI in a temp dir the run deletes. The gateways the bench starts present the server
 * certificate; the load generators trust the CA and nothing else.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ca, EC_P256, RSA_2048, SERVER_EXT, signed } from '../test/tls-certs';
import type { TlsKeyType } from './options';

/** What each key type is, in results. */
export const TLS_KEY_DESCRIPTION: Record<TlsKeyType, string> = { ec: 'ECDSA P-256', rsa: 'RSA-2048' };

export interface BenchPki {
  dir: string;
  keyType: TlsKeyType;
  /** PEM text of the CA certificate (what clients trust). */
  caPem: string;
  certFile: string;
  keyFile: string;
}

export function makeBenchPki(keyType: TlsKeyType): BenchPki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-bench-tls-'));
  const newKey = keyType === 'ec' ? EC_P256 : RSA_2048;
  try {
    ca(dir, 'ca', newKey);
    signed(dir, 'server', 'ca', SERVER_EXT, newKey);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`--tls: openssl could not make the bench certificates${stderr ? `: ${stderr}` : ''} (${(err as Error).message})`);
  }
  return {
    dir, keyType, caPem: fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server.key'),
  };
}
