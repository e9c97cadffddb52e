/**
 * Names the calling thread, so `top -H`, `ps -L` and the bench (bench/proc-stats.ts) can tell a
 * worker thread's CPU apart from the event loop's: Node 20 names every thread of a process "node".
 * Linux only (/proc/thread-self/comm, 15 bytes at most); elsewhere, or if refused, nothing happens.
 */
import { writeFileSync } from 'node:fs';

/** Thread names start with this, so a reader knows a name is one of ours. */
export const THREAD_NAME_PREFIX = 'im-';

export function nameThisThread(name: string): void {
  try {
    writeFileSync('/proc/thread-self/comm', `${THREAD_NAME_PREFIX}${name}`.slice(0, 15));
  } catch {
    // Not Linux, or /proc not mounted: the thread keeps its name.
  }
}
