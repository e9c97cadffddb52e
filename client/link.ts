/**
 * What carries a Connection's frames (a TCP socket, tcp-link.ts, or a WebSocket, ws-link.ts), and
 * the Platform that makes them: platform.ts in Node, platform-browser.ts in a browser (the
 * "browser" map of client/package.json swaps one for the other when bundling for a browser).
 */
import type { RouteAnswer, RouteQuery, RouteTlsOptions } from './route-answer';
import type { ClientTlsOptions } from './options';

export interface Link {
  /** Sends one frame given as frameBytes() makes it (4-byte length prefix first). */
  send(frame: Uint8Array): void;
  /** Closes politely (the peer sees an orderly close). */
  end(): void;
  /** Closes now. */
  destroy(): void;
}

export interface LinkEvents {
  /** Connected: the Auth frame goes out. */
  open(): void;
  /** Bytes arrived (maybe only part of a frame): the path is alive. */
  alive(): void;
  /** One whole frame without its length prefix. */
  frame(body: Uint8Array): void;
  /** The server sent a frame over maxIncomingFrameBytes: the stream cannot be read further. */
  tooLarge(message: string): void;
  /** What went wrong, before the close that follows. */
  error(message: string): void;
  /** Closed, once. */
  close(): void;
}

export interface TcpTarget {
  host: string;
  port: number;
  /** Set: TLS (1.2 or later), the gateway's certificate verified. */
  tls?: ClientTlsOptions;
  maxIncomingFrameBytes: number;
}

/** What an ImClient needs from the environment it runs in. */
export interface Platform {
  readonly name: 'node' | 'browser';
  /** TCP (and TLS) to a gateway; absent where there is no raw TCP (browsers). */
  openTcpLink?(target: TcpTarget, events: LinkEvents): Link;
  /** `tls`: a wss:// URL's certificate is checked against tls.ca and tls.servername (Node); a browser uses its own trust store. */
  openWebSocketLink(url: string, maxIncomingFrameBytes: number, events: LinkEvents, tls?: ClientTlsOptions): Link;
  /** GET /v1/route. Failures reject with a (mostly retryable) ImClientError. */
  fetchRoute(routerUrl: string, timeoutMs: number, signal?: AbortSignal, query?: RouteQuery, tls?: RouteTlsOptions): Promise<RouteAnswer>;
}
