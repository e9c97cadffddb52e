/**
 * Per-connection limits, resolved once (defaults applied, values checked) by the Gateway and
 * shared by every Connection it creates.
 */
import { DEFAULT_MAX_FRAME_BYTES } from '../proto/codec';
import { numberOption, OptionError } from '../common/options';

export interface ConnectionLimits {
  /** Largest Frame a client may send (the length prefix is checked before buffering). 65536. */
  maxFrameBytes: number;
  /** Advertised in AuthOk: the client pings at least this often. 30000. */
  heartbeatIntervalMs: number;
  /** No frame at all for this long closes the connection (catches half-open peers). 3 x heartbeat. */
  idleTimeoutMs: number;
  /** A connection must authenticate within this long. 5000. */
  authTimeoutMs: number;
  /** Bytes queued for the socket (socket.writableLength) before the client counts as a slow consumer. 1 MiB. */
  maxWriteQueueBytes: number;
  /**
   * Token bucket over received frames: 50 frames/s sustained, bursts of 100. A frame over the
   * limit is answered RATE_LIMITED and dropped; more than `rateLimitBurst` such frames within one
   * second disconnects the client (RATE_LIMITED) — it is flooding, not bursting.
   */
  rateLimitPerSec: number;
  rateLimitBurst: number;
  /** Business calls awaiting logic per connection; beyond it the call is answered OVERLOADED. 64. */
  maxPendingPerConn: number;
  /** After a Disconnect the server waits this long for the client to close before destroying the socket. 1000. */
  closeGraceMs: number;
}

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 30_000;

export function resolveLimits(partial: Partial<ConnectionLimits>): ConnectionLimits {
  const heartbeatIntervalMs = positiveOption('heartbeatIntervalMs', partial.heartbeatIntervalMs, DEFAULT_HEARTBEAT_INTERVAL_MS);
  const idleTimeoutMs = positiveOption('idleTimeoutMs', partial.idleTimeoutMs, 3 * heartbeatIntervalMs);
  // A client pinging on schedule must never look idle.
  if (idleTimeoutMs <= heartbeatIntervalMs) throw new OptionError('Gateway', 'idleTimeoutMs', 'must be greater than heartbeatIntervalMs');
  return {
    maxFrameBytes: positiveOption('maxFrameBytes', partial.maxFrameBytes, DEFAULT_MAX_FRAME_BYTES),
    heartbeatIntervalMs,
    idleTimeoutMs,
    authTimeoutMs: positiveOption('authTimeoutMs', partial.authTimeoutMs, 5000),
    maxWriteQueueBytes: positiveOption('maxWriteQueueBytes', partial.maxWriteQueueBytes, 1024 * 1024),
    rateLimitPerSec: positiveOption('rateLimitPerSec', partial.rateLimitPerSec, 50),
    rateLimitBurst: positiveOption('rateLimitBurst', partial.rateLimitBurst, 100),
    maxPendingPerConn: positiveOption('maxPendingPerConn', partial.maxPendingPerConn, 64),
    closeGraceMs: positiveOption('closeGraceMs', partial.closeGraceMs, 1000),
  };
}

/** An optional positive number of the gateway's: the default when absent, OptionError naming the field when bad. */
export function positiveOption(field: string, v: number | undefined, def: number): number {
  return numberOption('Gateway', field, v, def);
}
