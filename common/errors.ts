/**
 * Stable numeric error codes and the error classes that carry them. Codes travel to clients in
 * Frame.error and across gRPC in status details; they never change meaning once released.
 */

export const Code = {
  OK: 0,
  // Protocol and session (1000-1099): produced by the gateway.
  BAD_FRAME: 1000,
  FRAME_TOO_LARGE: 1001,
  UNKNOWN_OP: 1002,
  NOT_AUTHENTICATED: 1003,
  TOKEN_INVALID: 1004,
  TOKEN_EXPIRED: 1005,
  AUTH_TIMEOUT: 1006,
  RATE_LIMITED: 1007,
  SLOW_CONSUMER: 1008,
  IDLE_TIMEOUT: 1009,
  ALREADY_AUTHENTICATED: 1010,
  // Availability (1100-1199): retryable.
  UNAVAILABLE: 1100,
  TIMEOUT: 1101,
  OVERLOADED: 1102,
  INTERNAL: 1199,
  // Business (2000-2999): produced by logic.
  BAD_REQUEST: 2000,
  GROUP_NOT_FOUND: 2001,
  NOT_GROUP_MEMBER: 2002,
  GROUP_FULL: 2003,
  NOT_GROUP_OWNER: 2004,
  CONTENT_TOO_LARGE: 2005,
  IDEMPOTENCY_CONFLICT: 2006,
} as const;

export type CodeName = keyof typeof Code;
export type CodeValue = (typeof Code)[CodeName];

const RETRYABLE = new Set<number>([
  Code.RATE_LIMITED, Code.UNAVAILABLE, Code.TIMEOUT, Code.OVERLOADED, Code.INTERNAL,
]);

export function isRetryableCode(code: number): boolean {
  return RETRYABLE.has(code);
}

const NAMES = new Map<number, string>(Object.entries(Code).map(([name, value]) => [value, name]));

/** The name of a code ("GROUP_FULL"); on every request's metrics path, so a map lookup. */
export function codeName(code: number): string {
  return NAMES.get(code) ?? `CODE_${code}`;
}

/** Base of every error the system reports with a code. */
export class ImError extends Error {
  readonly code: number;
  readonly retryable: boolean;
  constructor(code: number, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ImError';
    this.code = code;
    this.retryable = options.retryable ?? isRetryableCode(code);
  }
}

/**
 * The type of each error class below: `new X(message)` is an ImError whose code is `X.code`.
 * Written out so the declarations the SDK ships name no Node type (an inferred class type would
 * carry Node's ErrorConstructor statics, `prepareStackTrace(…: NodeJS.CallSite[])`).
 */
export interface ImErrorClass<C extends number> {
  new (message: string, options?: { cause?: unknown }): ImError;
  readonly code: C;
  readonly prototype: ImError;
}

function errorClass<C extends number>(name: string, code: C): ImErrorClass<C> {
  const cls = class extends ImError {
    static readonly code = code;
    constructor(message: string, options: { cause?: unknown } = {}) {
      super(code, message, options);
      this.name = name;
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

export const BadFrameError = errorClass('BadFrameError', Code.BAD_FRAME);
export const FrameTooLargeError = errorClass('FrameTooLargeError', Code.FRAME_TOO_LARGE);
export const UnknownOpError = errorClass('UnknownOpError', Code.UNKNOWN_OP);
export const NotAuthenticatedError = errorClass('NotAuthenticatedError', Code.NOT_AUTHENTICATED);
export const TokenInvalidError = errorClass('TokenInvalidError', Code.TOKEN_INVALID);
export const TokenExpiredError = errorClass('TokenExpiredError', Code.TOKEN_EXPIRED);
export const RateLimitedError = errorClass('RateLimitedError', Code.RATE_LIMITED);
export const UnavailableError = errorClass('UnavailableError', Code.UNAVAILABLE);
export const TimeoutError = errorClass('TimeoutError', Code.TIMEOUT);
export const OverloadedError = errorClass('OverloadedError', Code.OVERLOADED);
export const InternalError = errorClass('InternalError', Code.INTERNAL);
export const BadRequestError = errorClass('BadRequestError', Code.BAD_REQUEST);
export const GroupNotFoundError = errorClass('GroupNotFoundError', Code.GROUP_NOT_FOUND);
export const NotGroupMemberError = errorClass('NotGroupMemberError', Code.NOT_GROUP_MEMBER);
export const GroupFullError = errorClass('GroupFullError', Code.GROUP_FULL);
export const NotGroupOwnerError = errorClass('NotGroupOwnerError', Code.NOT_GROUP_OWNER);
export const ContentTooLargeError = errorClass('ContentTooLargeError', Code.CONTENT_TOO_LARGE);
/** A client_msg_id already used, within the dedup window, for a different message. */
export const IdempotencyConflictError = errorClass('IdempotencyConflictError', Code.IDEMPOTENCY_CONFLICT);

/**
 * A protobuf string field whose bytes are not valid UTF-8. A BAD_REQUEST: replacing the bad bytes
 * would make distinct values (two client_msg_ids) equal.
 */
export class InvalidUtf8Error extends BadRequestError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'InvalidUtf8Error';
  }
}

/** Any thrown value as an ImError; unknown failures become INTERNAL (retryable). */
export function toImError(err: unknown): ImError {
  if (err instanceof ImError) return err;
  return new InternalError(err instanceof Error ? err.message : String(err), { cause: err });
}

/** What a caller is told of a failed call. */
export interface ErrorReply {
  code: number;
  message: string;
  retryable: boolean;
}

/**
 * Any thrown value as the reply to a call, in every mode (logic's gateway stream, embedded mode,
 * gRPC). Unexpected errors (not ImError) get a generic text: their stack traces and SQL are for
 * the log, never for a client.
 */
export function errorReply(err: unknown): ErrorReply {
  const im = toImError(err);
  return { code: im.code, message: err instanceof ImError ? im.message : 'internal error', retryable: im.retryable };
}

/** Disconnect codes: sent in a Disconnect frame just before the server closes the socket. */
export const DisconnectCode = {
  DRAINING: 3000,        // gateway is shutting down: reconnect (elsewhere) now
  KICKED: 3001,          // an operator or a newer login removed this session: do not reconnect
  BAD_TOKEN: 3002,       // token invalid: do not reconnect with it
  TOKEN_EXPIRED: 3003,   // get a new token, then reconnect
  AUTH_TIMEOUT: 3004,    // no Auth frame in time: reconnect
  PROTOCOL_ERROR: 3005,  // framing broken (oversized length, garbage): do not reconnect blindly
  SLOW_CONSUMER: 3006,   // the client stopped reading: reconnect and sync
  IDLE_TIMEOUT: 3007,    // no frame within the idle timeout: reconnect
  RATE_LIMITED: 3008,    // flooding: reconnect after backoff
} as const;

const RECONNECT = new Set<number>([
  DisconnectCode.DRAINING, DisconnectCode.AUTH_TIMEOUT, DisconnectCode.SLOW_CONSUMER,
  DisconnectCode.IDLE_TIMEOUT, DisconnectCode.RATE_LIMITED,
]);

/** Whether a client should reconnect automatically after this disconnect code. */
export function shouldReconnect(code: number): boolean {
  return RECONNECT.has(code);
}
