/**
 * Identifiers shared by every layer: user ids, conversation ids, message and group ids. No Node
 * import: the SDK's browser build and the web page use it too.
 */

/** User ids: 1-64 characters, letters, digits and _ . @ - (never ':', which separates conv ids). */
export const UID_PATTERN = /^[A-Za-z0-9_.@-]{1,64}$/;
export function isValidUid(uid: string): boolean {
  return typeof uid === 'string' && UID_PATTERN.test(uid);
}

/** The conversation of two users: the same id whoever sends. */
export function peerConvId(a: string, b: string): string {
  return a < b ? `p:${a}:${b}` : `p:${b}:${a}`;
}

export function groupConvId(groupId: string): string {
  return `g:${groupId}`;
}

/**
 * A time-ordered unique id: 12 hex digits of milliseconds then 10 random hex digits.
 * Sorting ids sorts by creation time (to the millisecond).
 */
export function newId(nowMs = Date.now()): string {
  const r = globalThis.crypto.getRandomValues(new Uint8Array(5));
  let hex = '';
  for (const b of r) hex += (b < 16 ? '0' : '') + b.toString(16);
  return nowMs.toString(16).padStart(12, '0') + hex;
}
