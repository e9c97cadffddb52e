/**
 * The SDK in a browser (or any runtime with the WHATWG fetch and WebSocket globals and no Node):
 * WebSocket only, the route API through fetch(). Bundlers use this file instead of platform.ts
 * through the "browser" map of client/package.json; it imports nothing from Node.
 */
import { Code } from '../common/errors';
import { ImClientError } from './errors';
import type { Platform } from './link';
import {
  MAX_ROUTE_BODY_BYTES, RouteAnswer, RouteQuery, RouteRateLimitedError, parseRouteAnswer, retryAfterMs, routeUrl,
} from './route-answer';
import { openWebSocketLink } from './ws-link';
import type { WebSocketLike } from './ws-link';

type WebSocketConstructor = new (url: string) => WebSocketLike;

async function fetchRoute(routerUrl: string, timeoutMs: number, signal?: AbortSignal, query: RouteQuery = {}): Promise<RouteAnswer> {
  const url = routeUrl(routerUrl, query);
  const fail = (why: string, cause?: unknown) =>
    new ImClientError(Code.UNAVAILABLE, `route API ${url} unreachable: ${why}`, { retryable: true, cause });
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers: { accept: 'application/json' }, signal: ac.signal, credentials: 'omit' });
    } catch (cause) {
      if (signal?.aborted) throw fail('aborted', cause);
      if (ac.signal.aborted) throw fail(`no answer within ${timeoutMs}ms`, cause);
      throw fail((cause as Error).message, cause);
    }
    if (res.status === 429) throw new RouteRateLimitedError(`route API ${url} is rate limiting this client`, retryAfterMs(res.headers.get('retry-after')));
    if (res.status !== 200) throw new ImClientError(Code.UNAVAILABLE, `route API ${url} answered HTTP ${res.status}`, { retryable: true });
    const body = await res.arrayBuffer().catch((cause: Error) => { throw fail(cause.message, cause); });
    if (body.byteLength > MAX_ROUTE_BODY_BYTES) {
      throw new ImClientError(Code.UNAVAILABLE, `route API reply is larger than ${MAX_ROUTE_BODY_BYTES} bytes`, { retryable: true });
    }
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(body));
    } catch (cause) {
      throw new ImClientError(Code.UNAVAILABLE, 'route API reply is not JSON', { retryable: true, cause });
    }
    return parseRouteAnswer(json);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

export const platform: Platform = {
  name: 'browser',
  openWebSocketLink: (url, _maxIncomingFrameBytes, events) => openWebSocketLink(() => {
    const Global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Global) throw new Error('no WebSocket implementation in this environment');
    const ws = new Global(url);
    ws.binaryType = 'arraybuffer';
    return ws;
  }, events),
  fetchRoute,
};
