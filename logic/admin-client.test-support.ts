/**
 * For tests: LogicAdmin as another team's backend calls it — grpc-js and proto-loader on
 * admin.proto alone, snake_case fields, no project code — with the admin credential in metadata.
 */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const ADMIN_PROTO = path.resolve(__dirname, '..', '..', 'proto', 'internal', 'admin.proto');

/** What an outside team would write: proto-loader on the one file, snake_case fields. */
export const LOADER = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

export type Reply = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** `authorization: <scheme> <token>` metadata. */
export function bearerMetadata(token: string, scheme = 'Bearer'): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `${scheme} ${token}`);
  return md;
}

/** A LogicAdmin client for `address` (host:port); plaintext unless given credentials. */
export function adminClient(address: string, credentials = grpc.credentials.createInsecure()): grpc.Client {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(ADMIN_PROTO, LOADER)) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  return new pkg.im.internal.v1.LogicAdmin(address, credentials);
}

/** One unary call with `md`; rejects with the grpc ServiceError. */
export function unary(client: grpc.Client, method: string, req: object, md: grpc.Metadata): Promise<Reply> {
  return new Promise((resolve, reject) => {
    (client as any)[method](req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: Reply) => { // eslint-disable-line @typescript-eslint/no-explicit-any
      if (err) reject(err); else resolve(res);
    });
  });
}

/** The gRPC status a call fails with (throws if it succeeds). */
export async function failedStatus(client: grpc.Client, method: string, req: object, md: grpc.Metadata): Promise<grpc.ServiceError> {
  try {
    await unary(client, method, req, md);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error(`${method} was expected to fail`);
}
