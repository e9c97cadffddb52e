/**
 * Config parsing helpers. Each service's config is a pure function of (env, argv) built from
 * these; a bad value throws ConfigError naming the field, and main() exits with it.
 */

import { parseCommandLine } from './args';
import { LEVELS, type Level } from './log';
import { type HostPort, parseHostPort } from './host-port';

export class ConfigError extends Error {
  constructor(readonly field: string, message: string) {
    super(`config ${field}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

/** `--flag value` and `--flag=value` pairs from argv, keyed by flag name without dashes; a bare `--flag` is "true". */
export function parseFlags(argv: readonly string[]): Record<string, string> {
  return Object.fromEntries(parseCommandLine(argv, { lenient: true }).flags);
}

export class Settings {
  constructor(private readonly env: Env, private readonly flags: Record<string, string> = {}) {}

  raw(envName: string, flag?: string): string | undefined {
    const v = (flag !== undefined ? this.flags[flag] : undefined) ?? this.env[envName];
    return v === undefined || v === '' ? undefined : v;
  }

  str(envName: string, def: string, flag?: string): string {
    return this.raw(envName, flag) ?? def;
  }

  int(envName: string, def: number, opts: { min?: number; max?: number; flag?: string } = {}): number {
    const v = this.raw(envName, opts.flag);
    if (v === undefined) return def;
    if (!/^-?\d+$/.test(v)) throw new ConfigError(envName, `expected an integer, got "${v}"`);
    const n = Number(v);
    if (opts.min !== undefined && n < opts.min) throw new ConfigError(envName, `must be >= ${opts.min}, got ${n}`);
    if (opts.max !== undefined && n > opts.max) throw new ConfigError(envName, `must be <= ${opts.max}, got ${n}`);
    return n;
  }

  /** Durations: "250ms", "5s", "10m", "24h", or a bare number of milliseconds. */
  durationMs(envName: string, defMs: number, opts: { min?: number; flag?: string } = {}): number {
    const v = this.raw(envName, opts.flag);
    if (v === undefined) return defMs;
    const ms = parseDurationMs(v);
    if (ms === undefined) throw new ConfigError(envName, `expected a duration like 500ms, 5s, 10m, 24h; got "${v}"`);
    if (opts.min !== undefined && ms < opts.min) throw new ConfigError(envName, `must be >= ${opts.min}ms`);
    return ms;
  }

  bool(envName: string, def: boolean, flag?: string): boolean {
    const v = this.raw(envName, flag);
    if (v === undefined) return def;
    if (/^(1|true|yes|on)$/i.test(v)) return true;
    if (/^(0|false|no|off)$/i.test(v)) return false;
    throw new ConfigError(envName, `expected true or false, got "${v}"`);
  }

  addr(envName: string, def: string, flag?: string): HostPort {
    const v = this.str(envName, def, flag);
    const hp = parseHostPort(v);
    if (!hp) throw new ConfigError(envName, `expected host:port, got "${v}"`);
    return hp;
  }

  /** One of a fixed set of words. */
  oneOf<T extends string>(envName: string, allowed: readonly T[], def: T, flag?: string): T {
    const v = this.str(envName, def, flag);
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(envName, `expected one of ${allowed.join(', ')}, got "${v}"`);
    }
    return v as T;
  }

  /** IM_LOG_LEVEL (--log-level). */
  logLevel(): Level {
    return this.oneOf('IM_LOG_LEVEL', LEVELS, 'info', 'log-level');
  }

  list(envName: string, def: string[], flag?: string): string[] {
    const v = this.raw(envName, flag);
    if (v === undefined) return def;
    return v.split(',').map((s) => s.trim()).filter(Boolean);
  }
}

export { type HostPort, parseHostPort, formatHostPort } from './host-port';

/** A host name or IPv4 address without a port. */
export const HOST_NAME_RE = /^[A-Za-z0-9.-]+$/;

/** IM_LOG_LEVEL (--log-level): debug, info, warn, error or silent. */
export function loadLogLevel(env: Env = process.env, argv: readonly string[] = process.argv.slice(2)): Level {
  return new Settings(env, parseFlags(argv)).logLevel();
}

export function parseDurationMs(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 'ms') as 'ms'];
  return Math.round(n * unit);
}
