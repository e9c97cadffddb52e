/**
 * Encoding of the bus payload (proto/internal/bus.proto): logic -> gateway downlink batches.
 * A typed façade over the codec generated from bus.proto (proto/gen-ts/internal/bus).
 */
import * as gen from './gen-ts/internal/bus';
import { encodeWith, WireReader } from './binary';

export type { Delivery, DeliveryBatch, Kick } from './gen-ts/internal/bus';

/** Fields left out take their proto3 defaults ('' trace_parent and conn_id, 0 sent_at_ms). */
export interface DeliveryBatchInput { deliveries?: Partial<gen.Delivery>[]; kicks?: Partial<gen.Kick>[] }

export function encodeDeliveryBatch(batch: DeliveryBatchInput): Buffer {
  return encodeWith((w) => gen.DeliveryBatch.encode(gen.DeliveryBatch.fromPartial(batch as gen.DeliveryBatch), w));
}

export function decodeDeliveryBatch(bytes: Uint8Array): gen.DeliveryBatch {
  return gen.DeliveryBatch.decode(new WireReader(bytes));
}
