/**
 * gRPC without the contracts: app errors to and from gRPC statuses, and binding a server. The
 * internal contracts themselves are loaded by proto/load.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { Code, codeName, errorReply, ImError, InternalError, isRetryableCode, TimeoutError, UnavailableError } from './errors';

/** Metadata key carrying the app error code across gRPC (the status code stays canonical). */
export const APP_CODE_KEY = 'im-app-code';

/**
 * The canonical status for an app code. Callers of internal APIs use stock gRPC tooling (retry
 * policies, grpcurl, dashboards keyed by status), so the status says what kind of failure it is;
 * the exact condition rides in the `im-app-code` trailer and at the start of the message.
 */
export function grpcStatusFor(code: number): grpc.status {
  switch (code) {
    case Code.GROUP_NOT_FOUND: return grpc.status.NOT_FOUND;
    case Code.NOT_GROUP_MEMBER:
    case Code.NOT_GROUP_OWNER: return grpc.status.PERMISSION_DENIED;
    case Code.GROUP_FULL: return grpc.status.FAILED_PRECONDITION;
    case Code.IDEMPOTENCY_CONFLICT: return grpc.status.ALREADY_EXISTS;
    case Code.CONTENT_TOO_LARGE:
    case Code.OVERLOADED:
    case Code.RATE_LIMITED: return grpc.status.RESOURCE_EXHAUSTED;
    case Code.NOT_AUTHENTICATED:
    case Code.TOKEN_INVALID:
    case Code.TOKEN_EXPIRED: return grpc.status.UNAUTHENTICATED;
    case Code.UNKNOWN_OP: return grpc.status.UNIMPLEMENTED;
    // A dependency that is down or timed out: UNAVAILABLE is what stock retry policies retry.
    case Code.TIMEOUT:
    case Code.UNAVAILABLE: return grpc.status.UNAVAILABLE;
    case Code.INTERNAL: return grpc.status.INTERNAL;
  }
  // Other business codes are requests the caller can fix; other retryable codes are availability.
  if (code >= 2000 && code < 3000) return grpc.status.INVALID_ARGUMENT;
  return isRetryableCode(code) ? grpc.status.UNAVAILABLE : grpc.status.INVALID_ARGUMENT;
}

/**
 * Any thrown value as a gRPC status: canonical code, app code in the `im-app-code` trailer and as
 * a "NAME(code): " prefix of the message. Unexpected errors (not ImError) become INTERNAL with a
 * generic message: their text (SQL, paths) is for the log, not for callers.
 */
export function toGrpcError(err: unknown): Partial<grpc.StatusObject> {
  const { code, message } = errorReply(err);
  const metadata = new grpc.Metadata();
  metadata.set(APP_CODE_KEY, String(code));
  return { code: grpcStatusFor(code), details: `${codeName(code)}(${code}): ${message}`, metadata };
}

/** A failed gRPC call as an ImError: the app code when present, else from the status. */
export function fromGrpcError(err: grpc.ServiceError): ImError {
  const app = err.metadata?.get(APP_CODE_KEY)?.[0];
  if (app !== undefined) {
    const code = Number(app);
    const message = (err.details || err.message).replace(/^[A-Z_0-9]+\(\d+\): /, '');
    return new ImError(code, message, { cause: err, retryable: isRetryableCode(code) });
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return new TimeoutError(err.details || 'deadline exceeded', { cause: err });
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.CANCELLED) {
    return new UnavailableError(err.details || 'service unavailable', { cause: err });
  }
  return new InternalError(err.details || err.message, { cause: err });
}

/**
 * Binds a server on host:port (port 0 = ephemeral) and returns the bound port. Plaintext unless
 * given credentials (grpcServerCredentials in grpc-tls.ts).
 */
export function bindServer(
  server: grpc.Server, host: string, port: number, credentials = grpc.ServerCredentials.createInsecure(),
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => {
      if (err) reject(err); else resolve(bound);
    });
  });
}
