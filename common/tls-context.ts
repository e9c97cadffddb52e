/**
 * A server certificate and key read from PEM files and re-read when the files change, for any
 * TLS listener: the gateway's TCP listener (gateway/server.ts wraps each accepted socket with
 * `context`) and, through attach(), anything with setSecureContext() (tls.Server, https.Server
 * such as the router's route API, a WSS listener). Established connections keep the context they were made with: a reload only
 * changes what the next handshake presents.
 *
 * At start a bad file is a ConfigError naming the setting (exit 2). Later, a file that is missing,
 * half written, or a key that does not match the certificate is logged and the certificate in use
 * stays: a botched renewal must not take the listener down. The files are polled (stat, which
 * follows symlinks, so the ..data swap of a Kubernetes Secret volume is seen), not watched: inotify
 * misses a renamed-over file and does not work on every volume.
 */
import * as fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError } from './config';
import { Logger, silentLogger } from './log';

/** Nothing older is offered or accepted. */
export const TLS_MIN_VERSION = 'TLSv1.2';
export const DEFAULT_TLS_RELOAD_MS = 10_000;

export interface TlsFiles {
  /** PEM: the server certificate, then any intermediates. */
  certFile: string;
  /** PEM: its private key (unencrypted). */
  keyFile: string;
  /** The settings that named them, for error messages (e.g. IM_GATEWAY_TLS_CERT / _KEY). */
  certSetting: string;
  keySetting: string;
}

/** What one load produced: the options (for setSecureContext) and the context made from them. */
export interface LoadedTls {
  options: SecureContextOptions;
  context: SecureContext;
  /** Of the first certificate in the chain, for logs and tests. */
  serialNumber: string;
  validTo: string;
  subject: string;
}

interface Setter { setSecureContext(options: SecureContextOptions): void }

/** Reads and checks both files; ConfigError naming the setting at fault. */
export function loadTlsFiles(f: TlsFiles): LoadedTls {
  const { certSetting, keySetting } = f;
  const read = (setting: string, file: string) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new ConfigError(setting, `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const cert = read(certSetting, f.certFile);
  const key = read(keySetting, f.keyFile);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(certSetting, `${f.certFile} holds no PEM certificate that parses: ${(err as Error).message}`);
  }
  const options: SecureContextOptions = { cert, key, minVersion: TLS_MIN_VERSION };
  let context: SecureContext;
  try {
    context = createSecureContext(options);
  } catch (err) {
    throw new ConfigError(keySetting, `${f.keyFile} is not the PEM private key of ${f.certFile}: ${(err as Error).message}`);
  }
  return { options, context, serialNumber: leaf.serialNumber, validTo: leaf.validTo, subject: leaf.subject.replace(/\n/g, ', ') };
}

/** ino:size:mtime of a file ('' while missing): what changes when the file does. */
async function version(file: string): Promise<string> {
  try {
    const st = await fs.promises.stat(file);
    return `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return '';
  }
}

export class ReloadableTlsContext {
  private loaded: LoadedTls;
  private seen = '';
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<boolean> | undefined;
  private readonly setters = new Set<Setter>();
  private readonly logger: Logger;

  /** Loads the files now (ConfigError if they are unusable); polling starts with start(). */
  constructor(private readonly files: TlsFiles, private readonly opts: { reloadIntervalMs?: number; logger?: Logger } = {}) {
    this.logger = opts.logger ?? silentLogger;
    this.loaded = loadTlsFiles(files);
  }

  /** The context new handshakes use. */
  get context(): SecureContext {
    return this.loaded.context;
  }

  /** The certificate in use now. */
  get current(): Readonly<LoadedTls> {
    return this.loaded;
  }

  /** Keeps `server` on the current certificate (setSecureContext on every reload). Returns a detach. */
  attach(server: Setter): () => void {
    server.setSecureContext(this.loaded.options);
    this.setters.add(server);
    return () => this.setters.delete(server);
  }

  /** Polls the files every reloadIntervalMs (10 s). Idempotent. */
  async start(): Promise<void> {
    if (this.timer) return;
    this.seen = await this.versions();
    const every = this.opts.reloadIntervalMs ?? DEFAULT_TLS_RELOAD_MS;
    this.timer = setInterval(() => void this.check(), every).unref();
    this.logger.info('tls certificate loaded', this.describe());
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Reloads if either file changed since the last look. Resolves true when a new certificate is in
   * use. A failed reload is not retried until a file changes again (so a renewal that writes the
   * certificate before the key is picked up once the key lands).
   */
  check(): Promise<boolean> {
    this.checking ??= this.reloadIfChanged().finally(() => { this.checking = undefined; });
    return this.checking;
  }

  private versions(): Promise<string> {
    return Promise.all([version(this.files.certFile), version(this.files.keyFile)]).then((v) => v.join('|'));
  }

  private async reloadIfChanged(): Promise<boolean> {
    const v = await this.versions();
    if (v === this.seen) return false;
    this.seen = v;
    let next: LoadedTls;
    try {
      next = loadTlsFiles(this.files);
    } catch (err) {
      this.logger.error('tls certificate not reloaded; the one in use stays', { err: (err as Error).message, ...this.describe() });
      return false;
    }
    this.loaded = next;
    for (const s of this.setters) {
      try {
        s.setSecureContext(next.options);
      } catch (err) {
        this.logger.error('tls listener refused the reloaded certificate', { err: (err as Error).message });
      }
    }
    this.logger.info('tls certificate reloaded', this.describe());
    return true;
  }

  private describe(): Record<string, string> {
    return { cert: this.files.certFile, serial: this.loaded.serialNumber, subject: this.loaded.subject, validTo: this.loaded.validTo };
  }
}
