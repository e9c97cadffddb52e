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
  return nowMs.toString(16).padStart(12, '0') + randomHex10();
}

/**
 * Random bytes drawn from the CSPRNG in blocks: one getRandomValues per 819 ids instead of one
 * per id (drawing 5 bytes per message was 5 % of the embedded process at a few thousand sends/s).
 * Each byte is used once.
 */
const RANDOM_POOL = new Uint8Array(4096);
let randomPos = RANDOM_POOL.length;
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

function randomHex10(): string {
  if (randomPos + 5 > RANDOM_POOL.length) {
    globalThis.crypto.getRandomValues(RANDOM_POOL);
    randomPos = 0;
  }
  const p = RANDOM_POOL;
  const i = randomPos;
  randomPos += 5;
  return HEX[p[i]] + HEX[p[i + 1]] + HEX[p[i + 2]] + HEX[p[i + 3]] + HEX[p[i + 4]];
}
