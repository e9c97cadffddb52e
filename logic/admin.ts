/**
 * The LogicAdmin gRPC service (proto/internal/admin.proto): the internal API other backends use to
 * send as a user or system account, administer groups and see who is online. Thin adapters over
 * LogicService, so an admin call obeys exactly the rules a client call does; the only extras are
 * "the system acting as the group's owner" and reading a group without being in it.
 */
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Code, ImError } from '../common/errors';
import { toGrpcError } from '../common/grpc';
import { loadInternalProto } from '../proto/load';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';
import type { ProtoGrpcType as AdminProto } from '../proto/gen/admin';
import * as adminCodecs from '../proto/gen-ts/internal/admin';
import type { GroupInfo } from '../proto/gen/im/internal/v1/GroupInfo';
import type { LogicAdminHandlers } from '../proto/gen/im/internal/v1/LogicAdmin';
import type { OnlineDevice } from '../proto/gen/im/internal/v1/OnlineDevice';
import type { GroupResp } from '../proto/wire';
import type { RouterApi } from '../router/api';
import type { GroupInfo as StoredGroup } from '../storage/store';
import type { Caller, LogicService } from './service';
import { requireLength, requireUid, uidList } from './validate';

import { adminApiEnabled, AdminTokens, type AdminAuthSettings } from './admin-auth';
import { addReflection } from './admin-reflection';
import { rejectedRequest, withStrictRequests } from './admin-strict';
import { numberOption } from '../common/options';

export { addReflection };

/** admin.proto relative to PROTO_DIR (the form addReflection takes). */
export const ADMIN_PROTO_FILE = 'internal/admin.proto';

/** The device id admin calls act from, so logs and pushes can tell them from a real device. */
export const ADMIN_DEVICE_ID = 'admin';

export interface AdminServiceOptions {
  service: LogicService;
  router: RouterApi;
  /** Every call must carry one of its tokens (logic/admin-auth.ts). */
  auth: Pick<AdminTokens, 'check'>;
  logger?: Logger;
  /** Uids per OnlineDevices call. Default 1000. */
  maxUidsPerLookup?: number;
}

/** LogicService's clientMsgId limit, which the key becomes. */
const MAX_IDEMPOTENCY_KEY_CHARS = 128;
/** Attempts of a system-as-owner change when ownership moves between reading the group and acting. */
const MAX_OWNER_ATTEMPTS = 3;

export function adminHandlers(options: AdminServiceOptions): LogicAdminHandlers {
  const { service, router } = options;
  const logger = options.logger ?? silentLogger;
  const maxUidsPerLookup = numberOption('LogicAdmin', 'maxUidsPerLookup', options.maxUidsPerLookup, 1000, { integer: true });

  function unary<Req, Res>(method: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const refused = options.auth.check(call.metadata);
      if (refused) {
        logger.warn('admin: call refused', { method, peer: call.getPeer(), reason: refused.message });
        callback(toGrpcError(refused));
        return;
      }
      const rejected = rejectedRequest(call.request);
      if (rejected) {
        callback(toGrpcError(rejected));
        return;
      }
      fn(call.request).then((res) => callback(null, res), (err: unknown) => {
        if (!(err instanceof ImError)) logger.error('admin: unexpected error', { method, err });
        callback(toGrpcError(err));
      });
    };
  }

  async function requireGroup(groupId: unknown): Promise<StoredGroup> {
    return (await service.getGroup(String(groupId ?? ''))).group!;
  }

  /** Runs a group change as `actor`, or, when actor is empty, as the group's current owner. */
  async function asActorOrOwner(actor: string, groupId: string, change: (c: Caller) => Promise<GroupResp>): Promise<GroupInfo> {
    if (actor !== '') return groupOut(await change(adminCaller(requireUid('actor', actor))));
    for (let attempt = 1; ; attempt++) {
      const group = await requireGroup(groupId);
      try {
        return groupOut(await change(adminCaller(group.owner)));
      } catch (err) {
        // The owner left between our read and the change: act as whoever owns it now.
        const moved = err instanceof ImError && (err.code === Code.NOT_GROUP_MEMBER || err.code === Code.NOT_GROUP_OWNER);
        if (!moved || attempt >= MAX_OWNER_ATTEMPTS) throw err;
      }
    }
  }

  return {
    SendMessage: unary('SendMessage', async (req) => {
      const from = requireUid('from', req.from);
      // Checked here, not only as clientMsgId inside send, so the error names the field the caller set.
      requireLength('idempotencyKey', req.idempotencyKey, 1, MAX_IDEMPOTENCY_KEY_CHARS);
      const r = await service.send(adminCaller(from), {
        to: req.to, groupId: req.groupId, clientMsgId: req.idempotencyKey,
        contentType: req.contentType, content: req.content,
      });
      return { msgId: r.msgId, seq: r.seq, sentAtMs: r.sentAtMs, duplicate: r.duplicate, convId: r.convId, convSeq: r.convSeq };
    }),
    CreateGroup: unary('CreateGroup', async (req) => {
      const owner = requireUid('owner', req.owner);
      return groupOut(await service.createGroup(adminCaller(owner), { name: req.name, members: req.members }));
    }),
    AddMembers: unary('AddMembers', (req) =>
      asActorOrOwner(req.actor, req.groupId, (c) => service.addMembers(c, { groupId: req.groupId, uids: req.uids }))),
    RemoveMembers: unary('RemoveMembers', (req) =>
      asActorOrOwner(req.actor, req.groupId, (c) => service.removeMembers(c, { groupId: req.groupId, uids: req.uids }))),
    GetGroup: unary('GetGroup', async (req) => groupFields(await requireGroup(req.groupId))),
    OnlineDevices: unary('OnlineDevices', async (req) => {
      const uids = uidList('uids', req.uids, maxUidsPerLookup, { min: 1 });
      const sessions = await router.lookup(uids);
      // Grouped by uid in request order, whatever order the router answers in.
      const byUid = new Map<string, OnlineDevice[]>(uids.map((u) => [u, []]));
      for (const s of sessions) byUid.get(s.uid)?.push({ uid: s.uid, deviceId: s.deviceId, node: s.node, connId: s.connId });
      return { devices: [...byUid.values()].flat() };
    }),
  };
}

/** Adds LogicAdmin to `server` (before it starts), usually LogicServer.server. */
export function addAdminService(server: grpc.Server, options: AdminServiceOptions): void {
  server.addService(withStrictRequests(loadAdminProto().im.internal.v1.LogicAdmin.service), adminHandlers(options));
}

/**
 * What logic serves next to LogicGateway on its port, added before it starts: LogicAdmin only when
 * an admin token is configured (none: not served, so calls get UNIMPLEMENTED), and reflection
 * for the services served. Reflection needs no token: it tells only what admin.proto says.
 * `close` stops watching IM_LOGIC_ADMIN_TOKEN_FILE.
 */
export function addInternalApis(server: grpc.Server, options: Omit<AdminServiceOptions, 'auth'> & { admin: AdminAuthSettings }): { admin: boolean; close(): void } {
  if (!adminApiEnabled(options.admin)) {
    addReflection(server, ['internal/logic.proto']);
    return { admin: false, close: () => undefined };
  }
  const auth = new AdminTokens(options.admin, { logger: options.logger });
  addAdminService(server, { ...options, auth });
  addReflection(server, ['internal/logic.proto', ADMIN_PROTO_FILE]);
  return { admin: true, close: () => auth.close() };
}

export function loadAdminProto(): AdminProto {
  return loadInternalProto<AdminProto>(path.basename(ADMIN_PROTO_FILE), adminCodecs);
}

function adminCaller(uid: string): Caller {
  return { uid, deviceId: ADMIN_DEVICE_ID, connId: '', node: '' };
}

function groupOut(resp: GroupResp): GroupInfo {
  // LogicService always returns the group on success; an empty reply would be a logic bug.
  if (!resp.group) throw new Error('group change returned no group');
  return groupFields(resp.group);
}

function groupFields(g: { groupId: string; name: string; owner: string; members: string[]; createdAtMs: number }): GroupInfo {
  return { groupId: g.groupId, name: g.name, owner: g.owner, members: [...g.members], createdAtMs: g.createdAtMs };
}
