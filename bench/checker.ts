/**
 * Lost and duplicated deliveries. Users are numbered 0..N-1 for the whole run and every sender
 * numbers its messages 1, 2, 3... (the number is the clientMsgId), so both sides of the check are
 * small byte arrays indexed by message id instead of sets of strings:
 *
 * - the sender records each send's outcome (SendStatus) by id;
 * - each recipient device counts the pushes it got per (sender, id).
 *
 * A recipient expects every ACCEPTED message of every other sender whose target includes it (not
 * its own: the server does not push a send back to its connection). Missing ones are then looked up by
 * sync: found there means the push was lost but the message is stored; absent means it is lost.
 */

export const SendStatus = {
  /** Never sent (or not by this run). */
  NONE: 0,
  /** SendResp received: stored, must reach every recipient. */
  ACCEPTED: 1,
  /** Outcome unknown (no reply, timeout, a broken stream): may or may not be stored. */
  UNKNOWN: 2,
  /** Refused before reaching logic (rate limited, overloaded): must not be delivered. */
  REJECTED: 3,
} as const;
export type SendStatusValue = (typeof SendStatus)[keyof typeof SendStatus];

/** A byte per message id, growing by doubling; ids start at 1. Bytes saturate at 255. */
export class ByteLog {
  private bytes: Uint8Array;
  private _maxId = 0;

  constructor(initial = 64) {
    this.bytes = new Uint8Array(Math.max(2, initial));
  }

  static of(bytes: Uint8Array): ByteLog {
    const log = new ByteLog(bytes.length);
    log.bytes.set(bytes);
    log._maxId = bytes.length - 1;
    return log;
  }

  get maxId(): number { return this._maxId; }

  get(id: number): number {
    return id < this.bytes.length ? this.bytes[id] : 0;
  }

  set(id: number, value: number): void {
    this.ensure(id);
    this.bytes[id] = value;
    if (id > this._maxId) this._maxId = id;
  }

  /** Adds one; returns the new count. */
  increment(id: number): number {
    this.ensure(id);
    const v = this.bytes[id] < 255 ? ++this.bytes[id] : 255;
    if (id > this._maxId) this._maxId = id;
    return v;
  }

  /** A copy trimmed to the highest id written (index 0 unused). */
  toBytes(): Uint8Array {
    return this.bytes.slice(0, this._maxId + 1);
  }

  private ensure(id: number): void {
    if (!Number.isInteger(id) || id < 1) throw new RangeError(`message id must be a positive integer, got ${id}`);
    if (id < this.bytes.length) return;
    let n = this.bytes.length;
    while (n <= id) n *= 2;
    const next = new Uint8Array(n);
    next.set(this.bytes);
    this.bytes = next;
  }
}

/** What one device received: push counts per (sender, id). */
export class ReceiptBook {
  private readonly bySender = new Map<number, ByteLog>();
  private _received = 0;
  private _duplicates = 0;

  get received(): number { return this._received; }
  get duplicates(): number { return this._duplicates; }

  /** Returns true when this (sender, id) had already been received (a duplicate). */
  record(sender: number, id: number): boolean {
    let log = this.bySender.get(sender);
    if (!log) this.bySender.set(sender, (log = new ByteLog()));
    this._received++;
    const dup = log.increment(id) > 1;
    if (dup) this._duplicates++;
    return dup;
  }

  count(sender: number, id: number): number {
    return this.bySender.get(sender)?.get(id) ?? 0;
  }

  senders(): number[] {
    return [...this.bySender.keys()];
  }

  maxId(sender: number): number {
    return this.bySender.get(sender)?.maxId ?? 0;
  }
}

export interface MissingRef { sender: number; id: number }

export interface DeviceCheck {
  /** Accepted messages this device should have received. */
  expected: number;
  /** Expected ones that arrived (at least once). */
  delivered: number;
  /** Extra copies of a message already received. */
  duplicated: number;
  /** Pushes of messages that were never sent, or refused. */
  unexpected: number;
  /** Pushes of messages whose send outcome was unknown (fine either way). */
  unknownDelivered: number;
  /** Accepted messages that never arrived as a push. */
  missing: MissingRef[];
}

/**
 * Checks one device's receipts against the senders that target it. `statusOf(sender)` gives that
 * sender's SendStatus bytes (index = id), undefined when the sender sent nothing.
 */
export function checkDevice(book: ReceiptBook, senders: readonly number[],
  statusOf: (sender: number) => Uint8Array | undefined): DeviceCheck {
  const out: DeviceCheck = { expected: 0, delivered: 0, duplicated: book.duplicates, unexpected: 0, unknownDelivered: 0, missing: [] };
  const targeting = new Set(senders);
  for (const sender of senders) {
    const status = statusOf(sender);
    const top = Math.max(status ? status.length - 1 : 0, book.maxId(sender));
    for (let id = 1; id <= top; id++) {
      const st = status && id < status.length ? status[id] : SendStatus.NONE;
      const got = book.count(sender, id);
      if (st === SendStatus.ACCEPTED) {
        out.expected++;
        if (got > 0) out.delivered++;
        else out.missing.push({ sender, id });
      } else if (got > 0) {
        if (st === SendStatus.UNKNOWN) out.unknownDelivered++;
        else out.unexpected++;
      }
    }
  }
  // Pushes from senders that do not target this device at all.
  for (const sender of book.senders()) {
    if (targeting.has(sender)) continue;
    for (let id = 1; id <= book.maxId(sender); id++) if (book.count(sender, id) > 0) out.unexpected++;
  }
  return out;
}

export interface LossSummary {
  expected: number;
  delivered: number;
  /** Accepted messages that did not arrive as a push (lostPushes + lostMessages). */
  lost: number;
  /** Not pushed, but in the recipient's inbox (sync found it): the push was lost, not the message. */
  lostPushes: number;
  /** Not pushed and not in the inbox either: the message itself was lost. */
  lostMessages: number;
  duplicated: number;
  unexpected: number;
  unknownDelivered: number;
}

export function emptyLoss(): LossSummary {
  return { expected: 0, delivered: 0, lost: 0, lostPushes: 0, lostMessages: 0, duplicated: 0, unexpected: 0, unknownDelivered: 0 };
}

/**
 * Folds one device's check into a summary; `inInbox(ref)` says whether sync found a missing
 * message in the recipient's inbox.
 */
export function addDevice(sum: LossSummary, check: DeviceCheck, inInbox: (ref: MissingRef) => boolean): LossSummary {
  sum.expected += check.expected;
  sum.delivered += check.delivered;
  sum.duplicated += check.duplicated;
  sum.unexpected += check.unexpected;
  sum.unknownDelivered += check.unknownDelivered;
  for (const ref of check.missing) {
    sum.lost++;
    if (inInbox(ref)) sum.lostPushes++;
    else sum.lostMessages++;
  }
  return sum;
}

export function mergeLoss(a: LossSummary, b: LossSummary): LossSummary {
  const out = emptyLoss();
  for (const k of Object.keys(out) as Array<keyof LossSummary>) out[k] = a[k] + b[k];
  return out;
}
