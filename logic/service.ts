/**
 * The business layer's domain API. Every method takes the authenticated caller first: the acting
 * uid always comes from the connection, never from a request body. Stateless apart from the
 * fan-out coalescing queue and the group cache (kept true across processes by GroupSync), so any
 * number of logic processes can serve the same store.
 */
import type { Bus } from '../bus/bus';
import { BadRequestError, ContentTooLargeError, GroupNotFoundError, NotGroupMemberError } from '../common/errors';
import { groupConvId, isValidUid, newId, peerConvId } from '../common/ids';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';
import { countSend, storeAppend } from '../telemetry/hooks';
import type {
  GroupCreateReq, GroupMembersReq, GroupResp, HistoryReq, HistoryResp, ReadReq, ReadResp, SendReq,
  SendResp, SyncReq, SyncResp, UnreadReq, UnreadResp,
} from '../proto/wire';
import type { RouterApi } from '../router/api';
import type { Store } from '../storage/store';
import { toWireGroup, toWireMessage, toWireUnread } from './convert';
import { Fanout, type LocalDelivery } from './fanout';
import { GroupCache } from './group-cache';
import { GroupSync } from './group-sync';
import { GroupRules } from './groups';
import { nonNegativeInt, pageLimit, requireActor, requireLength, requireUid, str } from './validate';
import { compileNumbers } from '../common/options';

/** Who is calling: filled by the gateway from the authenticated connection. */
export interface Caller { uid: string; deviceId: string; connId: string; node: string }

export interface LogicServiceOptions {
  store: Store;
  bus: Bus;
  /** A gateway in this process, handed its pushes without the bus (embedded mode). */
  localDelivery?: LocalDelivery;
  router: RouterApi;
  logger?: Logger;
  /** Owner included. */
  maxGroupMembers?: number;
  /** How long a retried (sender, clientMsgId) answers with the original message. */
  dedupWindowMs?: number;
  maxContentBytes?: number;
  /**
   * Sync and history replies stop adding messages past this many content bytes (at least one
   * message is always returned, hasMore tells the client to ask again), so a page stays a
   * reasonable frame whatever the message sizes. Default 512 KiB.
   */
  maxReplyBytes?: number;
  now?: () => number;
  /** Groups whose membership a logic process keeps in memory for sends. 10000; 0 turns the cache off. */
  groupCacheEntries?: number;
  /** How often logic processes say hello on the bus (the group cache lease is 3 of these). 1000. */
  groupSyncIntervalMs?: number;
  /** Pauses before a failed fan-out router lookup is tried again (Fanout's lookupRetryMs). */
  fanoutLookupRetryMs?: readonly number[];
}

const SYNC_DEFAULT_LIMIT = 100;
const SYNC_MAX_LIMIT = 500;
const HISTORY_DEFAULT_LIMIT = 50;
const HISTORY_MAX_LIMIT = 200;
const MAX_CLIENT_MSG_ID_CHARS = 128;
const MAX_CONTENT_TYPE_CHARS = 64;
const MAX_UIDS_PER_REQUEST = 100;
const MAX_CONV_IDS_PER_REQUEST = 500;
const MAX_CONV_ID_CHARS = 256;

export class LogicService {
  readonly maxGroupMembers: number;
  readonly dedupWindowMs: number;
  readonly maxContentBytes: number;
  readonly maxReplyBytes: number;
  private readonly store: Store;
  private readonly now: () => number;
  private readonly fanout: Fanout;
  private readonly groups: GroupRules;
  private readonly groupSync: GroupSync;

  constructor(opts: LogicServiceOptions) {
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    ({ maxGroupMembers: this.maxGroupMembers, dedupWindowMs: this.dedupWindowMs, maxContentBytes: this.maxContentBytes,
      maxReplyBytes: this.maxReplyBytes } = compileNumbers('LogicService', opts,
      { maxGroupMembers: 100, dedupWindowMs: 24 * 3_600_000, maxContentBytes: 16_384, maxReplyBytes: 512 * 1024 }, { integer: true }));
    this.fanout = new Fanout({
      bus: opts.bus, local: opts.localDelivery, router: opts.router, lookupRetryMs: opts.fanoutLookupRetryMs,
      logger: (opts.logger ?? silentLogger).child({ part: 'fanout' }),
    });
    const cache = new GroupCache(opts.groupCacheEntries ?? 10_000);
    this.groupSync = new GroupSync({
      bus: opts.bus, invalidate: (groupId) => cache.drop(groupId), helloIntervalMs: opts.groupSyncIntervalMs,
      logger: (opts.logger ?? silentLogger).child({ part: 'group-sync' }),
    });
    this.groups = new GroupRules({
      store: this.store, maxGroupMembers: this.maxGroupMembers, maxUidsPerRequest: MAX_UIDS_PER_REQUEST, now: this.now,
      cache, sync: this.groupSync,
    });
  }

  async send(actor: Caller, req: Partial<SendReq>): Promise<SendResp> {
    requireActor(actor.uid);
    const to = str(req.to);
    const groupId = str(req.groupId);
    if ((to === '') === (groupId === '')) throw new BadRequestError('exactly one of to or groupId is required');
    const clientMsgId = requireLength('clientMsgId', req.clientMsgId, 1, MAX_CLIENT_MSG_ID_CHARS);
    const contentType = str(req.contentType) || 'text/plain';
    if (contentType.length > MAX_CONTENT_TYPE_CHARS) {
      throw new BadRequestError(`contentType must be at most ${MAX_CONTENT_TYPE_CHARS} characters`);
    }
    const content = req.content ?? new Uint8Array(0);
    if (content.length > this.maxContentBytes) {
      throw new ContentTooLargeError(`content is ${content.length} bytes; the limit is ${this.maxContentBytes}`);
    }

    let convId: string;
    let recipients: string[];
    if (to !== '') {
      requireUid('to', to);
      convId = peerConvId(actor.uid, to);
      recipients = to === actor.uid ? [actor.uid] : [actor.uid, to];
    } else {
      const group = await this.groups.requireMember(actor.uid, groupId, true);
      convId = groupConvId(group.groupId);
      recipients = group.members;
    }

    const sentAtMs = this.now();
    const res = await storeAppend(recipients.length, () => this.store.appendMessage({
      msgId: newId(sentAtMs), convId, from: actor.uid, to, groupId, clientMsgId, contentType, content,
      sentAtMs, recipients, dedupWindowMs: this.dedupWindowMs,
    }));
    countSend(res.duplicate);
    // A re-driven send (its first attempt died part way) reports seqs: pushing them again is
    // harmless, clients drop seqs they already have, and it reaches whoever the first attempt missed.
    if (res.seqs.size > 0) this.fanout.enqueue(res.message, res.seqs, actor);
    const m = res.message;
    return { msgId: m.msgId, seq: res.senderSeq, sentAtMs: m.sentAtMs, duplicate: res.duplicate, convId: m.convId, convSeq: m.convSeq };
  }

  async sync(actor: Caller, req: Partial<SyncReq>): Promise<SyncResp> {
    requireActor(actor.uid);
    const fromSeq = nonNegativeInt('fromSeq', req.fromSeq);
    const limit = pageLimit('limit', req.limit, SYNC_DEFAULT_LIMIT, SYNC_MAX_LIMIT);
    const [page, maxSeq] = await Promise.all([
      this.store.sync(actor.uid, fromSeq, limit),
      this.store.maxSeq(actor.uid),
    ]);
    const items = capByBytes(page.items, this.maxReplyBytes);
    return { messages: items.map((e) => toWireMessage(e, e.seq)), hasMore: page.hasMore || items.length < page.items.length, maxSeq };
  }

  async history(actor: Caller, req: Partial<HistoryReq>): Promise<HistoryResp> {
    requireActor(actor.uid);
    const peer = str(req.with);
    const groupId = str(req.groupId);
    if ((peer === '') === (groupId === '')) throw new BadRequestError('exactly one of with or groupId is required');
    const beforeConvSeq = nonNegativeInt('beforeConvSeq', req.beforeConvSeq);
    const limit = pageLimit('limit', req.limit, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT);
    const convId = peer !== ''
      ? peerConvId(actor.uid, requireUid('with', peer))
      : groupConvId((await this.groups.requireMember(actor.uid, groupId)).groupId);
    const page = await this.store.history(convId, beforeConvSeq, limit);
    const items = capByBytes(page.items, this.maxReplyBytes);
    return { messages: items.map((m) => toWireMessage(m, 0)), hasMore: page.hasMore || items.length < page.items.length };
  }

  async read(actor: Caller, req: Partial<ReadReq>): Promise<ReadResp> {
    requireActor(actor.uid);
    const convId = await this.requireOwnConv(actor.uid, req.convId);
    const seq = nonNegativeInt('seq', req.seq);
    return { unread: toWireUnread(await this.store.setReadCursor(actor.uid, convId, seq)) };
  }

  async unread(actor: Caller, req: Partial<UnreadReq>): Promise<UnreadResp> {
    requireActor(actor.uid);
    const convIds = Array.isArray(req.convIds) ? req.convIds : [];
    if (convIds.length > MAX_CONV_IDS_PER_REQUEST) {
      throw new BadRequestError(`convIds: at most ${MAX_CONV_IDS_PER_REQUEST} per request, got ${convIds.length}`);
    }
    for (const c of convIds) requireLength('convIds[]', c, 1, MAX_CONV_ID_CHARS);
    // Counts come from the caller's own inbox only, so asking about any conv id reveals nothing.
    const infos = await this.store.unread(actor.uid, convIds.length > 0 ? convIds : undefined);
    const convs = infos.map(toWireUnread);
    return { convs, total: convs.reduce((sum, u) => sum + u.count, 0) };
  }

  async createGroup(actor: Caller, req: Partial<GroupCreateReq>): Promise<GroupResp> {
    requireActor(actor.uid);
    return { group: toWireGroup(await this.groups.create(actor.uid, req)) };
  }

  async addMembers(actor: Caller, req: Partial<GroupMembersReq>): Promise<GroupResp> {
    requireActor(actor.uid);
    return { group: toWireGroup(await this.groups.add(actor.uid, req)) };
  }

  async removeMembers(actor: Caller, req: Partial<GroupMembersReq>): Promise<GroupResp> {
    requireActor(actor.uid);
    return { group: toWireGroup(await this.groups.remove(actor.uid, req)) };
  }

  async leave(actor: Caller, req: Partial<GroupMembersReq>): Promise<GroupResp> {
    requireActor(actor.uid);
    return { group: toWireGroup(await this.groups.leave(actor.uid, req)) };
  }

  async members(actor: Caller, req: Partial<GroupMembersReq>): Promise<GroupResp> {
    requireActor(actor.uid);
    return { group: toWireGroup(await this.groups.members(actor.uid, req)) };
  }

  /** A group whoever asks: for trusted internal callers (the admin API), never for clients. */
  async getGroup(groupId: string): Promise<GroupResp> {
    return { group: toWireGroup(await this.groups.require(groupId)) };
  }

  /** Group sends may be answered from memory now (the group cache's lease holds; group-sync.ts). */
  get groupCacheReady(): boolean {
    return this.groupSync.fresh;
  }

  /** Resolves once every push queued so far has been handed to the bus (or given up on). */
  flushPushes(): Promise<void> {
    return this.fanout.idle();
  }

  /** Flushes queued pushes and stops pushing. The store, bus and router are the caller's to close. */
  async close(): Promise<void> {
    this.groupSync.close();
    await this.fanout.close();
  }

  /** convId when it is a conversation `uid` takes part in. */
  private async requireOwnConv(uid: string, v: unknown): Promise<string> {
    const convId = requireLength('convId', v, 1, MAX_CONV_ID_CHARS);
    if (convId.startsWith('p:')) {
      const parts = convId.split(':');
      if (parts.length === 3 && isValidUid(parts[1]) && isValidUid(parts[2])
        && (parts[1] === uid || parts[2] === uid) && peerConvId(parts[1], parts[2]) === convId) {
        return convId;
      }
      throw new BadRequestError(`convId ${convId} is not a conversation of ${uid}`);
    }
    if (convId.startsWith('g:')) {
      const group = await this.store.getGroup(convId.slice(2));
      if (!group) throw new GroupNotFoundError(`group ${convId.slice(2)} not found`);
      if (!group.members.includes(uid)) throw new NotGroupMemberError(`${uid} is not a member of group ${group.groupId}`);
      return convId;
    }
    throw new BadRequestError(`convId ${convId} is neither "p:<uid>:<uid>" nor "g:<groupId>"`);
  }
}


/** Estimated wire size of a message beyond its content (ids, uids, numbers). */
const MESSAGE_OVERHEAD_BYTES = 256;

/** The longest prefix of items within maxBytes, never empty when items is not. */
function capByBytes<T extends { content: Uint8Array }>(items: T[], maxBytes: number): T[] {
  let total = 0;
  for (let i = 0; i < items.length; i++) {
    total += items[i].content.length + MESSAGE_OVERHEAD_BYTES;
    if (total > maxBytes && i > 0) return items.slice(0, i);
  }
  return items;
}
