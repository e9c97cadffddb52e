/**
 * The client's close() as something any number of pending waits can hang on. Each wait is one
 * entry in a Set, removed when the wait ends; close() ends them all. (An AbortSignal listener per
 * wait would do the same, but every concurrent send retry and sync pause added one, and Node
 * warns past 10 listeners on one signal: MaxListenersExceededWarning.)
 */
export class Waits {
  private readonly pending = new Set<() => void>();
  private done = false;

  get closed(): boolean {
    return this.done;
  }

  /** Waits registered and not yet ended (0 when idle: anything else is a leak). */
  get size(): number {
    return this.pending.size;
  }

  /** Calls `fn` once on close (at once when already closed); the returned function unregisters it. */
  onClose(fn: () => void): () => void {
    if (this.done) {
      fn();
      return () => undefined;
    }
    const once = () => { this.pending.delete(once); fn(); };
    this.pending.add(once);
    return () => { this.pending.delete(once); };
  }

  /** Resolves after `ms`, or at once when closed (close() must not wait out a 30 s backoff). */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const off = this.onClose(() => { clearTimeout(timer); resolve(); });
      if (this.done) return;
      timer = setTimeout(() => { off(); resolve(); }, ms);
    });
  }

  /** An AbortSignal that aborts on close, for one call that needs a signal (fetch); release() when done. */
  signal(): { signal: AbortSignal; release: () => void } {
    const ac = new AbortController();
    const release = this.onClose(() => ac.abort());
    return { signal: ac.signal, release };
  }

  close(): void {
    if (this.done) return;
    this.done = true;
    for (const fn of [...this.pending]) fn();
    this.pending.clear();
  }
}
