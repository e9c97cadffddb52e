/**
 * The SDK's event emitter: the subset of Node's EventEmitter that ImClient offers (on, once, off,
 * emit, listenerCount, removeAllListeners), with no Node import so the same class runs in
 * browsers. Listeners run synchronously in the order added; a listener added or removed during an
 * emit does not change that emit.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;

interface Entry { listener: Listener; once: boolean }

export class Emitter {
  private readonly entries = new Map<string, Entry[]>();

  on(event: string, listener: Listener): this {
    return this.add(event, listener, false);
  }

  addListener(event: string, listener: Listener): this {
    return this.add(event, listener, false);
  }

  once(event: string, listener: Listener): this {
    return this.add(event, listener, true);
  }

  /** Removes the most recently added registration of `listener` (as Node's EventEmitter does). */
  off(event: string, listener: Listener): this {
    const list = this.entries.get(event);
    if (!list) return this;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].listener === listener) {
        this.entries.set(event, [...list.slice(0, i), ...list.slice(i + 1)]);
        break;
      }
    }
    if (this.entries.get(event)?.length === 0) this.entries.delete(event);
    return this;
  }

  removeListener(event: string, listener: Listener): this {
    return this.off(event, listener);
  }

  removeAllListeners(event?: string): this {
    if (event === undefined) this.entries.clear();
    else this.entries.delete(event);
    return this;
  }

  listenerCount(event: string): number {
    return this.entries.get(event)?.length ?? 0;
  }

  /** Calls the listeners of `event`; returns whether there were any. A throwing listener throws here. */
  emit(event: string, ...args: unknown[]): boolean {
    const list = this.entries.get(event);
    if (!list) return false;
    for (const e of list) {
      if (e.once) this.off(event, e.listener);
      e.listener(...args);
    }
    return true;
  }

  private add(event: string, listener: Listener, once: boolean): this {
    if (typeof listener !== 'function') throw new TypeError(`the "${event}" listener must be a function`);
    // A new array per change: an emit in progress keeps iterating the one it started with.
    this.entries.set(event, [...(this.entries.get(event) ?? []), { listener, once }]);
    return this;
  }
}
