/**
 * Embedded mode's web chat page (web/, built into dist/web by `npm run build`) and, on a loopback
 * listener only, the development token endpoint it signs in with (docs/security.md, Development
 * tokens). The page talks to the system like any client: the route API (which allows cross-origin
 * reads), then the gateway's WebSocket listener.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { Code } from '../common/errors';
import { isValidUid } from '../common/ids';
import { signToken, type SignOptions } from '../common/jwt';
import type { Logger } from '../common/log';
import { listen } from '../common/net';

/** Where `npm run build` puts the page: dist/web, next to this file's dist/embedded. */
export const DEFAULT_WEB_ROOT = path.resolve(__dirname, '..', 'web');
/** A development token lasts an hour; the page asks for a new one when the gateway says it expired. */
export const DEV_TOKEN_TTL_SECONDS = 3600;
export const DEV_TOKEN_PATH = '/v1/dev/token';
const MAX_BODY_BYTES = 1024;

const FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/app.js': 'app.js',
  '/app.js.map': 'app.js.map',
  '/style.css': 'style.css',
};
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.css': 'text/css; charset=utf-8',
};

export interface WebOptions {
  host: string;
  port: number;      // 0 = ephemeral
  /** The route API's base URL, as the page's SDK should call it. */
  routerUrl: string;
  /** Signs development tokens (the system's token key; aud/iss as configured). */
  secret: string;
  sign?: SignOptions;
  /** Folder with index.html, app.js, style.css; default dist/web. */
  root?: string;
  logger: Logger;
}

/** 127.0.0.0/8, ::1 and localhost: the only listeners that get the development token endpoint. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The host part of a Host header ("127.0.0.1:7170", "[::1]:7170", "localhost"). */
function hostOfHeader(value: string | undefined): string {
  if (!value) return '';
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(value.trim());
  return m ? m[1] : '';
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data), 'Cache-Control': 'no-store' });
  res.end(data);
}

function sendError(res: http.ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

export class WebServer {
  private readonly server: http.Server;
  private readonly root: string;
  /** Whether this listener serves development tokens (it is bound to loopback). */
  readonly devTokens: boolean;

  constructor(private readonly o: WebOptions) {
    this.root = o.root ?? DEFAULT_WEB_ROOT;
    this.devTokens = isLoopbackHost(o.host);
    this.server = http.createServer({ maxHeaderSize: 8 * 1024, requestTimeout: 10_000, headersTimeout: 5_000 }, (req, res) => {
      try {
        this.handle(req, res);
      } catch (err) {
        o.logger.error('web: unexpected error', { err, url: req.url?.slice(0, 200) });
        if (!res.headersSent) sendError(res, 500, Code.INTERNAL, 'internal error');
        else res.destroy();
      }
    });
  }

  async start(): Promise<number> {
    await listen(this.server, this.o.host, this.o.port);
    this.server.on('error', (err) => this.o.logger.error('web: server error', { err }));
    if (!fs.existsSync(path.join(this.root, 'index.html'))) {
      this.o.logger.warn('web: the page is not built (run npm run build); / answers 503', { root: this.root });
    }
    return (this.server.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '';
    const pathname = url.startsWith('/') ? url.split('?')[0] : '';
    if (pathname === DEV_TOKEN_PATH) return this.devToken(req, res);
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendError(res, 405, Code.BAD_REQUEST, `method ${req.method} not allowed on ${pathname.slice(0, 100)}`);
    }
    if (pathname === '/favicon.ico') {
      res.writeHead(204, { 'Cache-Control': 'max-age=86400' });
      return void res.end();
    }
    if (pathname === '/config.json') {
      return sendJson(res, 200, { routerUrl: this.o.routerUrl, devTokens: this.devTokens });
    }
    const file = FILES[pathname];
    if (!file) return sendError(res, 404, Code.BAD_REQUEST, `no such page: ${pathname.slice(0, 100)}`);
    let body: Buffer;
    try {
      body = fs.readFileSync(path.join(this.root, file));
    } catch {
      res.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`The web page is not built: run \`npm run build\` (expected ${path.join(this.root, file)}).\n`);
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'Content-Length': body.length,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      // The page loads only its own files, and connects only over http(s)/ws(s) (route API, gateway).
      'Content-Security-Policy': "default-src 'self'; connect-src 'self' http: https: ws: wss:; img-src 'self' data:; frame-ancestors 'none'",
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /**
   * POST /v1/dev/token {"uid": "..."} -> {uid, token, expiresAtMs}: a token for any uid, signed
   * with the system's key. Only on a loopback listener, only from a loopback peer that names a
   * loopback host (a DNS-rebinding page cannot), and only with a JSON body (a cross-site form or
   * a simple fetch cannot send one without a CORS preflight, which this server never grants).
   */
  private devToken(req: http.IncomingMessage, res: http.ServerResponse): void {
    const refuse = (status: number, message: string) => {
      req.resume();
      sendError(res, status, Code.BAD_REQUEST, message);
    };
    if (!this.devTokens) return refuse(403, `development tokens are served only when the web listener is bound to loopback (IM_WEB_ADDR is ${this.o.host})`);
    if (!isLoopbackHost(req.socket.remoteAddress ?? '')) return refuse(403, 'development tokens are served only to loopback clients');
    if (!isLoopbackHost(hostOfHeader(req.headers.host))) return refuse(403, 'development tokens need a loopback Host (127.0.0.1, localhost or [::1])');
    const origin = req.headers.origin;
    if (origin !== undefined && !(URL.canParse(origin) && isLoopbackHost(new URL(origin).hostname))) {
      return refuse(403, 'development tokens are served only to pages on a loopback origin');
    }
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST');
      return refuse(405, `method ${req.method} not allowed on ${DEV_TOKEN_PATH}`);
    }
    if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) return refuse(415, 'Content-Type must be application/json');
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES && !done) {
        done = true;
        sendError(res, 413, Code.BAD_REQUEST, `body larger than ${MAX_BODY_BYTES} bytes`);
        req.resume();
        return;
      }
      if (!done) chunks.push(c);
    });
    req.on('error', () => { done = true; });
    req.on('end', () => {
      if (done) return;
      let uid: unknown;
      try {
        uid = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { uid?: unknown } | null)?.uid;
      } catch {
        return sendError(res, 400, Code.BAD_REQUEST, 'body is not JSON');
      }
      if (typeof uid !== 'string' || !isValidUid(uid)) {
        return sendError(res, 400, Code.BAD_REQUEST, 'uid: 1-64 letters, digits and _ . @ -');
      }
      const nowMs = Date.now();
      const token = signToken(this.o.secret, uid, DEV_TOKEN_TTL_SECONDS, nowMs, this.o.sign);
      this.o.logger.info('web: development token issued', { uid });
      sendJson(res, 200, { uid, token, expiresAtMs: (Math.floor(nowMs / 1000) + DEV_TOKEN_TTL_SECONDS) * 1000 });
    });
  }
}
