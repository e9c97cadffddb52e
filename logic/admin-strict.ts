/**
 * Strict request decoding for LogicAdmin. grpc-js decodes requests before a handler runs, with
 * protobufjs replacing invalid UTF-8 by U+FFFD, so two idempotency keys that differ only in bad
 * bytes would be one key. Here requests are decoded by the codecs generated from admin.proto
 * (common/grpc loadInternalProto), which refuse bad UTF-8; a request with a bad string reaches
 * the handler as a marker that `rejectedRequest` turns into BAD_REQUEST (grpc-js would answer a throwing deserializer with a bare INTERNAL).
 */
import type * as grpc from '@grpc/grpc-js';
import { InvalidUtf8Error } from '../common/errors';

const REJECTED = Symbol('rejected request');

/** The error a strictly decoded request was refused with, if it was. */
export function rejectedRequest(request: unknown): InvalidUtf8Error | undefined {
  return (request as { [REJECTED]?: InvalidUtf8Error } | null)?.[REJECTED];
}

/**
 * `service` (LogicAdmin, serialized by the generated codecs, which refuse bad UTF-8) with a
 * request that has a bad string handed to the handler as a marker instead of thrown.
 */
export function withStrictRequests(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          if (err instanceof InvalidUtf8Error) return { [REJECTED]: err };
          throw err;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}
