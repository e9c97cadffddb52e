/**
 * How a test waits: for the thing itself. A test never sleeps for a fixed time hoping something
 * happened meanwhile; it polls the condition that stands for it (this file), waits for an event, or
 * moves an injected clock. "Nothing more happens" is shown by a marker sent afterwards arriving,
 * not by a quiet window.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** Polling starts at this interval and doubles up to POLL_MAX_MS (async probes often make a request). */
const POLL_MIN_MS = 5;
const POLL_MAX_MS = 50;

type Found<T> = Exclude<T, false | undefined | null | 0 | ''>;

/**
 * Resolves with the first truthy value of `probe` (true, or what it found). A throw counts as
 * "not yet"; after timeoutMs it rejects naming `what` and the last throw. `everyMs`: poll at this
 * fixed interval instead (a probe that sends something, under a rate limit).
 */
export async function eventually<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 5000, everyMs?: number): Promise<Found<T>> {
  const deadline = Date.now() + timeoutMs;
  let intervalMs = everyMs ?? POLL_MIN_MS;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as Found<T>;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const why = lastError === undefined ? '' : ` (last: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${why}`);
    }
    await delay(Math.min(intervalMs, left));
    if (everyMs === undefined) intervalMs = Math.min(POLL_MAX_MS, intervalMs * 2);
  }
}
