/** Loading the internal gRPC contracts with the same options the generated types assume. */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as LogicProto } from '../proto/gen/logic';
import type { ProtoGrpcType as RouterProto } from '../proto/gen/router';
import { ImError, InternalError, isRetryableCode, UnavailableError, TimeoutError } from './errors';

export const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false, longs: Number, enums: Number, defaults: true, oneofs: true,
  includeDirs: [PROTO_DIR],
};

function load<T>(file: string): T {
  const def = protoLoader.loadSync(path.join(PROTO_DIR, 'internal', file), LOADER_OPTIONS);
  return grpc.loadPackageDefinition(def) as unknown as T;
}

export const loadLogicProto = () => load<LogicProto>('logic.proto');
export const loadRouterProto = () => load<RouterProto>('router.proto');

/** Metadata key carrying the app error code across gRPC (the status code stays canonical). */
export const APP_CODE_KEY = 'im-app-code';

/** An ImError as a gRPC ServiceError: canonical status, app code in metadata. */
export function toGrpcError(err: ImError): Partial<grpc.StatusObject> {
  const md = new grpc.Metadata();
  md.set(APP_CODE_KEY, String(err.code));
  const code = err.retryable ? grpc.status.UNAVAILABLE
    : err.code >= 2000 && err.code < 3000 ? grpc.status.FAILED_PRECONDITION : grpc.status.INVALID_ARGUMENT;
  return { code, details: err.message, metadata: md };
}

/** A failed gRPC call as an ImError: the app code when present, else from the status. */
export function fromGrpcError(err: grpc.ServiceError): ImError {
  const app = err.metadata?.get(APP_CODE_KEY)?.[0];
  if (app !== undefined) {
    const code = Number(app);
    return new ImError(code, err.details || err.message, { cause: err, retryable: isRetryableCode(code) });
  }
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return new TimeoutError(err.details || 'deadline exceeded', { cause: err });
  if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.CANCELLED) {
    return new UnavailableError(err.details || 'service unavailable', { cause: err });
  }
  return new InternalError(err.details || err.message, { cause: err });
}

/** Binds a server on host:port (port 0 = ephemeral) and returns the bound port. */
export function bindServer(server: grpc.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err); else resolve(bound);
    });
  });
}
