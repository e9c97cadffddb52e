/**
 * Command-line flags, on node:util's parseArgs, for every entry point: the services' settings
 * flags (lenient: any `--name`, looked up later by Settings), the `im` CLI and the bench (strict:
 * a flag not declared is a UsageError, never silently ignored).
 *
 * `--name value` and `--name=value` for value flags, a bare `--name` ("true") for switches; `--`
 * ends the flags (so a message text may start with dashes); a single-dash argument is a
 * positional.
 */
import { parseArgs as parseTokens } from 'node:util';

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

export interface ArgSpec {
  /** Flags that take a value. */
  values?: Iterable<string>;
  /** Flags without a value; `--name=value` is a UsageError unless the name is in `optional`. */
  switches?: Iterable<string>;
  /**
   * Switches that may carry a value: `--name=value`, or `--name value` when takesNext says the
   * next argument is one (the bench's `--sweep 1,2,4`).
   */
  optional?: { names: Iterable<string>; takesNext?: (name: string, next: string) => boolean };
  /** Any `--name` is a flag: with the next argument as its value unless that is a flag too ("true"). */
  lenient?: boolean;
}

/** Positionals and flags of argv as `spec` declares them; UsageError naming the flag otherwise. */
export function parseCommandLine(argv: readonly string[], spec: ArgSpec): ParsedArgs {
  const values = new Set(spec.values ?? []);
  const optional = new Set(spec.optional?.names ?? []);
  const switches = new Set([...(spec.switches ?? []), ...optional]);
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const name of values) options[name] = { type: 'string' };
  for (const name of switches) options[name] = { type: 'boolean' };
  const { tokens } = parseTokens({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });

  const positionals: string[] = [];
  const flags = new Map<string, string>();
  const used = new Set<number>();
  const nextPositional = (i: number): string | undefined => {
    const next = tokens[i + 1];
    return next?.kind === 'positional' && next.index === tokens[i].index + 1 ? next.value : undefined;
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.kind === 'option-terminator' || used.has(t.index)) continue;
    used.add(t.index);
    if (t.kind === 'positional' || !t.rawName.startsWith('--')) {
      positionals.push(argv[t.index]);
      continue;
    }
    const name = t.name;
    let value: string;
    if (values.has(name)) {
      if (t.value === undefined) throw new UsageError(`option --${name} needs a value`);
      value = t.value;
      used.add(t.index + (t.inlineValue ? 0 : 1));
    } else if (switches.has(name)) {
      const next = nextPositional(i);
      if (t.inlineValue && !optional.has(name)) throw new UsageError(`option --${name} takes no value`);
      if (t.inlineValue) value = String(t.value);
      else if (next !== undefined && optional.has(name) && spec.optional?.takesNext?.(name, next)) {
        value = next;
        used.add(t.index + 1);
      } else value = 'true';
    } else if (spec.lenient) {
      const next = nextPositional(i);
      if (t.inlineValue) value = String(t.value);
      else if (next !== undefined) {
        value = next;
        used.add(t.index + 1);
      } else value = 'true';
    } else {
      throw new UsageError(`unknown option --${name}`);
    }
    if (flags.has(name)) {
      if (!spec.lenient) throw new UsageError(`option --${name} given twice`);
    }
    flags.set(name, value);
  }
  return { positionals, flags };
}
