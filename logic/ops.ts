/**
 * The op registry: client op code -> handler of opaque request bytes. It knows nothing about the
 * business, so a new feature is a new registration in a logic release and the gateway, which
 * forwards ops >= 100 untouched, never changes. registerClientOps wires the built-in ops.
 */
import { BadRequestError, UnknownOpError } from '../common/errors';
import { decode, encode, FIRST_BUSINESS_OP, Op } from '../proto/wire';
import type { WireTypeName, WireTypes } from '../proto/wire';
import type { Caller, LogicService } from './service';

export interface CallContext extends Caller { op: number }

export type OpHandler = (ctx: CallContext, body: Uint8Array) => Promise<Uint8Array>;

export class OpRegistry {
  private readonly handlers = new Map<number, OpHandler>();

  register(op: number, handler: OpHandler): void {
    if (!Number.isInteger(op) || op < FIRST_BUSINESS_OP || op > 0xffffffff) {
      throw new RangeError(`op ${op} cannot be registered: business ops are integers >= ${FIRST_BUSINESS_OP}`);
    }
    if (this.handlers.has(op)) throw new Error(`op ${op} is already registered`);
    this.handlers.set(op, handler);
  }

  has(op: number): boolean {
    return this.handlers.has(op);
  }

  /** Always a promise: an unknown op, or a handler that throws instead of rejecting, is a rejection. */
  handle(ctx: CallContext, body: Uint8Array): Promise<Uint8Array> {
    const handler = this.handlers.get(ctx.op);
    if (!handler) return Promise.reject(new UnknownOpError(`unknown op ${ctx.op}`));
    try {
      return handler(ctx, body);
    } catch (err) {
      return Promise.reject(err);
    }
  }
}

/** Decodes a request body; malformed bytes are the client's fault, not an internal error. */
function decodeReq<N extends WireTypeName>(name: N, body: Uint8Array): WireTypes[N] {
  try {
    return decode(name, body);
  } catch (err) {
    throw new BadRequestError(`malformed ${name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** One op: decode `req`, call the service, encode `resp`. */
function route<Req extends WireTypeName, Resp extends WireTypeName>(
  req: Req, resp: Resp, call: (caller: Caller, body: WireTypes[Req]) => Promise<WireTypes[Resp]>,
): OpHandler {
  // The call context is a Caller (with its op): passed on as it is, not copied per call.
  const encodeResp = (r: WireTypes[Resp]) => encode(resp, r);
  return async (ctx, body) => encodeResp(await call(ctx, decodeReq(req, body)));
}

export function registerClientOps(registry: OpRegistry, service: LogicService): void {
  registry.register(Op.SEND, route('SendReq', 'SendResp', (c, r) => service.send(c, r)));
  registry.register(Op.SYNC, route('SyncReq', 'SyncResp', (c, r) => service.sync(c, r)));
  registry.register(Op.HISTORY, route('HistoryReq', 'HistoryResp', (c, r) => service.history(c, r)));
  registry.register(Op.READ, route('ReadReq', 'ReadResp', (c, r) => service.read(c, r)));
  registry.register(Op.UNREAD, route('UnreadReq', 'UnreadResp', (c, r) => service.unread(c, r)));
  registry.register(Op.GROUP_CREATE, route('GroupCreateReq', 'GroupResp', (c, r) => service.createGroup(c, r)));
  registry.register(Op.GROUP_ADD, route('GroupMembersReq', 'GroupResp', (c, r) => service.addMembers(c, r)));
  registry.register(Op.GROUP_REMOVE, route('GroupMembersReq', 'GroupResp', (c, r) => service.removeMembers(c, r)));
  registry.register(Op.GROUP_LEAVE, route('GroupMembersReq', 'GroupResp', (c, r) => service.leave(c, r)));
  registry.register(Op.GROUP_MEMBERS, route('GroupMembersReq', 'GroupResp', (c, r) => service.members(c, r)));
}
