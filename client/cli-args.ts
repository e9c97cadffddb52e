/** Hand-written argument parsing for the `im` CLI: positionals plus a per-command set of flags. */

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string>;
}

/**
 * `--name value` and `--name=value` for names in valueFlags, a bare `--name` (value "true") for
 * names in switches; `--` ends flag parsing (so a message text may start with dashes). Any other
 * `--name` is a usage error, never silently ignored.
 */
export function parseArgs(argv: readonly string[], valueFlags: ReadonlySet<string>, switches: ReadonlySet<string> = new Set()): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a.length === 2) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const isSwitch = switches.has(name);
    if (!valueFlags.has(name) && !isSwitch) throw new UsageError(`unknown option --${name}`);
    if (isSwitch && eq > 0) throw new UsageError(`option --${name} takes no value`);
    let value: string;
    if (isSwitch) value = 'true';
    else if (eq > 0) value = a.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw new UsageError(`option --${name} needs a value`);
    if (flags.has(name)) throw new UsageError(`option --${name} given twice`);
    flags.set(name, value);
  }
  return { positionals, flags };
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
