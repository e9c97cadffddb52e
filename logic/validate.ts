/** Input checks shared by the logic handlers; each failure is a BadRequestError naming the field. */
import { BadRequestError, NotAuthenticatedError } from '../common/errors';
import { isValidUid } from '../common/ids';

export function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

export function requireActor(uid: string): void {
  // The gateway fills uid from the authenticated connection; an empty or odd one is a gateway bug.
  if (!isValidUid(uid)) throw new NotAuthenticatedError('the call carries no valid authenticated uid');
}

export function requireUid(field: string, v: unknown): string {
  const s = str(v);
  if (!isValidUid(s)) {
    throw new BadRequestError(`${field}: "${s.slice(0, 80)}" is not a valid uid (1-64 of A-Z a-z 0-9 _ . @ -)`);
  }
  return s;
}

/** A string field of lengthMin..lengthMax UTF-16 code units. */
export function requireLength(field: string, v: unknown, min: number, max: number): string {
  const s = str(v);
  if (s.length < min || s.length > max) {
    throw new BadRequestError(`${field} must be ${min}-${max} characters, got ${s.length}`);
  }
  return s;
}

/** A non-negative integer; absent means 0. */
export function nonNegativeInt(field: string, v: unknown): number {
  const n = v === undefined || v === null ? 0 : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw new BadRequestError(`${field} must be a non-negative integer`);
  }
  return n;
}

/** A page size: 0 or absent takes the default, anything above max is clamped to max. */
export function pageLimit(field: string, v: unknown, def: number, max: number): number {
  const n = nonNegativeInt(field, v);
  if (n === 0) return def;
  return Math.min(n, max);
}

/** A list of valid uids of at most `max` entries, deduplicated in first-seen order. */
export function uidList(field: string, v: unknown, max: number, opts: { min?: number } = {}): string[] {
  const list = Array.isArray(v) ? v : [];
  if (list.length > max) throw new BadRequestError(`${field}: at most ${max} uids per request, got ${list.length}`);
  const min = opts.min ?? 0;
  if (list.length < min) throw new BadRequestError(`${field}: at least ${min} uid required`);
  const out = new Set<string>();
  for (const uid of list) out.add(requireUid(field, uid));
  return [...out];
}
