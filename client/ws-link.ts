/**
 * The SDK's WebSocket transport: one binary message per Frame, the bytes after TCP's length
 * prefix (docs/protocol.md "WebSocket framing"). No Node-only import: in a browser it uses the
 * global WebSocket; in Node it loads the `ws` package (which also bounds incoming messages).
 */
import type { Link, LinkEvents } from './link';
import type { ClientTlsOptions } from './options';

/** The part of the WHATWG WebSocket API used here (browsers and the `ws` package both have it). */
interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: { message?: string }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: close without the closing handshake. */
  terminate?(): void;
}

type WebSocketConstructor = new (url: string, options?: object) => WebSocketLike;

const OPEN = 1;
const PREFIX_BYTES = 4;
/** RFC 6455: a close the client asks for. */
const NORMAL_CLOSURE = 1000;

function isNode(): boolean {
  return typeof process !== 'undefined' && typeof process.versions?.node === 'string';
}

/**
 * `t`: a wss:// URL's certificate is checked against t.ca (else Node's bundled CAs) and t.servername
 * (else the URL's host), TLS 1.2+. A browser checks it against the system's CAs and ignores `t`.
 */
function create(url: string, maxIncomingBytes: number, t?: ClientTlsOptions): WebSocketLike {
  if (isNode()) {
    // Loaded only in Node, so bundling this module for a browser needs no `ws`.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { WebSocket } = require('ws') as { WebSocket: WebSocketConstructor };
    const tls = t && { minVersion: 'TLSv1.2', ca: t.ca, ...(t.servername ? { servername: t.servername } : {}) };
    const ws = new WebSocket(url, { maxPayload: maxIncomingBytes, perMessageDeflate: false, ...tls });
    ws.binaryType = 'nodebuffer';
    return ws;
  }
  const Global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!Global) throw new Error('no WebSocket implementation in this environment');
  const ws = new Global(url);
  ws.binaryType = 'arraybuffer';
  return ws;
}

export function openWebSocketLink(url: string, maxIncomingBytes: number, events: LinkEvents, t?: ClientTlsOptions): Link {
  let ws: WebSocketLike;
  try {
    ws = create(url, maxIncomingBytes, t);
  } catch (err) {
    // A malformed URL throws at once; report it as a failed connect, like a refused TCP connect.
    queueMicrotask(() => {
      events.error((err as Error).message);
      events.close();
    });
    return { send() {}, end() {}, destroy() {} };
  }
  let closed = false;
  ws.onopen = () => events.open();
  ws.onmessage = (ev) => {
    const d = ev.data;
    if (d instanceof ArrayBuffer) events.frame(new Uint8Array(d));
    else if (d instanceof Uint8Array) events.frame(d);
    else {
      events.error('text message from the server (frames are binary)');
      ws.close(NORMAL_CLOSURE);
    }
  };
  ws.onerror = (ev) => events.error(ev.message || 'websocket error');
  ws.onclose = (ev) => {
    if (closed) return;
    closed = true;
    // A close with a Disconnect code follows the Disconnect frame, which already said why.
    if (ev.code !== NORMAL_CLOSURE) events.error(`websocket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`);
    events.close();
  };
  return {
    send(frame) {
      if (ws.readyState === OPEN) ws.send(frame.subarray(PREFIX_BYTES));
    },
    end() {
      ws.close(NORMAL_CLOSURE);
    },
    destroy() {
      if (ws.terminate) ws.terminate();
      else ws.close(NORMAL_CLOSURE);
    },
  };
}
