/**
 * The error every SDK call rejects with. It is an ImError (same stable codes as the server), so
 * callers switch on `code` and decide on `retryable` whichever side produced the failure.
 */
import { Code, ImError } from '../common/errors';
import type { Disconnect, WireError } from '../proto/wire';

export class ImClientError extends ImError {
  /** The op of the request that failed, when there was one. */
  readonly op?: number;
  /** Set when the failure came with a server Disconnect (e.g. a rejected Auth). */
  readonly disconnect?: Disconnect;

  constructor(code: number, message: string,
    options: { retryable?: boolean; cause?: unknown; op?: number; disconnect?: Disconnect } = {}) {
    super(code, message, { retryable: options.retryable, cause: options.cause });
    this.name = 'ImClientError';
    this.op = options.op;
    this.disconnect = options.disconnect;
  }

  static fromWire(err: WireError, op?: number): ImClientError {
    return new ImClientError(err.code, err.message || `error ${err.code}`, { retryable: err.retryable, op });
  }
}

/** The connection went away (or is not up yet): the same request may succeed once reconnected. */
export function connectionLost(reason: string, op?: number): ImClientError {
  return new ImClientError(Code.UNAVAILABLE, reason, { retryable: true, op });
}

/** The client was closed or gave up reconnecting: retrying on this client cannot help. */
export function clientClosed(reason: string, op?: number): ImClientError {
  return new ImClientError(Code.UNAVAILABLE, reason, { retryable: false, op });
}

export function requestTimeout(timeoutMs: number, op?: number): ImClientError {
  return new ImClientError(Code.TIMEOUT, `no reply within ${timeoutMs}ms`, { retryable: true, op });
}

/**
 * A send not acknowledged within its retry window. The last attempt is often cut short by the
 * window itself ("no reply within 1ms"), which says nothing: the message names the window, the
 * attempts and the failure before that one. Still retryable: the app may send again later with
 * the same clientMsgId and get the original message if one was stored.
 */
export function retryWindowRanOut(final: ImClientError, before: ImClientError | undefined, attempts: number,
  windowMs: number): ImClientError {
  const cause = before && final.code === Code.TIMEOUT ? before : final;
  return new ImClientError(cause.code,
    `send not acknowledged within its ${windowMs} ms retry window (${attempts} attempts); last failure: ${cause.message}`,
    { retryable: true, cause: final, op: final.op });
}
