/**
 * Encoding of the bus payload (proto/internal/bus.proto): logic -> gateway downlink batches.
 * A typed façade over the codec generated from bus.proto (proto/gen-ts/internal/bus).
 */
import * as gen from './gen-ts/internal/bus';
import { encodeWith, WireReader } from './binary';

export type { Delivery, DeliveryBatch, Kick } from './gen-ts/internal/bus';

/** One recipient of a Push (what logic builds; decoded batches carry gen.Target, the same fields). */
export interface PushTarget {
  uid: string;
  /** The message's seq in this uid's inbox. */
  seq: number;
  /** Every connection of the uid but this one (the sender's) gets the push; '' or absent: all. */
  exceptConnId?: string;
}
/** One message body for every recipient of it on the node. */
export interface Push {
  /** An encoded Message without seq: the gateway puts each target's seq in front of it. */
  message: Uint8Array;
  /** W3C traceparent of the publish span ('' when tracing is off); decoded as '' when absent. */
  traceParent?: string;
  /** The message's sentAtMs, for the gateway's send->push latency; 0 when absent. */
  sentAtMs?: number;
  targets: PushTarget[];
}

/** Fields left out take their proto3 defaults ('' trace_parent and conn_id, 0 sent_at_ms). */
/** What a gateway applies: a decoded batch, or the pushes logic built, handed over in one process. */
export interface AppliedBatch { pushes: readonly Push[]; deliveries: readonly gen.Delivery[]; kicks: readonly gen.Kick[] }

export interface DeliveryBatchInput { pushes?: Push[]; deliveries?: Partial<gen.Delivery>[]; kicks?: Partial<gen.Kick>[] }

export function encodeDeliveryBatch(batch: DeliveryBatchInput): Buffer {
  return encodeWith((w) => gen.DeliveryBatch.encode(gen.DeliveryBatch.fromPartial(batch as gen.DeliveryBatch), w));
}

export function decodeDeliveryBatch(bytes: Uint8Array): gen.DeliveryBatch {
  return gen.DeliveryBatch.decode(new WireReader(bytes));
}
