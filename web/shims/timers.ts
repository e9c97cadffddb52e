/**
 * Injected into the web page's bundle: Node timers have unref()/ref(), and the SDK calls them
 * (a heartbeat must not keep a Node process alive). Browser timers are plain numbers; these
 * no-ops let the same calls pass.
 */
for (const name of ['unref', 'ref']) {
  if (!(name in Number.prototype)) {
    Object.defineProperty(Number.prototype, name, { value: function (this: number) { return this; }, configurable: true, writable: true });
  }
}

export {};
