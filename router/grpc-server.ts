/** The Router gRPC service: maps protobuf to RouteTable calls and errors to canonical statuses. */
import * as grpc from '@grpc/grpc-js';
import { BadRequestError, errorReply, ImError } from '../common/errors';
import { toGrpcError } from '../common/grpc';
import { loadRouterProto } from '../proto/load';
import { Logger } from '../common/log';
import type { RouterHandlers } from '../proto/gen/im/internal/v1/Router';
import type { Session__Output } from '../proto/gen/im/internal/v1/Session';
import type { LookupRequest__Output } from '../proto/gen/im/internal/v1/LookupRequest';
import type { LookupReply } from '../proto/gen/im/internal/v1/LookupReply';
import type { SessionRef } from './api';
import type { RouteTable } from './table';

export interface RouterHandlersOptions {
  table: RouteTable;
  /** Returned to gateways in every HeartbeatReply. */
  heartbeatIntervalMs: number;
  logger: Logger;
}

/** The open LookupStreams: a stop ends them (they never end on their own). */
export type LookupStreams = Set<grpc.ServerDuplexStream<LookupRequest__Output, LookupReply>>;

export function routerHandlers(options: RouterHandlersOptions, streams: LookupStreams = new Set()): RouterHandlers {
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
    // Each request answered in order on the same stream; a failed one answers with its code.
    LookupStream: (call) => {
      streams.add(call);
      const forget = () => streams.delete(call);
      call.on('close', forget);
      call.on('finish', forget);
      call.on('data', (req: LookupRequest__Output) => {
        let reply: LookupReply;
        try {
          reply = { id: req.id, sessions: table.lookup(req.uids) };
        } catch (err) {
          if (!(err instanceof ImError)) logger.error('router: unexpected error', { method: 'LookupStream', err });
          const { code, message } = errorReply(err);
          reply = { id: req.id, errorCode: code, errorMessage: message };
        }
        call.write(reply);
      });
      call.on('end', () => call.end());
      // A stream the client cancelled or lost: nothing to answer.
      call.on('error', () => undefined);
    },
    Heartbeat: handle('Heartbeat', (req) => {
      const { known } = table.heartbeat(req);
      if (!known) logger.info('router: gateway registered', { node: req.node, addr: req.addr });
      return { heartbeatIntervalMs, known };
    }),
  };
}

/**
 * Adds the Router service to `server`. Returns what ends the open lookup streams, for a stop:
 * call it after tryShutdown (no new stream starts), or the shutdown waits for them to time out.
 */
export function addRouterService(server: grpc.Server, options: RouterHandlersOptions): () => void {
  const proto = loadRouterProto();
  const streams: LookupStreams = new Set();
  server.addService(proto.im.internal.v1.Router.service, routerHandlers(options, streams));
  return () => {
    for (const call of streams) call.end();
    streams.clear();
  };
}

function toSessionRef(s: Session__Output): SessionRef {
  return { uid: s.uid, deviceId: s.deviceId, node: s.node, connId: s.connId };
}
