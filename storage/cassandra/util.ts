/**
 * Small pieces the Cassandra store modules share: number conversion, a concurrency gate, a
 * bounded LRU map, a per-key mutex, and the mapping of driver failures to ImErrors.
 */
import { errors as driverErrors, types, type Client } from 'cassandra-driver';
import { ImError, InternalError, OverloadedError, TimeoutError, UnavailableError } from '../../common/errors';
import { fullJitterDelayMs } from '../../common/backoff';
export { setTimeout as sleep } from 'node:timers/promises';
export { LruMap } from '../../common/lru';

/** bigint/int columns come back as Long (bigint) or number (int); null stays null. */
export function num(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return v;
  if (types.Long.isLong(v)) return (v as types.Long).toNumber();
  return Number(v);
}

export function bytesOf(content: Uint8Array): Buffer {
  return Buffer.from(content.buffer, content.byteOffset, content.byteLength);
}

/** Jittered backoff for contended LWT retries: spreads racing writers apart. */
export const backoffMs = (attempt: number, capMs = 50): number => fullJitterDelayMs(attempt, 1, capMs);

/**
 * The client with each `execute` waiting for a slot of `gate`; every other member is the client's
 * own. For code that runs its statements one by one outside any slot of that gate: called inside
 * one, a wait for a second slot could deadlock once every slot is held that way.
 */
export function gatedClient(client: Client, gate: Gate): Client {
  const execute = ((query: string, params?: unknown, options?: unknown) =>
    gate.run(() => client.execute(query, params as never, options as never))) as Client['execute'];
  return new Proxy(client, { get: (target, p) => (p === 'execute' ? execute : Reflect.get(target, p, target)) });
}

/** Bounds how many statements one store has in flight; waiters queue in order. */
export class Gate {
  private active = 0;
  /** Waiters in order from `head` on: a write-behind look may queue tens of thousands, and shift() copies the rest each time. */
  private waiters: (() => void)[] = [];
  private head = 0;
  constructor(private readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiters.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.head < this.waiters.length ? this.waiters[this.head++] : undefined;
      if (this.head === this.waiters.length) {
        this.waiters = [];
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= this.waiters.length) {
        this.waiters = this.waiters.slice(this.head);
        this.head = 0;
      }
      if (next) next(); // the slot passes straight to the next waiter
      else this.active--;
    }
  }

  /** Calls waiting for a slot. */
  get waiting(): number {
    return this.waiters.length - this.head;
  }
}

/**
 * Runs calls for one key one after another in this process. Concurrent LWTs on one partition
 * from one process only make Paxos rounds collide; queuing them locally leaves the LWT to settle
 * races between processes. The map holds only keys with work queued.
 */
export class KeyedMutex {
  /** Per key being run: the calls waiting for it, in order. */
  private readonly waiting = new Map<string, (() => void)[]>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const queue = this.waiting.get(key);
    if (!queue) {
      this.waiting.set(key, []);
      return this.start(key, fn);
    }
    return new Promise<T>((resolve, reject) => {
      queue.push(() => { this.start(key, fn).then(resolve, reject); });
    });
  }

  private start<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      p = fn();
    } catch (err) {
      p = Promise.reject(err);
    }
    const next = () => {
      const queue = this.waiting.get(key)!;
      const first = queue.shift();
      if (first) first();
      else this.waiting.delete(key);
    };
    p.then(next, next);
    return p;
  }
}

/** The driver marks failures of the connection itself ("Socket was closed", reset, refused). */
function isSocketError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { isSocketError?: unknown }).isSocketError === true;
}

/**
 * True when the connection to Cassandra, not the request, failed: the socket closed or reset
 * mid-request, or every connection busy (no host reachable is mapped just before). Another attempt, perhaps after the
 * driver reconnects, can succeed, so these are UNAVAILABLE (the client retries for its whole
 * window) rather than INTERNAL.
 */
function connectionLost(err: unknown): boolean {
  return err instanceof driverErrors.BusyConnectionError || isSocketError(err);
}

/**
 * A failed connect as toStoreError maps it, but saying why each contact point refused (a TLS
 * certificate that does not verify, a plaintext client on a TLS port): the operator reads this
 * once, at start-up, where "no host available" alone says nothing.
 */
export function toOpenError(err: unknown): ImError {
  if (!(err instanceof driverErrors.NoHostAvailableError)) return toStoreError(err, 'cassandra store open');
  const why = Object.entries(err.innerErrors as Record<string, unknown>)
    .map(([host, e]) => `${host}: ${e instanceof Error ? e.message : String(e)}`).join('; ');
  return new UnavailableError(`cassandra store open: no Cassandra host available (${why || err.message})`, { cause: err });
}

/** CAS_WRITE_UNKNOWN (native protocol v5): the coordinator cannot tell whether a Paxos round committed. */
const CAS_WRITE_UNKNOWN = 0x1700;

/**
 * A conditional write (a Paxos round) whose outcome nobody here knows: Cassandra timed it out or
 * said so, or the request was lost with its connection or timed out in the driver. It may have
 * applied; a serial read afterwards sees whichever happened (it finishes a round left half way).
 */
export function casOutcomeUnknown(err: unknown): boolean {
  if (err instanceof driverErrors.ResponseError) {
    if (err.code === types.responseErrorCodes.writeTimeout) return (err as { writeType?: string }).writeType === 'CAS';
    return err.code === CAS_WRITE_UNKNOWN;
  }
  return err instanceof driverErrors.OperationTimedOutError || connectionLost(err);
}

/** A serial (Paxos) read that timed out under contention: read again. */
export function serialReadTimedOut(err: unknown): boolean {
  return err instanceof driverErrors.ResponseError && err.code === types.responseErrorCodes.readTimeout;
}

/** Driver failures as the project's retryable error classes; this is the one place they are mapped. */
export function toStoreError(err: unknown, what: string): ImError {
  if (err instanceof ImError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  if (err instanceof driverErrors.NoHostAvailableError) return new UnavailableError(`${what}: no Cassandra host available`, { cause: err });
  if (connectionLost(err)) return new UnavailableError(`${what}: connection to Cassandra lost (${detail})`, { cause: err });
  if (err instanceof driverErrors.OperationTimedOutError) return new TimeoutError(`${what}: ${detail}`, { cause: err });
  if (err instanceof driverErrors.ResponseError) {
    const c = types.responseErrorCodes;
    if (err.code === c.writeTimeout || err.code === c.readTimeout) return new TimeoutError(`${what}: ${detail}`, { cause: err });
    if (err.code === c.unavailableException) return new UnavailableError(`${what}: ${detail}`, { cause: err });
    if (err.code === c.overloaded || err.code === c.isBootstrapping) return new OverloadedError(`${what}: ${detail}`, { cause: err });
  }
  return new InternalError(`${what}: ${detail}`, { cause: err });
}
