/**
 * Store-to-store calls (docs/sequencer.md): a store that is asked to write a key whose shard
 * another process owns forwards the call to that owner over the bus. Calls to one owner made in
 * the same event-loop tick travel as one message, and its answers as one reply, so a busy
 * process sends a handful of bus messages per tick, not one per key.
 *
 * Wire form: JSON; byte fields (message content, digests) as base64 strings under a "$b" key.
 */
import type { Bus } from '../../bus/bus';
import { ImError, TimeoutError, UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import { NotOwnerError } from './shards';

export type PeerServe = (op: string, args: unknown) => Promise<unknown>;

interface Call { i: number; op: string; a: unknown }
interface Answer { i: number; v?: unknown; e?: { code: number; m: string; no?: boolean } }

interface Waiting { resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }

export interface PeerOptions {
  bus: Bus;
  /** Subject prefix; a process listens on `<prefix>.<processId>`. */
  prefix: string;
  serve: PeerServe;
  timeoutMs: number;
  logger: Logger;
}

/** Thrown when an owner did not answer in time: it may be dead (its lease will tell). */
export class PeerTimeoutError extends TimeoutError {
  readonly peerTimeout = true;
}

export function encodeWire(v: unknown): Uint8Array {
  // The holder's own value: a Buffer's toJSON() has already run by the time the replacer sees `x`.
  return Buffer.from(JSON.stringify(v, function (this: Record<string, unknown>, k: string, x: unknown) {
    const own = this[k];
    return own instanceof Uint8Array ? { $b: Buffer.from(own.buffer, own.byteOffset, own.byteLength).toString('base64') } : x;
  }));
}

export function decodeWire(data: Uint8Array): unknown {
  return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'), (_k, x: unknown) => {
    if (x !== null && typeof x === 'object' && typeof (x as { $b?: unknown }).$b === 'string' && Object.keys(x).length === 1) {
      return new Uint8Array(Buffer.from((x as { $b: string }).$b, 'base64'));
    }
    return x;
  });
}

export class Peers {
  private id = '';
  private unsubs: (() => void)[] = [];
  private nextCall = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly outbox = new Map<string, Call[]>();
  private scheduled = false;

  constructor(private readonly o: PeerOptions) {}

  /** Listens as processId (again after a lease lapse changed it). */
  listen(processId: string): void {
    for (const u of this.unsubs.splice(0)) u();
    this.id = processId;
    this.unsubs.push(
      this.o.bus.subscribe(this.subject(processId), (data) => void this.onRequest(data)),
      this.o.bus.subscribe(`${this.subject(processId)}.r`, (data) => this.onReply(data)),
    );
  }

  call(owner: string, op: string, args: unknown): Promise<unknown> {
    if (!this.o.bus.connected) return Promise.reject(new UnavailableError('store peers: bus is down'));
    return new Promise((resolve, reject) => {
      const i = this.nextCall++;
      const timer = setTimeout(() => {
        this.waiting.delete(i);
        reject(new PeerTimeoutError(`store peer ${owner} did not answer ${op} within ${this.o.timeoutMs} ms`));
      }, this.o.timeoutMs);
      this.waiting.set(i, { resolve, reject, timer });
      const q = this.outbox.get(owner);
      if (q) q.push({ i, op, a: args });
      else this.outbox.set(owner, [{ i, op, a: args }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  close(): void {
    for (const u of this.unsubs.splice(0)) u();
    for (const [i, w] of this.waiting) {
      clearTimeout(w.timer);
      w.reject(new UnavailableError('store closed'));
      this.waiting.delete(i);
    }
  }

  private subject(processId: string): string {
    // Subject tokens may not contain '.', '*', '>' or spaces.
    return `${this.o.prefix}.${processId.replace(/[.*> \t]/g, '_')}`;
  }

  private flush(): void {
    this.scheduled = false;
    for (const [owner, calls] of this.outbox) {
      this.o.bus.publish(this.subject(owner), encodeWire({ r: `${this.subject(this.id)}.r`, c: calls }));
    }
    this.outbox.clear();
  }

  private async onRequest(data: Uint8Array): Promise<void> {
    let req: { r: string; c: Call[] };
    try {
      req = decodeWire(data) as { r: string; c: Call[] };
    } catch (err) {
      this.o.logger.warn('store peers: undecodable request', { err });
      return;
    }
    const answers = await Promise.all(req.c.map(async (c): Promise<Answer> => {
      try {
        return { i: c.i, v: (await this.o.serve(c.op, c.a)) ?? null };
      } catch (err) {
        const e = err instanceof ImError ? err : new UnavailableError(String(err));
        return { i: c.i, e: { code: e.code, m: e.message, ...(err instanceof NotOwnerError && { no: true }) } };
      }
    }));
    this.o.bus.publish(req.r, encodeWire({ c: answers }));
  }

  private onReply(data: Uint8Array): void {
    let rep: { c: Answer[] };
    try {
      rep = decodeWire(data) as { c: Answer[] };
    } catch (err) {
      this.o.logger.warn('store peers: undecodable reply', { err });
      return;
    }
    for (const a of rep.c) {
      const w = this.waiting.get(a.i);
      if (!w) continue;
      this.waiting.delete(a.i);
      clearTimeout(w.timer);
      if (a.e) w.reject(a.e.no ? new NotOwnerError(a.e.m) : new ImError(a.e.code, a.e.m));
      else w.resolve(a.v);
    }
  }
}
