/**
 * The downlink bus: logic publishes one message per target gateway node on that node's subject;
 * each gateway subscribes to its own. NATS in a deployment; InProcessBus in embedded mode.
 */

/** Message headers, e.g. W3C trace context ({ traceparent }). */
export type BusHeaders = Record<string, string>;

export type BusHandler = (data: Uint8Array, headers?: BusHeaders) => void;

export interface Bus {
  /** False while the transport is down or after close() (readiness). */
  readonly connected: boolean;
  /**
   * How many times the transport came back after an outage. What was published to a subscriber
   * while it was down never arrives, so a change tells a gateway its clients should sync.
   */
  readonly reconnects: number;
  /** The largest payload a publish may carry (NATS: the server's max_payload); absent: no limit. */
  readonly maxPayload?: number;
  /** Fire-and-forget. Must not throw when the transport is down (a lost push is healed by sync). */
  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void;
  /** Returns a function that removes the subscription. */
  subscribe(subject: string, handler: BusHandler): () => void;
  close(): Promise<void>;
}

/** A gateway's downlink: pushes and kicks, published by logic only (NATS permissions, docs/security.md). */
export function gatewaySubject(node: string): string {
  return `im.gw.${node}`;
}

/**
 * Kicks one gateway sends another (a login there replaced a session here). A gateway honours only
 * kicks on it, never pushes, so gateway credentials need no right to publish on gateway subjects.
 */
export function kickSubject(node: string): string {
  return `im.kick.${node}`;
}

/**
 * Resolves once the bus has delivered everything its server sent before the call (NatsBus.flush:
 * a PING/PONG round trip; messages before the PONG were handed to their subscribers first). The
 * in-process bus delivers within a microtask, so there is nothing to wait for. Over NATS it throws
 * a ConfigError when the server refused one of this process's subscriptions (its permissions).
 */
export function flushBus(bus: Bus): Promise<void> {
  const flush = (bus as Partial<{ flush: () => Promise<void> }>).flush;
  return typeof flush === 'function' ? flush.call(bus) : Promise.resolve();
}

/** A real bus for one process: delivery is asynchronous (next tick), like a network bus. */
export class InProcessBus implements Bus {
  private readonly subs = new Map<string, Set<BusHandler>>();
  private closed = false;

  /** Never down, so never back. */
  readonly reconnects = 0;

  get connected(): boolean {
    return !this.closed;
  }

  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void {
    if (this.closed) return;
    const handlers = this.subs.get(subject);
    if (!handlers || handlers.size === 0) return;
    const copy = Uint8Array.from(data);
    const hdrs = headers && { ...headers };
    queueMicrotask(() => {
      for (const h of handlers) h(copy, hdrs);
    });
  }

  subscribe(subject: string, handler: BusHandler): () => void {
    let set = this.subs.get(subject);
    if (!set) this.subs.set(subject, (set = new Set()));
    set.add(handler);
    return () => {
      set!.delete(handler);
      if (set!.size === 0) this.subs.delete(subject);
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.subs.clear();
  }
}
