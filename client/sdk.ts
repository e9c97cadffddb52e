/**
 * ImClient: the SDK an application uses. It finds a gateway through the route API, keeps one
 * authenticated connection up (heartbeat, reconnect with full-jitter backoff, failover down the
 * gateway list), delivers inbox messages strictly in seq order exactly once (push + sync), and
 * makes send() safe to retry (one clientMsgId per logical message).
 */
import { Code, DisconnectCode, ImError } from '../common/errors';
import { parseHostPort } from '../common/host-port';
import {
  AuthOk, GroupResp, HistoryResp, Message, Op, ReadResp, SendReq, SendResp, SyncResp, UnreadResp,
  WireTypeName, WireTypes, decode, encode,
} from '../proto/wire';
import { Backoff, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, fullJitterDelayMs } from '../common/backoff';
import { CloseInfo, Connection } from './connection';
import { Emitter } from './emitter';
import { ImClientError, clientClosed, requestTimeout, retryWindowRanOut } from './errors';
import { Inbox } from './inbox';
import { InboxSync } from './inbox-sync';
import type { Link, LinkEvents } from './link';
import { ImClientOptions, ResolvedOptions, DEFAULT_HEARTBEAT_INTERVAL_MS, randomId, resolveOptions } from './options';
// Node: TCP, TLS, `ws`, node:http. Bundled for a browser: platform-browser.ts (client/package.json "browser").
import { platform } from './platform';
import { RouteAnswer, RouteRateLimitedError } from './route-answer';
import { Waits } from './waits';
import { HistoryQuery, ImClientEvents, ImClientState, MessageContent, SendOptions, toSendContent } from './types';

export { ImClientError } from './errors';
export type { ClientTlsOptions, ImClientOptions, TokenProvider, Transport } from './options';
export type { RouteAnswer, RouteGateway } from './route-answer';
export { Code, DisconnectCode, ImError, codeName } from '../common/errors';
export { Op } from '../proto/wire';
export type {
  AuthOk, GroupInfo, GroupResp, HistoryResp, Message, ReadResp, SendResp, SyncResp, Unread, UnreadResp, WireTypeName, WireTypes,
} from '../proto/wire';

/** 'node' or 'browser': which build of the SDK this is (a browser has no TCP transport). */
export const SDK_PLATFORM = platform.name;
export * from './types';

/** A connection up this long counts as healthy: the next reconnect starts from the smallest backoff. */
const STABLE_CONNECTION_MS = 10_000;

function isTokenExpired(code: number): boolean {
  return code === Code.TOKEN_EXPIRED || code === DisconnectCode.TOKEN_EXPIRED;
}

function asClientError(err: unknown): ImClientError {
  if (err instanceof ImClientError) return err;
  if (err instanceof ImError) return new ImClientError(err.code, err.message, { retryable: err.retryable, cause: err });
  return new ImClientError(Code.INTERNAL, err instanceof Error ? err.message : String(err), { retryable: false, cause: err });
}

export class ImClient extends Emitter {
  private readonly options: ResolvedOptions;
  private readonly inbox: Inbox;
  private readonly backoff: Backoff;
  /** Every pending pause (backoff, retry) and route call; close() ends them. */
  private readonly waits = new Waits();
  private currentState: ImClientState = 'idle';
  private conn?: Connection;
  private connecting?: Promise<AuthOk>;
  private cachedToken?: string;
  private readonly inboxSync: InboxSync;
  private closing?: Promise<void>;
  private connectedAtMs = 0;
  /** The token's uid, from AuthOk: the `from` of this client's own sends. */
  private ownUid = '';
  /** The backoff window the route API last announced. */
  private routeBackoff?: { baseMs: number; maxMs: number };

  constructor(options: ImClientOptions) {
    super();
    this.options = resolveOptions(options, { randomId, defaultTransport: platform.openTcpLink ? 'tcp' : 'websocket' });
    this.inbox = new Inbox({ lastSeq: this.options.lastSeq, maxBufferedMessages: this.options.maxBufferedMessages });
    this.backoff = new Backoff(this.backoffWindow());
    this.inboxSync = new InboxSync({
      inbox: this.inbox,
      pageLimit: this.options.syncPageLimit,
      connection: () => (this.currentState === 'connected' ? this.conn : undefined),
      deliver: (messages) => this.deliver(messages),
      onSynced: (lastSeq) => this.safeEmit('synced', { lastSeq }),
      onError: (err) => this.emitError(asClientError(err)),
      retryDelayMs: (attempt) => {
        const w = this.backoffWindow();
        return fullJitterDelayMs(attempt, w.baseMs, w.maxMs);
      },
      waits: this.waits,
    });
  }

  get state(): ImClientState {
    return this.currentState;
  }

  /** The highest inbox seq delivered through 'message'. Persist it and pass it back as options.lastSeq. */
  get lastSeq(): number {
    return this.inbox.lastSeq;
  }

  get deviceId(): string {
    return this.options.deviceId;
  }

  /** The current connection's AuthOk, if connected. */
  get session(): AuthOk | undefined {
    return this.conn && !this.conn.closed ? this.conn.authOk : undefined;
  }

  /**
   * Connects (route API, then the gateways in order, backing off between rounds). Resolves with
   * AuthOk; the catch-up sync then runs in the background and delivers through 'message'.
   * Rejects with a non-retryable ImClientError when the server refuses the credentials or the
   * attempts run out.
   */
  connect(): Promise<AuthOk> {
    switch (this.currentState) {
      case 'closed': return Promise.reject(clientClosed('client is closed'));
      case 'connected': if (this.conn && !this.conn.closed) return Promise.resolve(this.conn.authOk); break;
      case 'connecting': case 'reconnecting': return this.connecting!;
      default: break;
    }
    return this.startConnecting('connecting', 0);
  }

  /** Generic request on the current connection (waits for a reconnect in progress, within the timeout). */
  async request<Q extends WireTypeName, R extends WireTypeName>(
    op: number, reqType: Q, resType: R, value: Partial<WireTypes[Q]>, opts: { timeoutMs?: number } = {},
  ): Promise<WireTypes[R]> {
    const timeoutMs = opts.timeoutMs ?? this.options.requestTimeoutMs;
    let body: Uint8Array;
    try {
      body = encode(reqType, value);
    } catch (err) {
      throw new ImClientError(Code.BAD_REQUEST, `cannot encode ${reqType}: ${(err as Error).message}`, { retryable: false, op, cause: err });
    }
    const deadline = Date.now() + timeoutMs;
    const conn = await this.waitForConnection(timeoutMs, op);
    let reply: Uint8Array;
    try {
      reply = await conn.request(op, body, Math.max(1, deadline - Date.now()));
    } catch (err) {
      // The caller's budget, not what the wait for a connection left of it (a millisecond
      // ticking over made a full attempt read "no reply within 199ms").
      if (err instanceof ImClientError && err.code === Code.TIMEOUT) throw requestTimeout(timeoutMs, op);
      throw err;
    }
    try {
      return decode(resType, reply);
    } catch (err) {
      throw new ImClientError(Code.BAD_FRAME, `cannot decode ${resType} reply: ${(err as Error).message}`, { retryable: false, op, cause: err });
    }
  }

  /** Sends a 1:1 message. Retries (same clientMsgId) on retryable errors, timeouts and lost connections. */
  send(to: string, content: MessageContent, opts: SendOptions = {}): Promise<SendResp> {
    return this.sendMessage({ to, groupId: '' }, content, opts);
  }

  sendGroup(groupId: string, content: MessageContent, opts: SendOptions = {}): Promise<SendResp> {
    return this.sendMessage({ to: '', groupId }, content, opts);
  }

  /** One raw page of the inbox after fromSeq (default: lastSeq). It does not feed 'message'. */
  sync(fromSeq: number = this.inbox.lastSeq, limit: number = this.options.syncPageLimit): Promise<SyncResp> {
    return this.request(Op.SYNC, 'SyncReq', 'SyncResp', { fromSeq, limit });
  }

  /** One page of a conversation's history, newest first. Give exactly one of `with` and `groupId`. */
  history(q: HistoryQuery): Promise<HistoryResp> {
    if (!q || (!q.with === !q.groupId)) {
      return Promise.reject(new ImClientError(Code.BAD_REQUEST, 'history needs exactly one of "with" and "groupId"', { retryable: false, op: Op.HISTORY }));
    }
    return this.request(Op.HISTORY, 'HistoryReq', 'HistoryResp', {
      with: q.with ?? '', groupId: q.groupId ?? '', beforeConvSeq: q.beforeConvSeq ?? 0, limit: q.limit ?? 0,
    });
  }

  markRead(convId: string, seq: number): Promise<ReadResp> {
    return this.request(Op.READ, 'ReadReq', 'ReadResp', { convId, seq });
  }

  unread(convIds: string[] = []): Promise<UnreadResp> {
    return this.request(Op.UNREAD, 'UnreadReq', 'UnreadResp', { convIds });
  }

  createGroup(name: string, members: string[] = []): Promise<GroupResp> {
    return this.request(Op.GROUP_CREATE, 'GroupCreateReq', 'GroupResp', { name, members });
  }

  addMembers(groupId: string, uids: string[]): Promise<GroupResp> {
    return this.request(Op.GROUP_ADD, 'GroupMembersReq', 'GroupResp', { groupId, uids });
  }

  removeMembers(groupId: string, uids: string[]): Promise<GroupResp> {
    return this.request(Op.GROUP_REMOVE, 'GroupMembersReq', 'GroupResp', { groupId, uids });
  }

  leaveGroup(groupId: string): Promise<GroupResp> {
    return this.request(Op.GROUP_LEAVE, 'GroupMembersReq', 'GroupResp', { groupId, uids: [] });
  }

  groupMembers(groupId: string): Promise<GroupResp> {
    return this.request(Op.GROUP_MEMBERS, 'GroupMembersReq', 'GroupResp', { groupId, uids: [] });
  }

  /** Closes the connection and stops reconnecting. Idempotent; resolves once the socket is closed. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    const wasConnected = this.conn !== undefined && !this.conn.closed;
    this.currentState = 'closed';
    this.waits.close();
    const conn = this.conn;
    this.conn = undefined;
    conn?.close();
    this.closing = (conn ? conn.whenClosed() : Promise.resolve()).then(() => {
      if (wasConnected) this.safeEmit('disconnected', { code: 0, reason: 'closed by client', reconnect: false });
    });
    return this.closing;
  }

  // --- connecting ---

  private startConnecting(state: 'connecting' | 'reconnecting', firstDelayMs: number): Promise<AuthOk> {
    this.currentState = state;
    const p = this.connectLoop(firstDelayMs);
    this.connecting = p;
    p.then(() => { if (this.connecting === p) this.connecting = undefined; },
      (err: ImClientError) => {
        if (this.connecting === p) this.connecting = undefined;
        if (this.currentState === 'closed') return;
        this.backoff.reset();
        this.currentState = 'idle';
        if (state === 'reconnecting') {
          // Nobody awaits a background reconnect: report the give-up as events.
          this.safeEmit('disconnected', { code: err.disconnect?.code ?? err.code, reason: err.message, reconnect: false });
          this.emitError(err);
        }
      });
    return p;
  }

  private async connectLoop(firstDelayMs: number): Promise<AuthOk> {
    if (firstDelayMs > 0) await this.waits.sleep(firstDelayMs);
    let freshToken = false;
    for (let round = 0; ; round++) {
      let lastErr: ImClientError | undefined;
      let route: RouteAnswer | undefined;
      this.throwIfClosed();
      try {
        // An https:// route API is checked against the same CA as the gateways (tls.ca).
        const call = this.waits.signal();
        try {
          route = await platform.fetchRoute(this.options.routerUrl, this.options.connectTimeoutMs, call.signal, { region: this.options.region }, { ca: this.options.tls?.ca });
        } finally {
          call.release();
        }
        this.applyRouteBackoff(route);
        if (route.gateways.length === 0) lastErr = new ImClientError(Code.UNAVAILABLE, 'the route API lists no gateway', { retryable: true });
      } catch (err) {
        lastErr = asClientError(err);
      }
      // Only the gateways that speak this client's transport, at that listener's address.
      const useTls = this.options.tls !== undefined;
      const ws = this.options.transport === 'websocket';
      const gateways = (route?.gateways ?? [])
        // With tls, a WebSocket client takes wss:// URLs only: it never falls back to plaintext.
        .map((g) => ({ ...g, addr: ws ? (useTls && !g.wsUrl?.startsWith('wss:') ? '' : g.wsUrl ?? '') : useTls ? g.tlsAddr : g.addr }))
        .filter((g) => g.addr !== '');
      if (route && route.gateways.length > 0 && gateways.length === 0) {
        const what = ws ? (useTls ? 'wss:// URL' : 'WebSocket URL') : useTls ? 'TLS listener' : 'plaintext listener';
        lastErr = new ImClientError(Code.UNAVAILABLE, `none of the ${route.gateways.length} gateway(s) the route API lists has a ${what}`, { retryable: true });
      }
      for (let i = 0; i < gateways.length; i++) {
        this.throwIfClosed();
        try {
          const token = await this.token();
          const conn = await Connection.open({
            addr: gateways[i].addr,
            openLink: (events) => this.openLink(gateways[i].addr, events),
            tls: useTls && !ws,
            auth: { token, deviceId: this.options.deviceId, lastSeq: this.inbox.lastSeq },
            connectTimeoutMs: this.options.connectTimeoutMs,
            requestTimeoutMs: this.options.requestTimeoutMs,
            maxInFlightRequests: this.options.maxInFlightRequests,
            maxIncomingFrameBytes: this.options.maxIncomingFrameBytes,
            // Until AuthOk names the gateway's interval, the route API's announcement is the best guess.
            defaultHeartbeatIntervalMs: route?.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
            onPush: (_c, msg) => {
              if (this.currentState !== 'closed' && this.options.receiveMessages) this.inboxSync.onPush(msg);
            },
            onSyncHint: () => {
              if (this.currentState !== 'closed' && this.options.receiveMessages) this.inboxSync.request();
            },
            onServerError: (_c, err) => this.emitError(err),
            onClose: (c, info) => this.onConnectionClose(c, info),
          });
          if (this.currentState === 'closed') {
            conn.close();
            throw clientClosed('client closed while connecting');
          }
          if (conn.closed) throw new ImClientError(Code.UNAVAILABLE, `${gateways[i].addr} closed right after auth`, { retryable: true });
          return this.adopt(conn);
        } catch (err) {
          const e = asClientError(err);
          if (this.currentState === 'closed') throw clientClosed('client closed while connecting');
          if (isTokenExpired(e.code) && typeof this.options.token === 'function' && !freshToken) {
            // Ask the provider once for a new token and retry the same gateway right away.
            this.cachedToken = undefined;
            freshToken = true;
            i--;
            continue;
          }
          if (!e.retryable) throw e;
          lastErr = e;
        }
      }
      if (round >= this.options.maxReconnectAttempts) {
        throw new ImClientError(lastErr?.code ?? Code.UNAVAILABLE,
          `could not connect after ${round + 1} round(s): ${lastErr?.message ?? 'no gateway'}`, { retryable: false, cause: lastErr });
      }
      let delayMs = this.backoff.nextDelayMs();
      // A 429 names when asking again can succeed; waiting less only earns another 429. Still
      // capped by the backoff maximum, so a bad Retry-After cannot park the client for hours.
      if (lastErr instanceof RouteRateLimitedError) delayMs = Math.max(delayMs, Math.min(lastErr.retryAfterMs, this.backoffWindow().maxMs));
      this.safeEmit('reconnecting', { attempt: round + 1, delayMs });
      await this.waits.sleep(delayMs);
    }
  }

  /** A link to `addr`: a WebSocket URL, or host:port for TCP (TLS when options.tls is set). */
  private openLink(addr: string, events: LinkEvents): Link {
    if (this.options.transport === 'websocket') return platform.openWebSocketLink(addr, this.options.maxIncomingFrameBytes, events, this.options.tls);
    const hp = parseHostPort(addr);
    if (!hp) throw new ImClientError(Code.BAD_REQUEST, `gateway address "${addr}" is not host:port`, { retryable: false });
    if (!platform.openTcpLink) throw new ImClientError(Code.BAD_REQUEST, `no TCP in this environment (${platform.name}): use transport "websocket"`, { retryable: false });
    return platform.openTcpLink({ ...hp, tls: this.options.tls, maxIncomingFrameBytes: this.options.maxIncomingFrameBytes }, events);
  }

  private adopt(conn: Connection): AuthOk {
    this.conn = conn;
    this.connectedAtMs = Date.now();
    this.currentState = 'connected';
    const ok = conn.authOk;
    this.ownUid = ok.uid;
    this.safeEmit('connected', ok);
    if (this.options.receiveMessages) this.inboxSync.onConnected();
    return ok;
  }

  private onConnectionClose(conn: Connection, info: CloseInfo): void {
    if (conn !== this.conn) return;
    this.conn = undefined;
    if (this.currentState === 'closed') return;
    // Only a connection that stayed up resets the backoff; one that is dropped right after auth
    // (a gateway in trouble) must not turn reconnecting into a tight loop.
    if (Date.now() - this.connectedAtMs >= STABLE_CONNECTION_MS) this.backoff.reset();
    const expired = isTokenExpired(info.code);
    if (expired) this.cachedToken = undefined;
    const canReconnect = info.reconnect || (expired && typeof this.options.token === 'function');
    const willReconnect = this.options.autoReconnect && canReconnect;
    this.currentState = willReconnect ? 'reconnecting' : 'idle';
    this.safeEmit('disconnected', { code: info.code, reason: info.reason, reconnect: willReconnect });
    if (willReconnect) {
      // Even "reconnect now" (DRAINING) waits random(0, base): a whole gateway's clients arriving
      // in the same millisecond is exactly the storm jitter exists to prevent.
      const delayMs = this.backoff.nextDelayMs();
      this.safeEmit('reconnecting', { attempt: 0, delayMs });
      void this.startConnecting('reconnecting', delayMs).catch(() => undefined);
    }
  }

  private async waitForConnection(timeoutMs: number, op: number): Promise<Connection> {
    if (this.currentState === 'closed') throw clientClosed('client is closed', op);
    if (this.conn && !this.conn.closed) return this.conn;
    const closing = this.conn;
    if (closing && !this.connecting) {
      // The server's Disconnect (e.g. DRAINING) arrived but the socket has not finished closing,
      // and only that close starts the reconnect: wait for it (bounded: a lingering socket is
      // destroyed after a grace period) rather than fail as if connect() had never been called.
      const startedMs = Date.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([closing.whenClosed(), new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); })]);
      clearTimeout(timer);
      this.throwIfClosed(); // close() may have run meanwhile
      if (this.conn && !this.conn.closed) return this.conn;
      timeoutMs = Math.max(1, timeoutMs - (Date.now() - startedMs));
    }
    const pending = this.connecting;
    if (!pending) {
      throw new ImClientError(Code.UNAVAILABLE, 'not connected (call connect() first)', { retryable: false, op });
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new ImClientError(Code.UNAVAILABLE, `not reconnected within ${timeoutMs}ms`, { retryable: true, op });
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(timedOut), timeoutMs); });
    try {
      await Promise.race([pending, timeout]);
    } catch (err) {
      if (err === timedOut) throw err;
      throw new ImClientError(Code.UNAVAILABLE, `not connected: ${(err as Error).message}`, { retryable: false, op, cause: err });
    } finally {
      clearTimeout(timer);
    }
    if (!this.conn || this.conn.closed) throw new ImClientError(Code.UNAVAILABLE, 'connection lost again', { retryable: true, op });
    return this.conn;
  }

  private async token(): Promise<string> {
    const t = this.options.token;
    if (typeof t === 'string') return t;
    if (this.cachedToken === undefined) {
      let v: string;
      try {
        v = await t();
      } catch (err) {
        throw new ImClientError(Code.UNAVAILABLE, `token provider failed: ${(err as Error).message}`, { retryable: true, cause: err });
      }
      if (typeof v !== 'string' || v === '') throw new ImClientError(Code.TOKEN_INVALID, 'token provider returned no token', { retryable: false });
      this.cachedToken = v;
    }
    return this.cachedToken;
  }

  /** Explicit options win, then the route API's latest announcement, then the defaults. */
  private backoffWindow(): { baseMs: number; maxMs: number } {
    const baseMs = this.options.backoffBaseMs ?? this.routeBackoff?.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
    const maxMs = this.options.backoffMaxMs ?? this.routeBackoff?.maxMs ?? DEFAULT_BACKOFF_MAX_MS;
    return { baseMs, maxMs: Math.max(baseMs, maxMs) };
  }

  private applyRouteBackoff(route: RouteAnswer): void {
    if (!route.backoff) return;
    // Kept, not only applied to reconnects: send and sync retries pace themselves by it too.
    this.routeBackoff = route.backoff;
    const w = this.backoffWindow();
    this.backoff.configure(w.baseMs, w.maxMs);
  }

  private throwIfClosed(): void {
    if (this.currentState === 'closed') throw clientClosed('client is closed');
  }

  // --- sending ---

  private async sendMessage(target: Pick<SendReq, 'to' | 'groupId'>, content: MessageContent, opts: SendOptions): Promise<SendResp> {
    const req: SendReq = { ...target, clientMsgId: opts.clientMsgId ?? randomId(), ...toSendContent(content) };
    const track = this.options.receiveMessages;
    if (track) this.inboxSync.ownSendStarted();
    let own: Message | undefined;
    try {
      const r = await this.sendWithRetries(req);
      own = { ...req, msgId: r.msgId, seq: r.seq, convId: r.convId, convSeq: r.convSeq, sentAtMs: r.sentAtMs, from: this.ownUid };
      return r;
    } finally {
      if (track && this.currentState !== 'closed') this.inboxSync.ownSendEnded(own);
    }
  }

  private async sendWithRetries(req: SendReq): Promise<SendResp> {
    const deadline = Date.now() + this.options.sendRetryWindowMs;
    let refusals = 0;
    let last: ImClientError | undefined; // the failure before the current attempt
    for (let attempt = 1; ; attempt++) {
      const timeoutMs = Math.max(1, Math.min(this.options.requestTimeoutMs, deadline - Date.now()));
      try {
        return await this.request(Op.SEND, 'SendReq', 'SendResp', req, { timeoutMs });
      } catch (err) {
        const e = asClientError(err);
        if (!e.retryable) throw e;
        if (Date.now() >= deadline) throw retryWindowRanOut(e, last, attempt, this.options.sendRetryWindowMs);
        // A timeout of an attempt the window cut short says little: name the one before it.
        if (e.code !== Code.TIMEOUT || timeoutMs >= this.options.requestTimeoutMs || !last) last = e;
        // Only a verdict counts as an attempt (overloaded, rate limited, internal). No verdict
        // (UNAVAILABLE, TIMEOUT, connection lost) means a server or the path to it is away — a
        // release, or a crash whose shards the store takes over when their lease ends (10 s by
        // default) — and is retried for the whole window: few attempts spent waiting at the store
        // would give up on a message that is about to go through.
        const noVerdict = e.code === Code.UNAVAILABLE || e.code === Code.TIMEOUT;
        if (!noVerdict && ++refusals >= this.options.sendMaxAttempts) throw e;
        // A lost connection is waited out inside request(); the pause spaces out retries of
        // server-side failures (overloaded, rate limited) so they do not hammer a struggling node.
        const w = this.backoffWindow();
        await this.waits.sleep(Math.min(fullJitterDelayMs(attempt - 1, w.baseMs, w.maxMs), Math.max(0, deadline - Date.now())));
      }
    }
  }

  private deliver(messages: Message[]): void {
    for (const m of messages) this.safeEmit('message', m);
  }

  // --- events ---

  /** Emits without letting a throwing listener break the SDK's own state machine. */
  private safeEmit<E extends keyof ImClientEvents>(event: E, ...args: ImClientEvents[E]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      if (event !== 'error') this.emitError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** 'error' only reaches listeners that asked for it (as with Node's EventEmitter, which would throw). */
  private emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.safeEmit('error', err);
  }
}

export interface ImClient {
  on<E extends keyof ImClientEvents>(event: E, listener: (...args: ImClientEvents[E]) => void): this;
  once<E extends keyof ImClientEvents>(event: E, listener: (...args: ImClientEvents[E]) => void): this;
  off<E extends keyof ImClientEvents>(event: E, listener: (...args: ImClientEvents[E]) => void): this;
}
