/**
 * The LogicAdmin credential: `authorization: Bearer <token>` gRPC metadata, compared in constant
 * time with every configured admin token (several at once, so an operator can rotate). Tokens come
 * from IM_LOGIC_ADMIN_TOKENS and from IM_LOGIC_ADMIN_TOKEN_FILE, which is re-read when it changes (a
 * Kubernetes Secret mounted as a volume is updated in place). Clients never hold an admin token:
 * they authenticate to gateways with their own JWT, which this check does not accept.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { ConfigError } from '../common/config';
import type { ImError } from '../common/errors';
import { NotAuthenticatedError, TokenInvalidError } from '../common/errors';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';

/** Shortest admin token accepted (e.g. `openssl rand -hex 32` gives 64). */
export const MIN_ADMIN_TOKEN_CHARS = 32;
/** How often IM_LOGIC_ADMIN_TOKEN_FILE is checked for a change. */
const FILE_POLL_MS = 2000;

/** The admin tokens as configured. None at all: the admin API is not served. */
export interface AdminAuthSettings {
  /** IM_LOGIC_ADMIN_TOKENS. */
  tokens: string[];
  /** IM_LOGIC_ADMIN_TOKEN_FILE and the tokens it held at start; re-read when it changes. */
  tokenFile?: { path: string; tokens: string[] };
}

/** Whether any admin token is configured, i.e. whether the admin API is served. */
export function adminApiEnabled(settings: AdminAuthSettings): boolean {
  return settings.tokens.length + (settings.tokenFile?.tokens.length ?? 0) > 0;
}

/**
 * The tokens in `text`: comma-separated (an env var) or one per line (a file; blank lines and
 * lines starting with # are skipped). Throws ConfigError naming `setting` on a short token.
 */
export function parseAdminTokens(setting: string, text: string, separator: ',' | '\n'): string[] {
  const tokens = text.split(separator).map((t) => t.trim()).filter((t) => t !== '' && !t.startsWith('#'));
  for (const [i, t] of tokens.entries()) {
    if (t.length < MIN_ADMIN_TOKEN_CHARS) {
      throw new ConfigError(setting, `token ${i + 1} has ${t.length} characters; at least ${MIN_ADMIN_TOKEN_CHARS} are required`);
    }
    if (!/^[\x21-\x7e]+$/.test(t)) throw new ConfigError(setting, `token ${i + 1} must be printable ASCII without spaces`);
  }
  return tokens;
}

/** Reads IM_LOGIC_ADMIN_TOKEN_FILE; ConfigError naming the setting when it cannot be read or holds no token. */
export function readAdminTokenFile(file: string, readFile: (p: string) => string = (p) => fs.readFileSync(p, 'utf8')): string[] {
  let text: string;
  try {
    text = readFile(file);
  } catch (err) {
    throw new ConfigError('IM_LOGIC_ADMIN_TOKEN_FILE', `cannot read ${file}: ${(err as Error).message}`);
  }
  const tokens = parseAdminTokens('IM_LOGIC_ADMIN_TOKEN_FILE', text, '\n');
  if (tokens.length === 0) throw new ConfigError('IM_LOGIC_ADMIN_TOKEN_FILE', `${file} holds no token`);
  return tokens;
}

const digest = (token: string) => createHash('sha256').update(token).digest();

/**
 * What changes when the file does. stat follows symlinks, so the swap of a Kubernetes Secret
 * volume's ..data link (a new inode) is seen too; '' while the file is missing.
 */
function fileVersion(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '';
  }
}

/** The accepted admin tokens, kept as SHA-256 digests so every comparison is the same length. */
export class AdminTokens {
  private digests: Buffer[];
  private readonly fromEnv: string[];
  private readonly file?: string;
  private readonly logger: Logger;
  private readonly timer?: NodeJS.Timeout;
  private seen = '';

  constructor(settings: AdminAuthSettings, options: { logger?: Logger; pollMs?: number } = {}) {
    if (!adminApiEnabled(settings)) throw new RangeError('AdminTokens needs at least one token');
    this.logger = options.logger ?? silentLogger;
    // The env tokens stay; the file's are replaced on every change.
    this.fromEnv = settings.tokens;
    this.digests = [...settings.tokens, ...settings.tokenFile?.tokens ?? []].map(digest);
    this.file = settings.tokenFile?.path;
    if (this.file !== undefined) {
      this.seen = fileVersion(this.file);
      this.timer = setInterval(() => this.poll(), options.pollMs ?? FILE_POLL_MS).unref();
    }
  }

  /** Why `metadata` does not carry an accepted admin token, or undefined when it does. */
  check(metadata: grpc.Metadata): ImError | undefined {
    const header = metadata.get('authorization')[0];
    if (header === undefined) return new NotAuthenticatedError('the admin API needs "authorization: Bearer <admin token>" metadata');
    const m = /^Bearer +(\S+) *$/i.exec(String(header));
    if (!m) return new NotAuthenticatedError('authorization metadata must be "Bearer <admin token>"');
    const presented = digest(m[1]);
    let accepted = false;
    for (const d of this.digests) accepted = timingSafeEqual(d, presented) || accepted; // no early exit
    return accepted ? undefined : new TokenInvalidError('not an accepted admin token');
  }

  /** Stops watching the token file. */
  close(): void {
    clearInterval(this.timer);
  }

  private poll(): void {
    const version = fileVersion(this.file!);
    if (version === this.seen) return;
    this.seen = version;
    try {
      const tokens = [...this.fromEnv, ...readAdminTokenFile(this.file!)];
      this.digests = tokens.map(digest);
      this.logger.info('admin tokens reloaded', { file: this.file, tokens: tokens.length });
    } catch (err) {
      // A half-written or removed file must not lock everyone out: keep the tokens in use.
      this.logger.error('admin token file not reloaded; the previous tokens stay accepted', { err: (err as Error).message });
    }
  }
}
