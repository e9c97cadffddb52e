/** What carries a Connection's frames: a TCP socket (connection.ts) or a WebSocket (ws-link.ts). */

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
  /** Bytes of the length-prefixed stream (TCP). */
  bytes(chunk: Buffer): void;
  /** One whole frame without its prefix (a WebSocket message). */
  frame(body: Uint8Array): void;
  /** What went wrong, before the close that follows. */
  error(message: string): void;
  /** Closed, once. */
  close(): void;
}
