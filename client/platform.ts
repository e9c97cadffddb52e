/**
 * The SDK in Node: TCP and TLS to the gateways, WebSocket through the `ws` package, the route API
 * over node:http(s) (fetch() refuses the "bad ports" of the browser world, which an operator may
 * well choose for an internal API, and cannot take a private CA). A browser bundle gets
 * platform-browser.ts instead (the "browser" map of client/package.json).
 */
import { WebSocket } from 'ws';
import type { Platform } from './link';
import { fetchRoute } from './route';
import { openTcpLink } from './tcp-link';
import { openWebSocketLink } from './ws-link';
import type { WebSocketLike } from './ws-link';

export const platform: Platform = {
  name: 'node',
  openTcpLink,
  openWebSocketLink: (url, maxIncomingFrameBytes, events, t) => openWebSocketLink(() => {
    // ws bounds incoming messages itself, before buffering them. A wss:// certificate is checked
    // against t.ca (else Node's bundled CAs) and t.servername (else the URL's host), TLS 1.2+.
    const tls = t && { minVersion: 'TLSv1.2' as const, ca: t.ca as string | Buffer | (string | Buffer)[] | undefined, ...(t.servername ? { servername: t.servername } : {}) };
    const ws = new WebSocket(url, { maxPayload: maxIncomingFrameBytes, perMessageDeflate: false, ...tls });
    ws.binaryType = 'nodebuffer';
    return ws as unknown as WebSocketLike;
  }, events),
  fetchRoute,
};
