/**
 * Strict request decoding for LogicAdmin. grpc-js decodes requests before a handler runs, with
 * protobufjs replacing invalid UTF-8 by U+FFFD, so two idempotency keys that differ only in bad
 * bytes would be one key. Here requests are decoded with proto/wire's strictReader instead; a
 * request with a bad string reaches the handler as a marker that `rejectedRequest` turns into
 * BAD_REQUEST (grpc-js would answer a throwing deserializer with a bare INTERNAL).
 */
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { InvalidUtf8Error } from '../common/errors';
import { LOADER_OPTIONS, PROTO_DIR } from '../common/grpc';
import { strictReader } from '../proto/wire';

const REJECTED = Symbol('rejected request');

/** The error a strictly decoded request was refused with, if it was. */
export function rejectedRequest(request: unknown): InvalidUtf8Error | undefined {
  return (request as { [REJECTED]?: InvalidUtf8Error } | null)?.[REJECTED];
}

/** `service` with every method's request decoded strictly. `protoFile` is relative to PROTO_DIR. */
export function withStrictRequests(service: grpc.ServiceDefinition, protoFile: string): grpc.ServiceDefinition {
  const root = protobuf.loadSync(path.join(PROTO_DIR, protoFile));
  const convert: protobuf.IConversionOptions = {
    longs: LOADER_OPTIONS.longs, enums: LOADER_OPTIONS.enums, defaults: LOADER_OPTIONS.defaults, oneofs: LOADER_OPTIONS.oneofs,
  };
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const typeName = (method as unknown as { requestType: { type: { name: string } } }).requestType.type.name;
    const t = root.lookupType(typeName);
    out[name] = {
      ...(method as grpc.MethodDefinition<unknown, unknown>),
      requestDeserialize: (bytes: Buffer) => {
        try {
          return t.toObject(t.decode(strictReader(bytes)), convert);
        } catch (err) {
          if (err instanceof InvalidUtf8Error) return { [REJECTED]: err };
          throw err;
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}
