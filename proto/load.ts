/** Loading the internal gRPC contracts with the same options the generated types assume. */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as LogicProto } from './gen/logic';
import type { ProtoGrpcType as RouterProto } from './gen/router';
import * as logicCodecs from './gen-ts/internal/logic';
import * as routerCodecs from './gen-ts/internal/router';
import { withGeneratedCodecs } from './grpc-codecs';

export const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false, longs: Number, enums: Number, defaults: true, oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** A file of proto/internal as grpc-js services, serialized by the codecs generated from it. */
export function loadInternalProto<T>(file: string, codecs: object): T {
  const def = protoLoader.loadSync(path.join(PROTO_DIR, 'internal', file), LOADER_OPTIONS);
  return grpc.loadPackageDefinition(withGeneratedCodecs(def, codecs)) as unknown as T;
}

export const loadLogicProto = () => loadInternalProto<LogicProto>('logic.proto', logicCodecs);
export const loadRouterProto = () => loadInternalProto<RouterProto>('router.proto', routerCodecs);
