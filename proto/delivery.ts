/** Encoding of the bus payload (proto/internal/bus.proto): logic -> gateway downlink batches. */
import * as path from 'node:path';
import * as protobuf from 'protobufjs';

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
/** Legacy (logic before Push): one full Message per recipient, seq included. Still applied by gateways. */
export interface Delivery {
  uid: string; seq: number; message: Uint8Array;
  traceParent?: string;
  sentAtMs?: number;
}
export interface Kick {
  uid: string; deviceId: string; code: number; reason: string;
  /** Only this connection when set; decoded as '' when absent. */
  connId?: string;
}
export interface DeliveryBatch { pushes: Push[]; deliveries: Delivery[]; kicks: Kick[] }

let batchType: protobuf.Type | undefined;
function t(): protobuf.Type {
  batchType ??= protobuf.loadSync(path.resolve(__dirname, '..', '..', 'proto', 'internal', 'bus.proto'))
    .lookupType('im.internal.v1.DeliveryBatch');
  return batchType;
}

export function encodeDeliveryBatch(batch: Partial<DeliveryBatch>): Uint8Array {
  return t().encode(t().fromObject(batch)).finish();
}

export function decodeDeliveryBatch(bytes: Uint8Array): DeliveryBatch {
  return t().toObject(t().decode(bytes), { longs: Number, defaults: true, arrays: true }) as DeliveryBatch;
}
