/**
 * gRPC server reflection (v1 and v1alpha) so grpcurl and similar tools can list, describe and call
 * the services with no .proto file at hand. Only pass the files of services this server really
 * serves: reflection lists every service it is given.
 */
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { LOADER_OPTIONS, PROTO_DIR } from '../proto/load';

/**
 * Adds the reflection service for `protoFiles` (absolute, or relative to PROTO_DIR such as
 * 'internal/admin.proto') to `server`, before it starts.
 */
export function addReflection(server: grpc.Server, protoFiles: string[]): void {
  if (protoFiles.length === 0) throw new RangeError('addReflection needs at least one proto file');
  const files = protoFiles.map((f) => (path.isAbsolute(f) ? path.relative(PROTO_DIR, f) : f));
  // Names relative to the include dir keep descriptor file names stable ("internal/admin.proto").
  // keepCase: reflection serves the descriptors, whose field names must be the .proto's own
  // (group_id), not the camelCase the service handlers use; otherwise grpcurl rejects "group_id".
  const def = protoLoader.loadSync(files, { ...LOADER_OPTIONS, keepCase: true });
  new ReflectionService(def).addToServer(server);
}
