/**
 * The process's Prometheus metrics (prom-client), served as text on the admin port's /metrics.
 *
 * One registry per process, reached through metrics(), rather than one passed down every
 * constructor: metrics describe the process, and several parts of the same kind in one process
 * (two gateways in a test, router + logic + gateway in embedded mode) must add up into one series
 * anyway. Labels are bounded sets (op names, error code names, results); never a uid, device,
 * connection or group id.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * A gauge read at scrape time as the sum over live owners (gateways, stores, buses...). Owners
 * are held weakly, so one that is dropped without being removed stops counting and is collected.
 */
export class SourcedGauge {
  private readonly sources = new Set<{ owner: WeakRef<object>; read: (owner: object) => number }>();

  constructor(registry: Registry, name: string, help: string) {
    const sources = this.sources;
    new Gauge({
      name, help, registers: [registry],
      collect() {
        let sum = 0;
        for (const s of sources) {
          const owner = s.owner.deref();
          if (owner === undefined) { sources.delete(s); continue; }
          const v = s.read(owner);
          if (Number.isFinite(v)) sum += v;
        }
        this.set(sum);
      },
    });
  }

  /** Adds `read(owner)` to the sum until the returned function is called. */
  add<T extends object>(owner: T, read: (owner: T) => number): () => void {
    const source = { owner: new WeakRef(owner), read: read as (owner: object) => number };
    this.sources.add(source);
    return () => { this.sources.delete(source); };
  }
}

/**
 * A counter bumped on hot paths (a frame per delivery): inc() is a plain number add, folded into
 * the Prometheus counter when it is collected (a scrape), not a prom-client call per event.
 */
export class TallyCounter {
  private pending = 0;

  constructor(registry: Registry, name: string, help: string) {
    const self = this;
    new Counter({
      name, help, registers: [registry],
      collect() {
        if (self.pending === 0) return;
        this.inc(self.pending);
        self.pending = 0;
      },
    });
  }

  inc(n = 1): void {
    this.pending += n;
  }
}

/** Latency buckets in seconds: 1 ms to 10 s. */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class ImMetrics {
  readonly registry = new Registry();
  private processMetricsOn = false;

  // gateway
  readonly gatewayConnections = this.sourced('im_gateway_connections', 'Client connections being served (authenticated or not).');
  readonly gatewayWriteQueueBytes = this.sourced('im_gateway_write_queue_bytes',
    'Bytes queued for writing to client sockets, summed over connections.');
  readonly gatewayFramesIn = this.tally('im_gateway_frames_in_total', 'Frames received from clients.');
  readonly gatewayFramesOut = this.tally('im_gateway_frames_out_total', 'Frames written to clients.');
  readonly gatewayRequests = new Counter({
    name: 'im_gateway_requests_total', help: 'Client requests forwarded to logic, by op and result code name.',
    labelNames: ['op', 'code'] as const, registers: [this.registry],
  });
  readonly gatewayRequestSeconds = new Histogram({
    name: 'im_gateway_request_seconds', help: 'Time from a client request frame to its reply, by op.',
    labelNames: ['op'] as const, buckets: LATENCY_BUCKETS_S, registers: [this.registry],
  });
  readonly gatewayErrors = new Counter({
    name: 'im_gateway_errors_total', help: 'Error replies the gateway makes itself (not from logic), by code name.',
    labelNames: ['code'] as const, registers: [this.registry],
  });
  readonly gatewayDisconnects = new Counter({
    name: 'im_gateway_disconnects_total', help: 'Disconnect frames sent to clients, by disconnect code.',
    labelNames: ['code'] as const, registers: [this.registry],
  });
  readonly gatewayDeliveries = this.counter('im_gateway_deliveries_total', 'Deliveries received from the bus.');
  readonly gatewayPushes = this.counter('im_gateway_pushes_total', 'Push frames written to client connections.');
  readonly gatewayPushLatency = new Histogram({
    name: 'im_gateway_push_latency_seconds',
    help: 'From the message being accepted by logic (sentAtMs) to its pushes being written here, once per message; includes clock skew between hosts.',
    buckets: LATENCY_BUCKETS_S, registers: [this.registry],
  });

  // logic
  readonly logicCalls = new Counter({
    name: 'im_logic_calls_total', help: 'Calls handled by logic, by op and result code name.',
    labelNames: ['op', 'code'] as const, registers: [this.registry],
  });
  readonly logicCallSeconds = new Histogram({
    name: 'im_logic_call_seconds', help: 'Time logic spends on one call, by op.',
    labelNames: ['op'] as const, buckets: LATENCY_BUCKETS_S, registers: [this.registry],
  });
  readonly logicCallsInFlight = new Gauge({
    name: 'im_logic_calls_in_flight', help: 'Calls logic is running now.', registers: [this.registry],
  });
  readonly logicStreamBackpressure = this.counter('im_logic_stream_backpressure_total',
    'Times a gateway stream stopped taking results (write() returned false): logic paused reading its calls until it drained.');
  readonly logicSends = new Counter({
    name: 'im_logic_sends_total', help: 'Messages accepted by logic; result="duplicate" for idempotent retries.',
    labelNames: ['result'] as const, registers: [this.registry],
  });
  readonly logicDeliveries = this.counter('im_logic_deliveries_total', 'Deliveries (recipient x gateway node) published to the bus.');
  readonly fanoutPendingDeliveries = new Gauge({
    name: 'im_logic_fanout_pending_deliveries', help: 'Deliveries queued for the next fan-out flush.', registers: [this.registry],
  });
  readonly fanoutFlushesInFlight = new Gauge({
    name: 'im_logic_fanout_flushes_in_flight', help: 'Fan-out flushes (router lookup + publish) running.', registers: [this.registry],
  });
  readonly fanoutDropped = this.counter('im_logic_fanout_dropped_deliveries_total',
    'Deliveries dropped because fan-out was saturated (clients recover by sync).');
  readonly fanoutLookupsFailed = this.counter('im_logic_fanout_lookups_failed_total',
    'Fan-out router lookups that failed on every try: their pushes were skipped (clients recover by sync).');

  // store
  readonly storePendingAppends = new Gauge({
    name: 'im_store_pending_appends', help: 'Message appends submitted to the store and not yet committed.', registers: [this.registry],
  });
  readonly storeShardsOwned = this.sourced('im_store_shards_owned',
    'Sequencer shards this process owns (Cassandra store; docs/sequencer.md). Spread evenly over the logic processes once balanced.');
  readonly storeShardHandovers = this.counter('im_store_shard_handovers_total',
    'Shards this process handed to their preferred owner (Cassandra store balance).');
  readonly storeKeyHeadsAdopted = this.counter('im_store_key_heads_adopted_total',
    'Key heads taken from the previous owner of a shard at its clean release (Cassandra store): keys that start without a read.');
  readonly storeSendsShed = this.counter('im_store_sends_shed_total',
    'Sends refused OVERLOADED at once because sends were waiting longer than shedAfterMs (Cassandra store; docs/storage.md, Options).');
  readonly storeAppendSeconds = new Histogram({
    name: 'im_store_append_seconds', help: 'Time to append one message (dedup, history, every inbox).',
    buckets: LATENCY_BUCKETS_S, registers: [this.registry],
  });

  // bus
  readonly busConnected = this.sourced('im_bus_connected', 'NATS connections of this process that are up.');
  readonly busPublished = this.counter('im_bus_published_total', 'Messages handed to NATS.');
  readonly busDropped = this.counter('im_bus_dropped_total', 'Publishes dropped (disconnected past the pending bound, or closed).');
  readonly busReceived = this.counter('im_bus_received_total', 'Messages received from NATS subscriptions.');

  // router
  readonly routerGateways = this.sourced('im_router_gateways', 'Gateway nodes the router knows.');
  readonly routerSessions = this.sourced('im_router_sessions', 'Sessions (uid, device, connection) the router holds.');

  /** Node.js process metrics (CPU, memory, event-loop lag, GC). Idempotent. */
  enableProcessMetrics(): void {
    if (this.processMetricsOn) return;
    this.processMetricsOn = true;
    collectDefaultMetrics({ register: this.registry });
  }

  private counter(name: string, help: string): Counter {
    return new Counter({ name, help, registers: [this.registry] });
  }

  private tally(name: string, help: string): TallyCounter {
    return new TallyCounter(this.registry, name, help);
  }

  private sourced(name: string, help: string): SourcedGauge {
    return new SourcedGauge(this.registry, name, help);
  }
}

let processMetrics: ImMetrics | undefined;

/** This process's metrics. */
export function metrics(): ImMetrics {
  return (processMetrics ??= new ImMetrics());
}
