/**
 * Store-to-store calls (docs/sequencer.md): a store that is asked to write a key whose shard
 * another process owns forwards the call to that owner over the bus. Calls to one owner made in
 * the same event-loop tick travel as one message, and its answers as one reply, so a busy
 * process sends a handful of bus messages per tick, not one per key. A message holds at most
 * `maxMessageBytes` (512 KiB) of calls or answers; a tick's beyond that go in several. NATS refuses
 * a payload over its `max_payload` (1 MiB by default), and a refused request never reaches its
 * owner: under a backlog one tick's calls to an owner reached 1.1–1.5 MB, and every call in them
 * waited out its whole wait (BENCHMARKS.md, "A cold start of two logic processes"). A single call
 * or answer over the bus's `maxPayload` fails at once (UNAVAILABLE).
 *
 * Wire form: JSON; byte fields (message content, digests) as base64 strings under a "$b" key.
 */
import type { Bus } from '../../bus/bus';
import { Code, ImError, TimeoutError, UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import { NotOwnerError } from './shards';

export type PeerServe = (op: string, args: unknown) => Promise<unknown>;

interface Call { i: number; op: string; a: unknown }
interface Answer { i: number; v?: unknown; e?: { code: number; m: string; no?: boolean } }

interface Waiting { resolve: (v: unknown) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout }

export interface CallOptions {
  timeoutMs?: number;
  /** Whether the owner still holds its lease (asked when timeoutMs passes without an answer). */
  alive?: () => Promise<boolean>;
  maxWaitMs?: number;
}

export interface PeerOptions {
  bus: Bus;
  /** Subject prefix; a process listens on `<prefix>.<processId>`. */
  prefix: string;
  serve: PeerServe;
  timeoutMs: number;
  logger: Logger;
  /** Bytes of encoded calls (or answers) per bus message, at most; one call larger than it goes alone. Default 512 KiB. */
  maxMessageBytes?: number;
}

const DEFAULT_MAX_MESSAGE_BYTES = 512 * 1024;

/** Thrown when an owner did not answer in time: it may be dead (its lease will tell). */
export class PeerTimeoutError extends TimeoutError {
  readonly peerTimeout = true;
}

export function encodeWire(v: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(toWire(v)));
}

/**
 * `{"<key>":<head>,"c":[...]}` messages holding `items` in order, each at most `maxBytes` of UTF-8
 * unless a single item alone is larger; `tooLarge` gets each item that alone exceeds `limit`
 * (it is left out). Each item is encoded once, as encodeWire would have encoded it in the array.
 */
export function encodeChunks<T extends { i: number }>(
  head: string, items: readonly T[], maxBytes: number, limit: number, tooLarge: (i: number, bytes: number) => void,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  let parts: string[] = [];
  let bytes = head.length + 2;
  const close = () => {
    if (parts.length > 0) out.push(Buffer.from(`${head}${parts.join(',')}]}`));
    parts = [];
    bytes = head.length + 2;
  };
  for (const item of items) {
    const text = JSON.stringify(toWire(item));
    const size = Buffer.byteLength(text) + 1;
    if (head.length + 2 + size > limit) {
      tooLarge(item.i, size);
      continue;
    }
    if (parts.length > 0 && bytes + size > maxBytes) close();
    parts.push(text);
    bytes += size;
  }
  close();
  return out;
}

export function decodeWire(data: Uint8Array): unknown {
  return fromWire(JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')));
}

/**
 * The value with every byte array as `{ "$b": base64 }`; JSON.stringify does the rest as it would
 * have done (toJSON, undefined, functions). A walk of our own, not a replacer or reviver: those
 * call back into JS for every key and took ~3× the time of the walk on a batch of sends.
 */
function toWire(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (v instanceof Uint8Array) return { $b: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  const json = (v as { toJSON?: unknown }).toJSON;
  if (typeof json === 'function') return toWire(json.call(v));
  if (Array.isArray(v)) return v.map(toWire);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = toWire((v as Record<string, unknown>)[k]);
  return out;
}

/** Parsed JSON with each `{ "$b": base64 }` (and nothing else in it) back as a Uint8Array; the rest in place. */
function fromWire(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = fromWire(v[i]);
    return v;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0] === '$b' && typeof o.$b === 'string') return new Uint8Array(Buffer.from(o.$b, 'base64'));
  for (const k of keys) {
    const x = o[k];
    const y = fromWire(x);
    if (y !== x) o[k] = y;
  }
  return o;
}

export class Peers {
  private id = '';
  private unsubs: (() => void)[] = [];
  private nextCall = 1;
  private readonly waiting = new Map<number, Waiting>();
  private readonly outbox = new Map<string, Call[]>();
  private scheduled = false;
  private readonly maxMessageBytes: number;

  constructor(private readonly o: PeerOptions) {
    this.maxMessageBytes = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  }

  /** The bus's largest payload (NATS max_payload), or unlimited. */
  private get limit(): number {
    return this.o.bus.maxPayload ?? Infinity;
  }

  /** Listens as processId (again after a lease lapse changed it). */
  listen(processId: string): void {
    for (const u of this.unsubs.splice(0)) u();
    this.id = processId;
    this.unsubs.push(
      this.o.bus.subscribe(this.subject(processId), (data) => void this.onRequest(data)),
      this.o.bus.subscribe(`${this.subject(processId)}.r`, (data) => this.onReply(data)),
    );
  }

  /**
   * Calls op on owner. Its answer is waited for `timeoutMs` (default: the options' timeoutMs);
   * with `alive`, asked each time that passes, the wait goes on while the owner is alive, up to
   * `maxWaitMs` in all: a call that may take long on a live owner (a whole send) is not taken
   * for a dead owner, nor given up while the owner still works on it.
   */
  call(owner: string, op: string, args: unknown, o: CallOptions = {}): Promise<unknown> {
    if (!this.o.bus.connected) return Promise.reject(new UnavailableError('store peers: bus is down'));
    const timeoutMs = o.timeoutMs ?? this.o.timeoutMs;
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const i = this.nextCall++;
      const giveUp = () => {
        this.waiting.delete(i);
        reject(new PeerTimeoutError(`store peer ${owner} did not answer ${op} within ${Date.now() - started} ms`));
      };
      const expired = () => {
        if (!o.alive || Date.now() - started + timeoutMs > (o.maxWaitMs ?? 0)) return giveUp();
        o.alive().then((yes) => {
          const w = this.waiting.get(i);
          if (!w) return;
          if (!yes) return giveUp();
          w.timer = setTimeout(expired, timeoutMs);
        }, giveUp);
      };
      this.waiting.set(i, { resolve, reject, timer: setTimeout(expired, timeoutMs) });
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
    const head = `{"r":${JSON.stringify(`${this.subject(this.id)}.r`)},"c":[`;
    for (const [owner, calls] of this.outbox) {
      const messages = encodeChunks(head, calls, this.maxMessageBytes, this.limit, (i, bytes) => {
        const w = this.waiting.get(i);
        if (!w) return;
        this.waiting.delete(i);
        clearTimeout(w.timer);
        w.reject(new UnavailableError(`store peers: a call of ${bytes} bytes is over the bus's max payload (${this.limit})`));
      });
      for (const m of messages) this.o.bus.publish(this.subject(owner), m);
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
    const big: Answer[] = [];
    const tooLarge = (i: number, bytes: number) => {
      const m = `store peers: an answer of ${bytes} bytes is over the bus's max payload (${this.limit})`;
      this.o.logger.error(m, { i });
      big.push({ i, e: { code: Code.UNAVAILABLE, m } });
    };
    const messages = encodeChunks('{"c":[', answers, this.maxMessageBytes, this.limit, tooLarge);
    if (big.length > 0) messages.push(...encodeChunks('{"c":[', big, this.maxMessageBytes, this.limit, () => undefined));
    for (const m of messages) this.o.bus.publish(req.r, m);
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
