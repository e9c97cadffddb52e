/**
 * Bounded waits of the gateway: a promise raced against a deadline, for the calls of a drain or a
 * hand-over that must not hold the node up when a backend hangs.
 */

/** Resolves true when `p` settles (fulfilled or rejected) within `ms`, false once `ms` has passed. */
export function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => { clearTimeout(timer); resolve(true); };
    p.then(done, done);
  });
}
