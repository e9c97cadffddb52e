/**
 * The client HTTP API (docs/http-api.md): the business ops of the long connection (send, sync,
 * history, read cursor, unread, groups) as short JSON requests, with the same JWT as a bearer
 * token. Served by logic because the rules live here: every request calls the same LogicService
 * method as the gateway's op, so validation, error codes, idempotency and the push fan-out
 * (over the bus to the recipients' gateways) are the same. node:http only; bad input gets a JSON
 * error {code, message, retryable}, never a crash or a hang.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { BadRequestError, Code, FrameTooLargeError, ImError, NotAuthenticatedError, RateLimitedError, TimeoutError, toImError, UnknownOpError } from '../common/errors';
import { verifyToken, type TokenAuth } from '../common/jwt';
import { silentLogger, type Logger } from '../common/log';
import { logicCall } from '../telemetry/hooks';
import { Op } from '../proto/wire';
import { IpRateLimiter } from '../router/ip-rate-limit';
import { checkFields, queryFields, SEND_FIELDS, toSendReq, withMessagesJson } from './http-json';
import { OPENAPI_DOCUMENT } from './http-openapi';
import type { Caller, LogicService } from './service';
import { checkNumber } from '../common/options';

export interface HttpApiRateLimit {
  /** Requests per second per uid. */
  ratePerSec: number;
  burst: number;
  /** Users tracked at once; the least recently seen is forgotten first (and gets a full bucket). */
  maxTrackedUsers: number;
}

export interface HttpApiOptions {
  service: LogicService;
  /** The keys and aud/iss checks of the gateway (IM_AUTH_SECRET, IM_AUTH_KEYS, ...). */
  auth: TokenAuth;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Larger request bodies get 413 (IM_HTTP_MAX_BODY_BYTES). */
  maxBodyBytes?: number;
  /** Absent: no limit (IM_HTTP_RATE=0). */
  rateLimit?: HttpApiRateLimit;
  /** A request whose call has not finished by then gets 504 TIMEOUT (retryable). */
  callTimeoutMs?: number;
  /** stop() waits this long for running requests before cutting connections. */
  stopTimeoutMs?: number;
  logger?: Logger;
  now?: () => number;
}

export const HTTP_API_DEFAULTS = {
  maxBodyBytes: 256 * 1024,
  callTimeoutMs: 10_000,
  stopTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  /** Receiving one whole request (headers and body); slow senders cannot hold sockets. */
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 10_000,
} as const;

/** The HTTP status of an error code (docs/http-api.md, Errors). */
export function httpStatus(code: number): number {
  switch (code) {
    case Code.BAD_REQUEST: return 400;
    case Code.NOT_AUTHENTICATED: case Code.TOKEN_INVALID: case Code.TOKEN_EXPIRED: return 401;
    case Code.NOT_GROUP_MEMBER: case Code.NOT_GROUP_OWNER: return 403;
    case Code.UNKNOWN_OP: case Code.GROUP_NOT_FOUND: return 404;
    case Code.GROUP_FULL: case Code.IDEMPOTENCY_CONFLICT: return 409;
    case Code.FRAME_TOO_LARGE: case Code.CONTENT_TOO_LARGE: return 413;
    case Code.RATE_LIMITED: return 429;
    case Code.UNAVAILABLE: case Code.OVERLOADED: return 503;
    case Code.TIMEOUT: return 504;
    default: return 500;
  }
}

/** An error with an HTTP status of its own (405, 415) and headers to send with it. */
class HttpError extends ImError {
  constructor(readonly status: number, code: number, message: string, readonly headers: Record<string, string> = {}) {
    super(code, message);
  }
}

interface Request {
  caller: Caller;
  params: string[];
  query: URLSearchParams;
  body: unknown;
}

interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  /** Matched against the whole path; groups are the path parameters (percent-decoded). */
  path: RegExp;
  /** The client op it is (metrics and traces count it as that op). */
  op: number;
  /** No body is read (the request must not have one). */
  noBody?: boolean;
  handle(s: LogicService, r: Request): Promise<unknown>;
}

const GROUP = '([^/]+)';

const ROUTES: Route[] = [
  {
    method: 'POST', path: /^\/v1\/messages$/, op: Op.SEND,
    handle: (s, r) => s.send(r.caller, toSendReq(checkFields(r.body, SEND_FIELDS))),
  },
  {
    method: 'GET', path: /^\/v1\/sync$/, op: Op.SYNC, noBody: true,
    handle: async (s, r) => withMessagesJson(await s.sync(r.caller, queryFields(r.query, { fromSeq: 'integer', limit: 'integer' }))),
  },
  {
    method: 'GET', path: /^\/v1\/history$/, op: Op.HISTORY, noBody: true,
    handle: async (s, r) => withMessagesJson(await s.history(r.caller, queryFields(r.query, {
      with: 'string', groupId: 'string', beforeConvSeq: 'integer', limit: 'integer',
    }))),
  },
  {
    method: 'POST', path: /^\/v1\/read$/, op: Op.READ,
    handle: (s, r) => s.read(r.caller, checkFields(r.body, { convId: 'string', seq: 'integer' })),
  },
  {
    method: 'GET', path: /^\/v1\/unread$/, op: Op.UNREAD, noBody: true,
    handle: (s, r) => s.unread(r.caller, { convIds: queryFields(r.query, { convId: 'strings' }).convId as string[] | undefined }),
  },
  {
    method: 'POST', path: /^\/v1\/groups$/, op: Op.GROUP_CREATE,
    handle: (s, r) => s.createGroup(r.caller, checkFields(r.body, { name: 'string', members: 'strings' })),
  },
  {
    method: 'GET', path: new RegExp(`^/v1/groups/${GROUP}$`), op: Op.GROUP_MEMBERS, noBody: true,
    handle: (s, r) => s.members(r.caller, { groupId: r.params[0], ...queryFields(r.query, {}) }),
  },
  {
    method: 'POST', path: new RegExp(`^/v1/groups/${GROUP}/members$`), op: Op.GROUP_ADD,
    handle: (s, r) => s.addMembers(r.caller, { groupId: r.params[0], ...checkFields(r.body, { uids: 'strings' }) }),
  },
  {
    method: 'DELETE', path: new RegExp(`^/v1/groups/${GROUP}/members$`), op: Op.GROUP_REMOVE, noBody: true,
    handle: (s, r) => s.removeMembers(r.caller, { groupId: r.params[0], uids: queryFields(r.query, { uid: 'strings' }).uid as string[] | undefined }),
  },
  {
    method: 'POST', path: new RegExp(`^/v1/groups/${GROUP}/leave$`), op: Op.GROUP_LEAVE,
    handle: (s, r) => s.leave(r.caller, { groupId: r.params[0], ...checkFields(r.body ?? {}, {}) }),
  },
];

export const OPENAPI_PATH = '/v1/openapi.json';

export class HttpApi {
  private readonly server: http.Server;
  private readonly o: Required<Omit<HttpApiOptions, 'rateLimit'>>;
  private readonly limiter: IpRateLimiter | undefined;
  private readonly openapi: string;
  private readonly running = new Set<Promise<void>>();
  private started: Promise<number> | undefined;
  private stopped: Promise<void> | undefined;

  constructor(options: HttpApiOptions) {
    this.o = {
      service: options.service, auth: options.auth, host: options.host, port: options.port,
      maxBodyBytes: options.maxBodyBytes ?? HTTP_API_DEFAULTS.maxBodyBytes,
      callTimeoutMs: options.callTimeoutMs ?? HTTP_API_DEFAULTS.callTimeoutMs,
      stopTimeoutMs: options.stopTimeoutMs ?? HTTP_API_DEFAULTS.stopTimeoutMs,
      logger: options.logger ?? silentLogger, now: options.now ?? Date.now,
    };
    for (const f of ['maxBodyBytes', 'callTimeoutMs', 'stopTimeoutMs'] as const) checkNumber('HttpApi', f, this.o[f], { integer: true });
    this.limiter = options.rateLimit && new IpRateLimiter({
      ratePerSec: options.rateLimit.ratePerSec, burst: options.rateLimit.burst,
      maxTrackedIps: options.rateLimit.maxTrackedUsers, now: this.o.now,
    });
    this.openapi = JSON.stringify(OPENAPI_DOCUMENT);
    this.server = http.createServer({
      maxHeaderSize: HTTP_API_DEFAULTS.maxHeaderBytes,
      requestTimeout: HTTP_API_DEFAULTS.requestTimeoutMs,
      headersTimeout: HTTP_API_DEFAULTS.headersTimeoutMs,
      keepAliveTimeout: HTTP_API_DEFAULTS.keepAliveTimeoutMs,
    }, (req, res) => this.track(this.serve(req, res)));
    this.server.maxConnections = HTTP_API_DEFAULTS.maxConnections;
    // Malformed HTTP (bad syntax, headers above 16 KiB) is answered by Node itself: 400 or 431.
  }

  /** Binds; resolves with the bound port. */
  start(): Promise<number> {
    if (this.stopped) return Promise.reject(new Error('HttpApi was stopped'));
    this.started ??= new Promise<number>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        this.server.on('error', (err) => this.o.logger.error('http api server error', { err }));
        const port = (this.server.address() as AddressInfo).port;
        this.o.logger.info('http api listening', { host: this.o.host, port });
        resolve(port);
      });
    });
    return this.started;
  }

  /**
   * Stops accepting, lets running requests finish (bounded by stopTimeoutMs), then closes every
   * connection. Idempotent. Call before closing the service: a send in flight still pushes.
   */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      await this.started?.catch(() => undefined);
      if (!this.server.listening) return;
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.o.stopTimeoutMs); });
      await Promise.race([Promise.all([...this.running]), late]);
      clearTimeout(timer);
      this.server.closeAllConnections();
      await closed;
    })();
    return this.stopped;
  }

  /** Requests being served now (for tests and metrics). */
  get inFlight(): number {
    return this.running.size;
  }

  private track(p: Promise<void>): void {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      if (this.stopped) res.setHeader('Connection', 'close');
      const reply = await this.dispatch(req, res);
      if (reply !== undefined) sendJson(res, 200, reply);
    } catch (err) {
      this.fail(req, res, err);
    }
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<unknown> {
    const url = req.url ?? '';
    // Origin-form only ("/path?query"): absolute and asterisk forms are not for this API.
    if (!url.startsWith('/')) throw new BadRequestError('malformed request target');
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    if (path === OPENAPI_PATH) {
      if (req.method !== 'GET') throw methodNotAllowed(req.method, path, ['GET']);
      req.resume();
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache', 'Content-Length': Buffer.byteLength(this.openapi) });
      res.end(this.openapi);
      return undefined;
    }
    const matches = ROUTES.map((r) => ({ r, m: r.path.exec(path) })).filter((x) => x.m !== null);
    if (matches.length === 0) throw new UnknownOpError(`no such endpoint: ${path.slice(0, 100)}`);
    const hit = matches.find((x) => x.r.method === req.method);
    if (!hit) throw methodNotAllowed(req.method, path, matches.map((x) => x.r.method));
    const params = hit.m!.slice(1).map((p) => decodePathParam(p));

    const caller = this.authenticate(req);
    this.limit(caller.uid);
    // Body routes take nothing in the query: a parameter there is a mistake, not something to ignore.
    if (!hit.r.noBody) queryFields(query, {});
    const body = hit.r.noBody ? await this.noBody(req) : await this.readJson(req);
    const traceParent = typeof req.headers.traceparent === 'string' ? req.headers.traceparent : '';
    return logicCall(hit.r.op, traceParent, () => this.withDeadline(hit.r.handle(this.o.service, { caller, params, query, body })));
  }

  /** The bearer token's uid as the caller; everything else of the request is ignored for identity. */
  private authenticate(req: http.IncomingMessage): Caller {
    const h = req.headers.authorization;
    const m = h === undefined ? null : /^Bearer +(\S+) *$/i.exec(h);
    if (!m) throw new NotAuthenticatedError('send "Authorization: Bearer <token>" (the JWT the gateway accepts)');
    const claims = verifyToken(this.o.auth, m[1], this.o.now());
    // No connection sent it: every device of the sender is pushed the message, as for the admin API.
    return { uid: claims.sub, deviceId: 'http', connId: '', node: '' };
  }

  private limit(uid: string): void {
    const d = this.limiter?.takeKey(`u:${uid}`);
    if (d && !d.allowed) {
      throw Object.assign(new RateLimitedError('too many requests for this user'), { retryAfterMs: d.retryAfterMs });
    }
  }

  /** GET and DELETE routes take no body: one is refused rather than silently ignored. */
  private async noBody(req: http.IncomingMessage): Promise<undefined> {
    const raw = await this.readBody(req);
    if (raw.length > 0) throw new BadRequestError(`${req.method} ${req.url?.split('?')[0]} takes no body`);
    return undefined;
  }

  /** The body as parsed JSON; an empty body is undefined (the route decides whether that is allowed). */
  private async readJson(req: http.IncomingMessage): Promise<unknown> {
    const raw = await this.readBody(req);
    if (raw.length === 0) return undefined;
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') {
      throw new HttpError(415, Code.BAD_REQUEST, `Content-Type must be application/json, got "${type.slice(0, 64)}"`);
    }
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch (err) {
      throw new BadRequestError(`the body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** The whole body, refusing (413, then the connection is closed) anything above maxBodyBytes. */
  private readBody(req: http.IncomingMessage): Promise<Buffer> {
    const max = this.o.maxBodyBytes;
    const tooLarge = () => new FrameTooLargeError(`the request body is larger than ${max} bytes`);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) return Promise.reject(tooLarge());
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > max) {
          req.removeAllListeners('data');
          req.pause();
          reject(tooLarge());
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
      req.on('aborted', () => reject(new BadRequestError('the request was aborted')));
    });
  }

  private withDeadline<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`the call did not finish within ${this.o.callTimeoutMs} ms; a send may be retried with the same clientMsgId`)), this.o.callTimeoutMs);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
    const e = toImError(err);
    const status = e instanceof HttpError ? e.status : httpStatus(e.code);
    if (status >= 500 && e.code === Code.INTERNAL) this.o.logger.error('http api: unexpected error', { err, url: req.url?.slice(0, 200) });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = e instanceof HttpError ? { ...e.headers } : {};
    if (status === 401) headers['WWW-Authenticate'] = `Bearer error="${e.code === Code.NOT_AUTHENTICATED ? 'invalid_request' : 'invalid_token'}"`;
    const retryAfterMs = (err as { retryAfterMs?: number }).retryAfterMs;
    if (retryAfterMs !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
    // A body we did not read whole (413, or refused before reading) must not be parsed as the next request.
    if (!req.complete) headers.Connection = 'close';
    else req.resume();
    sendJson(res, status, {
      code: e.code, message: e.message, retryable: e.retryable, ...(retryAfterMs !== undefined && { retryAfterMs }),
    }, headers);
  }
}

function methodNotAllowed(method: string | undefined, path: string, allowed: string[]): HttpError {
  return new HttpError(405, Code.UNKNOWN_OP, `method ${String(method).slice(0, 16)} not allowed on ${path.slice(0, 100)}`, { Allow: allowed.join(', ') });
}

function decodePathParam(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    throw new BadRequestError('malformed percent-encoding in the path');
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(data);
}

