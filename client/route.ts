/**
 * The route API client (docs/route-api.md): one short HTTP(S) GET that returns the gateways to
 * try, best first for the client's region, the heartbeat interval, and the backoff window the
 * operator wants clients to use. Over https:// the router's certificate is always verified (TLS
 * 1.2+), against `ca` when given. This is the Node implementation; the answer's shape and checks
 * are in route-answer.ts (re-exported here), shared with the browser's fetch().
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { Code } from '../common/errors';
import { ImClientError } from './errors';
import {
  MAX_ROUTE_BODY_BYTES, RouteAnswer, RouteQuery, RouteRateLimitedError, RouteTlsOptions, parseRouteAnswer, retryAfterMs, routeUrl,
} from './route-answer';

export * from './route-answer';

/**
 * Asks the route API. Failures are retryable UNAVAILABLE errors (the caller backs off and asks
 * again). node:http rather than fetch(): fetch refuses the "bad ports" of the browser world
 * (6000, 10080, ...), which an operator may well choose for an internal API.
 */
export function fetchRoute(
  routerUrl: string, timeoutMs: number, signal?: AbortSignal, query: RouteQuery = {}, tls: RouteTlsOptions = {},
): Promise<RouteAnswer> {
  const url = routeUrl(routerUrl, query);
  const fail = (why: string, cause?: unknown) =>
    new ImClientError(Code.UNAVAILABLE, `route API ${url} unreachable: ${why}`, { retryable: true, cause });
  return new Promise<RouteAnswer>((resolve, reject) => {
    let target: URL;
    try {
      target = new URL(url);
    } catch (cause) {
      reject(new ImClientError(Code.BAD_REQUEST, `route API URL "${routerUrl}" is invalid`, { retryable: false, cause }));
      return;
    }
    const secure = target.protocol === 'https:';
    let settled = false;
    const done = (err: Error | undefined, answer?: RouteAnswer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      if (err) reject(err); else resolve(answer!);
    };
    const onAbort = () => done(fail('aborted'));
    const timer = setTimeout(() => done(fail(`no answer within ${timeoutMs}ms`)), timeoutMs);
    const onResponse = (res: http.IncomingMessage) => {
      if (res.statusCode === 429) {
        res.resume();
        done(new RouteRateLimitedError(`route API ${url} is rate limiting this client`, retryAfterMs(res.headers['retry-after'])));
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        done(new ImClientError(Code.UNAVAILABLE, `route API ${url} answered HTTP ${res.statusCode}`, { retryable: true }));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ROUTE_BODY_BYTES) {
          done(new ImClientError(Code.UNAVAILABLE, `route API reply is larger than ${MAX_ROUTE_BODY_BYTES} bytes`, { retryable: true }));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        let json: unknown;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch (cause) {
          done(new ImClientError(Code.UNAVAILABLE, `route API reply is not JSON`, { retryable: true, cause }));
          return;
        }
        try {
          done(undefined, parseRouteAnswer(json));
        } catch (err) {
          done(err as Error);
        }
      });
      res.on('error', (err) => done(fail(err.message, err)));
    };
    const headers = { accept: 'application/json' };
    const req = secure
      ? https.get(target, { headers, agent: false, minVersion: 'TLSv1.2', ca: tls.ca as https.RequestOptions['ca'] }, onResponse)
      : http.get(target, { headers, agent: false }, onResponse);
    req.on('error', (err: NodeJS.ErrnoException) => done(fail(describeError(err, secure), err)));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A hint for the usual TLS mistakes: an untrusted certificate, or https and http crossed. */
function describeError(err: NodeJS.ErrnoException, secure: boolean): string {
  const code = err.code ?? '';
  if (secure && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(code)) {
    return `TLS: ${err.message} (the router's certificate is not trusted: pass its CA as tls.ca, or im --tls-ca)`;
  }
  if (secure && code === 'ERR_SSL_WRONG_VERSION_NUMBER') return `TLS: ${err.message} (a plain HTTP listener? use an http:// URL)`;
  if (secure && code.startsWith('ERR_SSL')) return `TLS: ${err.message}`;
  if (!secure && code === 'ECONNRESET') return `${err.message} (an HTTPS listener? use an https:// URL)`;
  return err.message;
}

