/** Argument parsing for the `im` CLI: positionals plus a per-command set of flags (common/args.ts). */
import { parseCommandLine, UsageError, type ParsedArgs } from '../common/args';

export { UsageError };

/**
 * `--name value` and `--name=value` for names in valueFlags, a bare `--name` (value "true") for
 * names in switches; `--` ends flag parsing (so a message text may start with dashes). Any other
 * `--name` is a usage error, never silently ignored.
 */
export function parseArgs(argv: readonly string[], valueFlags: ReadonlySet<string>, switches: ReadonlySet<string> = new Set()): ParsedArgs {
  return parseCommandLine(argv, { values: valueFlags, switches });
}

export function intFlag(flags: Map<string, string>, name: string, def: number, min = 0): number {
  const v = flags.get(name);
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  }
  return Number(v);
}

export function intArg(name: string, v: string, min = 0): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new UsageError(`<${name}> must be an integer >= ${min}, got "${v}"`);
  }
  return Number(v);
}

/** Exactly `min`..`max` positionals, else a usage error naming the command. */
export function arity(args: string[], min: number, max: number, usage: string): void {
  if (args.length < min || args.length > max) throw new UsageError(`usage: ${usage}`);
}
