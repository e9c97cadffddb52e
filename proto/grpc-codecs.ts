/**
 * grpc-js services with the generated codecs (proto/gen-ts) in place of proto-loader's
 * reflection serializers. proto-loader still describes the services (paths, streaming, the
 * descriptors reflection serves); only the bytes <-> object step changes. The objects have the
 * shape proto-loader's options (common/grpc LOADER_OPTIONS) give: every scalar present, longs as
 * numbers, absent sub-messages null; strings are strict UTF-8 (InvalidUtf8Error).
 */
import type { PackageDefinition } from '@grpc/proto-loader';
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import { encodeWith, WireReader } from './binary';

interface Codec {
  encode(value: unknown, w: BinaryWriter): unknown;
  decode(r: WireReader): unknown;
  fromPartial(value: unknown): unknown;
}

interface LoadedMethod {
  requestType: { type: { name: string } };
  responseType: { type: { name: string } };
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
}

function codecOf(codecs: object, typeName: string): Codec {
  const c = (codecs as Record<string, Codec | undefined>)[typeName];
  if (!c || typeof c.decode !== 'function') throw new Error(`no generated codec for ${typeName}`);
  return c;
}

// fromPartial: callers build messages as proto-loader accepted them, with fields left out.
const serializer = (c: Codec) => (value: unknown): Buffer => encodeWith((w) => c.encode(c.fromPartial(value), w));
const deserializer = (c: Codec) => (bytes: Buffer): unknown => c.decode(new WireReader(bytes));

/**
 * Switches every method of every service in `def` (as loaded from one .proto file) to the codecs
 * generated from that file (`codecs`: the module proto/gen-ts/... for it). Returns `def`, changed.
 */
export function withGeneratedCodecs(def: PackageDefinition, codecs: object): PackageDefinition {
  for (const entry of Object.values(def)) {
    if ('format' in entry) continue; // a message or enum, not a service
    for (const method of Object.values(entry) as unknown as LoadedMethod[]) {
      const req = codecOf(codecs, method.requestType.type.name);
      const res = codecOf(codecs, method.responseType.type.name);
      method.requestSerialize = serializer(req);
      method.requestDeserialize = deserializer(req);
      method.responseSerialize = serializer(res);
      method.responseDeserialize = deserializer(res);
    }
  }
  return def;
}
