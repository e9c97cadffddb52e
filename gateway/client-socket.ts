/**
 * The byte pipe under a client connection (ClientSocket), and stopping a socket's reads before its
 * handle crosses to another process (a hot upgrade: the supervisor does it before passing a new
 * socket on, a connection before it is handed over).
 *
 * A handle passed with subprocess.send(msg, socket) stays open in the sender until the receiver
 * acknowledges it, and Node only swaps its read callback for a no-op: if libuv is still reading,
 * bytes that arrive in that window are read here and thrown away. socket.pause() does not help —
 * without an `onread` buffer it only stops 'data' events, and reads go on until the stream's
 * buffer fills. So reads are stopped on the handle itself, and what the client sends meanwhile
 * waits in the kernel's receive buffer for the next owner.
 */

/**
 * The byte pipe under a connection, as much of a socket as a connection uses: net.Socket and
 * tls.TLSSocket are ClientSockets as they are (no wrapper object per connection). Listeners are
 * called with the socket as `this`, as an EventEmitter calls them. 'data' (Buffer) feeds the TCP
 * transport and 'end' (the client's FIN) ends its input, 'close' ends the connection, 'error' is logged.
 */
export interface ClientSocket {
  /** Bytes queued but not yet handed to the kernel: what backpressure counts. */
  readonly writableLength: number;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  /** The client's FIN was read ('end' emitted). */
  readonly readableEnded?: boolean;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  /**
   * false (Node's default for a server socket): the client's FIN ends the output too, so replies
   * still owed are lost. The TCP transport sets it true (connection.ts endOfInput).
   */
  allowHalfOpen?: boolean;
  /** `done` runs once the chunk (and all before it) has been written, or with an error once it cannot be. */
  write(chunk: Uint8Array, done?: (err?: Error | null) => void): boolean;
  /** Writes until uncork() are handed on together (one writev on a socket). */
  cork(): void;
  uncork(): void;
  /** Ends the output once the queue is written; 'close' follows. */
  end(): unknown;
  /** Closes at once; 'close' follows. */
  destroy(): unknown;
  /** Stops 'data' events (a hot upgrade stops reading for good: stopReading below). */
  pause(): unknown;
  setNoDelay?(noDelay: boolean): unknown;
  setKeepAlive?(enable: boolean, initialDelayMs: number): unknown;
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  /** The client's FIN: no more 'data'. */
  on(event: 'end', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
}

interface StreamHandle {
  readStop?: () => number;
}

/**
 * Stops reading for good in this process. `reading` on the handle is left as it is on purpose:
 * net.js restarts reads from _read() when it sees `reading === false`.
 */
export function stopReading(socket: ClientSocket): void {
  socket.pause();
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle && typeof handle.readStop === 'function') handle.readStop();
}
