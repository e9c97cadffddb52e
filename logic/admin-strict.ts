/**
 * Strict request decoding for LogicAdmin. grpc-js decodes requests before a handler runs, with
 * protobufjs replacing invalid UTF-8 by U+FFFD, so two idempotency keys that differ only in bad
 * bytes would be one key. Here requests are decoded by the codecs generated from admin.proto, on
 * proto/binary's strict reader; a
 * request with a bad string reaches the handler as a marker that `rejectedRequest` turns into
 * BAD_REQUEST (grpc-js would answer a throwing deserializer with a bare INTERNAL).
 */
import type * as grpc from '@grpc/grpc-js';
import { InvalidUtf8Error } from '../common/errors';
import { WireReader } from '../proto/binary';
import * as admin from '../proto/gen-ts/internal/admin';

const REJECTED = Symbol('rejected request');

/** The error a strictly decoded request was refused with, if it was. */
export function rejectedRequest(request: unknown): InvalidUtf8Error | undefined {
  return (request as { [REJECTED]?: InvalidUtf8Error } | null)?.[REJECTED];
}

type Decoder = { decode(r: WireReader): unknown };

/**
 * `service` (LogicAdmin as proto-loader defines it) with every method's request decoded strictly.
 * The generated objects have the shape proto-loader's options give (every scalar present, longs
 * as numbers), so handlers see no difference.
 */
export function withStrictRequests(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const typeName = (method as unknown as { requestType: { type: { name: string } } }).requestType.type.name;
    const codec = (admin as unknown as Record<string, Decoder | undefined>)[typeName];
    if (!codec) throw new Error(`no generated codec for ${typeName}`);
    out[name] = {
      ...(method as grpc.MethodDefinition<unknown, unknown>),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return codec.decode(new WireReader(bytes));
        } catch (err) {
          if (err instanceof InvalidUtf8Error) return { [REJECTED]: err };
          throw err;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}
