/**
 * One gateway's Connect stream. Calls from each CallBatch run concurrently; results that finish in
 * the same event-loop turn leave as one ResultBatch. The number of calls a stream may have
 * outstanding (running, or finished but not yet written) is bounded: beyond it a call is answered
 * OVERLOADED at once, and while the transport pushes back (write() returned false) reading stops
 * too, so neither memory nor the backlog grows without limit.
 */
import type * as grpc from '@grpc/grpc-js';
import { errorReply, ImError, OverloadedError, UnavailableError } from '../common/errors';
import type { Logger } from '../common/log';
import { metrics } from '../common/metrics';
import { logicCall } from '../telemetry/hooks';
import type { Call__Output } from '../proto/gen/im/internal/v1/Call';
import type { CallBatch__Output } from '../proto/gen/im/internal/v1/CallBatch';
import type { Result } from '../proto/gen/im/internal/v1/Result';
import type { ResultBatch } from '../proto/gen/im/internal/v1/ResultBatch';
import type { OpRegistry } from './ops';

export type ConnectCall = grpc.ServerDuplexStream<CallBatch__Output, ResultBatch>;

export interface CallStreamOptions {
  registry: OpRegistry;
  maxInFlight: number;
  /** A ResultBatch is cut once its bodies reach this size (one larger result still goes alone). */
  maxBatchBytes: number;
  logger: Logger;
}

interface Pending { result: Result; bytes: number; counted: boolean }

export class CallStream {
  private inFlight = 0;
  private pending: Pending[] = [];
  private flushScheduled = false;
  private waitingDrain = false;
  private peerEnded = false;
  private draining = false;
  private finished = false;
  private resolveDone!: () => void;
  /** Settles when the stream is over, however it ended. */
  readonly done = new Promise<void>((resolve) => { this.resolveDone = resolve; });

  constructor(private readonly call: ConnectCall, private readonly opts: CallStreamOptions) {
    call.on('data', (batch: CallBatch__Output) => this.onBatch(batch));
    call.on('end', () => {
      this.peerEnded = true;
      this.maybeEnd();
    });
    call.on('cancelled', () => this.finish('cancelled'));
    call.on('error', (err: Error) => this.finish(`error: ${err.message}`));
    call.on('close', () => this.finish('closed'));
  }

  /** Answers new calls UNAVAILABLE, lets running ones finish, then ends the stream. */
  drain(): Promise<void> {
    this.draining = true;
    this.maybeEnd();
    return this.done;
  }

  /** Ends the stream now; results still running are dropped (the gateway times them out). */
  abort(): void {
    if (this.finished) return;
    this.finish('aborted');
    try {
      this.call.end();
    } catch { /* already torn down */ }
  }

  private onBatch(batch: CallBatch__Output): void {
    if (this.finished) return;
    for (const c of batch.calls ?? []) this.onCall(c);
  }

  private onCall(c: Call__Output): void {
    if (this.draining) {
      this.push(errorResult(c.callId, new UnavailableError('logic is shutting down; retry on another instance')), false);
      return;
    }
    if (this.inFlight >= this.opts.maxInFlight) {
      this.push(errorResult(c.callId, new OverloadedError(`more than ${this.opts.maxInFlight} calls in flight on this stream`)), false);
      return;
    }
    this.inFlight++;
    const ctx = { op: c.op, uid: c.uid, deviceId: c.deviceId, connId: c.connId, node: c.node };
    logicCall(c.op, c.traceParent, () => this.opts.registry.handle(ctx, c.body ?? new Uint8Array(0))).then(
      (body) => this.push({ callId: c.callId, body, code: 0, message: '', retryable: false }, true),
      (err: unknown) => {
        if (!(err instanceof ImError)) {
          // Unexpected failures are ours: log the detail here, tell the client only that it failed.
          this.opts.logger.error('op failed', { op: c.op, err: err instanceof Error ? err.stack : String(err) });
        }
        this.push(errorResult(c.callId, err), true);
      },
    );
  }

  private push(result: Result, counted: boolean): void {
    if (this.finished) {
      if (counted) this.inFlight--;
      return;
    }
    const bytes = result.body instanceof Uint8Array ? result.body.length : 0;
    this.pending.push({ result, bytes, counted });
    if (!this.flushScheduled && !this.waitingDrain) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    while (!this.finished && !this.waitingDrain && this.pending.length > 0) {
      let n = 0;
      let bytes = 0;
      let counted = 0;
      while (n < this.pending.length && (n === 0 || bytes + this.pending[n].bytes <= this.opts.maxBatchBytes)) {
        bytes += this.pending[n].bytes;
        if (this.pending[n].counted) counted++;
        n++;
      }
      const results = this.pending.slice(0, n).map((p) => p.result);
      this.pending = this.pending.slice(n);
      this.inFlight -= counted;
      let ok: boolean;
      try {
        ok = this.call.write({ results });
      } catch (err) {
        this.finish(`write failed: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      if (!ok) {
        // The gateway is not reading: stop reading its calls too until the transport drains.
        this.waitingDrain = true;
        metrics().logicStreamBackpressure.inc();
        this.call.pause();
        this.call.once('drain', () => {
          this.waitingDrain = false;
          if (this.finished) return;
          this.call.resume();
          this.flush();
        });
      }
    }
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.finished || !(this.peerEnded || this.draining)) return;
    if (this.inFlight > 0 || this.pending.length > 0 || this.waitingDrain || this.flushScheduled) return;
    this.finish('ended');
    try {
      this.call.end();
    } catch { /* already torn down */ }
  }

  private finish(why: string): void {
    if (this.finished) return;
    this.finished = true;
    this.pending = [];
    this.opts.logger.debug('stream finished', { why });
    this.resolveDone();
  }
}

function errorResult(callId: number, err: unknown): Result {
  return { callId, body: new Uint8Array(0), ...errorReply(err) };
}
