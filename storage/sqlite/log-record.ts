/**
 * One record of the embedded store's message log (storage/sqlite/message-log.ts): an accepted
 * message with every seq it took, in the bytes the log file holds. The same bytes go to the
 * writer thread, which indexes them into the SQLite tables (storage/sqlite/writer.ts), and are
 * read back after a crash (replay).
 *
 * Layout, little-endian: u32 length of what follows up to the trailer, u8 MAGIC, f64 lsn,
 * the numbers (convSeq, sentAtMs, senderSeq, dedupUntilMs, dedupGen: f64), the strings (msgId,
 * convId, from, to, groupId, clientMsgId, contentType: u32 byte length + UTF-8), content (u32 length
 * + bytes), u32 recipient count and per recipient its uid (as a string) and seq (f64), then the
 * trailer: the first u32 again. A record whose magic or trailer does not match is torn (the tail
 * of a write a crash cut short, or a damaged file): decoding stops there.
 */
import type { StoredMessage } from '../store';

export const MAGIC = 0x4d;

/** A stored message with what the tables need besides: its log position, every seq it took, its dedup record. */
export interface LogRecord extends StoredMessage {
  /** Log sequence number: records are numbered 1, 2, ... in the order they were written. */
  lsn: number;
  senderSeq: number;
  dedupUntilMs: number;
  dedupGen: number;
  /** Every inbox the message went to, and its seq there. */
  recipients: string[];
  seqs: number[];
}

/** An upper bound of a record's encoded size (strings at 3 bytes per UTF-16 unit). */
export function maxEncodedSize(r: LogRecord): number {
  let n = 4 + 1 + 8 * 6 + 7 * 4 + 4 + r.content.byteLength + 4 + 4;
  n += 3 * (r.msgId.length + r.convId.length + r.from.length + r.to.length + r.groupId.length + r.clientMsgId.length + r.contentType.length);
  for (const uid of r.recipients) n += 4 + 3 * uid.length + 8;
  return n;
}

/**
 * Writes r at `at` of buf (which has maxEncodedSize(r) bytes free there); returns the offset
 * after it. `where.contentAt` is set to the offset of its content's copy.
 */
export function encodeRecord(r: LogRecord, buf: Buffer, at: number, where?: { contentAt: number }): number {
  const start = at;
  at += 4;
  buf[at++] = MAGIC;
  at = buf.writeDoubleLE(r.lsn, at);
  at = buf.writeDoubleLE(r.convSeq, at);
  at = buf.writeDoubleLE(r.sentAtMs, at);
  at = buf.writeDoubleLE(r.senderSeq, at);
  at = buf.writeDoubleLE(r.dedupUntilMs, at);
  at = buf.writeDoubleLE(r.dedupGen, at);
  at = putString(buf, at, r.msgId);
  at = putString(buf, at, r.convId);
  at = putString(buf, at, r.from);
  at = putString(buf, at, r.to);
  at = putString(buf, at, r.groupId);
  at = putString(buf, at, r.clientMsgId);
  at = putString(buf, at, r.contentType);
  at = buf.writeUInt32LE(r.content.byteLength, at);
  if (where) where.contentAt = at;
  buf.set(r.content, at);
  at += r.content.byteLength;
  at = buf.writeUInt32LE(r.recipients.length, at);
  for (let i = 0; i < r.recipients.length; i++) {
    at = putString(buf, at, r.recipients[i]);
    at = buf.writeDoubleLE(r.seqs[i], at);
  }
  const len = at - start - 4;
  buf.writeUInt32LE(len, start);
  return buf.writeUInt32LE(len, at);
}

function putString(buf: Buffer, at: number, s: string): number {
  const n = buf.write(s, at + 4, 'utf8');
  buf.writeUInt32LE(n, at);
  return at + 4 + n;
}

/**
 * Decodes the records of buf from `at` on, in order, until its end or a torn record. The
 * records' contents are views into buf (no copy). Returns the records and where the valid part
 * ends (buf.length when nothing was torn).
 */
export function decodeRecords(buf: Buffer, at = 0, end = buf.length): { records: LogRecord[]; validEnd: number } {
  const records: LogRecord[] = [];
  while (at < end) {
    const r = decodeOne(buf, at, end);
    if (!r) break;
    records.push(r.record);
    at = r.next;
  }
  return { records, validEnd: at };
}

function decodeOne(buf: Buffer, start: number, end: number): { record: LogRecord; next: number } | undefined {
  if (end - start < 9) return undefined;
  const len = buf.readUInt32LE(start);
  const next = start + 4 + len + 4;
  if (len < 1 || next > end || buf[start + 4] !== MAGIC || buf.readUInt32LE(start + 4 + len) !== len) return undefined;
  const stop = start + 4 + len;
  let at = start + 5;
  try {
    const num = () => { const v = buf.readDoubleLE(at); at += 8; return v; };
    const str = () => {
      const n = buf.readUInt32LE(at);
      if (at + 4 + n > stop) throw new RangeError('string past the record');
      const s = buf.toString('utf8', at + 4, at + 4 + n);
      at += 4 + n;
      return s;
    };
    const lsn = num(), convSeq = num(), sentAtMs = num(), senderSeq = num(), dedupUntilMs = num(), dedupGen = num();
    const msgId = str(), convId = str(), from = str(), to = str(), groupId = str(), clientMsgId = str(), contentType = str();
    const contentLen = buf.readUInt32LE(at);
    at += 4;
    if (at + contentLen > stop) return undefined;
    const content = buf.subarray(at, at + contentLen);
    at += contentLen;
    const count = buf.readUInt32LE(at);
    at += 4;
    const recipients: string[] = [];
    const seqs: number[] = [];
    for (let i = 0; i < count; i++) {
      recipients.push(str());
      seqs.push(num());
    }
    if (at !== stop) return undefined;
    return {
      record: { lsn, msgId, convId, convSeq, from, to, groupId, clientMsgId, contentType, content, sentAtMs, senderSeq, dedupUntilMs, dedupGen, recipients, seqs },
      next,
    };
  } catch {
    return undefined;
  }
}
