/**
 * PEM files named by settings: read and checked at start-up, so that a missing or unreadable file
 * stops the process naming the setting (exit 2) instead of failing at the first connection. Used
 * for the internal gRPC certificates, NATS's CA and Cassandra's TLS files.
 */
import * as fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { ConfigError } from './config';

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function readPem(setting: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(setting, `cannot read ${file}: ${(err as Error).message}`);
  }
}

/** Every certificate of a PEM bundle, parsed; none or a bad one is a ConfigError. */
export function checkCertificates(setting: string, file: string, pem: string): void {
  const blocks = pem.match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) throw new ConfigError(setting, `${file} holds no PEM certificate`);
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(setting, `${file} holds a certificate that does not parse: ${(err as Error).message}`);
    }
  }
}
