/**
 * How a process proves who it is to NATS and checks who NATS is (docs/operations.md, NATS
 * credentials): IM_NATS_USER + IM_NATS_PASSWORD, or IM_NATS_NKEY_SEED_FILE (an nkey user seed), and
 * IM_NATS_TLS_CA (TLS, the server's chain verified against this CA). nats-server enforces each
 * credential's publish/subscribe permissions; scripts/nats-config.js writes the permissions of each
 * role. Read and checked at start-up, so a missing file or a bad seed stops the process naming the
 * setting (exit 2) rather than at the first connection.
 */
import * as fs from 'node:fs';
import * as nkeys from '@nats-io/nkeys';
import { nkeyAuthenticator, usernamePasswordAuthenticator, type Authenticator, type ConnectionOptions } from '@nats-io/nats-core';
import { checkCertificates, readPem } from '../common/pem';
import { ConfigError, type Settings } from '../common/config';

export type NatsCredentials =
  | { kind: 'password'; user: string; password: string }
  /** The seed (SU…) itself: the public key is what the server's config lists. */
  | { kind: 'nkey'; seed: string };

export interface NatsAuthConfig {
  credentials?: NatsCredentials;
  /** PEM of the CA the server's certificate must chain to (IM_NATS_TLS_CA): TLS is then required. */
  tlsCa?: string;
}

function readSeed(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('IM_NATS_NKEY_SEED_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  // A seed file may be a bare seed or an nk/nsc file with comments around it.
  const seed = /\bSU[A-Z2-7]{56}\b/.exec(text)?.[0];
  if (seed === undefined) throw new ConfigError('IM_NATS_NKEY_SEED_FILE', `${file} holds no nkey user seed (SU…)`);
  try {
    nkeys.fromSeed(new TextEncoder().encode(seed));
  } catch (err) {
    throw new ConfigError('IM_NATS_NKEY_SEED_FILE', `${file}: not a valid nkey seed: ${(err as Error).message}`);
  }
  return seed;
}

/** The IM_NATS_* credential and TLS settings; undefined when none is set (an open server). */
export function loadNatsAuth(s: Settings): NatsAuthConfig | undefined {
  const user = s.raw('IM_NATS_USER', 'nats-user');
  const password = s.raw('IM_NATS_PASSWORD');
  const seedFile = s.raw('IM_NATS_NKEY_SEED_FILE', 'nats-nkey-seed-file');
  const caFile = s.raw('IM_NATS_TLS_CA', 'nats-tls-ca');
  if ((user === undefined) !== (password === undefined)) {
    throw new ConfigError(user === undefined ? 'IM_NATS_USER' : 'IM_NATS_PASSWORD', 'IM_NATS_USER and IM_NATS_PASSWORD go together');
  }
  if (user !== undefined && seedFile !== undefined) {
    throw new ConfigError('IM_NATS_NKEY_SEED_FILE', 'set either IM_NATS_USER/IM_NATS_PASSWORD or IM_NATS_NKEY_SEED_FILE, not both');
  }
  const out: NatsAuthConfig = {};
  if (user !== undefined) out.credentials = { kind: 'password', user, password: password! };
  if (seedFile !== undefined) out.credentials = { kind: 'nkey', seed: readSeed(seedFile) };
  if (caFile !== undefined) {
    out.tlsCa = readPem('IM_NATS_TLS_CA', caFile);
    checkCertificates('IM_NATS_TLS_CA', caFile, out.tlsCa);
  }
  return out.credentials || out.tlsCa ? out : undefined;
}

/**
 * nats.js ignores credentials in a server URL (nats://user:pass@host:4222), so they are taken out
 * here and used as IM_NATS_USER/IM_NATS_PASSWORD would be. All URLs must agree, and credentials in
 * a URL and in the settings at once are refused.
 */
export function urlCredentials(servers: string[], auth: NatsAuthConfig | undefined): { servers: string[]; auth: NatsAuthConfig | undefined } {
  const found = new Set<string>();
  const stripped = servers.map((url) => url.replace(/^((?:\w+:\/\/)?)([^@/\s]*)@/, (_m, scheme: string, info: string) => {
    found.add(info);
    return scheme;
  }));
  if (found.size === 0) return { servers, auth };
  if (found.size > 1) throw new ConfigError('IM_NATS_URL', 'the URLs name different credentials');
  if (auth?.credentials) throw new ConfigError('IM_NATS_URL', 'credentials in the URL and in IM_NATS_USER or IM_NATS_NKEY_SEED_FILE: use one');
  const [info] = found;
  const colon = info.indexOf(':');
  if (colon <= 0) throw new ConfigError('IM_NATS_URL', 'credentials in a URL must be user:password@');
  const credentials: NatsCredentials = {
    kind: 'password', user: decodeURIComponent(info.slice(0, colon)), password: decodeURIComponent(info.slice(colon + 1)),
  };
  return { servers: stripped, auth: { ...auth, credentials } };
}

/** The nats.js connect options for it. */
export function natsConnectOptions(auth: NatsAuthConfig | undefined): Pick<ConnectionOptions, 'authenticator' | 'tls'> {
  if (!auth) return {};
  let authenticator: Authenticator | undefined;
  const c = auth.credentials;
  if (c?.kind === 'password') authenticator = usernamePasswordAuthenticator(c.user, c.password);
  if (c?.kind === 'nkey') authenticator = nkeyAuthenticator(new TextEncoder().encode(c.seed));
  return { ...(authenticator && { authenticator }), ...(auth.tlsCa && { tls: { ca: auth.tlsCa } }) };
}

/** What a log line may say about it: the mechanism, never the secret. */
export function describeNatsAuth(auth: NatsAuthConfig | undefined): string {
  const c = auth?.credentials;
  const who = c === undefined ? 'no credentials' : c.kind === 'password' ? `user ${c.user}` : `nkey ${nkeys.fromSeed(new TextEncoder().encode(c.seed)).getPublicKey()}`;
  return auth?.tlsCa ? `${who}, tls` : who;
}
