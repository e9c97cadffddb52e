/**
 * How the embedded store accepts a message: on the event loop, in one append-only log.
 *
 * An append takes its dedup decision and its seqs here, from memory (the seqs of every inbox and
 * conversation, storage/sqlite/seqs.ts; the messages not yet indexed, storage/sqlite/unindexed.ts)
 * and, for a key not in memory, from the tables (one index probe on the loop's connection). Its
 * record (storage/sqlite/log-record.ts) is encoded into the current batch; a tick's batch is one
 * write to the log file (storage/sqlite/log-files.ts, a writev on the loop), and the append is
 * acknowledged when that write returned. The batch's bytes then go to the writer thread, which
 * indexes them into the SQLite tables behind, many records per transaction
 * (storage/sqlite/log-indexer.ts): a commit costs the pages it dirtied, and a second of one
 * inbox's entries share a page where a transaction per tick wrote that page every tick.
 *
 * Until indexed, a message is read from memory (Unindexed); the writer reports the indexed lsn
 * with every answer, and those messages leave. After a crash the log's records past the indexed
 * lsn are indexed at open, before anything is served (replayLog).
 *
 * One write per turn at most, of up to maxWriteBytes; appends made meanwhile wait in the next
 * batch, so under load a write carries many ticks' records. A write that fails (the disk) fails every append not
 * yet written, with 1100 UNAVAILABLE (retryable: none of them is stored); their seqs and lsns are
 * taken again by the next appends, so no inbox has a gap.
 */
import { OverloadedError, UnavailableError } from '../../common/errors';
import type { AppendInput, AppendResult, StoredMessage } from '../store';
import { checkSameSend, sendDigest } from '../send-digest';
import { encodeRecord, maxEncodedSize, type LogRecord } from './log-record';
import type { LogSink } from './log-files';
import { SeqCache } from './seqs';
import { toMessage, type Statements } from './statements';
import { messageOf, Unindexed, type Pending, type Waiter } from './unindexed';

export interface MessageLogOptions {
  /** Appends waiting for their log write, at most; beyond it an append fails with OVERLOADED. */
  maxPendingAppends: number;
  /** Messages held in memory until indexed, at most; beyond it an append fails with OVERLOADED. */
  maxUnindexed: number;
  /** User inboxes and conversations whose newest seq is kept in memory. */
  maxCachedSeqs: number;
}

export interface MessageLogStats {
  writes: number;
  bytes: number;
  /** The most bytes one write encoded (in one turn of the loop). */
  largestWriteBytes: number;
  failedWrites: number;
  unindexed: number;
}

/** One log write: contiguous ranges of slabs (each posted to the writer as one index op) and the appends they hold. */
interface Write {
  chunks: { buf: Buffer; firstLsn: number; count: number }[];
  pendings: Pending[];
  firstLsn: number;
}

const SLAB_BYTES = 1 << 20;

/** What a retry within the window gets: the accepted message; IDEMPOTENCY_CONFLICT (thrown) when its recipient or content differ. */
function duplicateAnswer(message: StoredMessage, senderSeq: number, input: AppendInput): AppendResult {
  checkSameSend(sendDigest(message), input);
  return { message, senderSeq, seqs: new Map(), duplicate: true };
}

export class MessageLog {
  readonly unindexed = new Unindexed();
  private readonly userSeqs: SeqCache;
  private readonly convSeqs: SeqCache;
  private nextLsn: number;
  /** Appends taken (seqs and lsn) and not yet encoded into a write, oldest first. */
  private queued: Pending[] = [];
  private writing: Write | undefined;
  /** Appends not yet written (queued and the write under way). */
  private unwritten = 0;
  private scheduled = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  private slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private slabAt = 0;
  private chunkStart = 0;
  private chunkCount = 0;
  private chunkFirstLsn = 0;
  private readonly where = { contentAt: 0 };
  private readonly counters = { writes: 0, failedWrites: 0, largestWriteBytes: 0 };

  constructor(
    private readonly sink: LogSink,
    private readonly sql: Statements,
    firstLsn: number,
    private readonly options: MessageLogOptions,
    /** Bytes one log write carries at most (at least one record): the loop encodes them in one turn, about 1 ms per MiB. */
    private readonly maxWriteBytes: number,
    /** Hands a written range of records to the writer for indexing. */
    private readonly post: (firstLsn: number, count: number, bytes: Buffer) => void,
  ) {
    this.nextLsn = firstLsn;
    this.userSeqs = new SeqCache((uid) => this.unindexed.lastUserSeq(uid) ?? sql.userMaxSeq.get(uid)?.s ?? 0, options.maxCachedSeqs);
    this.convSeqs = new SeqCache((convId) => this.unindexed.lastConvSeq(convId) ?? sql.convMaxSeq.get(convId)?.s ?? 0, options.maxCachedSeqs);
  }

  /** The last record written (after close(): the last record there is). */
  get lastWrittenLsn(): number {
    return this.nextLsn - 1 - this.unwritten;
  }

  stats(): MessageLogStats {
    return { ...this.counters, bytes: this.sink.bytesWritten, unindexed: this.unindexed.size };
  }

  /** Accepts a validated append: resolves once its record is written (or it is a duplicate of one that is). */
  append(input: AppendInput): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new UnavailableError('sqlite store is closed'));
    if (this.unwritten >= this.options.maxPendingAppends || this.unindexed.size >= this.options.maxUnindexed) {
      return Promise.reject(new OverloadedError(
        `sqlite store: ${this.unwritten} appends waiting for the log, ${this.unindexed.size} messages waiting for the index`));
    }
    let gen = 0;
    const held = this.unindexed.byDedupKey(input.from, input.clientMsgId);
    if (held) {
      if (held.rec.dedupUntilMs > input.sentAtMs) return this.duplicateOf(held, input);
      gen = held.rec.dedupGen + 1;
    } else {
      const prior = this.sql.dedupGet.get(input.from, input.clientMsgId);
      if (prior) {
        if (prior.dedup_until_ms > input.sentAtMs) {
          try {
            return Promise.resolve(duplicateAnswer(toMessage(prior), prior.sender_seq, input));
          } catch (err) {
            return Promise.reject(err);
          }
        }
        // Past its window the id is free again, as a new generation of the key.
        gen = prior.dedup_gen + 1;
      }
    }
    const { recipients } = input;
    const convSeq = this.convSeqs.next(input.convId);
    const seqs = new Array<number>(recipients.length);
    const seqMap = new Map<string, number>();
    let senderSeq = 0;
    for (let i = 0; i < recipients.length; i++) {
      const seq = this.userSeqs.next(recipients[i]);
      seqs[i] = seq;
      seqMap.set(recipients[i], seq);
      if (recipients[i] === input.from) senderSeq = seq;
    }
    const rec: LogRecord = {
      lsn: this.nextLsn++, msgId: input.msgId, convId: input.convId, convSeq, from: input.from, to: input.to,
      groupId: input.groupId, clientMsgId: input.clientMsgId, contentType: input.contentType, content: input.content,
      sentAtMs: input.sentAtMs, senderSeq, dedupUntilMs: input.sentAtMs + input.dedupWindowMs, dedupGen: gen,
      recipients, seqs,
    };
    const p = this.unindexed.add(rec);
    this.queued.push(p);
    this.unwritten++;
    const value: AppendResult = { message: messageOf(rec), senderSeq, seqs: seqMap, duplicate: false };
    this.schedule();
    return new Promise<AppendResult>((resolve, reject) => { p.waiter = { resolve, reject, value }; });
  }

  /** Records up to lsn are in the tables. */
  indexed(lsn: number): void {
    this.unindexed.indexed(lsn);
    this.sink.indexed(lsn);
  }

  /** A new writer thread: every written record not yet indexed is posted to it again (it skips what it has). */
  repost(): void {
    const records = this.unindexed.durable();
    for (let i = 0; i < records.length;) {
      let size = maxEncodedSize(records[i]);
      let j = i + 1;
      for (let next; j < records.length && size + (next = maxEncodedSize(records[j])) <= SLAB_BYTES; j++) size += next;
      const buf = Buffer.allocUnsafe(size);
      let at = 0;
      for (let k = i; k < j; k++) at = encodeRecord(records[k], buf, at);
      this.post(records[i].lsn, j - i, buf.subarray(0, at));
      i = j;
    }
  }

  /** Refuses new appends and resolves once every accepted one is written and posted. */
  close(): Promise<void> {
    this.closed = true;
    if (!this.writing && this.queued.length === 0) return Promise.resolve();
    this.schedule();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private duplicateOf(held: Pending, input: AppendInput): Promise<AppendResult> {
    let value: AppendResult;
    try {
      value = duplicateAnswer(messageOf(held.rec), held.rec.senderSeq, input);
    } catch (err) {
      return Promise.reject(err);
    }
    if (held.durable) return Promise.resolve(value);
    // Its write is under way: the answer waits for it, as the original's does.
    return new Promise<AppendResult>((resolve, reject) => (held.duplicates ??= []).push({ resolve, reject, value }));
  }

  /** Encodes rec into the slab (w's chunks); its content then points at the copy there (the caller's buffer is not held). Returns its size, about. */
  private encode(rec: LogRecord, w: Write): number {
    const size = maxEncodedSize(rec);
    if (this.slab.length - this.slabAt < size) {
      this.closeChunk(w);
      this.slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, size));
      this.slabAt = this.chunkStart = 0;
    }
    if (this.chunkCount === 0) this.chunkFirstLsn = rec.lsn;
    this.slabAt = encodeRecord(rec, this.slab, this.slabAt, this.where);
    this.chunkCount++;
    const at = this.where.contentAt;
    rec.content = this.slab.subarray(at, at + rec.content.byteLength);
    return size;
  }

  private closeChunk(w: Write): void {
    if (this.chunkCount === 0) return;
    w.chunks.push({ buf: this.slab.subarray(this.chunkStart, this.slabAt), firstLsn: this.chunkFirstLsn, count: this.chunkCount });
    this.chunkStart = this.slabAt;
    this.chunkCount = 0;
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.writeNext();
    });
  }

  /** Encodes the queued appends, up to maxWriteBytes, and writes them; the rest wait for the next write. */
  private writeNext(): void {
    if (this.writing) return;
    if (this.queued.length === 0) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    const w: Write = { chunks: [], pendings: [], firstLsn: this.queued[0].rec.lsn };
    let bytes = 0;
    let n = 0;
    for (; n < this.queued.length && (n === 0 || bytes < this.maxWriteBytes); n++) bytes += this.encode(this.queued[n].rec, w);
    w.pendings = n === this.queued.length ? this.queued : this.queued.slice(0, n);
    this.queued = n === this.queued.length ? [] : this.queued.slice(n);
    this.closeChunk(w);
    this.writing = w;
    this.counters.writes++;
    if (bytes > this.counters.largestWriteBytes) this.counters.largestWriteBytes = bytes;
    const last = w.chunks[w.chunks.length - 1];
    this.sink.write(w.chunks.map((c) => c.buf), w.firstLsn, last.firstLsn + last.count - 1, (err) => this.written(w, err));
  }

  private written(w: Write, err: Error | null): void {
    this.writing = undefined;
    if (err) {
      this.failAll(w, err);
    } else {
      this.unwritten -= w.pendings.length;
      for (const p of w.pendings) p.durable = true;
      // To the writer before any ack: a write the caller makes after its ack is posted after these.
      for (const c of w.chunks) this.post(c.firstLsn, c.count, c.buf);
      for (const p of w.pendings) {
        p.waiter!.resolve(p.waiter!.value);
        p.waiter = undefined;
        if (p.duplicates) for (const d of p.duplicates.splice(0)) d.resolve(d.value);
      }
    }
    // A turn later, not now: a sink that wrote at once would otherwise encode the whole backlog in this turn.
    this.schedule();
  }

  /** The write w failed: it and every append queued after it fail, and their seqs and lsns are taken again. */
  private failAll(w: Write, err: Error): void {
    this.counters.failedWrites++;
    const error = new UnavailableError(`sqlite store: the message log write failed (${err.message}); the message was not stored`, { cause: err });
    for (const p of [...w.pendings, ...this.queued]) {
      p.waiter?.reject(error);
      p.waiter = undefined;
      if (p.duplicates) for (const d of p.duplicates.splice(0)) d.reject(error);
    }
    for (const p of this.unindexed.dropNotDurable()) {
      this.convSeqs.forget([p.rec.convId]);
      this.userSeqs.forget(p.rec.recipients);
    }
    this.queued = [];
    this.unwritten = 0;
    this.nextLsn = w.firstLsn;
  }
}
