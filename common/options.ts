/**
 * Option compilation: a component's options as given in code (partial) become its complete
 * options in one place, its constructor or its `resolve…` function, defaults applied and every
 * value checked. A bad value throws an OptionError naming the component and the option, at
 * construction, never later in the middle of work. Imports nothing, so the client SDK (browsers
 * too) uses it as well.
 *
 *   const o = compileNumbers('RouteTable', options, { maxUidsPerLookup: 1000, ttlMs: 9000 }, { integer: true });
 */

/** A bad option value. A RangeError; `field` is the option's name. */
export class OptionError extends RangeError {
  constructor(readonly owner: string, readonly field: string, message: string) {
    super(`${owner}.${field} ${message}`);
    this.name = 'OptionError';
  }
}

export interface NumberRule {
  /** Whole numbers only (safe integers). Default false. */
  integer?: boolean;
  /** The smallest value allowed. Default: any value above 0. */
  min?: number;
  /** The largest value allowed. Default: no bound. */
  max?: number;
  /** Infinity allowed (an option that can be turned off by it). Default false. */
  infinite?: boolean;
}

function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? 'integer' : 'number';
  const lower = rule.min === undefined ? `a positive ${kind}` : `a ${kind} >= ${rule.min}`;
  return rule.max === undefined ? lower : `${lower} and <= ${rule.max}`;
}

/** `v` when it is a number the rule allows, else an OptionError naming `owner` and `field`. */
export function checkNumber(owner: string, field: string, v: unknown, rule: NumberRule = {}): number {
  const ok = typeof v === 'number' && !Number.isNaN(v)
    && (rule.min === undefined ? v > 0 : v >= rule.min)
    && (rule.max === undefined || v <= rule.max)
    && (rule.integer ? Number.isSafeInteger(v) : rule.infinite || Number.isFinite(v));
  if (!ok) throw new OptionError(owner, field, `must be ${describeRule(rule)}, got ${String(v)}`);
  return v as number;
}

/** An optional number: `def` when absent (undefined), else checked as checkNumber does. */
export function numberOption(owner: string, field: string, v: number | undefined, def: number, rule: NumberRule = {}): number {
  return v === undefined ? def : checkNumber(owner, field, v, rule);
}

/**
 * The complete numeric options of a component: every field of `defaults`, taken from `given` when
 * set there, each checked by `rule` (or its entry in `rules`).
 */
export function compileNumbers<T extends Record<string, number>>(
  owner: string, given: { readonly [K in keyof T]?: number | undefined }, defaults: T,
  rule: NumberRule = {}, rules: { readonly [K in keyof T]?: NumberRule } = {},
): T {
  const out: Record<string, number> = {};
  for (const field of Object.keys(defaults) as (keyof T & string)[]) {
    out[field] = numberOption(owner, field, given[field], defaults[field], rules[field] ?? rule);
  }
  return out as T;
}

/** A non-empty string option, else an OptionError. */
export function checkNonEmpty(owner: string, field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new OptionError(owner, field, 'must be a non-empty string');
  return v;
}
