/** The Router gRPC service: maps protobuf to RouteTable calls and errors to canonical statuses. */
import * as grpc from '@grpc/grpc-js';
import { BadRequestError, ImError } from '../common/errors';
import { toGrpcError } from '../common/grpc';
import { loadRouterProto } from '../proto/load';
import { Logger } from '../common/log';
import type { RouterHandlers } from '../proto/gen/im/internal/v1/Router';
import type { Session__Output } from '../proto/gen/im/internal/v1/Session';
import type { SessionRef } from './api';
import type { RouteTable } from './table';

export interface RouterHandlersOptions {
  table: RouteTable;
  /** Returned to gateways in every HeartbeatReply. */
  heartbeatIntervalMs: number;
  logger: Logger;
}

export function routerHandlers(options: RouterHandlersOptions): RouterHandlers {
  const { table, heartbeatIntervalMs, logger } = options;

  /** Runs `fn`, answering with its result or with the error as a status carrying the app code. */
  function handle<Req, Res>(method: string, fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let reply: Res;
      try {
        reply = fn(call.request);
      } catch (err) {
        if (!(err instanceof ImError)) logger.error('router: unexpected error', { method, err });
        callback(toGrpcError(err));
        return;
      }
      callback(null, reply);
    };
  }

  return {
    Bind: handle('Bind', (req) => {
      const sessions = req.sessions.map(toSessionRef);
      if (req.snapshot || req.snapshotMore) {
        if (!req.node) throw new BadRequestError('node is required for a snapshot bind');
        table.snapshot(req.node, sessions, req.snapshot);
        return {};
      }
      return { displaced: table.bind(sessions) };
    }),
    Unbind: handle('Unbind', (req) => {
      table.unbind(req.sessions.map(toSessionRef));
      return {};
    }),
    Lookup: handle('Lookup', (req) => ({ sessions: table.lookup(req.uids) })),
    Heartbeat: handle('Heartbeat', (req) => {
      const { known } = table.heartbeat(req);
      if (!known) logger.info('router: gateway registered', { node: req.node, addr: req.addr });
      return { heartbeatIntervalMs, known };
    }),
  };
}

/** Adds the Router service to `server`. */
export function addRouterService(server: grpc.Server, options: RouterHandlersOptions): void {
  const proto = loadRouterProto();
  server.addService(proto.im.internal.v1.Router.service, routerHandlers(options));
}

function toSessionRef(s: Session__Output): SessionRef {
  return { uid: s.uid, deviceId: s.deviceId, node: s.node, connId: s.connId };
}
